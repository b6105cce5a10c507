// Package retention runs the janitor that keeps Switchyard's tables from
// growing forever (River's job cleaner, SQS's retention period): every
// interval, one replica at a time (a Postgres advisory lock), it trims
// each table's rows past their retention in bounded batches, each its own
// short statement, and exports what it deleted and how old each table's
// oldest row is. What a table keeps and why is its owner's business: the
// janitor calls the owners' Trim functions (jobstore, inbox, auditlog, the
// dead-letter store), which never delete a row still needed.
package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Settings are the retention windows and the janitor's pace. Job types
// may override Jobs in the job types file (retention:).
type Settings struct {
	Interval time.Duration `conf:"default:1m,env:SWITCHYARD_RETENTION_INTERVAL,help:how often the janitor trims the tables (one replica at a time)"`
	Batch    int           `conf:"default:1000,env:SWITCHYARD_RETENTION_BATCH,help:rows one janitor statement deletes at most"`
	MaxPass  time.Duration `conf:"default:30s,env:SWITCHYARD_RETENTION_MAX_PASS,help:how long one pass may keep deleting before it waits for the next interval"`
	Jobs     time.Duration `conf:"default:168h,env:SWITCHYARD_RETENTION_JOBS,help:how long a finished job (succeeded or cancelled or dead-lettered without a stored dead letter) is kept with its attempts and timeline"`
	Inbox    time.Duration `conf:"default:336h,env:SWITCHYARD_RETENTION_INBOX,help:how long a processed message's inbox row is kept (longer than SWITCHYARD_SQS_RETENTION or a late redelivery would apply twice)"`
	Audit    time.Duration `conf:"default:9600h,env:SWITCHYARD_RETENTION_AUDIT,help:how long audit rows are kept (at least 720h; the longest window)"`
	// IdempotencyKeys is read by the gateway too, which answers a key
	// past it with a new job.
	IdempotencyKeys time.Duration `conf:"default:24h,env:SWITCHYARD_IDEMPOTENCY_KEY_TTL,help:how long an Idempotency-Key names its job; reused later it creates a new job"`
}

// MinAudit is the shortest audit retention: the database refuses to
// delete younger audit rows (switchyard_trim_audit).
const MinAudit = 30 * 24 * time.Hour

// Validate checks the settings against the job queues' message
// retention (an inbox row must outlive its message).
func (s Settings) Validate(queueRetention time.Duration) error {
	var errs []error
	if s.Interval < time.Second {
		errs = append(errs, fmt.Errorf("SWITCHYARD_RETENTION_INTERVAL %s must be at least 1s", s.Interval))
	}
	if s.Batch < 1 || s.Batch > 100_000 {
		errs = append(errs, fmt.Errorf("SWITCHYARD_RETENTION_BATCH %d must be from 1 to 100000", s.Batch))
	}
	if s.MaxPass < time.Second {
		errs = append(errs, fmt.Errorf("SWITCHYARD_RETENTION_MAX_PASS %s must be at least 1s", s.MaxPass))
	}
	if s.Jobs < time.Second {
		errs = append(errs, fmt.Errorf("SWITCHYARD_RETENTION_JOBS %s must be at least 1s", s.Jobs))
	}
	if s.IdempotencyKeys < time.Minute {
		errs = append(errs, fmt.Errorf("SWITCHYARD_IDEMPOTENCY_KEY_TTL %s must be at least 1m", s.IdempotencyKeys))
	}
	if s.Inbox <= queueRetention {
		errs = append(errs, fmt.Errorf("SWITCHYARD_RETENTION_INBOX %s must be longer than the job queues' message retention SWITCHYARD_SQS_RETENTION %s: a message redelivered after its inbox row is gone would apply its effects again",
			s.Inbox, queueRetention))
	}
	if s.Audit < MinAudit {
		errs = append(errs, fmt.Errorf("SWITCHYARD_RETENTION_AUDIT %s must be at least %s", s.Audit, MinAudit))
	}
	for name, d := range map[string]time.Duration{"SWITCHYARD_RETENTION_JOBS": s.Jobs, "SWITCHYARD_RETENTION_INBOX": s.Inbox} {
		if s.Audit < d {
			errs = append(errs, fmt.Errorf("SWITCHYARD_RETENTION_AUDIT %s must be the longest window (%s is %s)", s.Audit, name, d))
		}
	}
	return errors.Join(errs...)
}

// Table is one thing the janitor trims.
type Table struct {
	// Name labels the table in metrics and reports.
	Name string
	// Retention is the window, as the report shows it ("" for none).
	Retention string
	// Trim deletes up to limit rows past their retention and returns how
	// many; with dryRun it deletes nothing and counts every row it would
	// delete.
	Trim func(ctx context.Context, limit int, dryRun bool) (int64, error)
	// Oldest returns the time of the table's oldest row (zero: empty);
	// nil when the table cannot tell cheaply.
	Oldest func(ctx context.Context) (time.Time, error)
}

// Report is what one pass did (or, dry, would do) to one table.
type Report struct {
	Table     string     `json:"table"`
	Retention string     `json:"retention,omitempty"`
	Rows      int64      `json:"rows"`
	OldestAt  *time.Time `json:"oldest_at,omitempty"`
	// Complete is false when the pass stopped before the table had no
	// more rows past their retention (its time was up).
	Complete bool `json:"complete"`
}

