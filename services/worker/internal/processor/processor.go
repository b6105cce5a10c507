// Package processor applies one SQS message to its job: it skips messages
// already applied, marks the job processing, then runs the handler in a
// transaction that also records the message in the inbox and the job as
// succeeded, so that effects written through the transaction happen at most
// once however often SQS delivers the message.
//
// Failures never hold a consumer: a failed attempt hides its message in SQS
// for the job type's backoff (ChangeMessageVisibility) and releases the
// consumer at once. A permanent error, the last attempt, or a message that
// is not a job message goes to the job type's dead-letter queue, through
// the outbox, in the transaction that records the failure; the original is
// then deleted. While a handler runs, a heartbeat keeps its message hidden,
// so a slow success is not delivered twice.
package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/deadletter"
	"github.com/switchyard/switchyard/libs/inbox"
	"github.com/switchyard/switchyard/libs/jobhandler"
	"github.com/switchyard/switchyard/libs/jobmessage"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/outbox"
	"github.com/switchyard/switchyard/libs/tracing"
)

// Queue changes how long a received message stays hidden; sqsqueue.Queues
// implements it.
type Queue interface {
	ChangeVisibility(ctx context.Context, topic, receiptHandle string, d time.Duration) error
}

// Config configures a Processor.
type Config struct {
	Pool   *pgxpool.Pool
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics *Metrics
	// Queue hides messages for their backoff and extends them while their
	// handler runs. Without it (or for a message without a receipt
	// handle) a failed message reappears after the queue's visibility
	// timeout and long handlers get no heartbeat.
	Queue Queue
	// VisibilityTimeout is the queues' visibility timeout; the heartbeat
	// renews it every third of it. Default 30 s.
	VisibilityTimeout time.Duration
	// Jitter returns a number in [0, 1) for backoff jitter; default
	// math/rand/v2.
	Jitter func() float64
}

// Processor runs handlers for messages.
type Processor struct {
	cfg    Config
	store  *jobstore.Store
	tracer trace.Tracer
	gate   *databaseGate
}

// New returns a Processor.
func New(cfg Config) *Processor {
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.VisibilityTimeout <= 0 {
		cfg.VisibilityTimeout = 30 * time.Second
	}
	if cfg.Jitter == nil {
		cfg.Jitter = rand.Float64
	}
	return &Processor{cfg: cfg, store: jobstore.New(cfg.Pool),
		tracer: tracing.Tracer("github.com/switchyard/switchyard/services/worker/internal/processor"),
		gate:   &databaseGate{ping: cfg.Pool.Ping, logger: cfg.Logger, waiting: cfg.Metrics.waitingForDatabase}}
}

// Binding ties a job type to the handler that runs it.
type Binding struct {
	JobType string
	// HandlerName is recorded in the inbox ("http" for HTTP targets).
	HandlerName string
	Handler     jobhandler.Handler
	Timeout     time.Duration
	Retry       jobs.RetryPolicy
}

// HandlerFunc returns the Watermill handler for b. The message is acked
// (deleted from SQS) when it is done, dead-lettered, or a duplicate. A
// failed attempt with a retry scheduled is nacked here and the handler
// returns nil: the failure is logged once, as a warning, instead of also
// as the router's error (the router's later Ack is a no-op on a nacked
// message). When the worker cannot even record the outcome, the error is
// returned and the router nacks. A nacked message comes back when its
// visibility ends (the backoff, or the queue's visibility timeout), and
// the queue's RedrivePolicy moves one that keeps coming back unresolved
// (a crash loop) to the DLQ.
func (p *Processor) HandlerFunc(b Binding) message.NoPublishHandlerFunc {
	if b.Retry.Attempts == 0 {
		b.Retry = jobs.DefaultRetryPolicy()
	}
	return func(msg *message.Message) error {
		start := time.Now()
		// The consumer span continues the trace the message carries (the
		// relay's send, in the submitting request's trace).
		ctx, span := p.tracer.Start(tracing.Extract(msg.Context(), msg.Metadata), "process "+b.JobType,
			trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
				semconv.MessagingSystemAWSSQS, semconv.MessagingOperationTypeProcess, semconv.MessagingDestinationName(b.JobType),
				semconv.MessagingMessageID(msg.UUID), attribute.String("switchyard.job_id", msg.Metadata.Get(jobmessage.JobID)),
				attribute.String("switchyard.handler", b.HandlerName)))
		msg.SetContext(ctx)
		outcome, err := p.process(msg, b)
		for waits := 0; outcome == OutcomeError && database.Unavailable(err) && waits < maxDatabaseWaits; waits++ {
			if !p.waitForDatabase(msg, b) {
				break
			}
			outcome, err = p.process(msg, b)
		}
		span.SetAttributes(attribute.String("switchyard.outcome", outcome))
		switch {
		case err != nil:
			tracing.Fail(span, err)
		case outcome == OutcomeRetrying || outcome == OutcomeDeadLettered:
			span.SetStatus(codes.Error, outcome)
		}
		span.End()
		p.cfg.Metrics.observe(b.JobType, outcome, time.Since(start))
		if outcome == OutcomeRetrying || outcome == OutcomeEarly {
			msg.Nack()
			return nil
		}
		return err
	}
}

