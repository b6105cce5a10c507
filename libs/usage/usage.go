// Package usage counts requests per client, route and minute, with their
// errors and a latency histogram, and reports them over a time range
// together with the clients' jobs by outcome: the usage analytics an
// operator (or a billing export) reads at GET /admin/v1/usage.
//
// Gateways count in memory (Recorder, an httpserver.RequestObserver) and
// add their counts to Postgres every few seconds, so a request costs a map
// update, not a write; replicas' counts add up in the same rows. Latency is
// kept as counts per bucket, so that a percentile can be computed over
// any range of minutes, clients and routes (Report).
package usage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/problem"
)

// The problem types of the two 429s the analytics tell apart.
var (
	rateLimitedType   = problem.RateLimited.Type()
	quotaExceededType = problem.QuotaExceeded.Type()
)

// Buckets are the upper bounds, in milliseconds, of the latency buckets;
// one more bucket counts what is slower than the last.
var Buckets = []float64{5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000}

// Anonymous stands for the client of a request that did not authenticate.
const Anonymous = "-"

type key struct {
	minute time.Time
	client string
	apiKey string
	method string
	route  string
}

type counts struct {
	requests, clientErrors, serverErrors int64
	rateLimited, quotaRefused            int64
	durationMs                           float64
	buckets                              []int64
}

func (c *counts) add(o *counts) {
	c.requests += o.requests
	c.clientErrors += o.clientErrors
	c.serverErrors += o.serverErrors
	c.rateLimited += o.rateLimited
	c.quotaRefused += o.quotaRefused
	c.durationMs += o.durationMs
	for i := range c.buckets {
		c.buckets[i] += o.buckets[i]
	}
}

// Recorder counts requests and flushes the counts to Postgres.
type Recorder struct {
	pool      *pgxpool.Pool
	logger    *slog.Logger
	retention time.Duration
	now       func() time.Time

	mu      sync.Mutex
	pending map[key]*counts

	flushErrors prometheus.Counter
}

// NewRecorder returns a Recorder writing to pool, deleting rows older
// than retention (default 30 days); its error counter goes to reg when
// not nil.
func NewRecorder(pool *pgxpool.Pool, retention time.Duration, reg prometheus.Registerer, logger *slog.Logger) *Recorder {
	if retention <= 0 {
		retention = 30 * 24 * time.Hour
	}
	r := &Recorder{
		pool: pool, logger: logger, retention: retention, now: time.Now, pending: map[key]*counts{},
		flushErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_usage_flush_errors_total",
			Help: "Failed writes of usage counts to Postgres (they are kept and retried).",
		}),
	}
	if reg != nil {
		reg.MustRegister(r.flushErrors)
	}
	return r
}

// ObserveRequest implements httpserver.RequestObserver: one answered
// request of route (its method and pattern) by the client authenticated
// in ctx.
func (r *Recorder) ObserveRequest(ctx context.Context, method, route string, status int, took time.Duration) {
	client, apiKey := Anonymous, ""
	if id, ok := authn.FromContext(ctx); ok && id.ClientID != "" {
		client, apiKey = id.ClientID, id.KeyID
	}
	if route == "" {
		route = "unmatched"
	}
	ms := float64(took) / float64(time.Millisecond)
	k := key{minute: r.now().UTC().Truncate(time.Minute), client: client, apiKey: apiKey, method: method, route: route}
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.pending[k]
	if c == nil {
		c = &counts{buckets: make([]int64, len(Buckets)+1)}
		r.pending[k] = c
	}
	c.requests++
	switch {
	case status >= 500:
		c.serverErrors++
	case status >= 400:
		c.clientErrors++
	}
	if status == http.StatusTooManyRequests {
		switch httpserver.ProblemType(ctx) {
		case rateLimitedType:
			c.rateLimited++
		case quotaExceededType:
			c.quotaRefused++
		}
	}
	c.durationMs += ms
	c.buckets[bucketOf(ms)]++
}

func bucketOf(ms float64) int {
	for i, le := range Buckets {
		if ms <= le {
			return i
		}
	}
	return len(Buckets)
}

