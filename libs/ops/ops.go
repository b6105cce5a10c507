// Package ops serves a process's operational endpoints on a listener of
// their own, apart from any public API: /healthz (the process is alive),
// /readyz (every dependency check passes, and the process is not draining;
// degraded checks are reported without failing it), /metrics (Prometheus)
// /loglevel (GET the process's log level, PUT a new one: debug, info,
// warn or error, as the body or ?level=) and /debug/pprof/ (Go's CPU,
// allocation, heap, goroutine and execution-trace profiles, for
// `go tool pprof`).
//
// The ops listener has no authentication of its own and is meant for a
// network only monitoring reaches. Changing anything (PUT /loglevel) and
// profiling (which costs CPU and shows the process's insides) is allowed
// from a loopback peer (kubectl port-forward, docker exec), or with the
// admin token (SetAdminToken) as a Bearer token; anything else is 403.
package ops

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/logging"
	"github.com/switchyard/switchyard/libs/netrules"
	"github.com/switchyard/switchyard/libs/secrets"
)

// CheckFunc reports whether a dependency is reachable.
type CheckFunc func(ctx context.Context) error

// Server is the ops listener.
type Server struct {
	logger   *slog.Logger
	gatherer prometheus.Gatherer

	mu       sync.Mutex
	checks   map[string]CheckFunc
	degraded map[string]bool
	level    *slog.LevelVar
	draining atomic.Bool
	// adminToken, when set, lets a remote peer change settings.
	adminToken string
}

// SetAdminToken lets a peer that is not on loopback change settings when
// it presents token as "Authorization: Bearer <token>"; empty: only
// loopback peers may.
func (s *Server) SetAdminToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.adminToken = token
}

// mayChange reports whether r may change the process's settings.
func (s *Server) mayChange(r *http.Request) bool {
	if netrules.Peer(r).IsLoopback() {
		return true
	}
	s.mu.Lock()
	token := s.adminToken
	s.mu.Unlock()
	scheme, presented, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	return token != "" && strings.EqualFold(scheme, "Bearer") &&
		subtle.ConstantTimeCompare([]byte(strings.TrimSpace(presented)), []byte(token)) == 1
}

// New returns an ops server exposing metrics from gatherer
// (prometheus.DefaultGatherer when nil).
func New(logger *slog.Logger, gatherer prometheus.Gatherer) *Server {
	if gatherer == nil {
		gatherer = prometheus.DefaultGatherer
	}
	return &Server{logger: logger, gatherer: gatherer, checks: map[string]CheckFunc{}, degraded: map[string]bool{}}
}

// AddCheck registers a readiness check.
func (s *Server) AddCheck(name string, fn CheckFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = fn
}

// AddDegradedCheck registers a check whose failure degrades the process
// without making it unready: /readyz still answers 200, with status
// "degraded" and the check's error. For dependencies the process can work
// without for a while (Vault, while cached secrets last): failing
// readiness would take every replica out of service at once.
func (s *Server) AddDegradedCheck(name string, fn CheckFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = fn
	s.degraded[name] = true
}

// AddVault reports Vault through c (nothing when c is nil, Vault not
// configured) as a degraded readiness check, and exports its login,
// renewal and lease state on /metrics.
func (s *Server) AddVault(c *secrets.Client) {
	if c == nil {
		return
	}
	s.AddDegradedCheck("vault", c.Ready)
	s.Register(c)
}

// Register exports collector on /metrics: in the registry the server
// gathers from when it is one, else in Prometheus's default registry.
// Registering the same collector twice is not an error.
func (s *Server) Register(collector prometheus.Collector) {
	reg := prometheus.DefaultRegisterer
	if r, ok := s.gatherer.(prometheus.Registerer); ok {
		reg = r
	}
	if err := reg.Register(collector); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			s.logger.Error("registering metrics", "error", err)
		}
	}
}

// Drain makes /readyz fail from now on, so load balancers stop sending
// work while in-flight work finishes.
func (s *Server) Drain() { s.draining.Store(true) }

// Handler returns the ops endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /loglevel", s.getLevel)
	mux.HandleFunc("PUT /loglevel", s.setLevel)
	for path, h := range map[string]http.HandlerFunc{
		"GET /debug/pprof/": pprof.Index, "GET /debug/pprof/cmdline": pprof.Cmdline, "GET /debug/pprof/profile": pprof.Profile,
		"GET /debug/pprof/symbol": pprof.Symbol, "GET /debug/pprof/trace": pprof.Trace,
	} {
		mux.Handle(path, s.privileged("profiling", h))
	}
	return mux
}

