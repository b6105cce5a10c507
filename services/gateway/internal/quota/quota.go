// Package quota enforces requests per client per UTC day and month (API
// Gateway's usage-plan quotas), persisted in Postgres so that a quota
// outlives a gateway restart and holds across replicas.
//
// Counting every request in the database would cost a round trip per
// request. Instead each gateway counts in memory and adds its counts to the
// client's row about once a second; the statement returns the total, so
// every replica learns what the others used at each flush. The first
// request of a client in a period reads the row before it is decided, so a
// restarted gateway starts from what was used. A quota can therefore be
// overrun by what the replicas admit within one flush interval, and no
// more; a denied request is never counted.
package quota

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Periods a quota can have.
const (
	Day   = "day"
	Month = "month"
)

// Limits are the quotas of a client (0: none).
type Limits struct {
	Daily, Monthly int64
}

// Decision is the answer for one request.
type Decision struct {
	Allowed bool
	// Period is the period of the quota that decided: the one exhausted,
	// or when allowed the one with the least left ("" with no quota).
	Period string
	// Limit and Remaining describe that quota after this request.
	Limit, Remaining int64
	// Reset is how long until that period ends.
	Reset time.Duration
}

type key struct {
	client string
	period string
	start  time.Time
}

type entry struct {
	mu      sync.Mutex
	loaded  bool
	used    int64 // the total in the database at the last read or flush
	pending int64 // counted here, not yet added to the database
}

// Counter counts and decides.
type Counter struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	now    func() time.Time

	mu      sync.Mutex
	entries map[key]*entry

	denied  *prometheus.CounterVec
	errors  prometheus.Counter
	flushes prometheus.Histogram
}

// New returns a Counter over pool; metrics go to reg when not nil.
func New(pool *pgxpool.Pool, reg prometheus.Registerer, logger *slog.Logger) *Counter {
	c := &Counter{
		pool: pool, logger: logger, now: time.Now, entries: map[key]*entry{},
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_quota_exceeded_total",
			Help: "Requests refused because the client's quota for the period was used up.",
		}, []string{"period"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_quota_store_errors_total",
			Help: "Failed reads or flushes of quota usage in Postgres (requests are admitted meanwhile).",
		}),
		flushes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "switchyard_quota_flush_seconds",
			Help:    "Time to add the counted requests to Postgres.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8),
		}),
	}
	c.denied.WithLabelValues(Day)
	c.denied.WithLabelValues(Month)
	if reg != nil {
		reg.MustRegister(c.denied, c.errors, c.flushes)
	}
	return c
}

// periodOf returns the start and end of period containing t (UTC).
func periodOf(period string, t time.Time) (start, end time.Time) {
	t = t.UTC()
	if period == Day {
		start = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 0, 1)
	}
	start = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	return start, start.AddDate(0, 1, 0)
}

// Take counts one request of client against limits, or refuses it when a
// quota is used up. A database that cannot be read admits the request
// (quotas are a business limit; the failure is logged and counted).
func (c *Counter) Take(ctx context.Context, client string, limits Limits) Decision {
	now := c.now()
	type check struct {
		period string
		limit  int64
		e      *entry
		end    time.Time
	}
	var checks [2]check
	n := 0
	for _, q := range []struct {
		period string
		limit  int64
	}{{Day, limits.Daily}, {Month, limits.Monthly}} {
		if q.limit <= 0 {
			continue
		}
		start, end := periodOf(q.period, now)
		checks[n] = check{period: q.period, limit: q.limit, e: c.entry(key{client, q.period, start}), end: end}
		n++
	}
	if n == 0 {
		return Decision{Allowed: true}
	}
	// Lock in a fixed order (day, then month).
	for i := range n {
		e := checks[i].e
		e.mu.Lock()
		if !e.loaded {
			if err := c.load(ctx, client, checks[i].period, now, e); err != nil {
				c.errors.Inc()
				c.logger.WarnContext(ctx, "reading quota usage; admitting the request", "client_id", client, "error", err)
			}
		}
	}
	defer func() {
		for i := range n {
			checks[i].e.mu.Unlock()
		}
	}()
	d := Decision{Allowed: true, Remaining: -1}
	for i := range n {
		ch := checks[i]
		left := ch.limit - ch.e.used - ch.e.pending
		if left <= 0 {
			c.denied.WithLabelValues(ch.period).Inc()
			return Decision{Period: ch.period, Limit: ch.limit, Remaining: 0, Reset: ch.end.Sub(now)}
		}
		if d.Remaining < 0 || left-1 < d.Remaining {
			d.Period, d.Limit, d.Remaining, d.Reset = ch.period, ch.limit, left-1, ch.end.Sub(now)
		}
	}
	for i := range n {
		checks[i].e.pending++
	}
	return d
}

