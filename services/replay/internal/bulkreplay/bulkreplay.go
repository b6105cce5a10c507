// Package bulkreplay runs bulk replay operations. Every replay service
// looks for running operations; one at a time holds each (a Postgres
// advisory lock on a connection of its own, so a killed service lets go at
// once) and replays its items at the operation's rate, stage by stage, as
// replayplan.Next decides. Each item is replayed in a transaction that
// also marks it done, so a service killed at any moment is resumed by the
// next one to take the operation without replaying an item twice.
package bulkreplay

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/time/rate"

	"github.com/switchyard/switchyard/libs/clock"
	"github.com/switchyard/switchyard/libs/replayplan"
	"github.com/switchyard/switchyard/services/replay/internal/deadletterstore"
)

// Config configures a Runner.
type Config struct {
	// ScanInterval is how often the runner looks for running operations
	// that no replay service holds (default 2 s).
	ScanInterval time.Duration
	// PollInterval is how often an operation waiting for its stage to
	// settle reads its progress again (default 1 s).
	PollInterval time.Duration
	// MaxConcurrent bounds the operations one runner replays at once; each
	// holds a database connection (default 4).
	MaxConcurrent int
	Logger        *slog.Logger
	// Registerer receives the metrics; nil: none.
	Registerer prometheus.Registerer
}

// Runner replays the items of running operations.
type Runner struct {
	store *deadletterstore.Store
	cfg   Config
	kick  chan struct{}

	mu      sync.Mutex
	running map[string]bool

	active   prometheus.Gauge
	items    *prometheus.CounterVec
	finished *prometheus.CounterVec
	errors   prometheus.Counter
}

// New returns a Runner on store.
func New(store *deadletterstore.Store, cfg Config) *Runner {
	if cfg.ScanInterval <= 0 {
		cfg.ScanInterval = 2 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f := promauto.With(cfg.Registerer)
	return &Runner{
		store: store, cfg: cfg, kick: make(chan struct{}, 1), running: map[string]bool{},
		active: f.NewGauge(prometheus.GaugeOpts{
			Name: "switchyard_replay_operations_active", Help: "Bulk replay operations this replay service is running.",
		}),
		items: f.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_replay_operation_items_total", Help: "Items of bulk replay operations processed, by state (replayed, deduplicated, skipped).",
		}, []string{"state"}),
		finished: f.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_replay_operations_finished_total", Help: "Bulk replay operations this service finished, by status (completed, stopped).",
		}, []string{"status"}),
		errors: f.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_replay_operation_errors_total", Help: "Errors while running bulk replay operations (each is retried).",
		}),
	}
}

// Kick makes the runner look for operations now (after one was created).
func (r *Runner) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run runs operations until ctx ends, then waits for the ones it started
// to stop (an item being replayed finishes or rolls back).
func (r *Runner) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(r.cfg.ScanInterval)
	defer t.Stop()
	for {
		r.scan(ctx, &wg)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.kick:
		}
	}
}

func (r *Runner) scan(ctx context.Context, wg *sync.WaitGroup) {
	ids, err := r.store.RunningOperations(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.errors.Inc()
			r.cfg.Logger.Warn("looking for running replay operations", "error", err)
		}
		return
	}
	for _, id := range ids {
		r.mu.Lock()
		busy, full := r.running[id], len(r.running) >= r.cfg.MaxConcurrent
		r.mu.Unlock()
		if busy {
			continue
		}
		if full {
			return
		}
		lock, ok, err := r.store.LockOperation(ctx, id)
		if err != nil {
			if ctx.Err() == nil {
				r.errors.Inc()
				r.cfg.Logger.Warn("claiming replay operation", "operation_id", id, "error", err)
			}
			return
		}
		if !ok {
			continue // another replay service runs it
		}
		r.mu.Lock()
		r.running[id] = true
		r.mu.Unlock()
		r.active.Inc()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				lock.Release()
				r.mu.Lock()
				delete(r.running, id)
				r.mu.Unlock()
				r.active.Dec()
			}()
			r.run(ctx, id, lock)
		}()
	}
}

