// Package forwarder moves messages from the Postgres outbox to SQS.
//
// Several loops per process (and any number of processes) claim batches of
// outbox rows with FOR UPDATE SKIP LOCKED, so they never wait for or
// overlap with each other; each batch is sent as concurrent
// SendMessageBatch calls of up to ten messages, and in the same
// transaction the forwarded rows are deleted and their jobs marked queued.
// A crash between the send and the commit re-sends those rows later
// (at-least-once); the worker's inbox drops the duplicates. Loops sleep
// until Postgres NOTIFY announces new rows, with a slow poll as a safety net.
package forwarder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/switchyard/switchyard/libs/clock"
	"github.com/switchyard/switchyard/libs/jobmessage"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/outbox"
	"github.com/switchyard/switchyard/libs/pgnotify"
	"github.com/switchyard/switchyard/libs/sqsqueue"
	"github.com/switchyard/switchyard/libs/tracing"
)

// Config tunes the forwarder. Zero values take the defaults noted.
type Config struct {
	// Loops is how many batches one process forwards at once (default 8:
	// a loop's sends wait for its slowest call, then for its commit and
	// next claim, so 8 loops of 5 calls keep an SQS endpoint as busy as
	// 20-40 bare senders do).
	Loops int
	// BatchSize is how many rows one loop claims at a time (default 50);
	// they go out as ceil(BatchSize/10) concurrent SendMessageBatch calls.
	BatchSize int
	// PollInterval is the longest a loop sleeps without a notification
	// (default 5 s); NOTIFY normally wakes it at once.
	PollInterval time.Duration
	// ErrorBackoff is the ceiling of the first pause after a failed batch
	// (default 100 ms); each further failure in a row doubles it, up to
	// MaxErrorBackoff (default 10 s; while SQS's breaker is open, its
	// reprobe interval), and the pause is drawn at random
	// below it (full jitter), so that loops and replicas that failed
	// together do not come back together.
	ErrorBackoff    time.Duration
	MaxErrorBackoff time.Duration
	// SendTimeout bounds the SQS calls of one batch (default 5 s).
	SendTimeout time.Duration
	// FinishTimeout bounds one whole batch, claim to commit, also after
	// shutdown begins (default 10 s). It exceeds SendTimeout so that a slow
	// send still leaves time to commit what SQS accepted.
	FinishTimeout time.Duration
	// SampleInterval is how often the outbox backlog is read for the
	// metrics (default 15 s).
	SampleInterval time.Duration
	// MaxRate, when positive, is the most messages per second this
	// forwarder sends: a claimed batch waits for its share before it is
	// sent, and what waits stays in the outbox. For a downstream that must
	// not be flooded (an SQS stand-in that slows with its queue's depth, a
	// consumer paced by a partner's quota); 0 sends as fast as SQS takes.
	MaxRate float64
	// MaxSQSDelay is how far ahead a held (scheduled) message is sent,
	// with DelaySeconds for the rest (default and at most
	// outbox.MaxSQSDelay, 15 minutes); one due later stays in the outbox.
	// A held message is claimed on the first poll after it comes within
	// this, so it reaches SQS at most PollInterval late, and SQS delivers
	// it when it is due.
	MaxSQSDelay time.Duration
}

// SetDefaults fills in the defaults of the settings left zero.
func (c *Config) SetDefaults() {
	if c.Loops == 0 {
		c.Loops = 8
	}
	if c.BatchSize == 0 {
		c.BatchSize = 50
	}
	if c.PollInterval == 0 {
		c.PollInterval = 5 * time.Second
	}
	if c.ErrorBackoff == 0 {
		c.ErrorBackoff = 100 * time.Millisecond
	}
	if c.MaxErrorBackoff == 0 {
		c.MaxErrorBackoff = 10 * time.Second
	}
	if c.SendTimeout == 0 {
		c.SendTimeout = 5 * time.Second
	}
	if c.FinishTimeout == 0 {
		c.FinishTimeout = 2 * c.SendTimeout
	}
	if c.SampleInterval == 0 {
		c.SampleInterval = 15 * time.Second
	}
	if c.MaxSQSDelay == 0 {
		c.MaxSQSDelay = outbox.MaxSQSDelay
	}
}