// maxDatabaseWaits bounds how often one message waits for Postgres and
// is tried again in place; after that (a database that answers pings but
// fails every statement) its error is returned and SQS delivers it again
// when its visibility ends.
const maxDatabaseWaits = 10

// waitForDatabase holds msg, hidden by its heartbeat, until Postgres
// answers again (databaseGate), so that it is tried again in place: an
// outage adds nothing to its receive count. It reports false when the
// worker shuts down first; the message then comes back when its
// visibility ends.
func (p *Processor) waitForDatabase(msg *message.Message, b Binding) bool {
	stop := p.heartbeat(msg.Context(), msg, b, p.cfg.Logger)
	defer stop()
	return p.gate.wait(msg.Context()) == nil
}

// Outcomes of processing one message, as reported in metrics.
const (
	OutcomeSucceeded    = "succeeded"
	OutcomeDuplicate    = "duplicate"
	OutcomeRetrying     = "retrying"
	OutcomeDeadLettered = "dead_lettered"
	// OutcomeCancelled: the job's owner cancelled it; the handler did not
	// run, or its failed attempt is not retried.
	OutcomeCancelled = "cancelled"
	// OutcomeEarly: a scheduled job's message came before the job was
	// due; it is hidden until then and nacked.
	OutcomeEarly = "early"
	// OutcomeError: the worker could not process or record the message
	// (e.g. Postgres unavailable); SQS delivers it again.
	OutcomeError = "error"
)

// bookkeepingTimeout bounds the writes that record an outcome; they run
// even when the handler used up its own time.
const bookkeepingTimeout = 10 * time.Second

func (p *Processor) process(msg *message.Message, b Binding) (string, error) {
	jobID := msg.Metadata.Get(jobmessage.JobID)
	log := p.cfg.Logger.With("message_id", msg.UUID, "job_id", jobID, "job_type", b.JobType,
		"client_id", msg.Metadata.Get(jobmessage.ClientID), "request_id", msg.Metadata.Get(jobmessage.RequestID))
	if traceID := tracing.TraceID(msg.Context()); traceID != "" {
		log = log.With("trace_id", traceID)
	}
	// The handler gets the whole timeout even while the worker shuts down,
	// so that work that started also finishes and commits.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(msg.Context()), b.Timeout)
	defer cancel()

	if jobID == "" {
		return p.deadLetterStray(msg, b, log, deadletter.ReasonUndecodable, "message carries no job_id attribute; it is not a Switchyard job message")
	}
	if _, err := uuid.Parse(jobID); err != nil {
		return p.deadLetterStray(msg, b, log, deadletter.ReasonUndecodable, "message's job_id attribute is not a UUID")
	}
	seen, err := inbox.Seen(ctx, p.cfg.Pool, msg.UUID)
	if err != nil {
		log.Error("checking the inbox", "error", err)
		return OutcomeError, err
	}
	if seen {
		log.Info("duplicate delivery; already applied")
		return OutcomeDuplicate, nil
	}
	attempt, err := p.store.MarkProcessing(ctx, jobID, msg.UUID)
	var notDue *jobstore.NotDueError
	switch {
	case errors.As(err, &notDue):
		return p.holdUntilDue(ctx, msg, b, log, notDue)
	case errors.Is(err, jobstore.ErrCancelled):
		log.Info("job cancelled by its owner; dropping message")
		return OutcomeCancelled, nil
	case errors.Is(err, jobstore.ErrFinished):
		log.Info("job already finished; dropping message", "reason", err)
		return OutcomeDuplicate, nil
	case errors.Is(err, jobs.ErrNotFound):
		return p.deadLetterStray(msg, b, log, deadletter.ReasonUnknownJob, "message names job "+jobID+", which does not exist")
	case err != nil:
		log.Error("marking job processing", "error", err)
		return OutcomeError, err
	}

	stopHeartbeat := p.heartbeat(ctx, msg, b, log)
	result, applied, err := p.apply(ctx, msg, b, jobID, attempt)
	stopHeartbeat()
	if errors.Is(err, errCancelled) {
		log.Info("job cancelled by its owner before its handler ran", "attempt", attempt)
		return OutcomeCancelled, nil
	}
	if err != nil {
		return p.fail(ctx, msg, b, log, jobID, attempt, err)
	}
	if !applied {
		log.Info("duplicate delivery raced with another; already applied")
		return OutcomeDuplicate, nil
	}
	log.Info("job succeeded", "attempt", attempt, "result_bytes", len(result))
	return OutcomeSucceeded, nil
}