// privileged serves h to peers that may change settings (mayChange) and
// answers 403 to others.
func (s *Server) privileged(what string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.mayChange(r) {
			s.logger.Warn("refused "+what+" to a remote peer without the ops admin token", "peer", r.RemoteAddr, "path", r.URL.Path)
			writeJSON(w, http.StatusForbidden, map[string]string{"error": what + " needs a loopback peer or the ops admin token (SWITCHYARD_OPS_TOKEN) as a Bearer token"})
			return
		}
		h(w, r)
	}
}

// SetLevelVar makes /loglevel read and change lv (by default the
// process's, logging.ProcessLevel).
func (s *Server) SetLevelVar(lv *slog.LevelVar) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.level = lv
}

func (s *Server) levelVar() *slog.LevelVar {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.level != nil {
		return s.level
	}
	return logging.ProcessLevel()
}

func (s *Server) getLevel(w http.ResponseWriter, _ *http.Request) {
	lv := s.levelVar()
	if lv == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "this process has no adjustable log level"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"level": strings.ToLower(lv.Level().String())})
}

func (s *Server) setLevel(w http.ResponseWriter, r *http.Request) {
	if !s.mayChange(r) {
		s.logger.Warn("refused a log level change from a remote peer without the ops admin token", "peer", r.RemoteAddr)
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "changing the log level needs a loopback peer or the ops admin token (SWITCHYARD_OPS_TOKEN) as a Bearer token"})
		return
	}
	lv := s.levelVar()
	if lv == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "this process has no adjustable log level"})
		return
	}
	text := r.URL.Query().Get("level")
	if text == "" {
		body, err := io.ReadAll(io.LimitReader(r.Body, 64))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "reading the body: " + err.Error()})
			return
		}
		text = strings.Trim(strings.TrimSpace(string(body)), `"`)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(text)); err != nil || text == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("level %q is not one of debug, info, warn, error", text)})
		return
	}
	old := lv.Level()
	lv.Set(level)
	s.logger.Warn("log level changed", "from", strings.ToLower(old.String()), "to", strings.ToLower(level.String()))
	writeJSON(w, http.StatusOK, map[string]string{"level": strings.ToLower(level.String())})
}

type checkResult struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	checks := make(map[string]CheckFunc, len(s.checks))
	for k, v := range s.checks {
		checks[k] = v
	}
	soft := make(map[string]bool, len(s.degraded))
	for k, v := range s.degraded {
		soft[k] = v
	}
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	results := make(map[string]checkResult, len(checks))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, fn := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := checkResult{Status: "ok"}
			if err := fn(ctx); err != nil {
				res = checkResult{Status: "failing", Error: err.Error()}
				if soft[name] {
					res.Status = "degraded"
				}
			}
			mu.Lock()
			results[name] = res
			mu.Unlock()
		}()
	}
	wg.Wait()

	status, code := "ready", http.StatusOK
	names := make([]string, 0, len(results))
	for name, res := range results {
		names = append(names, name)
		if res.Status == "degraded" && code == http.StatusOK {
			status = "degraded"
		}
	}
	for _, res := range results {
		if res.Status == "failing" {
			status, code = "not_ready", http.StatusServiceUnavailable
		}
	}
	sort.Strings(names)
	if s.draining.Load() {
		status, code = "draining", http.StatusServiceUnavailable
	}
	switch status {
	case "ready":
	case "degraded":
		s.logger.Warn("readiness degraded", "status", status, "checks", results)
	default:
		s.logger.Warn("not ready", "status", status, "checks", results)
	}
	writeJSON(w, code, map[string]any{"status": status, "checks": results})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Run serves the ops endpoints on addr until ctx ends.
func (s *Server) Run(ctx context.Context, l net.Listener) error {
	return httpserver.Serve(ctx, httpserver.NewServer(s.Handler(), s.logger), l, 5*time.Second)
}

// Serve runs the ops listener on l alongside work. When ctx ends, /readyz
// starts failing at once (draining) while work winds down; the listener
// stays up until work has returned, so probes see the whole drain.
func (s *Server) Serve(ctx context.Context, l net.Listener, work func(ctx context.Context) error) error {
	opsCtx, stopOps := context.WithCancel(context.WithoutCancel(ctx))
	defer stopOps()
	opsErr := make(chan error, 1)
	go func() { opsErr <- s.Run(opsCtx, l) }()
	stopDrain := context.AfterFunc(ctx, s.Drain)
	defer stopDrain()

	workErr := work(ctx)
	stopOps()
	if err := <-opsErr; err != nil && workErr == nil {
		return err
	}
	return workErr
}
