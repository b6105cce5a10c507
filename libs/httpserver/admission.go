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
//
// With WithShedDelay the answer to a shed request is held back for a
// while (HAProxy's tarpit, for requests beyond the limit). Over HTTP/1.1
// a connection carries one request at a time, so a client that sends
// again without honouring Retry-After gets at most one answer per delay
// on each of its connections: what the excess costs the CPU is then
// bounded by the connections open (themselves limited per address and
// in all), not by how fast it can be sent, and the admitted requests keep
// the CPU. A client that honours Retry-After loses nothing: it was going
// to wait longer than the delay anyway. Over HTTP/2 each stream waits on
// its own, so a connection gets up to its concurrent streams' answers per
// delay; excess that arrives on fresh connections is not slowed at all.
type Admission struct {
	limit    int64
	inFlight atomic.Int64
	shed     prometheus.Counter
	body     []byte
	// The answer's header values, built once: net/http copies a
	// response's header when the status is written and never changes the
	// handler's values, so every shed request can name the same ones.
	contentType, noStore, retryAfter []string
	// delay holds back each shed answer (0: none).
	delay    time.Duration
	logger   *slog.Logger
	logEvery time.Duration
	// lastLog is when the last warning was written (UnixNano); unlogged
	// counts the sheds since.
	lastLog  atomic.Int64
	unlogged atomic.Int64
}

// AdmissionOption changes an Admission's defaults.
type AdmissionOption func(*Admission) error

// WithShedDelay holds back each shed request's answer for d (see
// Admission); d must be shorter than the Retry-After interval, so that a
// client honouring it never waits for the delay.
func WithShedDelay(d time.Duration) AdmissionOption {
	return func(a *Admission) error {
		if d < 0 {
			return fmt.Errorf("the shed delay %s must not be negative", d)
		}
		a.delay = d
		return nil
	}
}

// NewAdmission returns an Admission that serves at most limit requests at
// once and answers the rest 503 with Retry-After: retryAfter. Its counter
// is registered with reg when not nil.
func NewAdmission(limit int, retryAfter time.Duration, reg prometheus.Registerer, logger *slog.Logger, opts ...AdmissionOption) (*Admission, error) {
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
	for _, opt := range opts {
		if err := opt(a); err != nil {
			return nil, err
		}
	}
	if a.delay >= retryAfter {
		return nil, fmt.Errorf("the shed delay %s must be shorter than Retry-After (%s)", a.delay, retryAfter)
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
			a.refuse(w, r)
			return
		}
		defer a.inFlight.Add(-1)
		next.ServeHTTP(w, r)
	})
}

func (a *Admission) refuse(w http.ResponseWriter, r *http.Request) {
	a.shed.Inc()
	if a.delay > 0 {
		// The request's context ends when its client goes away; the
		// answer is then written to nobody, and the connection closed.
		t := time.NewTimer(a.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
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