func (c *Counter) entry(k key) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		e = &entry{}
		c.entries[k] = e
	}
	return e
}

func (c *Counter) load(ctx context.Context, client, period string, now time.Time, e *entry) error {
	start, _ := periodOf(period, now)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var used int64
	err := c.pool.QueryRow(ctx, `SELECT used FROM client_quota_usage WHERE client_id = $1 AND period = $2 AND period_start = $3`,
		client, period, start).Scan(&used)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("reading quota usage: %w", err)
	}
	e.used, e.loaded = used, true
	return nil
}

// Run flushes every interval until ctx ends, then once more; hourly it
// deletes rows of periods over two months old.
func (c *Counter) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	for {
		select {
		case <-prune.C:
			if _, err := c.Prune(ctx, c.now().AddDate(0, -2, 0)); err != nil && ctx.Err() == nil {
				c.logger.Warn("pruning quota usage", "error", err)
			}
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := c.Flush(fctx); err != nil {
				c.logger.Error("final quota flush failed; these counts are lost", "error", err)
			}
			cancel()
			return
		case <-t.C:
			if err := c.Flush(ctx); err != nil && ctx.Err() == nil {
				c.errors.Inc()
				c.logger.Warn("flushing quota usage", "error", err)
			}
		}
	}
}

// Flush adds the pending counts to Postgres in one batch, learns the
// totals, and forgets periods that have ended.
func (c *Counter) Flush(ctx context.Context) error {
	start := time.Now()
	now := c.now()
	type item struct {
		k       key
		e       *entry
		pending int64
	}
	var items []item
	c.mu.Lock()
	for k, e := range c.entries {
		if _, end := periodOf(k.period, k.start); !now.Before(end) {
			e.mu.Lock()
			if e.pending == 0 {
				delete(c.entries, k)
				e.mu.Unlock()
				continue
			}
			e.mu.Unlock()
		}
		e.mu.Lock()
		if e.pending > 0 {
			items = append(items, item{k: k, e: e, pending: e.pending})
		}
		e.mu.Unlock()
	}
	c.mu.Unlock()
	if len(items) == 0 {
		return nil
	}
	batch := &pgx.Batch{}
	for _, it := range items {
		batch.Queue(`
			INSERT INTO client_quota_usage (client_id, period, period_start, used) VALUES ($1, $2, $3, $4)
			ON CONFLICT (client_id, period, period_start)
			DO UPDATE SET used = client_quota_usage.used + excluded.used, updated_at = now()
			RETURNING used`, it.k.client, it.k.period, it.k.start, it.pending)
	}
	// One round trip, in one transaction so that a failure adds nothing
	// (and the counts stay pending for the next flush).
	tx, err := c.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("flushing quota usage: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	results := tx.SendBatch(ctx, batch)
	totals := make([]int64, len(items))
	for i := range items {
		if err := results.QueryRow().Scan(&totals[i]); err != nil {
			_ = results.Close()
			return fmt.Errorf("flushing quota usage: %w", err)
		}
	}
	if err := results.Close(); err != nil {
		return fmt.Errorf("flushing quota usage: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("flushing quota usage: %w", err)
	}
	for i, it := range items {
		it.e.mu.Lock()
		it.e.pending -= it.pending
		it.e.used = totals[i]
		it.e.loaded = true
		it.e.mu.Unlock()
	}
	c.flushes.Observe(time.Since(start).Seconds())
	return nil
}

// Prune deletes usage rows of periods that ended before cutoff.
func (c *Counter) Prune(ctx context.Context, cutoff time.Time) (int64, error) {
	tag, err := c.pool.Exec(ctx, `DELETE FROM client_quota_usage WHERE period_start < $1`, cutoff.UTC())
	if err != nil {
		return 0, fmt.Errorf("pruning quota usage: %w", err)
	}
	return tag.RowsAffected(), nil
}
