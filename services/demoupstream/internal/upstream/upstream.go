// Package upstream is the demo upstream: an HTTP service with idempotent
// webhook deliveries, an echo endpoint, and knobs for latency and failures
// that tests, `task dev` and the k6 scripts turn at run time.
//
//	POST /hooks        record a delivery; a repeated Idempotency-Key is
//	                   answered with the first result and not counted again
//	GET  /hooks/stats  {"deliveries": n, "unique": n}
//	ANY  /echo/...     describe the request as JSON; per-request knobs in
//	                   the query: delay=50ms, status=503, max_age=30
//	GET  /control      the knobs and counters (requests, in flight, most
//	                   in flight at once)
//	PUT  /control      change knobs: {"latency":"20ms","failure_rate":0.1,
//	                   "down":true,"reject":true}; omitted fields keep
//	                   their value
//	POST /control/reset zero the counters
//	GET  /healthz
//
// Latency, failure rate and down apply to /hooks and /echo; reject makes
// /hooks answer 422 (a permanent failure for the worker, so webhook jobs
// are dead-lettered at once: a dead-letter drill). Start-up
// values come from SWITCHYARD_UPSTREAM_LATENCY and
// SWITCHYARD_UPSTREAM_FAILURE_RATE (0..1: that share is answered 503).
package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/switchyard/switchyard/libs/clock"
	"github.com/switchyard/switchyard/libs/httpserver"
)

// Config is the demo upstream's configuration.
type Config struct {
	Addr        string        `conf:"default:127.0.0.1:8090,env:SWITCHYARD_UPSTREAM_ADDR,help:listen address"`
	Latency     time.Duration `conf:"default:0s,env:SWITCHYARD_UPSTREAM_LATENCY,help:delay added to every delivery"`
	FailureRate float64       `conf:"default:0,env:SWITCHYARD_UPSTREAM_FAILURE_RATE,help:share of deliveries answered 503 (0..1)"`
}

// Receiver serves the demo endpoints.
type Receiver struct {
	mu         sync.Mutex
	knobs      Knobs
	counters   Counters
	deliveries int
	seen       map[string]json.RawMessage
}

// Knobs are the faults the upstream injects.
type Knobs struct {
	// Latency delays every answer.
	Latency Duration `json:"latency"`
	// FailureRate is the share of requests answered 503 (0..1).
	FailureRate float64 `json:"failure_rate"`
	// Down answers every request 503 at once.
	Down bool `json:"down"`
	// Reject answers every webhook delivery 422 (permanent for senders).
	Reject bool `json:"reject"`
}

// Counters count the requests to /hooks and /echo.
type Counters struct {
	Requests    int64 `json:"requests"`
	InFlight    int64 `json:"in_flight"`
	MaxInFlight int64 `json:"max_in_flight"`
}

// Control is what GET /control reports.
type Control struct {
	Knobs
	Counters Counters `json:"counters"`
}

// Duration is a time.Duration written as "250ms" in JSON.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"250ms\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a non-negative duration such as 250ms", s)
	}
	*d = Duration(v)
	return nil
}

// NewReceiver returns a Receiver with cfg's knobs.
func NewReceiver(cfg Config) *Receiver {
	return &Receiver{knobs: Knobs{Latency: Duration(cfg.Latency), FailureRate: cfg.FailureRate}, seen: map[string]json.RawMessage{}}
}

// Handler returns the HTTP endpoints.
func (r *Receiver) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /hooks", r.faulty(r.deliver))
	mux.HandleFunc("GET /hooks/stats", r.stats)
	mux.Handle("/echo/", r.faulty(echoRequest))
	mux.HandleFunc("GET /control", r.control)
	mux.HandleFunc("PUT /control", r.setControl)
	mux.HandleFunc("POST /control/reset", r.resetCounters)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	return mux
}

// faulty counts requests and applies the knobs before next.
func (r *Receiver) faulty(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		k := r.knobs
		r.counters.Requests++
		r.counters.InFlight++
		r.counters.MaxInFlight = max(r.counters.MaxInFlight, r.counters.InFlight)
		r.mu.Unlock()
		defer func() {
			r.mu.Lock()
			r.counters.InFlight--
			r.mu.Unlock()
		}()
		if k.Down {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "upstream is down (PUT /control)"})
			return
		}
		if !clock.Sleep(req.Context(), time.Duration(k.Latency)) {
			return
		}
		if k.FailureRate > 0 && rand.Float64() < k.FailureRate { //nolint:gosec // failure injection needs no cryptographic randomness
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "injected failure"})
			return
		}
		next(w, req)
	})
}

