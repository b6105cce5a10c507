// Package deadletterstore keeps dead letters in Postgres (pgx): it stores
// what the drain takes from the DLQs (idempotent on the message id), lists,
// counts and shows them, and replays one through the outbox in the
// transaction that marks it replayed, with the admin audit row of every
// change in the same transaction.
package deadletterstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/libs/deadletter"
	"github.com/switchyard/switchyard/libs/jobmessage"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/outbox"
	"github.com/switchyard/switchyard/libs/replayapi"
	"github.com/switchyard/switchyard/libs/tracing"
)

// Statuses of a dead letter.
const (
	StatusStored   = "stored"
	StatusReplayed = "replayed"
	StatusArchived = "archived"
)

// DeadLetter is one stored dead letter, as the admin API answers it
// (libs/replayapi, like the other types below).
type DeadLetter = replayapi.DeadLetter

// Filter selects dead letters.
type Filter = replayapi.Filter

// Operation is a bulk replay and its progress.
type Operation = replayapi.Operation

// Duration is a time.Duration written as "1m30s" in JSON.
type Duration = replayapi.Duration

// Progress counts an operation's items.
type Progress = replayapi.Progress

// ItemCounts counts a set of an operation's items (one stage's).
type ItemCounts = replayapi.ItemCounts

// Store reads and writes dead letters.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a Store on pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Pool returns the store's pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

const columns = `id::text, message_id, sqs_message_id, topic, COALESCE(job_id::text, ''), COALESCE(client_id, ''), reason, error,
	fingerprint, attempts, handler, trace_id, first_failure_at, last_failure_at, dead_lettered_at, stored_at, receive_count,
	payload, attributes, status, replay_count, replayed_at, COALESCE(replayed_by, ''), COALESCE(replay_message_id, ''),
	COALESCE(replay_of::text, ''), archived_at, purge_after`

func scan(row pgx.Row) (DeadLetter, error) {
	var d DeadLetter
	var reason string
	var attrs []byte
	err := row.Scan(&d.ID, &d.MessageID, &d.SQSMessageID, &d.Topic, &d.JobID, &d.ClientID, &reason, &d.Error,
		&d.Fingerprint, &d.Attempts, &d.Handler, &d.TraceID, &d.FirstFailureAt, &d.LastFailureAt, &d.DeadLetteredAt, &d.StoredAt,
		&d.ReceiveCount, &d.Payload, &attrs, &d.Status, &d.ReplayCount, &d.ReplayedAt, &d.ReplayedBy, &d.ReplayMessageID,
		&d.ReplayOf, &d.ArchivedAt, &d.PurgeAfter)
	if err != nil {
		return DeadLetter{}, err
	}
	d.Reason = deadletter.Reason(reason)
	if len(attrs) > 0 {
		if err := json.Unmarshal(attrs, &d.Attributes); err != nil {
			return DeadLetter{}, fmt.Errorf("decoding attributes of dead letter %s: %w", d.ID, err)
		}
	}
	return d, nil
}

// Incoming is a message taken from a DLQ, as the drain read it.
type Incoming struct {
	MessageID    string
	SQSMessageID string
	// Topic is the job type whose DLQ held it.
	Topic string
	// Meta is the worker's dead-letter metadata; nil for a message SQS's
	// RedrivePolicy moved (a crash loop), which carries none.
	Meta         *deadletter.Metadata
	JobID        string
	ReceiveCount int
	SentAt       time.Time
	Payload      []byte
	Attributes   map[string]string
}