// Validate reports impossible settings.
func (c Config) Validate() error {
	var errs []error
	if c.Loops < 1 || c.Loops > 256 {
		errs = append(errs, fmt.Errorf("loops %d must be between 1 and 256", c.Loops))
	}
	if c.BatchSize < 1 || c.BatchSize > 1000 {
		errs = append(errs, fmt.Errorf("batch size %d must be between 1 and 1000", c.BatchSize))
	}
	if c.PollInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("poll interval %s is too short", c.PollInterval))
	}
	if c.SampleInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("sample interval %s is too short", c.SampleInterval))
	}
	if c.ErrorBackoff <= 0 || c.MaxErrorBackoff < c.ErrorBackoff {
		errs = append(errs, fmt.Errorf("error backoff %s must be positive and at most the max error backoff %s", c.ErrorBackoff, c.MaxErrorBackoff))
	}
	if c.FinishTimeout <= c.SendTimeout {
		errs = append(errs, fmt.Errorf("finish timeout %s must exceed send timeout %s", c.FinishTimeout, c.SendTimeout))
	}
	if c.MaxRate < 0 {
		errs = append(errs, fmt.Errorf("max rate %g must not be negative", c.MaxRate))
	} else if c.MaxRate > 0 && c.MaxRate*(c.FinishTimeout-c.SendTimeout).Seconds() < float64(c.Loops*c.BatchSize) {
		// Every loop's claim must get its share within the time a batch
		// may spend before its send.
		errs = append(errs, fmt.Errorf("max rate %g/s cannot send %d loops' claims of %d rows within %s: raise it to at least %.0f/s or claim fewer rows",
			c.MaxRate, c.Loops, c.BatchSize, c.FinishTimeout-c.SendTimeout, float64(c.Loops*c.BatchSize)/(c.FinishTimeout-c.SendTimeout).Seconds()))
	}
	return errors.Join(errs...)
}

// Forwarder drains the outbox into SQS.
type Forwarder struct {
	pool    *pgxpool.Pool
	queues  *sqsqueue.Queues
	cfg     Config
	logger  *slog.Logger
	metrics *Metrics
	wake    *waker
	notify  *pgnotify.Listener
	tracer  trace.Tracer
	// limit paces sends when Config.MaxRate is set; nil otherwise.
	limit *rate.Limiter
}

// New returns a Forwarder. listen opens the dedicated LISTEN connection;
// metrics may be nil.
func New(pool *pgxpool.Pool, listen pgnotify.Connector, queues *sqsqueue.Queues, cfg Config, logger *slog.Logger, metrics *Metrics) (*Forwarder, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid forwarder config: %w", err)
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	f := &Forwarder{pool: pool, queues: queues, cfg: cfg, logger: logger, metrics: metrics, wake: newWaker(),
		tracer: tracing.Tracer("github.com/switchyard/switchyard/services/relay/internal/forwarder")}
	f.notify = pgnotify.New(listen, outbox.NotifyChannel, f.wake.broadcast, logger)
	if cfg.MaxRate > 0 {
		f.limit = rate.NewLimiter(rate.Limit(cfg.MaxRate), cfg.BatchSize)
	}
	return f, nil
}

// Run forwards until ctx ends; batches in flight then finish.
func (f *Forwarder) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.notify.Run(ctx)
	}()
	for range f.cfg.Loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.loop(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.sampleBacklog(ctx)
	}()
	wg.Wait()
	return nil
}

