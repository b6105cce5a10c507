package httpserver

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/libs/problem"
)

// Admission bounds how many requests a server works on at once. It sits
// in front of everything else (request id, access log, routing,
// authentication), so that a request beyond the limit costs only its
// parsing and a pre-built answer: 503 `overloaded` with Retry-After. A
// refusal made further in (after the token check, the payload's schema,
// the access-log line) costs the CPU that the admitted requests are then
// short of, so shedding there does not bring their latency back.
//
// Shed requests are counted (switchyard_http_requests_shed_total), not
// logged one by one: a warning says how many were shed, at most once per
// LogEvery.
type Admission struct {
	limit    int64
	inFlight atomic.Int64
	shed     prometheus.Counter
	body     []byte
	// The answer's header values, built once: net/http copies a
	// response's header when the status is written and never changes the
	// handler's values, so every shed request can name the same ones.
	contentType, noStore, retryAfter []string
	logger                           *slog.Logger
	logEvery                         time.Duration
	// lastLog is when the last warning was written (UnixNano); unlogged
	// counts the sheds since.
	lastLog  atomic.Int64
	unlogged atomic.Int64
}

// NewAdmission returns an Admission that serves at most limit requests at
// once and answers the rest 503 with Retry-After: retryAfter. Its counter
// is registered with reg when not nil.
func NewAdmission(limit int, retryAfter time.Duration, reg prometheus.Registerer, logger *slog.Logger) (*Admission, error) {
	if limit < 1 {
		return nil, fmt.Errorf("the in-flight limit %d must be at least 1", limit)
	}
	p := problem.Busy.Newf("the server is working on its limit of %d requests at once; retry after the Retry-After interval", limit)
	body, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("building the busy answer: %w", err)
	}
	retry := strconv.Itoa(max(1, int(retryAfter.Round(time.Second)/time.Second)))
	a := &Admission{
		limit: int64(limit), body: append(body, '\n'),
		contentType: []string{problem.ContentType}, noStore: []string{"no-store"}, retryAfter: []string{retry},
		logger:   logger,
		logEvery: 10 * time.Second,
		shed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_http_requests_shed_total",
			Help: "Requests answered 503 busy before any other work because the server was at its in-flight limit.",
		}),
	}
	if reg != nil {
		if err := reg.Register(a.shed); err != nil {
			return nil, fmt.Errorf("registering the admission metric: %w", err)
		}
	}
	return a, nil
}

// Shed is the counter of shed requests.
func (a *Admission) Shed() prometheus.Counter { return a.shed }

// InFlight reports how many requests are being served now.
func (a *Admission) InFlight() int { return int(a.inFlight.Load()) }

// Wrap returns next behind the limit.
func (a *Admission) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.inFlight.Add(1) > a.limit {
			a.inFlight.Add(-1)
			a.refuse(w)
			return
		}
		defer a.inFlight.Add(-1)
		next.ServeHTTP(w, r)
	})
}

func (a *Admission) refuse(w http.ResponseWriter) {
	a.shed.Inc()
	h := w.Header()
	h["Content-Type"], h["Cache-Control"], h["Retry-After"] = a.contentType, a.noStore, a.retryAfter
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write(a.body)
	a.unlogged.Add(1)
	now := time.Now().UnixNano()
	last := a.lastLog.Load()
	if time.Duration(now-last) >= a.logEvery && a.lastLog.CompareAndSwap(last, now) {
		a.logger.Warn("requests shed at the in-flight limit", "shed", a.unlogged.Swap(0), "limit", a.limit)
	}
}