// Flush adds the counts taken so far to Postgres in one round trip. On
// failure they are kept for the next flush.
func (r *Recorder) Flush(ctx context.Context) error {
	r.mu.Lock()
	taken := r.pending
	r.pending = map[key]*counts{}
	r.mu.Unlock()
	if len(taken) == 0 {
		return nil
	}
	batch := &pgx.Batch{}
	for k, c := range taken {
		batch.Queue(`
			INSERT INTO usage_minutes AS u (minute, client_id, route, requests, client_errors, server_errors, duration_ms_sum, latency_buckets, api_key_id,
				rate_limited, quota_refused)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT (minute, client_id, route, api_key_id) DO UPDATE SET
				requests = u.requests + excluded.requests,
				client_errors = u.client_errors + excluded.client_errors,
				server_errors = u.server_errors + excluded.server_errors,
				rate_limited = u.rate_limited + excluded.rate_limited,
				quota_refused = u.quota_refused + excluded.quota_refused,
				duration_ms_sum = u.duration_ms_sum + excluded.duration_ms_sum,
				latency_buckets = ARRAY(SELECT a + b FROM unnest(u.latency_buckets, excluded.latency_buckets) AS t(a, b))`,
			k.minute, k.client, k.method+" "+k.route, c.requests, c.clientErrors, c.serverErrors, c.durationMs, c.buckets, k.apiKey,
			c.rateLimited, c.quotaRefused)
	}
	err := r.pool.SendBatch(ctx, batch).Close()
	if err != nil {
		r.flushErrors.Inc()
		r.mu.Lock()
		for k, c := range taken {
			if p := r.pending[k]; p != nil {
				p.add(c)
			} else {
				r.pending[k] = c
			}
		}
		r.mu.Unlock()
		return fmt.Errorf("writing usage counts: %w", err)
	}
	return nil
}

// Run flushes every interval until ctx ends, then once more; it deletes
// rows past the retention once an hour.
func (r *Recorder) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastCleanup time.Time
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := r.Flush(fctx); err != nil {
				r.logger.Warn("usage counts not written at shutdown", "error", err)
			}
			cancel()
			return
		case <-t.C:
		}
		if err := r.Flush(ctx); err != nil && ctx.Err() == nil {
			r.logger.Warn("writing usage counts; retried at the next flush", "error", err)
		}
		if r.now().Sub(lastCleanup) >= time.Hour {
			lastCleanup = r.now()
			if _, err := r.pool.Exec(ctx, `DELETE FROM usage_minutes WHERE minute < $1`, r.now().Add(-r.retention)); err != nil && ctx.Err() == nil {
				r.logger.Warn("deleting old usage counts", "error", err)
			}
		}
	}
}

// Query selects what a Report covers.
type Query struct {
	Since, Until time.Time
	// ClientID and Route narrow the report ("" : all).
	ClientID, Route string
}

// RouteUsage is one client's use of one route.
type RouteUsage struct {
	Route        string `json:"route"`
	Requests     int64  `json:"requests"`
	ClientErrors int64  `json:"client_errors"`
	ServerErrors int64  `json:"server_errors"`
	// RateLimited and QuotaRefused count the 429s (in ClientErrors) by
	// cause.
	RateLimited  int64   `json:"rate_limited"`
	QuotaRefused int64   `json:"quota_refused"`
	MeanMs       float64 `json:"mean_ms"`
	P50Ms        float64 `json:"p50_ms"`
	P95Ms        float64 `json:"p95_ms"`
	P99Ms        float64 `json:"p99_ms"`
}

// ClientUsage is one client's requests by route and jobs by type and
// status.
type ClientUsage struct {
	ClientID string       `json:"client_id"`
	Requests int64        `json:"requests"`
	Routes   []RouteUsage `json:"routes"`
	// Jobs counts the jobs the client submitted in the range, by job type
	// and their status now.
	Jobs map[string]map[string]int64 `json:"jobs"`
	// APIKeys counts the requests made with each of the client's API
	// keys, by key id (absent: none).
	APIKeys map[string]int64 `json:"api_keys,omitempty"`
}

// Report is usage over a time range.
type Report struct {
	Since   time.Time     `json:"since"`
	Until   time.Time     `json:"until"`
	Clients []ClientUsage `json:"clients"`
}