// sampleBacklog reads the outbox backlog into the metrics now and every
// SampleInterval until ctx ends.
func (f *Forwarder) sampleBacklog(ctx context.Context) {
	t := time.NewTicker(f.cfg.SampleInterval)
	defer t.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		b, err := outbox.ReadBacklog(qctx, f.pool)
		cancel()
		switch {
		case err == nil:
			f.metrics.pending.Set(float64(b.Pending))
			f.metrics.oldestAge.Set(b.OldestAge.Seconds())
			f.metrics.parkedRows.Set(float64(b.Parked))
		case ctx.Err() == nil:
			f.metrics.sampleFails.Inc()
			f.logger.Warn("reading the outbox backlog for metrics", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Listening reports whether the NOTIFY connection is up (for readiness).
func (f *Forwarder) Listening(context.Context) error { return f.notify.Err() }

func (f *Forwarder) loop(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		gen := f.wake.generation()
		// While SQS's breaker is open a send would fail at once: claim
		// nothing (no Postgres work either) and wait, with the same
		// backoff as after a failure.
		err := f.queues.Available()
		n := 0
		if err == nil {
			// A batch, once claimed, is finished even while shutting
			// down, so that what was sent is also committed.
			finishCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.FinishTimeout)
			n, err = f.ForwardOnce(finishCtx)
			cancel()
		}
		if err != nil {
			failures++
			ceiling := f.cfg.MaxErrorBackoff
			if errors.Is(err, sqsqueue.ErrUnavailable) {
				// The breaker already spaces the probes; a loop that
				// slept longer would only come back late.
				ceiling = min(ceiling, f.queues.Reprobe())
			}
			delay := clock.FullJitter(f.cfg.ErrorBackoff, ceiling, failures)
			if errors.Is(err, sqsqueue.ErrUnavailable) {
				// Said once by the breaker's state change, not per loop.
				f.logger.Debug("SQS unavailable; outbox batch waits", "retry_in", delay)
			} else {
				f.logger.Error("forwarding outbox batch", "error", err, "failures_in_a_row", failures, "retry_in", delay)
			}
			f.metrics.errors.Inc()
			clock.Sleep(ctx, delay)
			continue
		}
		failures = 0
		if n >= f.cfg.BatchSize {
			continue
		}
		f.wake.wait(ctx, gen, f.cfg.PollInterval)
	}
}

// ForwardOnce claims one batch, sends it and commits; it returns how many
// rows it claimed. Rows SQS refused stay in the outbox for a later claim.
func (f *Forwarder) ForwardOnce(ctx context.Context) (int, error) {
	claim, err := outbox.ClaimDue(ctx, f.pool, f.cfg.BatchSize, f.cfg.MaxSQSDelay)
	if err != nil {
		return 0, err
	}
	claimed := len(claim.Rows) + len(claim.Parked)
	if claimed == 0 {
		claim.Release(ctx)
		return 0, nil
	}
	for _, off := range claim.Parked {
		f.logger.Error("outbox row is not a forwarder envelope; parked (acked) for inspection", "offset", off)
	}
	if f.limit != nil && len(claim.Rows) > 0 {
		if err := f.limit.WaitN(ctx, len(claim.Rows)); err != nil {
			claim.Release(ctx)
			return claimed, fmt.Errorf("waiting for the send rate's share: %w", err)
		}
	}
	start := time.Now()
	sendCtx, cancel := context.WithTimeout(ctx, f.cfg.SendTimeout)
	forwarded, jobIDs, sendErr := f.send(sendCtx, claim.Rows)
	cancel()
	f.metrics.sendSeconds.Observe(time.Since(start).Seconds())
	if err := jobstore.MarkQueued(ctx, claim.Tx(), jobIDs); err != nil {
		claim.Release(ctx)
		return claimed, errors.Join(err, sendErr)
	}
	if err := claim.Complete(ctx, forwarded); err != nil {
		return claimed, errors.Join(err, sendErr)
	}
	f.metrics.batchSize.Observe(float64(len(claim.Rows)))
	f.metrics.forwarded.Add(float64(len(forwarded)))
	f.metrics.parked.Add(float64(len(claim.Parked)))
	return claimed, sendErr
}

// maxBatchBytes is SQS's limit on the summed size of one batch.
const maxBatchBytes = 256 << 10

type chunk struct {
	topic string
	rows  []outbox.Row
}

// send delivers rows grouped by topic in chunks SQS accepts, concurrently,
// and returns the offsets and job ids of the rows SQS accepted.
func (f *Forwarder) send(ctx context.Context, rows []outbox.Row) (offsets []int64, jobIDs []string, err error) {
	var chunks []chunk
	open := map[string]int{} // topic -> index of its open chunk
	sizes := map[int]int{}
	for _, r := range rows {
		size := jobmessage.SQSSize(r.Message)
		i, ok := open[r.Message.Topic]
		if !ok || len(chunks[i].rows) == 10 || sizes[i]+size > maxBatchBytes {
			chunks = append(chunks, chunk{topic: r.Message.Topic})
			i = len(chunks) - 1
			open[r.Message.Topic] = i
		}
		chunks[i].rows = append(chunks[i].rows, r)
		sizes[i] += size
	}

	var mu sync.Mutex
	var errs []error
	var g errgroup.Group
	for _, c := range chunks {
		g.Go(func() error {
			ok, err := f.sendChunk(ctx, c)
			mu.Lock()
			defer mu.Unlock()
			for _, r := range ok {
				offsets = append(offsets, r.Offset)
				// A job's message queued; a dead letter (which names its
				// job too) is not.
				if _, dead := sqsqueue.SplitTopic(r.Message.Topic); !dead && r.Message.Metadata[jobmessage.JobID] != "" {
					jobIDs = append(jobIDs, r.Message.Metadata[jobmessage.JobID])
				}
			}
			if err != nil {
				errs = append(errs, err)
			}
			return nil
		})
	}
	_ = g.Wait()
	return offsets, jobIDs, errors.Join(errs...)
}

func (f *Forwarder) sendChunk(ctx context.Context, c chunk) ([]outbox.Row, error) {
	url, err := f.queues.Ensure(ctx, c.topic)
	if err != nil {
		return nil, fmt.Errorf("resolving queue of topic %s: %w", c.topic, err)
	}
	queue := f.queues.Name(c.topic)
	entries := make([]types.SendMessageBatchRequestEntry, len(c.rows))
	spans := make([]trace.Span, len(c.rows))
	defer func() {
		for _, sp := range spans {
			if sp != nil {
				sp.End()
			}
		}
	}()
	for i, r := range c.rows {
		// Each message gets a producer span in its job's trace, and
		// carries that span on to the worker.
		var sctx context.Context
		sctx, spans[i] = f.tracer.Start(tracing.Extract(ctx, r.Message.Metadata), "send "+queue,
			trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
				semconv.MessagingSystemAWSSQS, semconv.MessagingOperationTypeSend, semconv.MessagingDestinationName(queue),
				semconv.MessagingMessageID(r.Message.UUID), semconv.MessagingBatchMessageCount(len(c.rows)),
				attribute.String("switchyard.job_id", r.Message.Metadata[jobmessage.JobID]),
				attribute.Int64("switchyard.outbox_offset", r.Offset)))
		msg := r.Message
		if spans[i].IsRecording() {
			msg.Metadata = maps.Clone(msg.Metadata)
			tracing.Inject(sctx, msg.Metadata)
		}
		sm, err := jobmessage.ToSQS(msg)
		if err != nil {
			tracing.Fail(spans[i], err)
			return nil, err
		}
		entries[i] = types.SendMessageBatchRequestEntry{
			Id:                ptr(strconv.Itoa(i)),
			MessageBody:       sm.Body,
			MessageAttributes: sm.MessageAttributes,
		}
		if r.Delay > 0 {
			// A scheduled job's message, due within SQS's longest delay:
			// SQS keeps it hidden until then.
			entries[i].DelaySeconds = int32(min(r.Delay, outbox.MaxSQSDelay) / time.Second) //nolint:gosec // at most 900 (15 min)
		}
	}
	out, err := f.queues.Client().SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries})
	if err != nil {
		err = fmt.Errorf("sending %d messages to %s: %w", len(entries), queue, err)
		for _, sp := range spans {
			tracing.Fail(sp, err)
		}
		return nil, err
	}
	sent := make([]outbox.Row, 0, len(out.Successful))
	for _, s := range out.Successful {
		i, err := strconv.Atoi(ptrValue(s.Id))
		if err != nil || i < 0 || i >= len(c.rows) {
			return sent, fmt.Errorf("SQS answered with unknown batch entry id %q", ptrValue(s.Id))
		}
		sent = append(sent, c.rows[i])
	}
	if len(out.Failed) == 0 {
		return sent, nil
	}
	var errs []error
	for _, fe := range out.Failed {
		err := fmt.Errorf("SQS refused a message for %s (sender fault %t): %s: %s",
			queue, fe.SenderFault, ptrValue(fe.Code), ptrValue(fe.Message))
		if i, aerr := strconv.Atoi(ptrValue(fe.Id)); aerr == nil && i >= 0 && i < len(spans) {
			tracing.Fail(spans[i], err)
		}
		errs = append(errs, err)
	}
	return sent, errors.Join(errs...)
}

func ptr[T any](v T) *T { return &v }

func ptrValue(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
