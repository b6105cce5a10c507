package deadletterstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard/switchyard/libs/deadletter"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/replayplan"
)

// Statuses of a bulk replay operation.
const (
	OperationRunning   = "running"
	OperationCompleted = "completed"
	OperationStopped   = "stopped"
	OperationCancelled = "cancelled"
)

// States of an operation's item.
const (
	ItemPending      = "pending"
	ItemReplayed     = "replayed"
	ItemDeduplicated = "deduplicated"
	ItemSkipped      = "skipped"
)

// SystemActor is the audit actor of what the replay service does by itself
// (an operation that completes or stops on its own).
const SystemActor = "switchyard-replay"

// MaxOperationItems bounds the items of one operation; a larger selection
// must be narrowed or capped with Max.
const MaxOperationItems = 100_000

// BulkRequest asks for a bulk replay.
type BulkRequest struct {
	Filter Filter
	// Max caps the items (0: no cap, up to MaxOperationItems).
	Max      int
	RatePerS float64
	Force    bool
	// Stages cut the release; empty: one stage.
	Stages            []replayplan.Stage
	StopIfFailedRatio float64
	SettleTimeout     time.Duration
	Audit             AuditEntry
}

// Plan returns what a bulk replay of req would do now, changing nothing:
// the selection, and the stages it would come to. The dry run's audit row
// is written with its counts.
func (s *Store) Plan(ctx context.Context, req BulkRequest) (replayplan.Selection, []int, error) {
	var sel replayplan.Selection
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if sel, err = selectItems(ctx, tx, req); err != nil {
			return err
		}
		req.Audit.Counts = sel
		return writeAudit(ctx, tx, req.Audit)
	})
	if err != nil {
		return sel, nil, err
	}
	return sel, replayplan.Targets(req.Stages, sel.WouldReplay), nil
}

func selectItems(ctx context.Context, tx pgx.Tx, req BulkRequest) (replayplan.Selection, error) {
	args := []any{}
	rows, err := tx.Query(ctx, `
		SELECT d.id::text, COALESCE(d.job_id::text, ''), d.fingerprint, d.status, `+jobstore.StatusSQL("d.job_id")+`
		FROM dead_letters d
		WHERE `+filterWhere(req.Filter, &args), args...)
	if err != nil {
		return replayplan.Selection{}, fmt.Errorf("selecting dead letters to replay: %w", err)
	}
	cands, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (replayplan.Candidate, error) {
		var c replayplan.Candidate
		err := r.Scan(&c.ID, &c.JobID, &c.Fingerprint, &c.Status, &c.JobStatus)
		return c, err
	})
	if err != nil {
		return replayplan.Selection{}, fmt.Errorf("selecting dead letters to replay: %w", err)
	}
	sel := replayplan.Select(cands, req.Force, req.Max)
	if sel.WouldReplay > MaxOperationItems {
		return sel, fmt.Errorf("%w: %d, at most %d in one operation; narrow the filter or set max", deadletter.ErrSelectionTooLarge, sel.WouldReplay, MaxOperationItems)
	}
	return sel, nil
}

const operationColumns = `id::text, status, created_at, created_by, request_id, filter, COALESCE(max_items, 0), rate_per_s, force,
	stages, stage_targets, stage, stage_done_at, stop_if_failed_ratio, settle_timeout_ms, selection, stop_reason,
	COALESCE(cancelled_by, ''), updated_at, finished_at`

func scanOperation(row pgx.Row) (Operation, error) {
	var o Operation
	var filter, stages, selection []byte
	var settleMS int64
	err := row.Scan(&o.ID, &o.Status, &o.CreatedAt, &o.CreatedBy, &o.RequestID, &filter, &o.Max, &o.RatePerS, &o.Force,
		&stages, &o.StageTargets, &o.Stage, &o.StageDoneAt, &o.StopIfFailedRatio, &settleMS, &selection, &o.StopReason,
		&o.CancelledBy, &o.UpdatedAt, &o.FinishedAt)
	if err != nil {
		return o, err
	}
	o.Stage++
	o.SettleTimeout = Duration(time.Duration(settleMS) * time.Millisecond)
	for _, f := range []struct {
		raw []byte
		to  any
	}{{filter, &o.Filter}, {stages, &o.Stages}, {selection, &o.Selection}} {
		if err := json.Unmarshal(f.raw, f.to); err != nil {
			return o, fmt.Errorf("decoding replay operation %s: %w", o.ID, err)
		}
	}
	return o, nil
}

