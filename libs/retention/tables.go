package retention

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard/switchyard/libs/auditlog"
	"github.com/switchyard/switchyard/libs/inbox"
	"github.com/switchyard/switchyard/libs/jobstore"
)

// JobTables are the tables every deployment trims: finished jobs (with
// their attempts and timeline; jobs.Default and ByType from s and the job
// types file), expired Idempotency-Keys, old inbox rows and audit rows.
// jobs.KeepSQL and jobs.DeadLetteredAtLeast say which finished jobs must
// stay (the dead-letter store's).
func JobTables(pool *pgxpool.Pool, s Settings, jobs jobstore.Retention) []Table {
	jobs.Default = s.Jobs
	return []Table{
		{
			Name: "jobs", Retention: s.Jobs.String() + " after finishing (job types may differ)",
			Trim: func(ctx context.Context, limit int, dryRun bool) (int64, error) {
				return jobstore.TrimFinished(ctx, pool, jobs, limit, dryRun)
			},
			Oldest: func(ctx context.Context) (time.Time, error) {
				oldest, _, err := jobstore.Oldest(ctx, pool)
				return oldest, err
			},
		},
		{
			Name: "job_events", Retention: "with their job",
			Trim: func(context.Context, int, bool) (int64, error) { return 0, nil },
			Oldest: func(ctx context.Context) (time.Time, error) {
				_, oldest, err := jobstore.Oldest(ctx, pool)
				return oldest, err
			},
		},
		{
			Name: "idempotency_keys", Retention: s.IdempotencyKeys.String() + " after acceptance",
			Trim: func(ctx context.Context, limit int, dryRun bool) (int64, error) {
				return jobstore.ReleaseIdempotencyKeys(ctx, pool, time.Now().Add(-s.IdempotencyKeys), limit, dryRun)
			},
		},
		{
			Name: "inbox", Retention: s.Inbox.String(),
			Trim: func(ctx context.Context, limit int, dryRun bool) (int64, error) {
				return inbox.Trim(ctx, pool, time.Now().Add(-s.Inbox), limit, dryRun)
			},
			Oldest: func(ctx context.Context) (time.Time, error) { return inbox.Oldest(ctx, pool) },
		},
		{
			Name: "admin_audit", Retention: s.Audit.String(),
			Trim: func(ctx context.Context, limit int, dryRun bool) (int64, error) {
				return auditlog.Trim(ctx, pool, time.Now().Add(-s.Audit), limit, dryRun)
			},
			Oldest: func(ctx context.Context) (time.Time, error) { return auditlog.Oldest(ctx, pool) },
		},
	}
}