// Ingest stores msgs in one transaction and returns how many were new; a
// message stored before (same message id) is skipped. A message without
// metadata is completed from its job: attempts, last error, client and
// trace, and the job becomes dead_lettered.
func (s *Store) Ingest(ctx context.Context, msgs []Incoming) (stored int, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		stored = 0
		for _, m := range msgs {
			d, err := complete(ctx, tx, m)
			if err != nil {
				return err
			}
			id, err := uuid.NewV7()
			if err != nil {
				return fmt.Errorf("generating dead letter id: %w", err)
			}
			attrs, err := json.Marshal(m.Attributes)
			if err != nil {
				return fmt.Errorf("encoding attributes: %w", err)
			}
			tag, err := tx.Exec(ctx, `
				INSERT INTO dead_letters (id, message_id, sqs_message_id, topic, job_id, client_id, reason, error, fingerprint,
					attempts, handler, trace_id, first_failure_at, last_failure_at, dead_lettered_at, receive_count, payload,
					attributes, replay_of)
				VALUES ($1, $2, $3, $4, NULLIF($5, '')::uuid, NULLIF($6, ''), $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
					(SELECT id FROM dead_letters WHERE replay_message_id = $2))
				ON CONFLICT (message_id) DO NOTHING`,
				id, m.MessageID, m.SQSMessageID, m.Topic, d.JobID, d.ClientID, string(d.Reason), d.Error, d.Fingerprint,
				d.Attempts, d.Handler, d.TraceID, d.FirstFailureAt, d.LastFailureAt, d.DeadLetteredAt, m.ReceiveCount, m.Payload, attrs)
			if err != nil {
				return fmt.Errorf("storing dead letter %s: %w", m.MessageID, err)
			}
			if tag.RowsAffected() == 0 {
				continue
			}
			stored++
			if d.JobID != "" {
				if _, err := jobstore.MarkDeadLettered(ctx, tx, d.JobID, string(d.Reason)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("ingesting %d dead letters: %w", len(msgs), err)
	}
	return stored, nil
}

// complete returns the dead-letter fields of m: the worker's metadata, or
// for a message without (the RedrivePolicy's), what its job tells.
func complete(ctx context.Context, tx pgx.Tx, m Incoming) (deadletter.Metadata, error) {
	if m.Meta != nil {
		d := *m.Meta
		if d.JobID == "" {
			d.JobID = m.JobID
		}
		if uuid.Validate(d.JobID) != nil {
			d.JobID = ""
		}
		if d.Fingerprint == "" {
			d.Fingerprint = deadletter.Fingerprint(d.Handler, false, string(d.Reason)+": "+d.Error)
		}
		if d.DeadLetteredAt.IsZero() {
			d.DeadLetteredAt = m.SentAt
		}
		return d, nil
	}
	// SQS keeps the original send time on a moved message and does not
	// say when it moved it; the drain runs continuously, so now is close.
	d := deadletter.Metadata{
		Reason: deadletter.ReasonMaxReceiveCount, Topic: m.Topic, DeadLetteredAt: time.Now().UTC(),
		Error: fmt.Sprintf("SQS moved the message to the dead-letter queue after %d receives without a delete: "+
			"the worker crashed or lost it every time (crash loop)", m.ReceiveCount),
	}
	d.Fingerprint = deadletter.Fingerprint("", false, "max_receive_count: "+m.Topic)
	if !isJobID(m.JobID) {
		return d, nil // a stray: no job to complete it from
	}
	h, found, err := jobstore.HistoryOf(ctx, tx, m.JobID, m.MessageID)
	if err != nil {
		return d, fmt.Errorf("dead letter %s: %w", m.MessageID, err)
	}
	if !found {
		return d, nil
	}
	d.ClientID, d.Attempts, d.FirstFailureAt, d.LastFailureAt = h.ClientID, h.Attempts, h.FirstStartedAt, h.LastStartedAt
	lastError, traceparent := h.LastError, h.TraceParent
	d.JobID = m.JobID
	d.TraceID = deadletter.TraceID(traceparent)
	if lastError != "" {
		d.Error += "; the job's last recorded error: " + lastError
	}
	return d, nil
}

// filterWhere renders f as SQL conditions on dead_letters aliased d, appending
// its arguments to args.
func filterWhere(f Filter, args *[]any) string {
	conds := []string{"TRUE"}
	add := func(cond string, v any) {
		*args = append(*args, v)
		conds = append(conds, strings.ReplaceAll(cond, "?", fmt.Sprintf("$%d", len(*args))))
	}
	if f.Topic != "" {
		add("d.topic = ?", f.Topic)
	}
	if f.Fingerprint != "" {
		add("d.fingerprint = ?", f.Fingerprint)
	}
	if f.ClientID != "" {
		add("d.client_id = ?", f.ClientID)
	}
	if f.Reason != "" {
		add("d.reason = ?", f.Reason)
	}
	if f.Status != "" {
		add("d.status = ?", f.Status)
	}
	if f.JobID != "" {
		add("d.job_id = ?::uuid", f.JobID)
	}
	if f.Since != nil {
		add("d.dead_lettered_at >= ?", *f.Since)
	}
	if f.Until != nil {
		add("d.dead_lettered_at < ?", *f.Until)
	}
	return strings.Join(conds, " AND ")
}

// List returns up to limit dead letters matching f, newest first, after the
// dead letter with id after ("" for the first page), and whether more
// follow.
func (s *Store) List(ctx context.Context, f Filter, limit int, after string) (page []DeadLetter, more bool, err error) {
	args := []any{}
	where := filterWhere(f, &args)
	if after != "" {
		args = append(args, after)
		where += fmt.Sprintf(" AND d.id < $%d::uuid", len(args))
	}
	args = append(args, limit+1)
	rows, err := s.pool.Query(ctx, `SELECT `+columns+` FROM dead_letters d WHERE `+where+
		fmt.Sprintf(` ORDER BY d.id DESC LIMIT $%d`, len(args)), args...)
	if err != nil {
		return nil, false, fmt.Errorf("listing dead letters: %w", err)
	}
	page, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeadLetter, error) { return scan(r) })
	if err != nil {
		return nil, false, fmt.Errorf("listing dead letters: %w", err)
	}
	if len(page) > limit {
		return page[:limit], true, nil
	}
	return page, false, nil
}

