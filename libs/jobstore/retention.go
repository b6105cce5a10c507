package jobstore

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard/switchyard/libs/jobs"
)

// Querier is a pool, a connection or a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Retention says how long finished jobs are kept.
type Retention struct {
	// Default is how long a finished job is kept after it finished.
	Default time.Duration
	// ByType overrides Default for some job types.
	ByType map[string]time.Duration
	// DeadLetteredAtLeast is the least a dead-lettered job is kept after
	// it finished, whatever its type's retention: its message may still
	// wait in its dead-letter queue (keep it at least the DLQ's retention),
	// and the dead letter drained from there names the job.
	DeadLetteredAtLeast time.Duration
	// KeepSQL, when set, is an SQL condition on the job id "j.id" that
	// holds for a job that must be kept (a stored dead letter names it).
	KeepSQL string
}

// finishedStatuses are the statuses a job may be deleted in once its
// retention has passed.
var finishedStatuses = statusStrings([]jobs.Status{jobs.StatusSucceeded, jobs.StatusCancelled, jobs.StatusDeadLettered})

// TrimFinished deletes up to limit finished jobs whose retention has
// passed, oldest first, with their attempts and timeline, in one
// statement (so one short transaction; rows another transaction holds
// are skipped, not waited for), and returns how many jobs it deleted.
// With dryRun it deletes nothing and counts every job it would delete,
// limit aside. A job that is not finished, or that r.KeepSQL holds, is
// never deleted.
func TrimFinished(ctx context.Context, db Querier, r Retention, limit int, dryRun bool) (int64, error) {
	var total int64
	// One statement per retention, so that each can walk jobs_finished in
	// finish order: the types with their own, then all the others.
	types := make([]string, 0, len(r.ByType))
	for t := range r.ByType {
		types = append(types, t)
	}
	sort.Strings(types)
	type group struct {
		cond   string
		arg    any
		cutoff time.Time
	}
	now := time.Now()
	groups := make([]group, 0, len(types)+1)
	for _, t := range types {
		groups = append(groups, group{"j.type = $5", t, now.Add(-r.ByType[t])})
	}
	groups = append(groups, group{"j.type <> ALL($5)", types, now.Add(-r.Default)})
	keep := "false"
	if r.KeepSQL != "" {
		keep = r.KeepSQL
	}
	for _, g := range groups {
		remaining := limit - int(total)
		if !dryRun && remaining <= 0 {
			break
		}
		where := `j.finished_at < $1 AND j.status = ANY($2) AND (j.status <> 'dead_lettered' OR j.finished_at < $3) AND ` + g.cond + ` AND NOT (` + keep + `)`
		args := []any{g.cutoff, finishedStatuses, now.Add(-r.DeadLetteredAtLeast), remaining, g.arg}
		var n int64
		var err error
		if dryRun {
			args[3] = 0 // not used: the count has no limit
			err = db.QueryRow(ctx, `SELECT count(*) FROM jobs j WHERE `+where+` AND $4::int >= 0`, args...).Scan(&n)
		} else {
			var tag pgconn.CommandTag
			tag, err = db.Exec(ctx, `
				WITH doomed AS (
					SELECT j.id FROM jobs j WHERE `+where+`
					ORDER BY j.finished_at LIMIT $4 FOR UPDATE SKIP LOCKED
				), events AS (
					DELETE FROM job_events WHERE job_id IN (SELECT id FROM doomed)
				), attempts AS (
					DELETE FROM job_attempts WHERE job_id IN (SELECT id FROM doomed)
				)
				DELETE FROM jobs WHERE id IN (SELECT id FROM doomed)`, args...)
			n = tag.RowsAffected()
		}
		if err != nil {
			return total, fmt.Errorf("trimming finished jobs: %w", err)
		}
		total += n
	}
	return total, nil
}

// ReleaseIdempotencyKeys forgets the Idempotency-Keys of up to limit jobs
// accepted before before (the key's window), so that the key may be used
// again for a new job; with dryRun it counts every key it would release.
func ReleaseIdempotencyKeys(ctx context.Context, db Querier, before time.Time, limit int, dryRun bool) (int64, error) {
	var n int64
	if dryRun {
		err := db.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE idempotency_key IS NOT NULL AND created_at < $1`, before).Scan(&n)
		if err != nil {
			return 0, fmt.Errorf("counting expired idempotency keys: %w", err)
		}
		return n, nil
	}
	tag, err := db.Exec(ctx, `
		UPDATE jobs SET idempotency_key = NULL WHERE id IN (
			SELECT id FROM jobs WHERE idempotency_key IS NOT NULL AND created_at < $1
			ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)`, before, limit)
	if err != nil {
		return 0, fmt.Errorf("releasing expired idempotency keys: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Oldest returns when the oldest job was accepted and the oldest
// timeline event happened (zero when there is none). Attempts go with
// their job.
func Oldest(ctx context.Context, db Querier) (job, event time.Time, err error) {
	var j, e *time.Time
	if err := db.QueryRow(ctx, `SELECT (SELECT min(created_at) FROM jobs), (SELECT at FROM job_events ORDER BY id LIMIT 1)`).Scan(&j, &e); err != nil {
		return job, event, fmt.Errorf("reading the oldest job: %w", err)
	}
	if j != nil {
		job = *j
	}
	if e != nil {
		event = *e
	}
	return job, event, nil
}