// CreateOperation selects the dead letters req replays and records the
// operation, its items and its audit row in one transaction. The operation
// starts running; Runner replays its items. An operation with nothing to
// replay is completed at once.
func (s *Store) CreateOperation(ctx context.Context, req BulkRequest) (Operation, error) {
	var id string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		sel, err := selectItems(ctx, tx, req)
		if err != nil {
			return err
		}
		opID, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("generating operation id: %w", err)
		}
		id = opID.String()
		targets := replayplan.Targets(req.Stages, sel.WouldReplay)
		status, finished := OperationRunning, (*time.Time)(nil)
		if len(sel.Replay) == 0 {
			now := time.Now()
			status, finished = OperationCompleted, &now
		}
		filter, err := json.Marshal(req.Filter)
		if err != nil {
			return fmt.Errorf("encoding filter: %w", err)
		}
		stages := req.Stages
		if stages == nil {
			stages = []replayplan.Stage{}
		}
		stagesJSON, err := json.Marshal(stages)
		if err != nil {
			return fmt.Errorf("encoding stages: %w", err)
		}
		selJSON, err := json.Marshal(sel)
		if err != nil {
			return fmt.Errorf("encoding selection: %w", err)
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO replay_operations (id, created_by, request_id, filter, max_items, rate_per_s, force, stages, stage_targets,
				stop_if_failed_ratio, settle_timeout_ms, selection, status, finished_at)
			VALUES ($1, $2, $3, $4, NULLIF($5, 0), $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
			id, req.Audit.Actor, req.Audit.RequestID, filter, req.Max, req.RatePerS, req.Force, stagesJSON, targets,
			req.StopIfFailedRatio, req.SettleTimeout.Milliseconds(), selJSON, status, finished)
		if err != nil {
			return fmt.Errorf("recording replay operation: %w", err)
		}
		if len(sel.Replay) > 0 {
			rows := make([][]any, len(sel.Replay))
			for i, c := range sel.Replay {
				rows[i] = []any{id, i + 1, c.ID, c.JobID, c.Fingerprint}
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"replay_operation_items"},
				[]string{"operation_id", "seq", "dead_letter_id", "job_id", "fingerprint"}, pgx.CopyFromRows(rows)); err != nil {
				return fmt.Errorf("recording the items of replay operation %s: %w", id, err)
			}
		}
		req.Audit.Target = id
		req.Audit.Counts = sel
		return writeAudit(ctx, tx, req.Audit)
	})
	if err != nil {
		return Operation{}, err
	}
	return s.GetOperation(ctx, id)
}

