// Package jobstore keeps jobs in Postgres (pgx). It accepts a submission by
// inserting the job row and its outbox message in one transaction, answers
// status queries scoped to the owning client, and moves jobs through their
// lifecycle with guarded updates that never move a job backwards.
package jobstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/jobs"
)

// Store reads and writes jobs.
type Store struct {
	pool *pgxpool.Pool
	// keyWindow is how long an Idempotency-Key names its job (0: for ever).
	keyWindow time.Duration
}

// New returns a Store on pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// ExpireKeysAfter makes an Idempotency-Key name its job for d after the
// job was accepted: a submission with the key after that creates a new
// job (Stripe's 24 hours). It returns s.
func (s *Store) ExpireKeysAfter(d time.Duration) *Store {
	s.keyWindow = d
	return s
}

// jobColumns read a job as its owner sees it: LastError is the message
// written for the client (or a generic one for a failure recorded before
// classes existed), never the operators' detail.
const jobColumns = `id::text, type, client_id, client_scopes, status, payload, result, attempts,
	CASE WHEN last_error IS NULL THEN '' ELSE COALESCE(last_client_error, '` + genericClientError + `') END,
	COALESCE(last_error_class, CASE WHEN last_error IS NULL THEN '' ELSE '` + unknownErrorClass + `' END),
	COALESCE(idempotency_key, ''), request_hash, COALESCE(request_id, ''), COALESCE(traceparent, ''),
	created_at, updated_at, queued_at, started_at, finished_at, next_attempt_at, cancel_requested_at, run_at, COALESCE(callback_url, '')`

func scanJob(row pgx.Row) (jobs.Job, error) {
	var j jobs.Job
	var status string
	var payload, result []byte
	err := row.Scan(&j.ID, &j.Type, &j.ClientID, &j.ClientScopes, &status, &payload, &result, &j.Attempts, &j.LastError, &j.LastErrorClass,
		&j.IdempotencyKey, &j.RequestHash, &j.RequestID, &j.TraceParent,
		&j.CreatedAt, &j.UpdatedAt, &j.QueuedAt, &j.StartedAt, &j.FinishedAt, &j.NextAttemptAt, &j.CancelRequestedAt, &j.RunAt, &j.CallbackURL)
	if err != nil {
		return jobs.Job{}, err
	}
	j.Status = jobs.Status(status)
	j.Payload = payload
	if result != nil {
		j.Result = result
	}
	return j, nil
}

// Accept records sub as a new job together with its outbox message, in
// one statement (one round trip and one commit); when it returns without
// error the job is durably committed. Batcher.Accept does the same for
// many concurrent submissions with shared commits.
//
// With an Idempotency-Key the key is scoped to the client: a second
// submission with the same key and the same type and payload returns the
// original job and created=false; the same key with anything else is
// jobs.ErrIdempotencyKeyReused. Concurrent submissions with one key are
// serialised by the unique index, so exactly one job is created.
func (s *Store) Accept(ctx context.Context, sub jobs.Submission) (job jobs.Job, created bool, err error) {
	a, err := newAcceptance(sub)
	if err != nil {
		return jobs.Job{}, false, err
	}
	s.acceptAll(ctx, []*acceptance{a})
	return a.job, a.created, a.err
}

// Get returns the job id if it belongs to clientID; otherwise
// jobs.ErrNotFound, so that a client cannot learn whether another client's
// job exists.
//
// The job comes with its timeline (Events), read in the same round trip.
func (s *Store) Get(ctx context.Context, id, clientID string) (jobs.Job, error) {
	return s.get(ctx, id, `SELECT `+jobColumns+` FROM jobs WHERE id = $1 AND client_id = $2`, id, clientID)
}

// Inspect returns job id of any client, with its timeline: for
// operators (the admin API), never for a client's own API.
func (s *Store) Inspect(ctx context.Context, id string) (jobs.Job, error) {
	if uuid.Validate(id) != nil {
		return jobs.Job{}, jobs.ErrNotFound
	}
	return s.get(ctx, id, `SELECT `+jobColumns+` FROM jobs WHERE id = $1`, id)
}

