package jobstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard/switchyard/libs/clock"
	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/jobmessage"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/outbox"
)

// acceptSQL accepts any number of submissions in one statement, so in one
// round trip and one commit: the jobs are inserted, and an outbox row is
// inserted for each job that was (a data-modifying WITH runs in one
// snapshot and commits as a whole). A submission whose (client,
// Idempotency-Key) is taken, by a committed job or by an earlier
// submission in the same statement, inserts nothing and returns no row;
// the caller reads the job that holds the key after the statement.
//
// The submissions arrive as parallel arrays, one element per submission,
// in the order of the waiters. The jobs are inserted in key order, ord
// breaking ties so that the first of two submissions with one key wins:
// an insert whose key another open transaction has just inserted waits
// for it, and two batches that met the same keys in different orders
// would wait for each other (a deadlock Postgres ends by failing one).
// In one order for every batch, the later one waits for the earlier and
// never the other way round. The outbox keeps the waiters' order.
var acceptSQL = `
WITH input AS (
	SELECT t.*, CASE WHEN t.run_at > now() THEN t.run_at END AS due
	FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[], $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::text[])
		WITH ORDINALITY AS t(id, type, client_id, scopes, payload, idempotency_key, request_hash, request_id, traceparent, outbox_uuid, outbox_payload, run_at, callback_url, ord)
), inserted AS (
	INSERT INTO jobs (id, type, client_id, client_scopes, status, payload, idempotency_key, request_hash, request_id, traceparent, run_at, callback_url)
	SELECT id::uuid, type, client_id, string_to_array(scopes, ' '), CASE WHEN due IS NULL THEN 'accepted' ELSE 'scheduled' END, payload::jsonb,
		NULLIF(idempotency_key, ''), request_hash, NULLIF(request_id, ''), NULLIF(traceparent, ''), due, NULLIF(callback_url, '')
	FROM input ORDER BY client_id, idempotency_key, ord
	ON CONFLICT (client_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
	RETURNING id, created_at, status, run_at
), forwarded AS (
	` + outbox.InsertSelectSQL(`SELECT i.outbox_uuid, i.outbox_payload::json, i.due FROM input i JOIN inserted j ON j.id = i.id::uuid ORDER BY i.ord`) + `
)
SELECT id::text, created_at, status, run_at FROM inserted`

// existingSQL reads the jobs that hold the given (client, key) pairs.
const existingSQL = `SELECT ` + jobColumns + ` FROM jobs
	WHERE (client_id, idempotency_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))`

// contendedAttempts is how many times a batch is written when it keeps
// losing races with other transactions (see database.Contended) before
// its submissions are refused as overloaded.
const contendedAttempts = 3

// unsentRetryPause is the pause before a batch that never reached the
// database is written again.
const unsentRetryPause = 50 * time.Millisecond

// acceptance is one submission on its way into the store, and then its
// outcome.
type acceptance struct {
	sub  jobs.Submission
	hash []byte
	row  outbox.EncodedRow

	job     jobs.Job
	created bool
	err     error
}

// newAcceptance prepares sub's rows: the request hash and the outbox row
// (its envelope encoded here, on the caller's goroutine).
func newAcceptance(sub jobs.Submission) (*acceptance, error) {
	for _, s := range sub.ClientScopes {
		if strings.Contains(s, " ") { // the statement passes scopes space-separated
			return nil, fmt.Errorf("client scope %q contains a space", s)
		}
	}
	msg := jobmessage.New(sub.MessageID, jobmessage.Job{ID: sub.ID, Type: sub.Type, ClientID: sub.ClientID,
		RequestID: sub.RequestID, TraceParent: sub.TraceParent}, sub.Payload)
	row, err := outbox.Encode(msg)
	if err != nil {
		return nil, err
	}
	return &acceptance{sub: sub, hash: jobs.RequestHash(sub.Type, sub.Payload, sub.Options...), row: row}, nil
}

// acceptAll accepts every submission of batch with one statement and
// sets each one's outcome. When the statement fails because of what one
// submission holds (a data or integrity error), each is tried on its own
// so that the bad one fails alone; a batch that lost a race with another
// transaction is written again, and so is one that failed to reach the
// database before anything was sent (once, after a short pause: a pool
// connection that broke in a restart); any other failure is every
// submission's.
func (s *Store) acceptAll(ctx context.Context, batch []*acceptance) {
	err := s.insert(ctx, batch)
	for attempt := 1; attempt < contendedAttempts && database.Contended(err); attempt++ {
		err = s.insert(ctx, batch) // the statement was rolled back whole
	}
	if database.Unavailable(err) && pgconn.SafeToRetry(err) && clock.Sleep(ctx, unsentRetryPause) {
		err = s.insert(ctx, batch) // nothing was sent, so nothing committed
	}
	if err == nil {
		s.resolveTaken(ctx, batch)
		return
	}
	var pgErr *pgconn.PgError
	if len(batch) > 1 && errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23")) {
		for _, a := range batch {
			s.acceptAll(ctx, []*acceptance{a})
		}
		return
	}
	switch {
	case database.Unavailable(err):
		err = fmt.Errorf("%w: %w", jobs.ErrStoreUnavailable, err)
	case database.Contended(err):
		err = fmt.Errorf("%w: %w", jobs.ErrOverloaded, err)
	}
	for _, a := range batch {
		a.err = fmt.Errorf("accepting job: %w", err)
	}
}