// Get returns one dead letter.
func (s *Store) Get(ctx context.Context, id string) (DeadLetter, error) {
	if uuid.Validate(id) != nil {
		return DeadLetter{}, fmt.Errorf("%q is not a dead letter id: %w", id, deadletter.ErrNotFound)
	}
	d, err := scan(s.pool.QueryRow(ctx, `SELECT `+columns+` FROM dead_letters WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return DeadLetter{}, fmt.Errorf("no dead letter %s: %w", id, deadletter.ErrNotFound)
	}
	if err != nil {
		return DeadLetter{}, fmt.Errorf("reading dead letter %s: %w", id, err)
	}
	return d, nil
}

// Group is the count of dead letters with one topic and fingerprint.
type Group struct {
	Topic       string            `json:"topic"`
	Fingerprint string            `json:"fingerprint"`
	Reason      deadletter.Reason `json:"reason"`
	// Count is every dead letter of the group; Stored those not replayed
	// or archived.
	Count    int       `json:"count"`
	Stored   int       `json:"stored"`
	Replayed int       `json:"replayed"`
	First    time.Time `json:"first_dead_lettered_at"`
	Last     time.Time `json:"last_dead_lettered_at"`
	// SampleError is the newest error of the group.
	SampleError string `json:"sample_error"`
	// Hourly counts the group's dead letters per hour, oldest first, when
	// asked for (GET /admin/v1/dead-letters/stats?hourly=24).
	Hourly []int `json:"hourly,omitempty"`
}

// scanGroup reads a Group from a row of topic, fingerprint, reason,
// count, stored, replayed, first, last and sample error.
func scanGroup(r pgx.CollectableRow) (Group, error) {
	var g Group
	var reason string
	err := r.Scan(&g.Topic, &g.Fingerprint, &reason, &g.Count, &g.Stored, &g.Replayed, &g.First, &g.Last, &g.SampleError)
	g.Reason = deadletter.Reason(reason)
	return g, err
}

// groupCounts reads the counts the triggers keep (dead_letter_groups), for
// a filter of job type and fingerprint only: a few rows, however many
// dead letters there are.
func (s *Store) groupCounts(ctx context.Context, f Filter) ([]Group, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT topic, fingerprint, newest_reason, total, stored, replayed, first_at, last_at, newest_error
		FROM dead_letter_groups WHERE ($1 = '' OR topic = $1) AND ($2 = '' OR fingerprint = $2)
		ORDER BY total DESC, topic, fingerprint`, f.Topic, f.Fingerprint)
	if err != nil {
		return nil, fmt.Errorf("reading dead-letter counts: %w", err)
	}
	groups, err := pgx.CollectRows(rows, scanGroup)
	if err != nil {
		return nil, fmt.Errorf("reading dead-letter counts: %w", err)
	}
	return groups, nil
}

// AddHourly fills in each group's Hourly: its dead letters matching f per
// hour over the hours before now (hour 0: the current clock hour, so far),
// oldest first.
func (s *Store) AddHourly(ctx context.Context, groups []Group, f Filter, hours int, now time.Time) error {
	type key struct{ topic, fingerprint string }
	index := map[key]int{}
	for i := range groups {
		groups[i].Hourly = make([]int, hours)
		index[key{groups[i].Topic, groups[i].Fingerprint}] = i
	}
	var rows pgx.Rows
	var err error
	if (f == Filter{Topic: f.Topic, Fingerprint: f.Fingerprint}) {
		// The hours the triggers keep (dead_letter_hours).
		rows, err = s.pool.Query(ctx, `
			SELECT topic, fingerprint, floor(extract(epoch FROM $3 - hour) / 3600)::int, n FROM dead_letter_hours
			WHERE hour > $4 AND ($1 = '' OR topic = $1) AND ($2 = '' OR fingerprint = $2)`,
			f.Topic, f.Fingerprint, now.Truncate(time.Hour), now.Truncate(time.Hour).Add(-time.Duration(hours)*time.Hour))
	} else {
		since := now.Truncate(time.Hour).Add(-time.Duration(hours-1) * time.Hour)
		if f.Since == nil || f.Since.Before(since) {
			f.Since = &since
		}
		args := []any{}
		where := filterWhere(f, &args)
		args = append(args, now.Truncate(time.Hour))
		// Planned for its values each time: a generic plan, not knowing how
		// few rows the time range holds, scans the whole table.
		args = append([]any{pgx.QueryExecModeSimpleProtocol}, args...)
		rows, err = s.pool.Query(ctx, fmt.Sprintf(`
			SELECT d.topic, d.fingerprint, floor(extract(epoch FROM $%d - date_trunc('hour', d.dead_lettered_at)) / 3600)::int AS ago, count(*)
			FROM dead_letters d WHERE %s GROUP BY 1, 2, 3`, len(args)-1, where), args...)
	}
	if err != nil {
		return fmt.Errorf("counting dead letters per hour: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k key
		var ago, n int
		if err := rows.Scan(&k.topic, &k.fingerprint, &ago, &n); err != nil {
			return fmt.Errorf("counting dead letters per hour: %w", err)
		}
		if i, ok := index[k]; ok && ago >= 0 && ago < hours {
			groups[i].Hourly[hours-1-ago] += n
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("counting dead letters per hour: %w", err)
	}
	return nil
}

// Stats groups the dead letters matching f by topic and fingerprint,
// largest groups first.
func (s *Store) Stats(ctx context.Context, f Filter) ([]Group, error) {
	if (f == Filter{Topic: f.Topic, Fingerprint: f.Fingerprint}) {
		return s.groupCounts(ctx, f)
	}
	args := []any{}
	where := filterWhere(f, &args)
	// Counts in one pass; each group's newest reason and error from its
	// newest row (index dead_letters_fingerprint), not by aggregating
	// every row's.
	rows, err := s.pool.Query(ctx, `
		WITH g AS (
			SELECT d.topic, d.fingerprint, count(*) AS n, count(*) FILTER (WHERE d.status = 'stored') AS stored,
				count(*) FILTER (WHERE d.status = 'replayed') AS replayed, min(d.dead_lettered_at) AS first, max(d.dead_lettered_at) AS last
			FROM dead_letters d WHERE `+where+`
			GROUP BY d.topic, d.fingerprint
		)
		SELECT g.topic, g.fingerprint, newest.reason, g.n, g.stored, g.replayed, g.first, g.last, newest.error
		FROM g CROSS JOIN LATERAL (
			SELECT d.reason, d.error FROM dead_letters d
			WHERE d.fingerprint = g.fingerprint AND d.topic = g.topic AND `+where+`
			ORDER BY d.id DESC LIMIT 1
		) newest
		ORDER BY g.n DESC, g.topic, g.fingerprint`, args...)
	if err != nil {
		return nil, fmt.Errorf("counting dead letters: %w", err)
	}
	groups, err := pgx.CollectRows(rows, scanGroup)
	if err != nil {
		return nil, fmt.Errorf("counting dead letters: %w", err)
	}
	return groups, nil
}

// ReplayRequest asks for one dead letter to be replayed.
type ReplayRequest struct {
	ID string
	// Payload replaces the message's payload when set; the caller has
	// validated it as a payload of the job type.
	Payload json.RawMessage
	// Force replays a dead letter that was replayed before.
	Force bool
	Audit AuditEntry
}

// ReplayResult says what a replay did.
type ReplayResult struct {
	DeadLetterID string `json:"dead_letter_id"`
	JobID        string `json:"job_id"`
	// MessageID is the message the replay sent (or, when deduplicated,
	// the one the earlier replay sent).
	MessageID   string `json:"message_id"`
	ReplayCount int    `json:"replay_count"`
	// Deduplicated: the dead letter had been replayed already and nothing
	// was sent.
	Deduplicated bool `json:"deduplicated"`
	Edited       bool `json:"edited"`
}

// Replay sends the dead letter's message (or its edited payload) back to
// its job type's queue through the outbox and marks it replayed, in one
// transaction with its audit row: the job keeps its id and history and
// moves to replayed. A dead letter replayed before is not sent again
// unless Force. A dead letter that is archived, has no job, or whose job
// is not dead_lettered is deadletter.ErrNotReplayable.
func (s *Store) Replay(ctx context.Context, req ReplayRequest) (ReplayResult, error) {
	var res ReplayResult
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		res, err = replay(ctx, tx, req)
		return err
	})
	return res, err
}

func replay(ctx context.Context, tx pgx.Tx, req ReplayRequest) (ReplayResult, error) {
	res, before, err := replayOne(ctx, tx, req.ID, req.Payload, req.Force, req.Audit.Actor)
	if err != nil {
		return res, err
	}
	if res.Deduplicated {
		req.Audit.Counts = map[string]int{"replayed": 0, "deduplicated": 1}
	} else {
		req.Audit.Counts = map[string]int{"replayed": 1, "deduplicated": 0}
	}
	if res.Edited && !res.Deduplicated {
		req.Audit.Before = json.RawMessage(before)
		req.Audit.After = req.Payload
	}
	return res, writeAudit(ctx, tx, req.Audit)
}

// replayOne replays dead letter id inside tx, for actor: the job moves to
// replayed (with payload, when given), a new message goes to the outbox,
// and the dead letter is marked replayed. A dead letter replayed before is
// Deduplicated (nothing sent) unless force. It returns the job's payload
// before the replay, for the audit of an edit.
func replayOne(ctx context.Context, tx pgx.Tx, id string, payload json.RawMessage, force bool, actor string) (ReplayResult, []byte, error) {
	if uuid.Validate(id) != nil {
		return ReplayResult{}, nil, fmt.Errorf("%q is not a dead letter id: %w", id, deadletter.ErrNotFound)
	}
	d, err := scan(tx.QueryRow(ctx, `SELECT `+columns+` FROM dead_letters WHERE id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return ReplayResult{}, nil, fmt.Errorf("no dead letter %s: %w", id, deadletter.ErrNotFound)
	}
	if err != nil {
		return ReplayResult{}, nil, fmt.Errorf("reading dead letter %s: %w", id, err)
	}
	res := ReplayResult{DeadLetterID: d.ID, JobID: d.JobID, ReplayCount: d.ReplayCount, MessageID: d.ReplayMessageID, Edited: len(payload) > 0}
	switch {
	case d.Status == StatusArchived:
		return res, nil, fmt.Errorf("dead letter %s is archived: %w", d.ID, deadletter.ErrNotReplayable)
	case d.JobID == "":
		return res, nil, fmt.Errorf("dead letter %s carries no job (reason %s): purge it, or fix its producer: %w", d.ID, d.Reason, deadletter.ErrNotReplayable)
	case d.Status == StatusReplayed && !force:
		res.Deduplicated = true
		return res, nil, nil
	}

	if len(payload) == 0 {
		payload = d.Payload
	}
	job, err := jobstore.MarkReplayed(ctx, tx, d.JobID, payload)
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return res, nil, fmt.Errorf("job %s of dead letter %s does not exist: %w", d.JobID, d.ID, deadletter.ErrNotReplayable)
	case errors.Is(err, jobstore.ErrNotDeadLettered):
		return res, nil, fmt.Errorf("dead letter %s: %w (%w)", d.ID, err, deadletter.ErrNotReplayable)
	case err != nil:
		return res, nil, err
	}
	jobType, clientID, requestID, traceparent, before := job.Type, job.ClientID, job.RequestID, job.TraceParent, job.PreviousPayload
	msgID, err := uuid.NewV7()
	if err != nil {
		return res, nil, fmt.Errorf("generating message id: %w", err)
	}
	msg := jobmessage.Replay(msgID.String(), jobmessage.Job{ID: d.JobID, Type: jobType, ClientID: clientID,
		RequestID: requestID, TraceParent: traceparent}, payload, d.ID)
	// The replay continues the job's own trace, so that one trace shows
	// the submission, the failed attempts and the replayed ones; it links
	// to the operator's request (or bulk operation) that asked for it.
	rctx, span := tracer.Start(tracing.Extract(ctx, map[string]string{jobmessage.TraceParent: traceparent}), "replay "+d.Topic,
		trace.WithSpanKind(trace.SpanKindProducer), trace.WithLinks(trace.LinkFromContext(ctx)),
		trace.WithAttributes(attribute.String("switchyard.job_id", d.JobID), attribute.String("switchyard.dead_letter_id", d.ID),
			attribute.String("switchyard.actor", actor), attribute.Bool("switchyard.edited", res.Edited)))
	defer span.End()
	tracing.Inject(rctx, msg.Metadata)
	if err := outbox.Write(ctx, tx, msg); err != nil {
		return res, nil, err
	}
	if err := jobstore.AddReplayed(ctx, tx, d.JobID, res.Edited); err != nil {
		return res, nil, err
	}
	err = tx.QueryRow(ctx, `
		UPDATE dead_letters SET status = 'replayed', replay_count = replay_count + 1, replayed_at = now(),
			replayed_by = $2, replay_message_id = $3
		WHERE id = $1 RETURNING replay_count`, d.ID, actor, msgID.String()).Scan(&res.ReplayCount)
	if err != nil {
		return res, nil, fmt.Errorf("marking dead letter %s replayed: %w", d.ID, err)
	}
	res.MessageID = msgID.String()
	return res, before, nil
}

var tracer = tracing.Tracer("github.com/switchyard/switchyard/services/replay/internal/deadletterstore")

// RemoveMode says what DELETE does with a dead letter.
type RemoveMode string

// Remove modes.
const (
	// ModeArchive keeps the row, out of replays, until its retention ends.
	ModeArchive RemoveMode = "archive"
	// ModePurge deletes the row at once.
	ModePurge RemoveMode = "purge"
)

// Remove archives (kept for retention, then deleted by PurgeExpired) or
// purges one dead letter, with its audit row.
func (s *Store) Remove(ctx context.Context, id string, mode RemoveMode, retention time.Duration, audit AuditEntry) (DeadLetter, error) {
	if uuid.Validate(id) != nil {
		return DeadLetter{}, fmt.Errorf("%q is not a dead letter id: %w", id, deadletter.ErrNotFound)
	}
	var out DeadLetter
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		switch mode {
		case ModePurge:
			out, err = scan(tx.QueryRow(ctx, `DELETE FROM dead_letters WHERE id = $1 RETURNING `+columns, id))
		default:
			out, err = scan(tx.QueryRow(ctx, `
				UPDATE dead_letters SET status = 'archived', archived_at = COALESCE(archived_at, now()),
					purge_after = COALESCE(purge_after, now() + $2::interval)
				WHERE id = $1 RETURNING `+columns, id, retention))
		}
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("no dead letter %s: %w", id, deadletter.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("removing dead letter %s: %w", id, err)
		}
		audit.Counts = map[string]int{string(mode): 1}
		audit.Before = map[string]any{"status": out.Status, "topic": out.Topic, "fingerprint": out.Fingerprint, "job_id": out.JobID}
		return writeAudit(ctx, tx, audit)
	})
	return out, err
}

// MaxRemove is the most dead letters one RemoveMatching changes.
const MaxRemove = 100_000

// RemoveResult is what RemoveMatching did (or, dry, would do).
type RemoveResult struct {
	// Matched counts the dead letters the filter selects that the mode
	// applies to (archiving leaves archived ones out).
	Matched int `json:"matched"`
	// InRunningReplay counts those left alone because a running bulk
	// replay holds them.
	InRunningReplay int `json:"in_running_replay"`
	// Removed is how many were archived or purged (0 in a dry run).
	Removed int `json:"removed"`
}

// inRunningReplaySQL holds for a dead letter d that a running bulk replay
// still holds: a bulk removal leaves it alone.
const inRunningReplaySQL = `EXISTS (SELECT 1 FROM replay_operation_items i JOIN replay_operations o ON o.id = i.operation_id
	WHERE i.dead_letter_id = d.id AND o.status = 'running')`

// RemoveMatching archives or purges every dead letter f selects, at most
// max (more is deadletter.ErrSelectionTooLarge, and nothing changes), in
// one transaction with its audit row; with dryRun it only counts. Dead
// letters a running bulk replay holds are left alone and counted apart.
// An empty filter is refused: removing everything is never one request.
func (s *Store) RemoveMatching(ctx context.Context, f Filter, mode RemoveMode, retention time.Duration, max int, dryRun bool, audit AuditEntry) (RemoveResult, error) {
	var res RemoveResult
	if f == (Filter{}) {
		return res, fmt.Errorf("a bulk %s needs a filter: %w", mode, deadletter.ErrEmptyFilter)
	}
	args := []any{}
	where := filterWhere(f, &args)
	if mode == ModeArchive {
		where += " AND d.status <> 'archived'"
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE NOT `+inRunningReplaySQL+`), count(*) FILTER (WHERE `+inRunningReplaySQL+`)
			FROM dead_letters d WHERE `+where, args...).Scan(&res.Matched, &res.InRunningReplay); err != nil {
			return fmt.Errorf("counting dead letters to %s: %w", mode, err)
		}
		if res.Matched > max {
			return fmt.Errorf("the filter selects %d dead letters, more than the %d one request may %s; narrow it or raise max: %w",
				res.Matched, max, mode, deadletter.ErrSelectionTooLarge)
		}
		audit.Filter = f
		audit.Counts = map[string]int{"matched": res.Matched, "in_running_replay": res.InRunningReplay}
		if dryRun {
			return writeAudit(ctx, tx, audit)
		}
		var tag pgconn.CommandTag
		var err error
		if mode == ModePurge {
			tag, err = tx.Exec(ctx, `DELETE FROM dead_letters d WHERE `+where+` AND NOT `+inRunningReplaySQL, args...)
		} else {
			args = append(args, retention)
			tag, err = tx.Exec(ctx, `
				UPDATE dead_letters d SET status = 'archived', archived_at = now(), purge_after = now() + $`+fmt.Sprint(len(args))+`::interval
				WHERE `+where+` AND NOT `+inRunningReplaySQL, args...)
		}
		if err != nil {
			return fmt.Errorf("removing dead letters (%s): %w", mode, err)
		}
		res.Removed = int(tag.RowsAffected())
		audit.Counts = map[string]int{"matched": res.Matched, "in_running_replay": res.InRunningReplay, string(mode): res.Removed}
		return writeAudit(ctx, tx, audit)
	})
	return res, err
}

