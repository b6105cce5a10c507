package ratelimit

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Failover decides with Primary (Redis) and, while Primary fails, with
// Fallback (Local) for every request, trying Primary again at most every
// RetryEvery so that a dead Redis costs one failed call per interval, not
// one per request. While it falls back, limits hold per process, not
// across replicas: Ready reports it, and the metrics say so.
type Failover struct {
	primary, fallback Limiter
	retryEvery        time.Duration
	timeout           time.Duration
	logger            *slog.Logger

	down     atomic.Bool
	retryAt  atomic.Int64 // unix ns
	mu       sync.Mutex
	lastErr  error
	up       prometheus.Gauge
	decision *prometheus.CounterVec
	failures prometheus.Counter
}

// FailoverConfig configures NewFailover.
type FailoverConfig struct {
	Primary, Fallback Limiter
	// RetryEvery is how long Primary is left alone after a failure
	// (default 1s).
	RetryEvery time.Duration
	// Timeout bounds one Primary call (default 50ms): a slow Redis must
	// not slow every request down.
	Timeout    time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// NewFailover returns a Failover; its metrics are registered with
// cfg.Registerer when it is not nil.
func NewFailover(cfg FailoverConfig) *Failover {
	f := &Failover{
		primary: cfg.Primary, fallback: cfg.Fallback, retryEvery: cfg.RetryEvery, timeout: cfg.Timeout, logger: cfg.Logger,
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchyard_ratelimit_shared_up",
			Help: "1 while rate limits are decided in Redis (shared by replicas), 0 while each process limits on its own.",
		}),
		decision: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_ratelimit_decisions_total",
			Help: "Rate limit decisions by backend (redis, local) and outcome (allowed, limited).",
		}, []string{"backend", "outcome"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_ratelimit_shared_failures_total",
			Help: "Calls to Redis that failed and fell back to the process's own limits.",
		}),
	}
	if f.retryEvery <= 0 {
		f.retryEvery = time.Second
	}
	if f.timeout <= 0 {
		f.timeout = 50 * time.Millisecond
	}
	if f.logger == nil {
		f.logger = slog.Default()
	}
	f.up.Set(1)
	for _, b := range []string{"redis", "local"} {
		for _, o := range []string{"allowed", "limited"} {
			f.decision.WithLabelValues(b, o)
		}
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(f.up, f.decision, f.failures)
	}
	return f
}

// Allow implements Limiter.
func (f *Failover) Allow(ctx context.Context, checks []Check) (Decision, error) {
	if !f.down.Load() || time.Now().UnixNano() >= f.retryAt.Load() {
		pctx, cancel := context.WithTimeout(ctx, f.timeout)
		d, err := f.primary.Allow(pctx, checks)
		cancel()
		if err == nil {
			if f.down.CompareAndSwap(true, false) {
				f.up.Set(1)
				f.logger.Info("rate limits are shared again (Redis answers)")
			}
			f.count("redis", d)
			return d, nil
		}
		if errors.Is(err, ErrNoChecks) || ctx.Err() != nil {
			return Decision{}, err
		}
		f.failures.Inc()
		f.retryAt.Store(time.Now().Add(f.retryEvery).UnixNano())
		f.mu.Lock()
		f.lastErr = err
		f.mu.Unlock()
		if f.down.CompareAndSwap(false, true) {
			f.up.Set(0)
			f.logger.Warn("rate limits fall back to this process's own (Redis fails)", "error", err)
		}
	}
	d, err := f.fallback.Allow(ctx, checks)
	if err == nil {
		f.count("local", d)
	}
	return d, err
}

func (f *Failover) count(backend string, d Decision) {
	outcome := "allowed"
	if !d.Allowed {
		outcome = "limited"
	}
	f.decision.WithLabelValues(backend, outcome).Inc()
}

// Ready reports an error while limits are decided locally, for a degraded
// readiness check.
func (f *Failover) Ready(context.Context) error {
	if !f.down.Load() {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return errors.Join(errors.New("rate limits are per process: Redis fails"), f.lastErr)
}
