package inbox

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier is a pool, a connection or a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Trim deletes up to limit inbox rows recorded before before, oldest
// first, and returns how many; with dryRun it counts every row it would
// delete. A row must outlive every delivery of its message: keep rows
// longer than the queues' message retention, or a late redelivery would
// apply its effects again. Rows are never updated, and one janitor runs
// at a time, so the batch locks nothing beforehand.
func Trim(ctx context.Context, db Querier, before time.Time, limit int, dryRun bool) (int64, error) {
	var n int64
	if dryRun {
		if err := db.QueryRow(ctx, `SELECT count(*) FROM inbox WHERE processed_at < $1`, before).Scan(&n); err != nil {
			return 0, fmt.Errorf("counting old inbox rows: %w", err)
		}
		return n, nil
	}
	tag, err := db.Exec(ctx, `
		DELETE FROM inbox WHERE message_id IN (
			SELECT message_id FROM inbox WHERE processed_at < $1 ORDER BY processed_at LIMIT $2)`, before, limit)
	if err != nil {
		return 0, fmt.Errorf("trimming the inbox: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Oldest returns when the oldest inbox row was recorded (zero: none).
func Oldest(ctx context.Context, db Querier) (time.Time, error) {
	var t *time.Time
	if err := db.QueryRow(ctx, `SELECT min(processed_at) FROM inbox`).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("reading the oldest inbox row: %w", err)
	}
	if t == nil {
		return time.Time{}, nil
	}
	return *t, nil
}