// FindByKey returns the id of clientID's job submitted with idempotency
// key key (while the key is kept), or jobs.ErrNotFound.
func (s *Store) FindByKey(ctx context.Context, clientID, key string) (string, error) {
	var id string
	err := s.pool.QueryRow(ctx, `SELECT id::text FROM jobs WHERE client_id = $1 AND idempotency_key = $2`, clientID, key).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", jobs.ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("looking up %s's job with key %q: %w", clientID, key, err)
	}
	return id, nil
}

func (s *Store) get(ctx context.Context, id, query string, args ...any) (jobs.Job, error) {
	batch := &pgx.Batch{}
	batch.Queue(query, args...)
	batch.Queue(timelineQuery, id)
	results := s.pool.SendBatch(ctx, batch)
	defer func() { _ = results.Close() }()
	job, err := scanJob(results.QueryRow())
	if errors.Is(err, pgx.ErrNoRows) {
		return jobs.Job{}, jobs.ErrNotFound
	}
	if database.Unavailable(err) {
		return jobs.Job{}, fmt.Errorf("reading job %s: %w: %w", id, jobs.ErrStoreUnavailable, err)
	}
	if err != nil {
		return jobs.Job{}, fmt.Errorf("reading job %s: %w", id, err)
	}
	rows, err := results.Query()
	if err != nil {
		return jobs.Job{}, fmt.Errorf("reading the timeline of job %s: %w", id, err)
	}
	if job.Events, err = scanEvents(rows); err != nil {
		return jobs.Job{}, fmt.Errorf("reading the timeline of job %s: %w", id, err)
	}
	return job, nil
}

// MarkQueued records, inside tx, that the jobs' messages were handed to
// SQS (pass the ids of job messages, not of dead letters), and adds it to
// each job's timeline. Jobs already further along (a fast worker) are left alone, and ids
// that cannot name a job (not UUIDs) are ignored rather than failing the
// relay's whole batch.
func MarkQueued(ctx context.Context, tx pgx.Tx, jobIDs []string) error {
	valid := make([]string, 0, len(jobIDs))
	for _, id := range jobIDs {
		if _, err := uuid.Parse(id); err == nil {
			valid = append(valid, id)
		}
	}
	if len(valid) == 0 {
		return nil
	}
	// Every hand-over is in the timeline, also of a job a fast worker has
	// already moved on.
	_, err := tx.Exec(ctx, `
		WITH moved AS (
			UPDATE jobs SET status = 'queued', queued_at = now(), updated_at = now()
			WHERE id = ANY($1::uuid[]) AND status = ANY($2)
		)
		INSERT INTO job_events (job_id, type) SELECT id, 'queued' FROM jobs WHERE id = ANY($1::uuid[])`,
		valid, statusStrings(jobs.Sources(jobs.StatusQueued)))
	if err != nil {
		return fmt.Errorf("marking jobs queued: %w", err)
	}
	return nil
}

// ErrFinished is returned by MarkProcessing for a job that has already
// reached a final state; its message is a duplicate.
var ErrFinished = errors.New("job already finished")

// NotDueError is MarkProcessing's answer for a scheduled job whose time
// has not come (its message came early: SQS's delay is at most 15
// minutes, and clocks differ); In is how long until it is due, by the
// database's clock.
type NotDueError struct {
	JobID string
	RunAt time.Time
	In    time.Duration
}

func (e *NotDueError) Error() string {
	return fmt.Sprintf("job %s is scheduled for %s", e.JobID, e.RunAt.UTC().Format(time.RFC3339Nano))
}

// ErrCancelled is MarkProcessing's ErrFinished for a cancelled job.
var ErrCancelled = fmt.Errorf("%w: cancelled by its owner", ErrFinished)