// insert runs acceptSQL for batch and marks the submissions it created.
func (s *Store) insert(ctx context.Context, batch []*acceptance) error {
	n := len(batch)
	ids, types, clients, scopes, payloads, keys := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	hashes, requestIDs, traceparents, rowIDs, rowPayloads := make([][]byte, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	runAts, callbackURLs := make([]*time.Time, n), make([]string, n)
	byID := make(map[string]*acceptance, n)
	for i, a := range batch {
		ids[i], types[i], clients[i], scopes[i] = a.sub.ID, a.sub.Type, a.sub.ClientID, strings.Join(a.sub.ClientScopes, " ")
		payloads[i], keys[i], hashes[i] = string(a.sub.Payload), a.sub.IdempotencyKey, a.hash
		requestIDs[i], traceparents[i], rowIDs[i], rowPayloads[i] = a.sub.RequestID, a.sub.TraceParent, a.row.UUID, string(a.row.Payload)
		runAts[i], callbackURLs[i] = a.sub.RunAt, a.sub.CallbackURL
		byID[a.sub.ID] = a
	}
	rows, err := s.pool.Query(ctx, acceptSQL, ids, types, clients, scopes, payloads, keys, hashes, requestIDs, traceparents, rowIDs, rowPayloads, runAts, callbackURLs)
	if err != nil {
		return err
	}
	var id, status string
	var createdAt time.Time
	var runAt *time.Time
	_, err = pgx.ForEachRow(rows, []any{&id, &createdAt, &status, &runAt}, func() error {
		a, ok := byID[id]
		if !ok {
			return fmt.Errorf("the store returned job %s, which was not submitted", id)
		}
		a.created = true
		a.job = jobs.Job{ID: id, Type: a.sub.Type, ClientID: a.sub.ClientID, ClientScopes: a.sub.ClientScopes, Status: jobs.Status(status),
			Payload: a.sub.Payload, IdempotencyKey: a.sub.IdempotencyKey, RequestHash: a.hash, RequestID: a.sub.RequestID,
			TraceParent: a.sub.TraceParent, CreatedAt: createdAt, UpdatedAt: createdAt, RunAt: runAt, CallbackURL: a.sub.CallbackURL}
		return nil
	})
	return err
}

// resolveTaken answers the submissions that created nothing because their
// key was taken: with the job that holds it when it was the same request
// (created=false), with jobs.ErrIdempotencyKeyReused when it was not.
func (s *Store) resolveTaken(ctx context.Context, batch []*acceptance) {
	var clients, keys []string
	for _, a := range batch {
		if !a.created {
			clients, keys = append(clients, a.sub.ClientID), append(keys, a.sub.IdempotencyKey)
		}
	}
	if len(keys) == 0 {
		return
	}
	holders := map[[2]string]jobs.Job{}
	rows, err := s.pool.Query(ctx, existingSQL, clients, keys)
	if err == nil {
		_, err = forEachJob(rows, func(j jobs.Job) { holders[[2]string{j.ClientID, j.IdempotencyKey}] = j })
	}
	var expired []*acceptance
	for _, a := range batch {
		if a.created {
			continue
		}
		holder, found := holders[[2]string{a.sub.ClientID, a.sub.IdempotencyKey}]
		switch {
		case err == nil && found && s.keyWindow > 0 && time.Since(holder.CreatedAt) > s.keyWindow:
			expired = append(expired, a)
		case err != nil:
			a.err = fmt.Errorf("reading job for idempotency key: %w", err)
		case a.sub.IdempotencyKey == "" || !found:
			// Nothing was inserted and no job holds the key: the holder
			// was deleted in between. Never answer without a job.
			a.err = fmt.Errorf("job %s was neither created nor found by its idempotency key", a.sub.ID)
		case !bytes.Equal(holder.RequestHash, a.hash):
			a.err = jobs.ErrIdempotencyKeyReused
		default:
			a.job = holder
		}
	}
	if len(expired) > 0 {
		s.acceptAfterExpiry(ctx, expired)
	}
}

// releaseExpiredSQL forgets the keys of the given (client, key) pairs
// whose job was accepted before $3 (the janitor does the same in bulk),
// through the database function the gateway may call (migration 00017).
const releaseExpiredSQL = `SELECT switchyard_release_idempotency_keys($1::text[], $2::text[], $3)`

// acceptAfterExpiry accepts submissions whose key names a job accepted
// longer ago than the key window: the key is released and they are
// accepted anew, each creating a job (or, if a concurrent submission took
// the key again first, answered with that one's).
func (s *Store) acceptAfterExpiry(ctx context.Context, batch []*acceptance) {
	clients, keys := make([]string, len(batch)), make([]string, len(batch))
	for i, a := range batch {
		clients[i], keys[i] = a.sub.ClientID, a.sub.IdempotencyKey
	}
	if _, err := s.pool.Exec(ctx, releaseExpiredSQL, clients, keys, time.Now().Add(-s.keyWindow)); err != nil {
		for _, a := range batch {
			a.err = fmt.Errorf("releasing an expired idempotency key: %w", err)
		}
		return
	}
	s.acceptAll(ctx, batch)
}

// forEachJob scans rows of jobColumns.
func forEachJob(rows pgx.Rows, fn func(jobs.Job)) (int, error) {
	defer rows.Close()
	n := 0
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return n, err
		}
		fn(j)
		n++
	}
	return n, rows.Err()
}