// GetOperation returns the operation with its progress.
func (s *Store) GetOperation(ctx context.Context, id string) (Operation, error) {
	if uuid.Validate(id) != nil {
		return Operation{}, fmt.Errorf("%q is not an operation id: %w", id, deadletter.ErrOperationNotFound)
	}
	return getOperation(ctx, s.pool, id, false)
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func getOperation(ctx context.Context, q querier, id string, forShare bool) (Operation, error) {
	lock := ""
	if forShare {
		lock = " FOR SHARE"
	}
	o, err := scanOperation(q.QueryRow(ctx, `SELECT `+operationColumns+` FROM replay_operations WHERE id = $1`+lock, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return o, fmt.Errorf("no replay operation %s: %w", id, deadletter.ErrOperationNotFound)
	}
	if err != nil {
		return o, fmt.Errorf("reading replay operation %s: %w", id, err)
	}
	o.Progress, err = progress(ctx, q, id, o.StageTargets)
	return o, err
}

// progress counts the items of operation id, in all and per stage (the
// items of stage k are those past the target of stage k-1, up to its own:
// items are released in seq order), and what became of the messages the
// replayed ones sent: an attempt with that message succeeded, or the
// message was dead-lettered again (stored as a dead letter; or the job is
// dead-lettered with that message's attempt as its last; or a later
// message of the job was attempted since, which only a replay of a dead
// letter can send). Outcomes belong to the message, not to the job's
// current status, so a later replay of the same job does not rewrite this
// operation's record.
func progress(ctx context.Context, q querier, id string, targets []int) (Progress, error) {
	var p Progress
	// width_bucket with the stages' lower bounds (1, target1+1, ...) gives
	// each item's stage from 1.
	lower := make([]int, 0, len(targets)+1)
	lower = append(lower, 1)
	for _, t := range targets {
		lower = append(lower, t+1)
	}
	rows, err := q.Query(ctx, `
		SELECT width_bucket(i.seq, $2::int[]) AS stage, count(*), count(*) FILTER (WHERE i.state = 'pending'),
			count(*) FILTER (WHERE i.state = 'replayed'),
			count(*) FILTER (WHERE i.state = 'deduplicated'), count(*) FILTER (WHERE i.state = 'skipped'),
			count(*) FILTER (WHERE o.succeeded), count(*) FILTER (WHERE NOT o.succeeded AND o.failed)
		FROM replay_operation_items i
		LEFT JOIN LATERAL (
			SELECT `+jobstore.MessageSucceededSQL("i.message_id")+` AS succeeded,
				(EXISTS (SELECT 1 FROM dead_letters d WHERE d.message_id = i.message_id)
				 OR `+jobstore.MessageFailedAgainSQL("i.job_id", "i.message_id")+`) AS failed
		) o ON i.state = 'replayed'
		WHERE i.operation_id = $1
		GROUP BY 1 ORDER BY 1`, id, lower)
	if err != nil {
		return p, fmt.Errorf("counting the items of replay operation %s: %w", id, err)
	}
	defer rows.Close()
	p.ByStage = make([]ItemCounts, len(targets))
	for rows.Next() {
		var stage int
		var c ItemCounts
		if err := rows.Scan(&stage, &c.Total, &c.Pending, &c.Replayed, &c.Deduplicated, &c.Skipped, &c.Succeeded, &c.FailedAgain); err != nil {
			return p, fmt.Errorf("counting the items of replay operation %s: %w", id, err)
		}
		c.InFlight = c.Outcomes.InFlight()
		p.Add(c)
		// An operation recorded with no stage targets has its items in
		// bucket 1 only; they count in the total.
		if stage >= 1 && stage <= len(p.ByStage) {
			p.ByStage[stage-1] = c
		}
	}
	if err := rows.Err(); err != nil {
		return p, fmt.Errorf("counting the items of replay operation %s: %w", id, err)
	}
	if len(p.ByStage) == 0 {
		p.ByStage = nil
	}
	return p, nil
}

// ListOperations returns up to limit operations (with status, when not
// ""), newest first, older than the one with id before, and whether more
// follow.
func (s *Store) ListOperations(ctx context.Context, status string, limit int, before string) ([]Operation, bool, error) {
	args := []any{status, limit + 1}
	where := "($1 = '' OR status = $1)"
	if before != "" {
		args = append(args, before)
		where += " AND id < $3::uuid"
	}
	rows, err := s.pool.Query(ctx, `SELECT id::text FROM replay_operations WHERE `+where+` ORDER BY id DESC LIMIT $2`, args...)
	if err != nil {
		return nil, false, fmt.Errorf("listing replay operations: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, false, fmt.Errorf("listing replay operations: %w", err)
	}
	more := len(ids) > limit
	if more {
		ids = ids[:limit]
	}
	out := make([]Operation, 0, len(ids))
	for _, id := range ids {
		o, err := getOperation(ctx, s.pool, id, false)
		if err != nil {
			return nil, false, err
		}
		out = append(out, o)
	}
	return out, more, nil
}

// Item is one dead letter of an operation.
type Item struct {
	Seq          int        `json:"seq"`
	DeadLetterID string     `json:"dead_letter_id"`
	JobID        string     `json:"job_id"`
	Fingerprint  string     `json:"fingerprint"`
	State        string     `json:"state"`
	Detail       string     `json:"detail,omitempty"`
	MessageID    string     `json:"message_id,omitempty"`
	ProcessedAt  *time.Time `json:"processed_at,omitempty"`
	// JobStatus is the job's status now.
	JobStatus string `json:"job_status,omitempty"`
}

// OperationItems returns up to limit items of operation id (in state, when
// not ""), in order, after seq after, and whether more follow.
func (s *Store) OperationItems(ctx context.Context, id, state string, limit, after int) ([]Item, bool, error) {
	if _, err := s.GetOperation(ctx, id); err != nil {
		return nil, false, err
	}
	rows, err := s.pool.Query(ctx, `
		SELECT i.seq, i.dead_letter_id::text, i.job_id::text, i.fingerprint, i.state, i.detail, COALESCE(i.message_id, ''),
			i.processed_at, `+jobstore.StatusSQL("i.job_id")+`
		FROM replay_operation_items i
		WHERE i.operation_id = $1 AND ($2 = '' OR i.state = $2) AND i.seq > $3
		ORDER BY i.seq LIMIT $4`, id, state, after, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("listing the items of replay operation %s: %w", id, err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Item, error) {
		var it Item
		err := r.Scan(&it.Seq, &it.DeadLetterID, &it.JobID, &it.Fingerprint, &it.State, &it.Detail, &it.MessageID, &it.ProcessedAt, &it.JobStatus)
		return it, err
	})
	if err != nil {
		return nil, false, fmt.Errorf("listing the items of replay operation %s: %w", id, err)
	}
	if len(items) > limit {
		return items[:limit], true, nil
	}
	return items, false, nil
}

// CancelOperation stops a running operation: no item is replayed after
// this commits. Items already replayed stay replayed.
func (s *Store) CancelOperation(ctx context.Context, id string, audit AuditEntry) (Operation, error) {
	if uuid.Validate(id) != nil {
		return Operation{}, fmt.Errorf("%q is not an operation id: %w", id, deadletter.ErrOperationNotFound)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var status string
		err := tx.QueryRow(ctx, `SELECT status FROM replay_operations WHERE id = $1 FOR UPDATE`, id).Scan(&status)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("no replay operation %s: %w", id, deadletter.ErrOperationNotFound)
		}
		if err != nil {
			return fmt.Errorf("reading replay operation %s: %w", id, err)
		}
		if status != OperationRunning {
			return fmt.Errorf("operation %s is %s: %w", id, status, deadletter.ErrOperationFinished)
		}
		if _, err := tx.Exec(ctx, `
			UPDATE replay_operations SET status = 'cancelled', cancelled_by = $2, stop_reason = 'cancelled by ' || $2,
				finished_at = now(), updated_at = now()
			WHERE id = $1`, id, audit.Actor); err != nil {
			return fmt.Errorf("cancelling replay operation %s: %w", id, err)
		}
		p, err := progress(ctx, tx, id, nil)
		if err != nil {
			return err
		}
		audit.Counts = p
		return writeAudit(ctx, tx, audit)
	})
	if err != nil {
		return Operation{}, err
	}
	return s.GetOperation(ctx, id)
}

// RunningOperations returns the ids of running operations, oldest first.
func (s *Store) RunningOperations(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT id::text FROM replay_operations WHERE status = 'running' ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("listing running replay operations: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("listing running replay operations: %w", err)
	}
	return ids, nil
}

// operationLockClass is the first key of the advisory locks that give one
// replay service at a time an operation to run.
const operationLockClass = 0x5257 // "RW"

// OperationLock is the claim of one replay service on one operation: a
// session advisory lock, held on its own connection, so that it ends when
// the service dies (its connection closes) as well as on Release.
type OperationLock struct {
	conn *pgxpool.Conn
	key  int32
}

// LockOperation claims operation id for this process; ok is false when
// another holds it.
func (s *Store) LockOperation(ctx context.Context, id string) (lock *OperationLock, ok bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("acquiring a connection for the lock of operation %s: %w", id, err)
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	key := int32(h.Sum32()) //nolint:gosec // a hash, wrapping is fine
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, $2)`, operationLockClass, key).Scan(&ok); err != nil {
		conn.Release()
		return nil, false, fmt.Errorf("locking operation %s: %w", id, err)
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	return &OperationLock{conn: conn, key: key}, true, nil
}

// Alive reports whether the lock's connection (and so the lock) still
// stands.
func (l *OperationLock) Alive(ctx context.Context) error { return l.conn.Ping(ctx) }

// Release gives the operation up.
func (l *OperationLock) Release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := l.conn.Exec(ctx, `SELECT pg_advisory_unlock($1, $2)`, operationLockClass, l.key); err != nil {
		// The lock is gone with the connection.
		_ = l.conn.Conn().Close(ctx)
	}
	l.conn.Release()
}

// ItemResult is what ReplayNext did.
type ItemResult struct {
	// Done: the operation has no pending item, or is not running.
	Done bool
	Item Item
}

// ReplayNext replays the operation's next pending item in one
// transaction that also marks the item, while the operation is running.
// An item that is no longer replayable is skipped, with the reason.
func (s *Store) ReplayNext(ctx context.Context, op Operation) (ItemResult, error) {
	var out ItemResult
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// FOR SHARE: a cancel (FOR UPDATE) waits for this item, and no item
		// starts after the cancel committed.
		var status string
		if err := tx.QueryRow(ctx, `SELECT status FROM replay_operations WHERE id = $1 FOR SHARE`, op.ID).Scan(&status); err != nil {
			return fmt.Errorf("reading replay operation %s: %w", op.ID, err)
		}
		if status != OperationRunning {
			out.Done = true
			return nil
		}
		it := &out.Item
		err := tx.QueryRow(ctx, `
			SELECT seq, dead_letter_id::text, job_id::text, fingerprint FROM replay_operation_items
			WHERE operation_id = $1 AND state = 'pending' ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED`, op.ID).
			Scan(&it.Seq, &it.DeadLetterID, &it.JobID, &it.Fingerprint)
		if errors.Is(err, pgx.ErrNoRows) {
			out.Done = true
			return nil
		}
		if err != nil {
			return fmt.Errorf("taking the next item of replay operation %s: %w", op.ID, err)
		}
		sp, err := tx.Begin(ctx)
		if err != nil {
			return fmt.Errorf("starting a savepoint: %w", err)
		}
		res, _, err := replayOne(ctx, sp, it.DeadLetterID, nil, op.Force, op.CreatedBy)
		switch {
		case err == nil && res.Deduplicated:
			it.State, it.Detail = ItemDeduplicated, "replayed since the operation was created (message "+res.MessageID+")"
		case err == nil:
			it.State, it.MessageID = ItemReplayed, res.MessageID
		case errors.Is(err, deadletter.ErrNotFound), errors.Is(err, deadletter.ErrNotReplayable):
			it.State, it.Detail = ItemSkipped, err.Error()
		default:
			_ = sp.Rollback(ctx)
			return err
		}
		if err := sp.Commit(ctx); err != nil {
			return fmt.Errorf("releasing the savepoint: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			UPDATE replay_operation_items SET state = $3, detail = $4, message_id = NULLIF($5, ''), processed_at = now()
			WHERE operation_id = $1 AND seq = $2`, op.ID, it.Seq, it.State, it.Detail, it.MessageID); err != nil {
			return fmt.Errorf("marking item %d of replay operation %s: %w", it.Seq, op.ID, err)
		}
		_, err = tx.Exec(ctx, `UPDATE replay_operations SET updated_at = now() WHERE id = $1`, op.ID)
		return err
	})
	if err != nil {
		return ItemResult{}, fmt.Errorf("replaying an item of operation %s: %w", op.ID, err)
	}
	return out, nil
}