// run drives one operation until it finishes, the lock is lost or ctx
// ends.
func (r *Runner) run(ctx context.Context, id string, lock *deadletterstore.OperationLock) {
	log := r.cfg.Logger.With("operation_id", id)
	var limiter *rate.Limiter
	// Failures in a row: the pause after one is full-jitter exponential,
	// from up to 1 s to up to 30 s.
	failures := 0
	failed := func(msg string, err error) bool {
		if ctx.Err() != nil {
			return false
		}
		r.errors.Inc()
		failures++
		backoff := clock.FullJitter(time.Second, 30*time.Second, failures)
		log.Warn(msg, "error", err, "retry_in", backoff)
		return clock.Sleep(ctx, backoff)
	}
	for ctx.Err() == nil {
		if err := lock.Alive(ctx); err != nil {
			if ctx.Err() == nil {
				r.errors.Inc()
				log.Warn("lost the connection that holds the operation; another replay service will resume it", "error", err)
			}
			return
		}
		op, err := r.store.GetOperation(ctx, id)
		if err != nil {
			if failed("reading replay operation", err) {
				continue
			}
			return
		}
		if op.Status != deadletterstore.OperationRunning {
			return
		}
		if limiter == nil || float64(limiter.Limit()) != op.RatePerS {
			limiter = rate.NewLimiter(rate.Limit(op.RatePerS), 1)
		}
		d := replayplan.Next(op.State(time.Now()))
		switch d.Action {
		case replayplan.Replay:
			// About a second of items per round, so that the guard and a
			// cancel are looked at between rounds.
			n := min(d.N, max(1, int(math.Ceil(op.RatePerS))))
			if err := r.replay(ctx, op, n, limiter); err != nil {
				if failed("replaying items", err) {
					continue
				}
				return
			}
		case replayplan.MarkStageDone:
			if err := r.store.MarkStageDone(ctx, id, op.Stage); err != nil {
				if failed("recording the end of a stage", err) {
					continue
				}
				return
			}
			log.Info("stage released; waiting for its replays to settle", "stage", op.Stage, "of", len(op.StageTargets),
				"in_flight", op.Progress.InFlight)
		case replayplan.Wait:
			if !clock.Sleep(ctx, r.cfg.PollInterval) {
				return
			}
		case replayplan.Advance:
			if err := r.store.AdvanceStage(ctx, id, op.Stage); err != nil {
				if failed("advancing to the next stage", err) {
					continue
				}
				return
			}
			log.Info("stage settled; releasing the next", "stage", op.Stage+1, "of", len(op.StageTargets),
				"succeeded", op.Progress.Succeeded, "failed_again", op.Progress.FailedAgain, "note", d.Reason)
		case replayplan.Complete, replayplan.Stop:
			status := deadletterstore.OperationCompleted
			if d.Action == replayplan.Stop {
				status = deadletterstore.OperationStopped
			}
			done, err := r.store.FinishOperation(ctx, id, status, d.Reason)
			if err != nil {
				if failed("finishing the operation", err) {
					continue
				}
				return
			}
			if done {
				r.finished.WithLabelValues(status).Inc()
				level := slog.LevelInfo
				if status == deadletterstore.OperationStopped {
					level = slog.LevelWarn
				}
				log.Log(ctx, level, "replay operation "+status, "reason", d.Reason, "replayed", op.Progress.Replayed,
					"deduplicated", op.Progress.Deduplicated, "skipped", op.Progress.Skipped, "succeeded", op.Progress.Succeeded,
					"failed_again", op.Progress.FailedAgain)
			}
			return
		}
		failures = 0
	}
}

// replay replays up to n items of op, each when the limiter allows.
func (r *Runner) replay(ctx context.Context, op deadletterstore.Operation, n int, limiter *rate.Limiter) error {
	for range n {
		if err := limiter.Wait(ctx); err != nil {
			return nil //nolint:nilerr // ctx ended: the caller stops
		}
		res, err := r.store.ReplayNext(ctx, op)
		if err != nil {
			return err
		}
		if res.Done {
			return nil
		}
		r.items.WithLabelValues(res.Item.State).Inc()
	}
	return nil
}
