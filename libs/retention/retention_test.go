package retention_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/auditlog"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/retention"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

var settings = retention.Settings{
	Interval: time.Minute, Batch: 2, MaxPass: time.Minute,
	Jobs: time.Hour, Inbox: 2 * time.Hour, Audit: 31 * 24 * time.Hour, IdempotencyKeys: time.Hour,
}

type fixture struct {
	t    *testing.T
	pool *pgxpool.Pool
}

// job accepts a job of jobType, then moves it to status, finished (and
// accepted) ago, with one attempt and one event.
func (f fixture) job(jobType string, status jobs.Status, ago time.Duration, key string) string {
	f.t.Helper()
	ctx := context.Background()
	id := uuid.NewString()
	_, _, err := jobstore.New(f.pool).Accept(ctx, jobs.Submission{ID: id, MessageID: uuid.NewString(), Type: jobType, ClientID: "c",
		Payload: json.RawMessage(`{}`), IdempotencyKey: key})
	require.NoError(f.t, err)
	var finished any
	if status.Finished() {
		finished = time.Now().Add(-ago)
	}
	_, err = f.pool.Exec(ctx, `
		WITH j AS (UPDATE jobs SET status = $2, created_at = now() - $3::interval, finished_at = $4 WHERE id = $1 RETURNING id),
		a AS (INSERT INTO job_attempts (job_id, attempt, message_id, outcome) SELECT id, 1, 'm-' || id, 'succeeded' FROM j)
		INSERT INTO job_events (job_id, type) SELECT id, 'queued' FROM j`, id, string(status), ago.String(), finished)
	require.NoError(f.t, err)
	return id
}

func (f fixture) exists(table, column, id string) bool {
	f.t.Helper()
	var n int
	require.NoError(f.t, f.pool.QueryRow(context.Background(), `SELECT count(*) FROM `+table+` WHERE `+column+`::text = $1`, id).Scan(&n))
	return n > 0
}

