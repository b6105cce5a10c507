// Package processor applies one SQS message to its job: it skips messages
// already applied, marks the job processing, then runs the handler in a
// transaction that also records the message in the inbox and the job as
// succeeded, so that effects written through the transaction happen at most
// once however often SQS delivers the message.
package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard/switchyard/libs/inbox"
	"github.com/switchyard/switchyard/libs/jobhandler"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/outbox"
)

// Processor runs handlers for messages.
type Processor struct {
	pool    *pgxpool.Pool
	store   *jobstore.Store
	logger  *slog.Logger
	metrics *Metrics
}

// New returns a Processor; metrics may be nil.
func New(pool *pgxpool.Pool, logger *slog.Logger, metrics *Metrics) *Processor {
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	return &Processor{pool: pool, store: jobstore.New(pool), logger: logger, metrics: metrics}
}

// Binding ties a job type to the handler that runs it.
type Binding struct {
	JobType string
	// HandlerName is recorded in the inbox ("http" for HTTP targets).
	HandlerName string
	Handler     jobhandler.Handler
	Timeout     time.Duration
}

// HandlerFunc returns the Watermill handler for b. Returning nil acks the
// message (done, or a duplicate); an error nacks it, so SQS redelivers it
// after the visibility timeout, and the queue's RedrivePolicy eventually
// moves a message that keeps failing to its DLQ.
func (p *Processor) HandlerFunc(b Binding) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		start := time.Now()
		outcome, err := p.process(msg, b)
		p.metrics.observe(b.JobType, outcome, time.Since(start))
		return err
	}
}

// Outcomes of processing one message, as reported in metrics.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeDuplicate = "duplicate"
	OutcomeFailed    = "failed"
	OutcomeInvalid   = "invalid"
)

func (p *Processor) process(msg *message.Message, b Binding) (string, error) {
	jobID := msg.Metadata.Get(outbox.MetaJobID)
	log := p.logger.With("message_id", msg.UUID, "job_id", jobID, "job_type", b.JobType,
		"client_id", msg.Metadata.Get(outbox.MetaClientID), "request_id", msg.Metadata.Get(outbox.MetaRequestID))
	if jobID == "" {
		log.Error("message has no job id; leaving it to the queue's redrive policy")
		return OutcomeInvalid, errors.New("message carries no job_id")
	}
	// The handler gets the whole timeout even while the worker shuts down,
	// so that work that started also finishes and commits.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(msg.Context()), b.Timeout)
	defer cancel()

	seen, err := inbox.Seen(ctx, p.pool, msg.UUID)
	if err != nil {
		return OutcomeFailed, err
	}
	if seen {
		log.Info("duplicate delivery; already applied")
		return OutcomeDuplicate, nil
	}
	attempt, err := p.store.MarkProcessing(ctx, jobID)
	switch {
	case errors.Is(err, jobstore.ErrFinished):
		log.Info("job already finished; dropping message", "reason", err)
		return OutcomeDuplicate, nil
	case errors.Is(err, jobs.ErrNotFound):
		log.Error("message for a job that does not exist; leaving it to the queue's redrive policy")
		return OutcomeInvalid, err
	case err != nil:
		return OutcomeFailed, err
	}

	result, applied, err := p.apply(ctx, msg, b, jobID, attempt)
	if err != nil {
		if markErr := p.store.MarkFailed(context.WithoutCancel(ctx), jobID, err.Error()); markErr != nil {
			log.Error("recording failed attempt", "error", markErr)
		}
		log.Warn("attempt failed", "attempt", attempt, "error", err, "permanent", jobhandler.IsPermanent(err))
		return OutcomeFailed, err
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
	tx, err := p.pool.Begin(ctx)
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
	result, err = b.Handler.Handle(ctx, jobhandler.Task{
		JobID: jobID, Type: b.JobType, ClientID: msg.Metadata.Get(outbox.MetaClientID), MessageID: msg.UUID,
		Attempt: attempt, Payload: json.RawMessage(msg.Payload), TraceParent: msg.Metadata.Get(outbox.MetaTraceParent), Tx: tx,
	})
	if err != nil {
		return nil, false, err
	}
	if len(result) > 0 && !json.Valid(result) {
		return nil, false, jobhandler.Permanent(errors.New("handler returned a result that is not valid JSON"))
	}
	if err := jobstore.Complete(ctx, tx, jobID, result); err != nil {
		return nil, false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, false, fmt.Errorf("committing job: %w", err)
	}
	return result, true, nil
}