// Janitor trims Tables.
type Janitor struct {
	pool     *pgxpool.Pool
	settings Settings
	tables   []Table
	logger   *slog.Logger

	deleted *prometheus.CounterVec
	oldest  *prometheus.GaugeVec
	passes  *prometheus.CounterVec
}

// lockKey is the advisory lock one janitor holds while it runs a pass.
const lockKey = 0x5377_6a61_6e69_746f // "Swjanito"

// New returns a janitor over tables; its metrics go to reg when set.
func New(pool *pgxpool.Pool, settings Settings, tables []Table, logger *slog.Logger, reg prometheus.Registerer) (*Janitor, error) {
	j := &Janitor{pool: pool, settings: settings, tables: tables, logger: logger,
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_retention_deleted_total", Help: "Rows the retention janitor deleted (for idempotency_keys: keys released), by table.",
		}, []string{"table"}),
		oldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchyard_retention_oldest_row_age_seconds", Help: "Age of each table's oldest row at the janitor's last pass (0: empty).",
		}, []string{"table"}),
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_retention_passes_total", Help: "Janitor passes, by outcome: done, partial (time up), skipped (another replica holds the lock), failed.",
		}, []string{"outcome"}),
	}
	for _, t := range tables {
		j.deleted.WithLabelValues(t.Name)
	}
	for _, o := range []string{"done", "partial", "skipped", "failed"} {
		j.passes.WithLabelValues(o)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{j.deleted, j.oldest, j.passes} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering retention metrics: %w", err)
			}
		}
	}
	return j, nil
}

// ErrBusy is Pass's answer when another janitor holds the lock.
var ErrBusy = errors.New("another janitor is running a pass")

// Run runs a pass every interval until ctx ends.
func (j *Janitor) Run(ctx context.Context) {
	t := time.NewTicker(j.settings.Interval)
	defer t.Stop()
	for {
		reports, err := j.Pass(ctx, false)
		switch {
		case errors.Is(err, ErrBusy):
		case err != nil && ctx.Err() == nil:
			j.logger.Warn("retention pass failed", "error", err)
		default:
			for _, r := range reports {
				if r.Rows > 0 || !r.Complete {
					j.logger.Info("retention pass", "table", r.Table, "deleted", r.Rows, "complete", r.Complete)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Pass trims every table once, holding the janitor's advisory lock (or
// answers ErrBusy at once when another replica holds it): per table,
// batches until one comes back short or MaxPass is spent. With dryRun it
// deletes nothing and reports, per table, how many rows a pass would
// delete now.
func (j *Janitor) Pass(ctx context.Context, dryRun bool) ([]Report, error) {
	conn, err := j.pool.Acquire(ctx)
	if err != nil {
		j.passes.WithLabelValues("failed").Inc()
		return nil, fmt.Errorf("retention: acquiring a connection for the lock: %w", err)
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(lockKey)).Scan(&locked); err != nil {
		j.passes.WithLabelValues("failed").Inc()
		return nil, fmt.Errorf("retention: taking the janitor lock: %w", err)
	}
	if !locked {
		j.passes.WithLabelValues("skipped").Inc()
		return nil, ErrBusy
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(lockKey)); err != nil {
			conn.Conn().Close(context.WithoutCancel(ctx)) //nolint:errcheck // a closed session drops its locks
		}
	}()
	deadline := time.Now().Add(j.settings.MaxPass)
	reports := make([]Report, 0, len(j.tables))
	outcome := "done"
	for _, t := range j.tables {
		r := Report{Table: t.Name, Retention: t.Retention, Complete: true}
		if dryRun {
			if r.Rows, err = t.Trim(ctx, j.settings.Batch, true); err != nil {
				j.passes.WithLabelValues("failed").Inc()
				return reports, fmt.Errorf("retention: %s: %w", t.Name, err)
			}
		} else {
			for {
				n, err := t.Trim(ctx, j.settings.Batch, false)
				r.Rows += n
				j.deleted.WithLabelValues(t.Name).Add(float64(n))
				if err != nil {
					j.passes.WithLabelValues("failed").Inc()
					return append(reports, r), fmt.Errorf("retention: %s: %w", t.Name, err)
				}
				if n < int64(j.settings.Batch) {
					break
				}
				if time.Now().After(deadline) {
					r.Complete, outcome = false, "partial"
					break
				}
			}
		}
		if t.Oldest != nil {
			oldest, err := t.Oldest(ctx)
			if err != nil {
				j.passes.WithLabelValues("failed").Inc()
				return append(reports, r), fmt.Errorf("retention: %s: %w", t.Name, err)
			}
			age := 0.0
			if !oldest.IsZero() {
				r.OldestAt = &oldest
				age = time.Since(oldest).Seconds()
			}
			j.oldest.WithLabelValues(t.Name).Set(age)
		}
		reports = append(reports, r)
	}
	if !dryRun {
		j.passes.WithLabelValues(outcome).Inc()
	}
	return reports, nil
}
