package syncroute

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/switchyard/switchyard/services/gateway/internal/respcache"
)

// Metrics are the sync routes' Prometheus series, labelled by route.
type Metrics struct {
	reg             prometheus.Registerer
	requests        *prometheus.CounterVec
	attempts        *prometheus.HistogramVec
	retries         *prometheus.CounterVec
	budgetExhausted *prometheus.CounterVec
	inFlight        *prometheus.GaugeVec
	transitions     *prometheus.CounterVec
	cacheLookups    *prometheus.CounterVec
}

// Request outcomes (the outcome label of switchyard_sync_requests_total).
const (
	outcomeOK         = "ok"          // the target answered (2xx-4xx)
	outcomeCacheHit   = "cache_hit"   // answered from the cache
	outcomeRejected   = "rejected"    // a handler refused the request (4xx problem)
	outcomeFailed     = "failed"      // the target answered 5xx or a handler failed
	outcomeTimeout    = "timeout"     // the route's timeout passed
	outcomeUnreach    = "unreachable" // no connection to the upstream
	outcomeOpen       = "open"        // the breaker refused the call
	outcomeDegraded   = "degraded"    // accepted as a job while the breaker was open
	outcomeOverloaded = "overloaded"  // the bulkhead was full
	outcomeCanceled   = "canceled"    // the client went away
	outcomeTooLarge   = "too_large"   // request or upstream response over its limit
	outcomeTooDeep    = "too_deep"    // JSON request body nested deeper than the route allows
)

// NewMetrics registers the sync route series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_sync_requests_total", Help: "Sync route requests by outcome.",
		}, []string{"route", "outcome"}),
		attempts: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "switchyard_sync_target_duration_seconds", Help: "Duration of each call to a sync route's target (retries count separately).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_sync_retries_total", Help: "Retries made by sync routes.",
		}, []string{"route"}),
		budgetExhausted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_sync_retry_budget_exhausted_total", Help: "Retries not made because the route's retry budget was spent.",
		}, []string{"route"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchyard_sync_in_flight", Help: "Calls holding a slot of the route's bulkhead.",
		}, []string{"route"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_breaker_transitions_total", Help: "Circuit breaker state changes by the state entered.",
		}, []string{"route", "to"}),
		cacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_cache_requests_total", Help: "Response cache lookups: hit, miss, coalesced (joined a miss in flight) or bypass (client no-cache/no-store).",
		}, []string{"route", "result"}),
	}
	reg.MustRegister(m.requests, m.attempts, m.retries, m.budgetExhausted, m.inFlight, m.transitions, m.cacheLookups)
	return m
}

// routeMetrics are one route's series, resolved once rather than looked
// up by label on every request.
type routeMetrics struct {
	outcomes        map[string]prometheus.Counter
	attempts        prometheus.Observer
	retries         prometheus.Counter
	budgetExhausted prometheus.Counter
	inFlight        prometheus.Gauge
	cache           map[string]prometheus.Counter
	transitions     *prometheus.CounterVec
}

var (
	allOutcomes     = []string{outcomeOK, outcomeCacheHit, outcomeRejected, outcomeFailed, outcomeTimeout, outcomeUnreach, outcomeOpen, outcomeDegraded, outcomeOverloaded, outcomeCanceled, outcomeTooLarge, outcomeTooDeep}
	allCacheResults = []string{"hit", "miss", "coalesced", "bypass"}
)

func (m *Metrics) forRoute(route string) *routeMetrics {
	rm := &routeMetrics{
		outcomes: map[string]prometheus.Counter{}, cache: map[string]prometheus.Counter{},
		attempts: m.attempts.WithLabelValues(route), retries: m.retries.WithLabelValues(route),
		budgetExhausted: m.budgetExhausted.WithLabelValues(route), inFlight: m.inFlight.WithLabelValues(route),
		transitions: m.transitions.MustCurryWith(prometheus.Labels{"route": route}),
	}
	for _, o := range allOutcomes {
		rm.outcomes[o] = m.requests.WithLabelValues(route, o)
	}
	for _, r := range allCacheResults {
		rm.cache[r] = m.cacheLookups.WithLabelValues(route, r)
	}
	return rm
}

// registerBreaker exports the state of one route's breaker: 0 closed,
// 1 half-open, 2 open (read at scrape time, so an open breaker whose
// interval has passed shows half-open).
func (m *Metrics) registerBreaker(route string, state func() gobreaker.State) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "switchyard_breaker_state", Help: "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
		ConstLabels: prometheus.Labels{"route": route},
	}, func() float64 {
		switch state() {
		case gobreaker.StateHalfOpen:
			return 1
		case gobreaker.StateOpen:
			return 2
		default:
			return 0
		}
	}))
}

// RegisterCache exports the response cache's size and evictions.
func (m *Metrics) RegisterCache(c *respcache.Cache) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchyard_cache_entries", Help: "Responses held by the response cache."},
			func() float64 { return float64(c.Stats().Entries) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchyard_cache_bytes", Help: "Bytes held by the response cache (bodies, headers, keys, bookkeeping)."},
			func() float64 { return float64(c.Stats().Bytes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchyard_cache_evictions_total", Help: "Responses evicted to keep the cache within its byte budget."},
			func() float64 { return float64(c.Stats().Evictions) }),
	)
}
