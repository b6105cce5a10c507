package jobstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/libs/jobs"
)

// BatchConfig sizes a Batcher.
type BatchConfig struct {
	// Writers is how many statements may be in flight at once (each
	// holds one pool connection while it runs).
	Writers int
	// MaxBatch is the most submissions one statement carries.
	MaxBatch int
	// MaxQueue is the most submissions that may wait for a writer; one
	// more is refused at once with jobs.ErrOverloaded.
	MaxQueue int
	// MaxWait is the longest a submission may wait for a writer; one that
	// waited longer is refused with jobs.ErrOverloaded instead of being
	// written late (its client has likely given up, and the queue behind
	// it is what made it late).
	MaxWait time.Duration
	// Registerer, when set, receives the batcher's metrics.
	Registerer prometheus.Registerer
}

// DefaultBatchConfig is a Batcher for a pool of 32 connections.
var DefaultBatchConfig = BatchConfig{Writers: 8, MaxBatch: 64, MaxQueue: 1024, MaxWait: 250 * time.Millisecond}

// Validate checks that every size is positive.
func (c BatchConfig) Validate() error {
	if c.Writers < 1 || c.MaxBatch < 1 || c.MaxQueue < 1 || c.MaxWait <= 0 {
		return fmt.Errorf("accept batching needs at least one writer, a batch of at least 1, a queue of at least 1 and a positive wait (got %d, %d, %d, %s)",
			c.Writers, c.MaxBatch, c.MaxQueue, c.MaxWait)
	}
	return nil
}

// Batcher is a Store whose Accept shares statements and commits among
// concurrent submissions (group commit): a submission waits in a bounded
// queue until one of Writers writers is free; a free writer takes every
// submission waiting (up to MaxBatch) and accepts them all with one
// statement. Nothing waits for a timer: at low load each submission is
// written alone as soon as it arrives, and batches grow only while every
// writer is busy, which is when sharing a commit pays.
//
// The contract is Store.Accept's: Accept returns only after the job and
// its outbox message are committed, Idempotency-Keys keep their meaning
// within a batch (the first submission with a key creates the job, the
// others answer with it, or with jobs.ErrIdempotencyKeyReused), and a
// submission the database rejects fails alone. What the batcher cannot
// take in time it refuses with jobs.ErrOverloaded, so that admitted
// submissions keep their latency under overload.
//
// Run must be running for Accept to accept.
type Batcher struct {
	*Store
	cfg     BatchConfig
	queue   chan *waiter
	running atomic.Bool

	batchSize prometheus.Histogram
	queueWait prometheus.Histogram
	refused   *prometheus.CounterVec
}

// waiter is one Accept call waiting for its batch.
type waiter struct {
	*acceptance
	enqueued time.Time
	// taken is set by the writer that takes the waiter, or by the waiter
	// itself when its caller gives up first; whoever sets it owns it.
	taken atomic.Bool
	done  chan struct{}
}

// NewBatcher returns a Batcher writing to s's database.
func NewBatcher(s *Store, cfg BatchConfig) (*Batcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Batcher{
		Store: s, cfg: cfg, queue: make(chan *waiter, cfg.MaxQueue),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "switchyard_accept_batch_size", Help: "Submissions accepted per statement and commit.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "switchyard_accept_queue_wait_seconds", Help: "Time a submission waited for a writer.",
			Buckets: []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5},
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_accept_refused_total",
			Help: "Submissions refused before reaching the database, by reason: queue_full, waited_too_long, stopped.",
		}, []string{"reason"}),
	}
	for _, r := range []string{"queue_full", "waited_too_long", "stopped"} {
		b.refused.WithLabelValues(r)
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{b.batchSize, b.queueWait, b.refused} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("registering accept batching metrics: %w", err)
			}
		}
	}
	return b, nil
}