// apply runs the handler in one transaction with the inbox record and the
// success status. applied is false when another delivery won the race.
func (p *Processor) apply(ctx context.Context, msg *message.Message, b Binding, jobID string, attempt int) (result json.RawMessage, applied bool, err error) {
	if !json.Valid(msg.Payload) {
		return nil, false, jobhandler.Permanent(errors.New("message payload is not valid JSON"))
	}
	tx, err := p.cfg.Pool.Begin(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("beginning job transaction: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	first, err := inbox.Record(ctx, tx, msg.UUID, jobID, b.HandlerName)
	if err != nil {
		return nil, false, err
	}
	if !first {
		return nil, false, nil
	}
	// The owner may have asked to cancel the job since it was marked
	// processing: then the handler does not run, and the job is cancelled
	// in the transaction that holds the inbox row (a redelivery is a
	// duplicate). A request that comes once the handler runs lets this
	// attempt end as it would have.
	if requested, err := jobstore.CancellationRequested(ctx, tx, jobID); err != nil {
		return nil, false, err
	} else if requested {
		if _, err := jobstore.FinishCancelled(ctx, tx, jobID, attempt, false); err != nil {
			return nil, false, err
		}
		if err := tx.Commit(ctx); err != nil {
			return nil, false, fmt.Errorf("committing cancelled job: %w", err)
		}
		return nil, false, errCancelled
	}
	result, err = b.Handler.Handle(ctx, jobhandler.Task{
		JobID: jobID, Type: b.JobType, ClientID: msg.Metadata.Get(jobmessage.ClientID), MessageID: msg.UUID,
		Attempt: attempt, Payload: json.RawMessage(msg.Payload), TraceParent: tracing.TraceParent(ctx), Tx: tx,
	})
	if err != nil {
		return nil, false, err
	}
	if len(result) > 0 && !json.Valid(result) {
		return nil, false, jobhandler.Permanent(errors.New("handler returned a result that is not valid JSON"))
	}
	if err := jobstore.Complete(ctx, tx, jobID, attempt, result); err != nil {
		return nil, false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, false, fmt.Errorf("committing job: %w", err)
	}
	return result, true, nil
}

// holdUntilDue hides the message of a scheduled job that came before
// its time until the job is due (SQS keeps a message hidden for at most
// 12 hours; a later job's message comes back and is hidden again). No
// attempt is counted.
func (p *Processor) holdUntilDue(ctx context.Context, msg *message.Message, b Binding, log *slog.Logger, notDue *jobstore.NotDueError) (string, error) {
	wait := min(notDue.In.Round(time.Second)+time.Second, maxVisibility)
	receipt := msg.Metadata.Get(jobmessage.ReceiptHandle)
	if receipt == "" || p.cfg.Queue == nil {
		log.Warn("scheduled job's message came early and cannot be hidden; it returns after the queue's visibility timeout", "run_at", notDue.RunAt)
		return OutcomeEarly, nil
	}
	if err := p.cfg.Queue.ChangeVisibility(ctx, b.JobType, receipt, wait); err != nil {
		p.cfg.Metrics.visibilityChange(b.JobType, "schedule", false)
		log.Warn("could not hide a scheduled job's early message; it returns after the queue's visibility timeout", "error", err, "run_at", notDue.RunAt)
	} else {
		p.cfg.Metrics.visibilityChange(b.JobType, "schedule", true)
	}
	log.Info("scheduled job's message came early; hidden until it is due", "run_at", notDue.RunAt, "hidden_for", wait)
	return OutcomeEarly, nil
}

// maxVisibility is the longest SQS hides a message.
const maxVisibility = 12 * time.Hour

// errCancelled is apply's answer when it found the job's cancellation and
// cancelled it instead of running the handler.
var errCancelled = errors.New("job cancelled by its owner")

// fail records a failed attempt and either schedules the next one or, for
// a permanent error or the last attempt, dead-letters the message, in one
// transaction.
func (p *Processor) fail(ctx context.Context, msg *message.Message, b Binding, log *slog.Logger,
	jobID string, attempt int, cause error) (string, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	permanent := jobhandler.IsPermanent(cause)
	text := deadletter.Truncate(cause.Error(), deadletter.MaxErrorBytes)
	fingerprint := deadletter.Fingerprint(b.HandlerName, permanent, text)
	class, clientText := jobhandler.Describe(cause)

	tx, err := p.cfg.Pool.Begin(ctx)
	if err != nil {
		log.Error("recording failed attempt", "attempt", attempt, "error", err, "cause", cause)
		return OutcomeError, errors.Join(cause, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	tally, err := jobstore.RecordFailure(ctx, tx, jobstore.Failure{
		JobID: jobID, Attempt: attempt, MessageID: msg.UUID, Error: text, Fingerprint: fingerprint, Permanent: permanent,
		ErrorClass: class, ClientError: deadletter.Truncate(clientText, deadletter.MaxErrorBytes),
	})
	if err != nil {
		log.Error("recording failed attempt", "attempt", attempt, "error", err, "cause", cause)
		return OutcomeError, errors.Join(cause, err)
	}

	if tally.CancelRequested {
		// The owner asked to cancel the job while this attempt ran: no
		// retry and no dead letter.
		if _, err := jobstore.FinishCancelled(ctx, tx, jobID, attempt, true); err != nil {
			return OutcomeError, errors.Join(cause, err)
		}
		if err := tx.Commit(ctx); err != nil {
			return OutcomeError, errors.Join(cause, fmt.Errorf("committing cancelled job: %w", err))
		}
		log.Info("attempt failed; job cancelled by its owner, so not retried", "attempt", attempt, "error", text)
		return OutcomeCancelled, nil
	}

	if permanent || b.Retry.Exhausted(tally.Failures) {
		reason := deadletter.ReasonAttemptsExhausted
		if permanent {
			reason = deadletter.ReasonPermanentError
		}
		if _, err := jobstore.MarkDeadLettered(ctx, tx, jobID, string(reason)); err != nil {
			return OutcomeError, errors.Join(cause, err)
		}
		meta := deadletter.Metadata{
			Reason: reason, Error: text, Fingerprint: fingerprint, Attempts: tally.Failures, Handler: b.HandlerName,
			Topic: b.JobType, JobID: jobID, ClientID: msg.Metadata.Get(jobmessage.ClientID),
			TraceID:        deadletter.TraceID(msg.Metadata.Get(jobmessage.TraceParent)),
			FirstFailureAt: &tally.FirstFailureAt, LastFailureAt: &tally.LastFailureAt, DeadLetteredAt: time.Now().UTC(),
		}
		if err := p.writeDeadLetter(ctx, tx, msg.UUID, msg, b, meta, false); err != nil {
			return OutcomeError, errors.Join(cause, err)
		}
		if err := tx.Commit(ctx); err != nil {
			log.Error("dead-lettering", "error", err, "cause", cause)
			return OutcomeError, errors.Join(cause, fmt.Errorf("committing dead letter: %w", err))
		}
		p.cfg.Metrics.deadLettered(b.JobType, reason)
		log.Warn("job dead-lettered", "reason", reason, "attempt", attempt, "failures", tally.Failures,
			"error", text, "fingerprint", fingerprint)
		return OutcomeDeadLettered, nil
	}

	delay := b.Retry.Delay(tally.Failures, p.cfg.Jitter())
	if err := jobstore.ScheduleRetry(ctx, tx, jobID, attempt, time.Now().Add(delay)); err != nil {
		return OutcomeError, errors.Join(cause, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return OutcomeError, errors.Join(cause, fmt.Errorf("committing failed attempt: %w", err))
	}
	p.cfg.Metrics.retryScheduled(b.JobType, delay)
	if receipt := msg.Metadata.Get(jobmessage.ReceiptHandle); receipt != "" && p.cfg.Queue != nil {
		if err := p.cfg.Queue.ChangeVisibility(ctx, b.JobType, receipt, delay); err != nil {
			p.cfg.Metrics.visibilityChange(b.JobType, "backoff", false)
			log.Warn("could not hide the message for its backoff; it returns after the queue's visibility timeout", "error", err)
		} else {
			p.cfg.Metrics.visibilityChange(b.JobType, "backoff", true)
		}
	}
	log.Warn("attempt failed; retry scheduled", "attempt", attempt, "failures", tally.Failures,
		"attempts_allowed", b.Retry.Attempts, "retry_in", delay.Round(time.Millisecond).String(), "error", text, "fingerprint", fingerprint)
	return OutcomeRetrying, nil
}

// deadLetterStray dead-letters a message that is not a job message, or
// names no existing job: there is no job to record it on, only the message
// to keep for an operator.
func (p *Processor) deadLetterStray(msg *message.Message, b Binding, log *slog.Logger, reason deadletter.Reason, detail string) (string, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(msg.Context()), bookkeepingTimeout)
	defer cancel()
	now := time.Now().UTC()
	meta := deadletter.Metadata{
		Reason: reason, Error: detail, Fingerprint: deadletter.Fingerprint("", true, string(reason)+": "+detail),
		Topic: b.JobType, JobID: msg.Metadata.Get(jobmessage.JobID), ClientID: msg.Metadata.Get(jobmessage.ClientID),
		TraceID:        deadletter.TraceID(msg.Metadata.Get(jobmessage.TraceParent)),
		FirstFailureAt: &now, LastFailureAt: &now, DeadLetteredAt: now, OriginalAttributes: jobmessage.Original(msg),
	}
	// A message that did not come through our outbox may carry any
	// "UUID"; SQS's own message id is always a UUID.
	id := msg.UUID
	if _, err := uuid.Parse(id); err != nil {
		id = msg.Metadata.Get(jobmessage.SQSMessageID)
	}
	if _, err := uuid.Parse(id); err != nil {
		id = uuid.NewString()
	}
	tx, err := p.cfg.Pool.Begin(ctx)
	if err != nil {
		return OutcomeError, fmt.Errorf("dead-lettering %s message: %w", reason, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := p.writeDeadLetter(ctx, tx, id, msg, b, meta, true); err != nil {
		return OutcomeError, err
	}
	if err := tx.Commit(ctx); err != nil {
		return OutcomeError, fmt.Errorf("committing dead letter: %w", err)
	}
	p.cfg.Metrics.deadLettered(b.JobType, reason)
	log.Warn("message dead-lettered", "reason", reason, "detail", detail, "dead_letter_id", id, "payload_bytes", len(msg.Payload))
	return OutcomeDeadLettered, nil
}

// writeDeadLetter writes the message bound for b's DLQ to the outbox in tx.
// A job message keeps its own attributes beside the dead-letter metadata; a
// stray one's attributes go inside the metadata (SQS allows ten per
// message, and a stray may already carry ten).
func (p *Processor) writeDeadLetter(ctx context.Context, tx pgx.Tx, id string, msg *message.Message, b Binding, meta deadletter.Metadata, stray bool) error {
	encoded, err := meta.Encode()
	if err != nil {
		return err
	}
	dl := jobmessage.DeadLetter(id, b.JobType, msg, deadletter.Attribute, encoded, stray)
	if !stray {
		// The dead letter travels on as the child of this attempt.
		tracing.Inject(ctx, dl.Metadata)
	}
	return outbox.Write(ctx, tx, dl)
}

// heartbeat keeps msg hidden while its handler runs, renewing the
// visibility timeout every third of it; the returned func stops it and
// waits until no renewal is in flight.
func (p *Processor) heartbeat(ctx context.Context, msg *message.Message, b Binding, log *slog.Logger) (stop func()) {
	receipt := msg.Metadata.Get(jobmessage.ReceiptHandle)
	if receipt == "" || p.cfg.Queue == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(max(p.cfg.VisibilityTimeout/3, 500*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				err := p.cfg.Queue.ChangeVisibility(ctx, b.JobType, receipt, p.cfg.VisibilityTimeout)
				if ctx.Err() != nil {
					return
				}
				p.cfg.Metrics.visibilityChange(b.JobType, "heartbeat", err == nil)
				if err != nil {
					log.Warn("extending the message's visibility failed; it may be delivered again while its handler runs", "error", err)
				}
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
