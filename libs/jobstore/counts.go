package jobstore

import (
	"context"
	"fmt"
	"time"

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