// PurgeExpired deletes up to limit archived dead letters whose retention
// has ended, oldest first, and returns how many; with dryRun it counts
// every one it would delete.
func (s *Store) PurgeExpired(ctx context.Context, limit int, dryRun bool) (int64, error) {
	var n int64
	if dryRun {
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM dead_letters WHERE status = 'archived' AND purge_after < now()`).Scan(&n); err != nil {
			return 0, fmt.Errorf("counting expired dead letters: %w", err)
		}
		return n, nil
	}
	tag, err := s.pool.Exec(ctx, `
		DELETE FROM dead_letters WHERE id IN (
			SELECT id FROM dead_letters WHERE status = 'archived' AND purge_after < now()
			ORDER BY purge_after LIMIT $1 FOR UPDATE SKIP LOCKED)`, limit)
	if err != nil {
		return 0, fmt.Errorf("purging expired dead letters: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Oldest returns when the oldest stored dead letter was dead-lettered
// (zero: none).
func (s *Store) Oldest(ctx context.Context) (time.Time, error) {
	var t *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT min(dead_lettered_at) FROM dead_letters`).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("reading the oldest dead letter: %w", err)
	}
	if t == nil {
		return time.Time{}, nil
	}
	return *t, nil
}

// NamesJobSQL is an SQL condition that holds when a stored dead letter
// (in any status) names the job whose id is the SQL expression idExpr:
// the job's retention must wait for the dead letter's.
func NamesJobSQL(idExpr string) string {
	return "EXISTS (SELECT 1 FROM dead_letters d WHERE d.job_id = " + idExpr + ")"
}

// Attempts returns the attempts of the dead letter's job (its error
// history), oldest first; none for a dead letter without a job.
func (s *Store) Attempts(ctx context.Context, d DeadLetter) ([]jobs.Attempt, error) {
	if d.JobID == "" {
		return nil, nil
	}
	return jobstore.New(s.pool).Attempts(ctx, d.JobID)
}

func isJobID(s string) bool { return uuid.Validate(s) == nil }