// Accept is Store.Accept through the batcher.
func (b *Batcher) Accept(ctx context.Context, sub jobs.Submission) (jobs.Job, bool, error) {
	a, err := newAcceptance(sub)
	if err != nil {
		return jobs.Job{}, false, err
	}
	if !b.running.Load() {
		b.refused.WithLabelValues("stopped").Inc()
		return jobs.Job{}, false, fmt.Errorf("accept batcher not running: %w", jobs.ErrStoreUnavailable)
	}
	w := &waiter{acceptance: a, enqueued: time.Now(), done: make(chan struct{})}
	select {
	case b.queue <- w:
	default:
		b.refused.WithLabelValues("queue_full").Inc()
		return jobs.Job{}, false, fmt.Errorf("%d submissions already wait: %w", b.cfg.MaxQueue, jobs.ErrOverloaded)
	}
	select {
	case <-w.done:
		return w.job, w.created, w.err
	case <-ctx.Done():
		if w.taken.CompareAndSwap(false, true) {
			// No writer has it: it will never be written.
			return jobs.Job{}, false, fmt.Errorf("waiting to accept job: %w", ctx.Err())
		}
		// A writer is committing it: the outcome is the commit's.
		<-w.done
		return w.job, w.created, w.err
	}
}

// Waiting reports how many submissions wait for a writer.
func (b *Batcher) Waiting() int { return len(b.queue) }

// Run writes batches until ctx ends, then refuses what still waits and
// returns once every writer has finished its statement. Stop it after the
// HTTP server has drained, so that in-flight requests are answered.
func (b *Batcher) Run(ctx context.Context) {
	b.running.Store(true)
	done := make(chan struct{})
	for range b.cfg.Writers {
		go func() {
			defer func() { done <- struct{}{} }()
			b.write(ctx)
		}()
	}
	for range b.cfg.Writers {
		<-done
	}
	b.running.Store(false)
	// Accept calls that saw running before it was cleared may have queued.
	for {
		select {
		case w := <-b.queue:
			b.refuse(w, "stopped", fmt.Errorf("accept batcher stopped: %w", jobs.ErrStoreUnavailable))
		default:
			return
		}
	}
}

// write is one writer's loop: wait for a submission, take whatever else
// waits, accept them all in one statement, answer each.
func (b *Batcher) write(ctx context.Context) {
	batch := make([]*waiter, 0, b.cfg.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case w := <-b.queue:
			batch = b.take(batch, w)
		}
	collect:
		for len(batch) < b.cfg.MaxBatch {
			select {
			case w := <-b.queue:
				batch = b.take(batch, w)
			default:
				break collect
			}
		}
		if len(batch) == 0 {
			continue
		}
		acceptances := make([]*acceptance, len(batch))
		for i, w := range batch {
			acceptances[i] = w.acceptance
		}
		b.batchSize.Observe(float64(len(batch)))
		// The statement runs to its end even if the callers go: once sent,
		// its outcome is theirs.
		b.acceptAll(context.WithoutCancel(ctx), acceptances)
		for _, w := range batch {
			close(w.done)
		}
	}
}

// take adds w to batch unless its caller has gone or it waited too long.
func (b *Batcher) take(batch []*waiter, w *waiter) []*waiter {
	if !w.taken.CompareAndSwap(false, true) {
		return batch // its caller gave up
	}
	waited := time.Since(w.enqueued)
	b.queueWait.Observe(waited.Seconds())
	if waited > b.cfg.MaxWait {
		w.err = fmt.Errorf("waited %s for a writer: %w", waited.Round(time.Millisecond), jobs.ErrOverloaded)
		b.refused.WithLabelValues("waited_too_long").Inc()
		close(w.done)
		return batch
	}
	return append(batch, w)
}

// refuse answers w with err unless its caller has gone.
func (b *Batcher) refuse(w *waiter, reason string, err error) {
	if w.taken.CompareAndSwap(false, true) {
		b.refused.WithLabelValues(reason).Inc()
		w.err = err
		close(w.done)
	}
}