// Read builds the report of q from Postgres: the minutes that start in
// [Since, Until), the jobs created in it.
func Read(ctx context.Context, db *pgxpool.Pool, q Query) (Report, error) {
	if !q.Until.After(q.Since) {
		return Report{}, errors.New("until must be after since")
	}
	rep := Report{Since: q.Since.UTC(), Until: q.Until.UTC(), Clients: []ClientUsage{}}
	byClient := map[string]*ClientUsage{}
	client := func(id string) *ClientUsage {
		if c, ok := byClient[id]; ok {
			return c
		}
		c := &ClientUsage{ClientID: id, Routes: []RouteUsage{}, Jobs: map[string]map[string]int64{}}
		byClient[id] = c
		return c
	}
	rows, err := db.Query(ctx, `
		WITH picked AS (
			SELECT * FROM usage_minutes
			WHERE minute >= $1 AND minute < $2 AND ($3 = '' OR client_id = $3) AND ($4 = '' OR route = $4)
		), totals AS (
			SELECT client_id, route, sum(requests)::bigint AS requests, sum(client_errors)::bigint AS client_errors,
				sum(server_errors)::bigint AS server_errors, sum(duration_ms_sum) AS duration_ms,
				sum(rate_limited)::bigint AS rate_limited, sum(quota_refused)::bigint AS quota_refused
			FROM picked GROUP BY client_id, route
		), buckets AS (
			SELECT client_id, route, array_agg(n ORDER BY i) AS buckets FROM (
				SELECT client_id, route, b.i, sum(b.n)::bigint AS n
				FROM picked, unnest(latency_buckets) WITH ORDINALITY AS b(n, i)
				GROUP BY client_id, route, b.i
			) s GROUP BY client_id, route
		)
		SELECT t.client_id, t.route, t.requests, t.client_errors, t.server_errors, t.duration_ms, b.buckets, t.rate_limited, t.quota_refused
		FROM totals t JOIN buckets b USING (client_id, route)
		ORDER BY t.client_id, t.requests DESC, t.route`, q.Since, q.Until, q.ClientID, q.Route)
	if err != nil {
		return Report{}, fmt.Errorf("reading usage: %w", err)
	}
	for rows.Next() {
		var id string
		var ru RouteUsage
		var durationMs float64
		var buckets []int64
		if err := rows.Scan(&id, &ru.Route, &ru.Requests, &ru.ClientErrors, &ru.ServerErrors, &durationMs, &buckets, &ru.RateLimited, &ru.QuotaRefused); err != nil {
			rows.Close()
			return Report{}, fmt.Errorf("reading usage: %w", err)
		}
		if ru.Requests > 0 {
			ru.MeanMs = round(durationMs / float64(ru.Requests))
		}
		ru.P50Ms, ru.P95Ms, ru.P99Ms = Quantile(0.5, buckets), Quantile(0.95, buckets), Quantile(0.99, buckets)
		c := client(id)
		c.Requests += ru.Requests
		c.Routes = append(c.Routes, ru)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Report{}, fmt.Errorf("reading usage: %w", err)
	}
	if err := readKeyUsage(ctx, db, q, client); err != nil {
		return Report{}, err
	}
	if q.Route == "" {
		counts, err := jobstore.CountAccepted(ctx, db, q.Since, q.Until, q.ClientID)
		if err != nil {
			return Report{}, err
		}
		for _, jc := range counts {
			c := client(jc.ClientID)
			if c.Jobs[jc.Type] == nil {
				c.Jobs[jc.Type] = map[string]int64{}
			}
			c.Jobs[jc.Type][jc.Status] = jc.Count
		}
	}
	for _, c := range byClient {
		rep.Clients = append(rep.Clients, *c)
	}
	sortClients(rep.Clients)
	return rep, nil
}