// echoRequest describes the request. Query knobs: delay (a duration),
// status (the status to answer) and max_age (seconds, sent as
// Cache-Control: max-age).
func echoRequest(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	if d, err := time.ParseDuration(q.Get("delay")); err == nil && !clock.Sleep(req.Context(), min(d, time.Minute)) {
		return
	}
	status := http.StatusOK
	if s, err := strconv.Atoi(q.Get("status")); err == nil && s >= 200 && s <= 599 {
		status = s
	}
	if a, err := strconv.Atoi(q.Get("max_age")); err == nil && a >= 0 {
		w.Header().Set("Cache-Control", "max-age="+strconv.Itoa(a))
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unreadable body"})
		return
	}
	headers := map[string]string{}
	for _, h := range []string{"Accept", "Accept-Language", "Content-Type", "X-Request-Id", "X-Switchyard-Client-Id", "X-Switchyard-Scopes", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Traceparent", "Authorization"} {
		if v := req.Header.Get(h); v != "" {
			headers[h] = v
		}
	}
	writeJSON(w, status, map[string]any{
		"method": req.Method, "path": req.URL.Path, "query": req.URL.RawQuery, "headers": headers,
		"body_bytes": len(body), "served_at": time.Now().UTC().Format(time.RFC3339Nano),
	})
}

func (r *Receiver) control(w http.ResponseWriter, _ *http.Request) {
	r.mu.Lock()
	c := Control{Knobs: r.knobs, Counters: r.counters}
	r.mu.Unlock()
	writeJSON(w, http.StatusOK, c)
}

func (r *Receiver) setControl(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	k := r.knobs
	r.mu.Unlock()
	dec := json.NewDecoder(io.LimitReader(req.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&k); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "knobs: " + err.Error()})
		return
	}
	if k.FailureRate < 0 || k.FailureRate > 1 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "failure_rate must be between 0 and 1"})
		return
	}
	r.mu.Lock()
	r.knobs = k
	r.mu.Unlock()
	r.control(w, req)
}

func (r *Receiver) resetCounters(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.counters = Counters{InFlight: r.counters.InFlight}
	r.mu.Unlock()
	r.control(w, req)
}

func (r *Receiver) deliver(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unreadable body"})
		return
	}
	r.mu.Lock()
	reject := r.knobs.Reject
	r.mu.Unlock()
	if reject {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": "delivery rejected (the demo upstream's reject knob is on)"})
		return
	}
	key := req.Header.Get("Idempotency-Key")
	sum := sha256.Sum256(body)
	result, _ := json.Marshal(map[string]any{"received_bytes": len(body), "sha256": hex.EncodeToString(sum[:])})

	r.mu.Lock()
	r.deliveries++
	if prev, ok := r.seen[key]; ok && key != "" {
		r.mu.Unlock()
		w.Header().Set("Idempotent-Replayed", "true")
		writeRaw(w, http.StatusOK, prev)
		return
	}
	if key != "" {
		r.seen[key] = result
	}
	r.mu.Unlock()
	writeRaw(w, http.StatusOK, result)
}

// Stats is what GET /hooks/stats reports.
type Stats struct {
	Deliveries int `json:"deliveries"`
	Unique     int `json:"unique"`
}

func (r *Receiver) stats(w http.ResponseWriter, _ *http.Request) {
	r.mu.Lock()
	s := Stats{Deliveries: r.deliveries, Unique: len(r.seen)}
	r.mu.Unlock()
	writeJSON(w, http.StatusOK, s)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	writeRaw(w, code, b)
}

func writeRaw(w http.ResponseWriter, code int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// Run serves until ctx ends.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	if cfg.FailureRate < 0 || cfg.FailureRate > 1 {
		return fmt.Errorf("failure rate %v must be between 0 and 1", cfg.FailureRate)
	}
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Addr, err)
	}
	logger.Info("demo upstream listening", "addr", l.Addr().String(), "latency", cfg.Latency, "failure_rate", cfg.FailureRate)
	return httpserver.Serve(ctx, httpserver.NewServer(NewReceiver(cfg).Handler(), logger), l, 5*time.Second)
}