// MarkProcessing records that a worker starts an attempt at the job,
// carried by message messageID, and returns the attempt number. The attempt
// gets a 'running' row in job_attempts; running rows of earlier attempts
// (whose worker died) become 'abandoned'. A job that does not exist is
// jobs.ErrNotFound; one that is finished is ErrFinished, and so is one
// whose owner asked to cancel it while an earlier attempt ran (a worker
// died): it is cancelled now, and its running attempt abandoned.
func (s *Store) MarkProcessing(ctx context.Context, id, messageID string) (attempt int, err error) {
	err = s.pool.QueryRow(ctx, `
		WITH job AS (
			UPDATE jobs SET status = 'processing', attempts = attempts + 1, started_at = now(),
				next_attempt_at = NULL, updated_at = now()
			WHERE id = $1 AND status = ANY($2) AND cancel_requested_at IS NULL AND (run_at IS NULL OR run_at <= now())
			RETURNING id, attempts
		), abandoned AS (
			UPDATE job_attempts SET outcome = 'abandoned', finished_at = now()
			WHERE job_id = $1 AND outcome = 'running' AND EXISTS (SELECT 1 FROM job)
		)
		INSERT INTO job_attempts (job_id, attempt, message_id)
		SELECT id, attempts, $3 FROM job
		RETURNING attempt`, id, statusStrings(jobs.Sources(jobs.StatusProcessing)), messageID).Scan(&attempt)
	if errors.Is(err, pgx.ErrNoRows) {
		var status string
		var notDueUntil *time.Time
		var dueIn *float64
		if err := s.pool.QueryRow(ctx, `
			WITH cancelled AS (
				UPDATE jobs SET status = 'cancelled', next_attempt_at = NULL, finished_at = now(), updated_at = now()
				WHERE id = $1 AND cancel_requested_at IS NOT NULL AND status = ANY($2) RETURNING id, status
			), abandoned AS (
				UPDATE job_attempts SET outcome = 'abandoned', finished_at = now()
				WHERE job_id = $1 AND outcome = 'running' AND EXISTS (SELECT 1 FROM cancelled)
			), events AS (
				INSERT INTO job_events (job_id, type) SELECT id, 'cancelled' FROM cancelled
			)
			SELECT COALESCE((SELECT status FROM cancelled), status), CASE WHEN run_at > now() THEN run_at END,
				CASE WHEN run_at > now() THEN extract(epoch FROM run_at - now())::float8 END
			FROM jobs WHERE id = $1`,
			id, statusStrings(jobs.Sources(jobs.StatusCancelled))).Scan(&status, &notDueUntil, &dueIn); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return 0, jobs.ErrNotFound
			}
			return 0, fmt.Errorf("reading status of job %s: %w", id, err)
		}
		if jobs.Status(status) == jobs.StatusCancelled {
			return 0, fmt.Errorf("job %s: %w", id, ErrCancelled)
		}
		if notDueUntil != nil && dueIn != nil && jobs.Status(status) == jobs.StatusScheduled {
			return 0, &NotDueError{JobID: id, RunAt: *notDueUntil, In: time.Duration(*dueIn * float64(time.Second))}
		}
		return 0, fmt.Errorf("job %s is %s: %w", id, status, ErrFinished)
	}
	if err != nil {
		return 0, fmt.Errorf("marking job %s processing: %w", id, err)
	}
	return attempt, nil
}