// readKeyUsage adds each client's requests per API key to its report.
func readKeyUsage(ctx context.Context, db *pgxpool.Pool, q Query, client func(string) *ClientUsage) error {
	rows, err := db.Query(ctx, `
		SELECT client_id, api_key_id, sum(requests)::bigint FROM usage_minutes
		WHERE minute >= $1 AND minute < $2 AND ($3 = '' OR client_id = $3) AND ($4 = '' OR route = $4) AND api_key_id <> ''
		GROUP BY client_id, api_key_id`, q.Since, q.Until, q.ClientID, q.Route)
	if err != nil {
		return fmt.Errorf("reading usage by API key: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, keyID string
		var n int64
		if err := rows.Scan(&id, &keyID, &n); err != nil {
			return fmt.Errorf("reading usage by API key: %w", err)
		}
		c := client(id)
		if c.APIKeys == nil {
			c.APIKeys = map[string]int64{}
		}
		c.APIKeys[keyID] = n
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading usage by API key: %w", err)
	}
	return nil
}

// Quantile estimates the q-quantile (0 < q < 1) in milliseconds from
// counts per bucket of Buckets, interpolating linearly inside the bucket
// as Prometheus's histogram_quantile does; requests slower than the last
// bound count as that bound. It returns 0 for no requests.
func Quantile(q float64, buckets []int64) float64 {
	var total int64
	for _, n := range buckets {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen int64
	for i, n := range buckets {
		if n == 0 || float64(seen+n) < rank {
			seen += n
			continue
		}
		if i >= len(Buckets) {
			return Buckets[len(Buckets)-1]
		}
		lower := 0.0
		if i > 0 {
			lower = Buckets[i-1]
		}
		return round(lower + (Buckets[i]-lower)*(rank-float64(seen))/float64(n))
	}
	return Buckets[len(Buckets)-1]
}

func round(v float64) float64 { return math.Round(v*100) / 100 }

func sortClients(cs []ClientUsage) {
	slices.SortFunc(cs, func(a, b ClientUsage) int {
		if a.Requests != b.Requests {
			return cmp.Compare(b.Requests, a.Requests)
		}
		return cmp.Compare(a.ClientID, b.ClientID)
	})
}

// Point is the requests of one step of a Series, by outcome, with their
// latency percentiles.
type Point struct {
	At           time.Time `json:"at"`
	Requests     int64     `json:"requests"`
	ClientErrors int64     `json:"client_errors"`
	ServerErrors int64     `json:"server_errors"`
	RateLimited  int64     `json:"rate_limited"`
	QuotaRefused int64     `json:"quota_refused"`
	P50Ms        float64   `json:"p50_ms"`
	P95Ms        float64   `json:"p95_ms"`
}

// MaxSeriesPoints bounds the points of one Series.
const MaxSeriesPoints = 1000

// Series is usage over time: one point per step from q.Since (steps with
// no request are zero), the minutes of each step added up. step is a
// whole number of minutes.
func Series(ctx context.Context, db *pgxpool.Pool, q Query, step time.Duration) ([]Point, error) {
	switch {
	case !q.Until.After(q.Since):
		return nil, errors.New("until must be after since")
	case step < time.Minute || step%time.Minute != 0:
		return nil, fmt.Errorf("step %s must be a whole number of minutes", step)
	case q.Until.Sub(q.Since)/step >= MaxSeriesPoints:
		return nil, fmt.Errorf("%s in steps of %s is more than %d points", q.Until.Sub(q.Since), step, MaxSeriesPoints)
	}
	since := q.Since.UTC().Truncate(time.Minute)
	rows, err := db.Query(ctx, `
		WITH picked AS (
			SELECT date_bin($5::interval, minute, $1) AS t, requests, client_errors, server_errors, rate_limited, quota_refused, latency_buckets
			FROM usage_minutes
			WHERE minute >= $1 AND minute < $2 AND ($3 = '' OR client_id = $3) AND ($4 = '' OR route = $4)
		), totals AS (
			SELECT t, sum(requests)::bigint AS requests, sum(client_errors)::bigint AS client_errors,
				sum(server_errors)::bigint AS server_errors, sum(rate_limited)::bigint AS rate_limited,
				sum(quota_refused)::bigint AS quota_refused
			FROM picked GROUP BY t
		), buckets AS (
			SELECT t, array_agg(n ORDER BY i) AS buckets FROM (
				SELECT t, b.i, sum(b.n)::bigint AS n
				FROM picked, unnest(latency_buckets) WITH ORDINALITY AS b(n, i)
				GROUP BY t, b.i
			) s GROUP BY t
		)
		SELECT t, requests, client_errors, server_errors, rate_limited, quota_refused, buckets
		FROM totals JOIN buckets USING (t) ORDER BY t`, since, q.Until, q.ClientID, q.Route, step)
	if err != nil {
		return nil, fmt.Errorf("reading the usage series: %w", err)
	}
	byStep := map[time.Time]Point{}
	for rows.Next() {
		var p Point
		var buckets []int64
		if err := rows.Scan(&p.At, &p.Requests, &p.ClientErrors, &p.ServerErrors, &p.RateLimited, &p.QuotaRefused, &buckets); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading the usage series: %w", err)
		}
		p.At = p.At.UTC()
		p.P50Ms, p.P95Ms = Quantile(0.5, buckets), Quantile(0.95, buckets)
		byStep[p.At] = p
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the usage series: %w", err)
	}
	var out []Point
	for at := since; at.Before(q.Until); at = at.Add(step) {
		p, ok := byStep[at]
		if !ok {
			p = Point{At: at}
		}
		out = append(out, p)
	}
	return out, nil
}
