package jobstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// CountUnfinished counts the jobs not finished yet (accepted, queued or
// processing) that were accepted before acceptedBefore: the backlog a
// fault drill waits to drain.
func CountUnfinished(ctx context.Context, db *pgxpool.Pool, acceptedBefore time.Time) (int, error) {
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE status IN ('accepted', 'queued', 'processing') AND created_at < $1`,
		acceptedBefore).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting unfinished jobs: %w", err)
	}
	return n, nil
}

// CountProcessing counts the jobs a worker is running now.
func CountProcessing(ctx context.Context, db *pgxpool.Pool) (int, error) {
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE status = 'processing'`).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting processing jobs: %w", err)
	}
	return n, nil
}

// CountNotSucceeded counts the ids that name no job, or a job that has not
// succeeded: after a drill has drained, the jobs lost.
func CountNotSucceeded(ctx context.Context, db *pgxpool.Pool, ids []string) (int, error) {
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM unnest($1::uuid[]) AS ids(id) LEFT JOIN jobs j ON j.id = ids.id
		WHERE j.id IS NULL OR j.status <> 'succeeded'`, ids).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting jobs that did not succeed: %w", err)
	}
	return n, nil
}

// Census is how many jobs are in the states a retention soak watches.
type Census struct {
	// Scheduled jobs wait for their run_at; Unfinished ones are neither
	// scheduled nor finished (accepted, queued, processing, failed and
	// waiting for a retry, replayed).
	Scheduled, Unfinished int64
	// Keyed jobs still hold their Idempotency-Key.
	Keyed int64
}

// CountCensus counts the jobs by the states Census names.
func CountCensus(ctx context.Context, db *pgxpool.Pool) (Census, error) {
	var c Census
	err := db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'scheduled'),
		count(*) FILTER (WHERE status NOT IN ('succeeded', 'cancelled', 'dead_lettered', 'scheduled')),
		count(*) FILTER (WHERE idempotency_key IS NOT NULL) FROM jobs`).Scan(&c.Scheduled, &c.Unfinished, &c.Keyed)
	if err != nil {
		return c, fmt.Errorf("counting jobs by state: %w", err)
	}
	return c, nil
}

// TypeCount counts a job type's jobs in one status.
type TypeCount struct {
	Type   string
	Status string
	Count  int64
}

// CountFinished counts the jobs that finished since then, by type and
// status (index jobs_finished).
func CountFinished(ctx context.Context, db *pgxpool.Pool, since time.Time) ([]TypeCount, error) {
	rows, err := db.Query(ctx, `SELECT type, status, count(*) FROM jobs WHERE finished_at >= $1 GROUP BY type, status`, since)
	if err != nil {
		return nil, fmt.Errorf("counting finished jobs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (TypeCount, error) {
		var c TypeCount
		err := row.Scan(&c.Type, &c.Status, &c.Count)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("counting finished jobs: %w", err)
	}
	return out, nil
}