// MarkStageDone records that the current stage's items were all processed.
func (s *Store) MarkStageDone(ctx context.Context, id string, stage int) error {
	_, err := s.pool.Exec(ctx, `
		UPDATE replay_operations SET stage_done_at = now(), updated_at = now()
		WHERE id = $1 AND stage = $2 AND stage_done_at IS NULL AND status = 'running'`, id, stage-1)
	if err != nil {
		return fmt.Errorf("recording the end of stage %d of replay operation %s: %w", stage, id, err)
	}
	return nil
}

// AdvanceStage moves a running operation from stage to the next one.
func (s *Store) AdvanceStage(ctx context.Context, id string, stage int) error {
	_, err := s.pool.Exec(ctx, `
		UPDATE replay_operations SET stage = stage + 1, stage_done_at = NULL, updated_at = now()
		WHERE id = $1 AND stage = $2 AND status = 'running'`, id, stage-1)
	if err != nil {
		return fmt.Errorf("advancing replay operation %s past stage %d: %w", id, stage, err)
	}
	return nil
}

// FinishOperation ends a running operation as completed or stopped (by
// itself, for reason), with the service's audit row. It reports whether it
// did (false: the operation was cancelled or finished meanwhile).
func (s *Store) FinishOperation(ctx context.Context, id, status, reason string) (bool, error) {
	var done bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE replay_operations SET status = $2, stop_reason = $3, finished_at = now(), updated_at = now()
			WHERE id = $1 AND status = 'running'`, id, status, reason)
		if err != nil {
			return fmt.Errorf("finishing replay operation %s: %w", id, err)
		}
		if done = tag.RowsAffected() == 1; !done {
			return nil
		}
		p, err := progress(ctx, tx, id, nil)
		if err != nil {
			return err
		}
		outcome := "ok"
		if reason != "" {
			outcome = reason
		}
		return writeAudit(ctx, tx, AuditEntry{Actor: SystemActor, Action: "replays." + status, Target: id, Counts: p, Outcome: outcome})
	})
	return done, err
}
