package httpserver

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HTTPMetrics counts and times the requests of the APIs built with it
// (WithMetrics). Labels stay bounded: the route is the matched route's
// pattern ("unmatched" for none), the method one of the standard ones or
// "OTHER", the status a number.
type HTTPMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
	// connsRefused counts connections a listener closed on arrival
	// (ConnLimits.PerPeer).
	connsRefused prometheus.Counter
	// series holds each (route, method, status)'s counter and histogram
	// once looked up, so that a request costs a map read instead of two
	// label lookups (hashing every label value) in the vectors. Its keys
	// are bounded as the labels are.
	series sync.Map // seriesKey -> *httpSeries
}

type seriesKey struct {
	route, method string
	status        int
}

type httpSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// NewHTTPMetrics registers the HTTP metrics with reg (when not nil).
func NewHTTPMetrics(reg prometheus.Registerer) *HTTPMetrics {
	m := &HTTPMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_http_requests_total",
			Help: "HTTP requests answered, by route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchyard_http_request_duration_seconds",
			Help:    "Time from the request's arrival to its answer, by route pattern and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchyard_http_requests_in_flight",
			Help: "HTTP requests being served now.",
		}),
		connsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_http_connections_refused_total",
			Help: "Connections closed on arrival because their address already had its most open (the service's *_MAX_CONNS_PER_ADDR).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.inFlight, m.connsRefused)
	}
	return m
}

// ConnectionRefused counts a connection closed on arrival for its
// address's limit (ConnLimits.Refused).
func (m *HTTPMetrics) ConnectionRefused() { m.connsRefused.Inc() }

func (m *HTTPMetrics) observe(route, method string, status int, took time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	method = metricMethod(method)
	key := seriesKey{route, method, status}
	v, ok := m.series.Load(key)
	if !ok {
		v, _ = m.series.LoadOrStore(key, &httpSeries{
			requests: m.requests.WithLabelValues(route, method, strconv.Itoa(status)),
			duration: m.duration.WithLabelValues(route, method),
		})
	}
	ser := v.(*httpSeries) //nolint:forcetypeassert // only *httpSeries is stored
	ser.requests.Inc()
	ser.duration.Observe(took.Seconds())
}

func metricMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// Option changes what NewEcho builds.
type Option func(*options)

type options struct {
	metrics   *HTTPMetrics
	observers []RequestObserver
}

// RequestObserver is told about every answered request (WithObserver):
// its method, its route pattern ("" when none matched), the status sent
// and how long it took. ctx is the request's (who called is in it).
type RequestObserver interface {
	ObserveRequest(ctx context.Context, method, route string, status int, took time.Duration)
}

// WithObserver tells o about every request.
func WithObserver(o RequestObserver) Option {
	return func(opts *options) { opts.observers = append(opts.observers, o) }
}

// WithMetrics counts and times every request in m.
func WithMetrics(m *HTTPMetrics) Option {
	return func(o *options) { o.metrics = m }
}