// TestJanitorDeletesOnlyWhatIsPastRetention fills every table with rows
// on both sides of their windows, and the rows that must stay whatever
// their age (a job in flight, a dead-lettered job whose dead letter is
// stored or whose DLQ may still hold its message), then runs a dry run
// and a pass in batches of two.
func TestJanitorDeletesOnlyWhatIsPastRetention(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	f := fixture{t, pool}
	_, err := pool.Exec(ctx, `CREATE TABLE held_jobs (id uuid PRIMARY KEY)`)
	require.NoError(t, err)

	gone := map[string]string{
		"old succeeded":                  f.job("text-stats", jobs.StatusSucceeded, 2*time.Hour, ""),
		"old cancelled":                  f.job("text-stats", jobs.StatusCancelled, 2*time.Hour, ""),
		"dead-lettered past its DLQ":     f.job("text-stats", jobs.StatusDeadLettered, 15*24*time.Hour, ""),
		"short-lived type past its 5m":   f.job("ping", jobs.StatusSucceeded, 10*time.Minute, ""),
		"old succeeded, second of batch": f.job("text-stats", jobs.StatusSucceeded, 3*time.Hour, ""),
	}
	kept := map[string]string{
		"in flight for days":              f.job("text-stats", jobs.StatusProcessing, 3*24*time.Hour, ""),
		"waiting for a retry":             f.job("text-stats", jobs.StatusFailed, 3*24*time.Hour, ""),
		"recent success":                  f.job("text-stats", jobs.StatusSucceeded, 10*time.Minute, "fresh-key"),
		"dead-lettered, DLQ may hold it":  f.job("text-stats", jobs.StatusDeadLettered, 2*time.Hour, ""),
		"dead-lettered, dead letter kept": f.job("text-stats", jobs.StatusDeadLettered, 15*24*time.Hour, ""),
		"long-lived type within its 30d":  f.job("report", jobs.StatusSucceeded, 3*24*time.Hour, ""),
	}
	_, err = pool.Exec(ctx, `INSERT INTO held_jobs VALUES ($1)`, kept["dead-lettered, dead letter kept"])
	require.NoError(t, err)
	keyed := f.job("text-stats", jobs.StatusProcessing, 2*time.Hour, "old-key")

	_, err = pool.Exec(ctx, `INSERT INTO inbox (message_id, job_id, handler, processed_at) VALUES
		('old-1', gen_random_uuid(), 'h', now() - interval '3 hours'), ('old-2', gen_random_uuid(), 'h', now() - interval '3 hours'),
		('old-3', gen_random_uuid(), 'h', now() - interval '3 hours'), ('new-1', gen_random_uuid(), 'h', now() - interval '1 hour')`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO admin_audit (at, actor, action) VALUES
		(now() - interval '40 days', 'ops', 'old'), (now() - interval '10 days', 'ops', 'recent')`)
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	jan, err := retention.New(pool, settings, retention.JobTables(pool, settings, jobstore.Retention{
		ByType:              map[string]time.Duration{"ping": 5 * time.Minute, "report": 30 * 24 * time.Hour},
		DeadLetteredAtLeast: 14 * 24 * time.Hour,
		KeepSQL:             "EXISTS (SELECT 1 FROM held_jobs h WHERE h.id = j.id)",
	}), slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	require.NoError(t, err)

	rowsOf := func(reports []retention.Report) map[string]int64 {
		out := map[string]int64{}
		for _, r := range reports {
			out[r.Table] = r.Rows
		}
		return out
	}
	want := map[string]int64{"jobs": 5, "job_events": 0, "idempotency_keys": 1, "inbox": 3, "admin_audit": 1}
	dry, err := jan.Pass(ctx, true)
	require.NoError(t, err)
	require.Equal(t, want, rowsOf(dry), "the dry run counts what the pass deletes")
	for name, id := range gone {
		require.True(t, f.exists("jobs", "id", id), "a dry run deleted %s", name)
	}

	done, err := jan.Pass(ctx, false)
	require.NoError(t, err)
	require.Equal(t, want, rowsOf(done))
	for _, r := range done {
		require.True(t, r.Complete, r.Table)
	}
	for name, id := range gone {
		require.False(t, f.exists("jobs", "id", id), "%s was kept", name)
		require.False(t, f.exists("job_attempts", "job_id", id), "%s: attempts left", name)
		require.False(t, f.exists("job_events", "job_id", id), "%s: events left", name)
	}
	for name, id := range kept {
		require.True(t, f.exists("jobs", "id", id), "%s was deleted", name)
		require.True(t, f.exists("job_attempts", "job_id", id), "%s: attempts deleted", name)
	}
	var key *string
	require.NoError(t, pool.QueryRow(ctx, `SELECT idempotency_key FROM jobs WHERE id = $1`, keyed).Scan(&key))
	require.Nil(t, key, "the expired key is released")
	require.True(t, f.exists("jobs", "idempotency_key", "fresh-key"), "a key within its window stays")
	require.True(t, f.exists("inbox", "message_id", "new-1"))
	require.False(t, f.exists("inbox", "message_id", "old-1"))
	require.True(t, f.exists("admin_audit", "action", "recent"))
	require.False(t, f.exists("admin_audit", "action", "old"))
	require.InDelta(t, 5, testutil.ToFloat64(collectorOf(t, reg, "switchyard_retention_deleted_total", "jobs")), 0)

	again, err := jan.Pass(ctx, false)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"jobs": 0, "job_events": 0, "idempotency_keys": 0, "inbox": 0, "admin_audit": 0}, rowsOf(again))
}

// collectorOf returns the metric name{table} registered in reg.
func collectorOf(t *testing.T, reg *prometheus.Registry, name, table string) prometheus.Collector {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "table" && l.GetValue() == table {
					c := prometheus.NewCounter(prometheus.CounterOpts{Name: "copy"})
					c.Add(m.GetCounter().GetValue())
					return c
				}
			}
		}
	}
	t.Fatalf("no %s{table=%q}", name, table)
	return nil
}

// TestOneJanitorAtATime: while another session holds the janitor's lock
// (another replica's pass), a pass answers ErrBusy at once.
func TestOneJanitorAtATime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	jan, err := retention.New(pool, settings, retention.JobTables(pool, settings, jobstore.Retention{}), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	require.NoError(t, err)
	other := stacktest.NewPoolURL(t, pool.Config().ConnString())
	conn, err := other.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	// The same key the janitor takes (retention.lockKey).
	_, err = conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(0x5377_6a61_6e69_746f))
	require.NoError(t, err)
	_, err = jan.Pass(ctx, false)
	require.ErrorIs(t, err, retention.ErrBusy)
	_, err = conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, int64(0x5377_6a61_6e69_746f))
	require.NoError(t, err)
	_, err = jan.Pass(ctx, false)
	require.NoError(t, err)
}

// TestAuditRowsYoungerThan30DaysAreNeverDeleted: the database function
// refuses, whatever the caller asks.
func TestAuditRowsYoungerThan30DaysAreNeverDeleted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	_, err := pool.Exec(ctx, `INSERT INTO admin_audit (at, actor, action) VALUES (now() - interval '1 day', 'ops', 'recent')`)
	require.NoError(t, err)
	_, err = auditlog.Trim(ctx, pool, time.Now(), 100, false)
	require.ErrorContains(t, err, "never deleted")
	oldest, err := auditlog.Oldest(ctx, pool)
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(-24*time.Hour), oldest, time.Minute)
}

func TestSettingsKeepInboxRowsLongerThanMessages(t *testing.T) {
	t.Parallel()
	require.NoError(t, settings.Validate(time.Hour))
	err := settings.Validate(4 * 24 * time.Hour)
	require.ErrorContains(t, err, "SWITCHYARD_RETENTION_INBOX 2h0m0s must be longer than the job queues' message retention")
	short := settings
	short.Audit = 24 * time.Hour
	require.ErrorContains(t, short.Validate(time.Hour), "SWITCHYARD_RETENTION_AUDIT 24h0m0s must be at least 720h0m0s")
}