// Complete marks the job succeeded with result, and its attempt too,
// inside tx (the transaction that also holds the handler's effects and the
// inbox row).
func Complete(ctx context.Context, tx pgx.Tx, id string, attempt int, result json.RawMessage) error {
	var res any
	if len(result) > 0 {
		res = []byte(result)
	}
	tag, err := tx.Exec(ctx, `
		UPDATE jobs SET status = 'succeeded', result = $2, last_error = NULL, last_error_class = NULL, last_client_error = NULL, finished_at = now(), updated_at = now()
		WHERE id = $1 AND status = 'processing'`, id, res)
	if err != nil {
		return fmt.Errorf("marking job %s succeeded: %w", id, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("marking job %s succeeded: job is not processing", id)
	}
	if _, err := tx.Exec(ctx, `
		UPDATE job_attempts SET outcome = 'succeeded', error = NULL, fingerprint = NULL, finished_at = now()
		WHERE job_id = $1 AND attempt = $2`, id, attempt); err != nil {
		return fmt.Errorf("recording attempt %d of job %s: %w", attempt, id, err)
	}
	return nil
}

// Failure is one failed attempt, as the worker reports it.
type Failure struct {
	JobID     string
	Attempt   int
	MessageID string
	// Error is the detail, for operators.
	Error       string
	Fingerprint string
	Permanent   bool
	// ErrorClass and ClientError are what the job's submitter sees
	// (jobhandler.Describe).
	ErrorClass  string
	ClientError string
}

// Tally sums up the failed attempts of one message.
type Tally struct {
	// Failures counts the failed attempts of the message, this one included.
	Failures       int
	FirstFailureAt time.Time
	LastFailureAt  time.Time
	// CancelRequested says the job's owner asked to cancel it: it is
	// cancelled (FinishCancelled), not retried or dead-lettered.
	CancelRequested bool
}

// RecordFailure settles the attempt as failed, marks the job failed with
// the error (unless something newer already moved it on), and returns the
// tally of the message's failed attempts, inside tx.
func RecordFailure(ctx context.Context, tx pgx.Tx, f Failure) (Tally, error) {
	if _, err := tx.Exec(ctx, `
		UPDATE job_attempts SET outcome = 'failed', error = $3, fingerprint = NULLIF($4, ''), permanent = $5, finished_at = now(),
			error_class = NULLIF($6, ''), client_error = NULLIF($7, '')
		WHERE job_id = $1 AND attempt = $2`, f.JobID, f.Attempt, f.Error, f.Fingerprint, f.Permanent, f.ErrorClass, f.ClientError); err != nil {
		return Tally{}, fmt.Errorf("recording failed attempt %d of job %s: %w", f.Attempt, f.JobID, err)
	}
	if _, err := tx.Exec(ctx, `
		UPDATE jobs SET status = 'failed', last_error = $2, last_error_class = NULLIF($3, ''), last_client_error = NULLIF($4, ''), updated_at = now()
		WHERE id = $1 AND status = 'processing'`, f.JobID, f.Error, f.ErrorClass, f.ClientError); err != nil {
		return Tally{}, fmt.Errorf("marking job %s failed: %w", f.JobID, err)
	}
	var t Tally
	err := tx.QueryRow(ctx, `
		SELECT count(*), COALESCE(min(finished_at), now()), COALESCE(max(finished_at), now()),
			EXISTS (SELECT 1 FROM jobs WHERE id = $2 AND cancel_requested_at IS NOT NULL)
		FROM job_attempts WHERE message_id = $1 AND job_id = $2 AND outcome = 'failed'`, f.MessageID, f.JobID).
		Scan(&t.Failures, &t.FirstFailureAt, &t.LastFailureAt, &t.CancelRequested)
	if err != nil {
		return Tally{}, fmt.Errorf("counting failed attempts of job %s: %w", f.JobID, err)
	}
	return t, nil
}

// ScheduleRetry records, inside tx, when the failed job will be tried
// again after attempt, in the job and in its timeline.
func ScheduleRetry(ctx context.Context, tx pgx.Tx, id string, attempt int, at time.Time) error {
	if _, err := tx.Exec(ctx, `
		WITH scheduled AS (UPDATE jobs SET next_attempt_at = $2 WHERE id = $1 AND status = 'failed' RETURNING id)
		INSERT INTO job_events (job_id, type, detail)
		SELECT id, 'retry_scheduled', jsonb_build_object('attempt', $3::int, 'next_attempt_at', $2::timestamptz) FROM scheduled`,
		id, at, attempt); err != nil {
		return fmt.Errorf("scheduling retry of job %s: %w", id, err)
	}
	return nil
}

// AddReplayed adds to the job's timeline, inside tx, that an operator
// replayed it (edited: with a changed payload).
func AddReplayed(ctx context.Context, tx pgx.Tx, id string, edited bool) error {
	if _, err := tx.Exec(ctx, `INSERT INTO job_events (job_id, type, detail) VALUES ($1, 'replayed', jsonb_build_object('edited', $2::bool))`,
		id, edited); err != nil {
		return fmt.Errorf("recording the replay of job %s: %w", id, err)
	}
	return nil
}

// JobCount is how many jobs of one client, type and status were accepted
// in a window.
type JobCount struct {
	ClientID, Type, Status string
	Count                  int64
}

// CountAccepted counts the jobs accepted in [since, until), by client,
// type and status; clientID, when not empty, keeps one client's (the
// usage report's job counts).
func CountAccepted(ctx context.Context, db *pgxpool.Pool, since, until time.Time, clientID string) ([]JobCount, error) {
	rows, err := db.Query(ctx, `
		SELECT client_id, type, status, count(*) FROM jobs
		WHERE created_at >= $1 AND created_at < $2 AND ($3 = '' OR client_id = $3)
		GROUP BY client_id, type, status`, since, until, clientID)
	if err != nil {
		return nil, fmt.Errorf("counting jobs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (JobCount, error) {
		var c JobCount
		err := row.Scan(&c.ClientID, &c.Type, &c.Status, &c.Count)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("counting jobs: %w", err)
	}
	return out, nil
}

// SQL fragments for queries of other tables that need a job's state: the
// dead-letter store's selections and progress counts. They keep jobs and
// job_attempts named here only, and run inside the caller's statement (a
// correlated subquery on the primary key or an index, as a join would).

// StatusSQL is the status of the job whose id is the SQL expression idExpr
// (” when no such job).
func StatusSQL(idExpr string) string {
	return "COALESCE((SELECT status FROM jobs WHERE id = " + idExpr + "), '')"
}

// MessageSucceededSQL is true when an attempt of the message whose id is
// messageExpr succeeded.
func MessageSucceededSQL(messageExpr string) string {
	return "EXISTS (SELECT 1 FROM job_attempts a WHERE a.message_id = " + messageExpr + " AND a.outcome = 'succeeded')"
}

// MessageFailedAgainSQL is true when the message whose id is messageExpr,
// of the job whose id is jobExpr, failed for good: the job is
// dead-lettered and the message was its last attempt, or a later message
// of the job (only a replay sends one) was attempted since.
func MessageFailedAgainSQL(jobExpr, messageExpr string) string {
	return `(EXISTS (SELECT 1 FROM jobs j WHERE j.id = ` + jobExpr + ` AND j.status = '` + string(jobs.StatusDeadLettered) + `'
			AND (SELECT a.message_id FROM job_attempts a WHERE a.job_id = j.id ORDER BY a.attempt DESC LIMIT 1) = ` + messageExpr + `)
		OR EXISTS (SELECT 1 FROM job_attempts later WHERE later.job_id = ` + jobExpr + ` AND later.message_id <> ` + messageExpr + `
			AND later.attempt > (SELECT max(a.attempt) FROM job_attempts a WHERE a.message_id = ` + messageExpr + `)))`
}

// MessageHistory is what a job's attempts with one message say.
type MessageHistory struct {
	ClientID, LastError, TraceParent string
	// Attempts is how many attempts ran with the message, between
	// FirstStartedAt and LastStartedAt.
	Attempts                      int
	FirstStartedAt, LastStartedAt *time.Time
}

// HistoryOf reads job id's client, last error and trace context and its
// attempts with messageID, inside tx; found is false when the job does not
// exist.
func HistoryOf(ctx context.Context, tx pgx.Tx, id, messageID string) (h MessageHistory, found bool, err error) {
	if !isUUID(id) {
		return h, false, nil
	}
	err = tx.QueryRow(ctx, `
		SELECT j.client_id, COALESCE(j.last_error, ''), COALESCE(j.traceparent, ''),
			(SELECT count(*) FROM job_attempts a WHERE a.job_id = j.id AND a.message_id = $2),
			(SELECT min(started_at) FROM job_attempts a WHERE a.job_id = j.id AND a.message_id = $2),
			(SELECT max(started_at) FROM job_attempts a WHERE a.job_id = j.id AND a.message_id = $2)
		FROM jobs j WHERE j.id = $1`, id, messageID).
		Scan(&h.ClientID, &h.LastError, &h.TraceParent, &h.Attempts, &h.FirstStartedAt, &h.LastStartedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return h, false, nil
	}
	if err != nil {
		return h, false, fmt.Errorf("reading job %s: %w", id, err)
	}
	return h, true, nil
}

// Replayed is what MarkReplayed read of the job it moved: what a new
// message of it carries, and the payload it had before.
type Replayed struct {
	Type, ClientID, RequestID, TraceParent string
	PreviousPayload                        []byte
}

// ErrNotDeadLettered is MarkReplayed's answer for a job that exists but is
// not dead-lettered (its status is in the error's text).
var ErrNotDeadLettered = errors.New("job is not dead-lettered")

// MarkReplayed moves a dead-lettered job back to replayed inside tx, with
// payload as its new payload (its attempt schedule and finish time
// cleared), and returns what its next message needs. A job that does not
// exist is jobs.ErrNotFound; one in another status ErrNotDeadLettered.
// The timeline entry is AddReplayed's, once the message is written.
func MarkReplayed(ctx context.Context, tx pgx.Tx, id string, payload []byte) (Replayed, error) {
	var r Replayed
	if !isUUID(id) {
		return r, fmt.Errorf("job %q: %w", id, jobs.ErrNotFound)
	}
	err := tx.QueryRow(ctx, `
		WITH old AS (SELECT id, payload FROM jobs WHERE id = $1 FOR UPDATE)
		UPDATE jobs j SET status = 'replayed', payload = $3::jsonb, next_attempt_at = NULL, finished_at = NULL, updated_at = now()
		FROM old WHERE j.id = old.id AND j.status = ANY($2)
		RETURNING j.type, j.client_id, COALESCE(j.request_id, ''), COALESCE(j.traceparent, ''), old.payload`,
		id, statusStrings([]jobs.Status{jobs.StatusDeadLettered}), payload).
		Scan(&r.Type, &r.ClientID, &r.RequestID, &r.TraceParent, &r.PreviousPayload)
	if errors.Is(err, pgx.ErrNoRows) {
		var status string
		if err := tx.QueryRow(ctx, `SELECT status FROM jobs WHERE id = $1`, id).Scan(&status); err != nil {
			return r, fmt.Errorf("job %s: %w", id, jobs.ErrNotFound)
		}
		return r, fmt.Errorf("job %s is %s: %w", id, status, ErrNotDeadLettered)
	}
	if err != nil {
		return r, fmt.Errorf("marking job %s replayed: %w", id, err)
	}
	return r, nil
}

// MarkDeadLettered moves the job to dead_lettered inside tx, from any
// status that may move there, adds it to the job's timeline with reason,
// and reports whether it did (false: the job is already finished, or does
// not exist).
func MarkDeadLettered(ctx context.Context, tx pgx.Tx, id, reason string) (bool, error) {
	if !isUUID(id) {
		return false, nil // not a job id, so no job to move
	}
	tag, err := tx.Exec(ctx, `
		WITH moved AS (
			UPDATE jobs SET status = 'dead_lettered', next_attempt_at = NULL, finished_at = now(), updated_at = now()
			WHERE id = $1 AND status = ANY($2) RETURNING id
		)
		INSERT INTO job_events (job_id, type, detail) SELECT id, 'dead_lettered', jsonb_build_object('reason', $3::text) FROM moved`,
		id, statusStrings(jobs.Sources(jobs.StatusDeadLettered)), reason)
	if err != nil {
		return false, fmt.Errorf("marking job %s dead-lettered: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// timelineQuery is a job's timeline: its acceptance, its events and its
// attempts' starts and ends, oldest first. Entries written in one
// transaction share a time; they are ordered as they happen: an attempt's
// end, then the retry or dead-lettering it caused, then (when a worker
// died) the next attempt's start.
//
// An attempt's error is the one written for the client (error_class,
// client_error), never the operators' detail in job_attempts.error.
const timelineQuery = `
	SELECT at, type, attempt, error, error_class, permanent, detail FROM (
		SELECT created_at AS at, 'accepted' AS type, 0 AS attempt, '' AS error, '' AS error_class, false AS permanent, '{}'::jsonb AS detail, 0 AS ord, 0::bigint AS seq
		FROM jobs WHERE id = $1
		UNION ALL
		SELECT started_at, 'attempt_started', attempt, '', '', false, '{}', 4, attempt FROM job_attempts WHERE job_id = $1
		UNION ALL
		SELECT finished_at, 'attempt_' || outcome, attempt,
			CASE WHEN error IS NULL THEN '' ELSE COALESCE(client_error, '` + genericClientError + `') END,
			COALESCE(error_class, CASE WHEN error IS NULL THEN '' ELSE '` + unknownErrorClass + `' END), permanent, '{}', 2, attempt
		FROM job_attempts WHERE job_id = $1 AND outcome <> 'running' AND finished_at IS NOT NULL
		UNION ALL
		SELECT at, type, COALESCE((detail->>'attempt')::int, 0), '', '', false, detail,
			CASE type WHEN 'queued' THEN 1 WHEN 'replayed' THEN 5 ELSE 3 END, id
		FROM job_events WHERE job_id = $1
	) t ORDER BY at, ord, seq`

// What a client sees of a failure recorded before failures had classes.
const (
	genericClientError = "the attempt failed; the operators can see why"
	unknownErrorClass  = "unknown"
)

func scanEvents(rows pgx.Rows) ([]jobs.Event, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (jobs.Event, error) {
		var e jobs.Event
		var typ string
		var detail struct {
			NextAttemptAt *time.Time `json:"next_attempt_at"`
			Reason        string     `json:"reason"`
			Edited        bool       `json:"edited"`
		}
		if err := row.Scan(&e.At, &typ, &e.Attempt, &e.Error, &e.ErrorClass, &e.Permanent, &detail); err != nil {
			return e, err
		}
		e.Type, e.NextAttemptAt, e.Reason, e.Edited = jobs.EventType(typ), detail.NextAttemptAt, detail.Reason, detail.Edited
		return e, nil
	})
}

// Attempts returns the job's attempts, oldest first.
func (s *Store) Attempts(ctx context.Context, id string) ([]jobs.Attempt, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT attempt, message_id, outcome, COALESCE(error, ''), COALESCE(fingerprint, ''), permanent, started_at, finished_at
		FROM job_attempts WHERE job_id = $1 ORDER BY attempt`, id)
	if err != nil {
		return nil, fmt.Errorf("reading attempts of job %s: %w", id, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (jobs.Attempt, error) {
		var a jobs.Attempt
		err := row.Scan(&a.Number, &a.MessageID, &a.Outcome, &a.Error, &a.Fingerprint, &a.Permanent, &a.StartedAt, &a.FinishedAt)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading attempts of job %s: %w", id, err)
	}
	return out, nil
}

func statusStrings(ss []jobs.Status) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return out
}

func isUUID(s string) bool { return uuid.Validate(s) == nil }
