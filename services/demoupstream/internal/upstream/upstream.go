// Package upstream is the demo upstream: an HTTP receiver with
// idempotent webhook deliveries and knobs for latency and failures.
//
//	POST /hooks       record a delivery; a repeated Idempotency-Key is
//	                  answered with the first result and not counted again
//	GET  /hooks/stats {"deliveries": n, "unique": n}
//	GET  /healthz
//
// Knobs (environment): SWITCHYARD_UPSTREAM_LATENCY adds a fixed delay,
// SWITCHYARD_UPSTREAM_FAILURE_RATE (0..1) answers that share with 503.
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
	"sync"
	"time"

	"github.com/switchyard/switchyard/libs/httpserver"
)

// Config is the demo upstream's configuration.
type Config struct {
	Addr        string        `conf:"default:127.0.0.1:8090,env:SWITCHYARD_UPSTREAM_ADDR,help:listen address"`
	Latency     time.Duration `conf:"default:0s,env:SWITCHYARD_UPSTREAM_LATENCY,help:delay added to every delivery"`
	FailureRate float64       `conf:"default:0,env:SWITCHYARD_UPSTREAM_FAILURE_RATE,help:share of deliveries answered 503 (0..1)"`
}

// Receiver records deliveries.
type Receiver struct {
	cfg Config

	mu         sync.Mutex
	deliveries int
	seen       map[string]json.RawMessage
}

// NewReceiver returns a Receiver with cfg's knobs.
func NewReceiver(cfg Config) *Receiver {
	return &Receiver{cfg: cfg, seen: map[string]json.RawMessage{}}
}

// Handler returns the HTTP endpoints.
func (r *Receiver) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hooks", r.deliver)
	mux.HandleFunc("GET /hooks/stats", r.stats)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	return mux
}

func (r *Receiver) deliver(w http.ResponseWriter, req *http.Request) {
	if r.cfg.Latency > 0 {
		select {
		case <-time.After(r.cfg.Latency):
		case <-req.Context().Done():
			return
		}
	}
	if r.cfg.FailureRate > 0 && rand.Float64() < r.cfg.FailureRate { //nolint:gosec // failure injection needs no cryptographic randomness
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "injected failure"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unreadable body"})
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
