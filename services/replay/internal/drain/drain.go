// Package drain moves dead letters from every DLQ into the dead-letter
// store: it receives up to ten messages at a time, stores them in one
// transaction (idempotent on the message id), and deletes them from SQS
// only after that transaction committed. A crash in between leaves the
// messages in SQS, to be received and stored (as a no-op) again.
//
// It talks to SQS directly rather than through a Watermill subscriber:
// batches of ten make one transaction and one DeleteMessageBatch, and it
// needs SQS's own attributes (receive count, sent time) that Watermill
// does not pass on.
package drain

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	wmsqs "github.com/ThreeDotsLabs/watermill-aws/sqs"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/libs/clock"
	"github.com/switchyard/switchyard/libs/deadletter"
	"github.com/switchyard/switchyard/libs/jobmessage"
	"github.com/switchyard/switchyard/libs/sqsqueue"
	"github.com/switchyard/switchyard/libs/tracing"
	"github.com/switchyard/switchyard/services/replay/internal/deadletterstore"
)

// Drain moves DLQ messages into the store.
type Drain struct {
	queues *sqsqueue.Queues
	store  *deadletterstore.Store
	logger *slog.Logger
	// WaitTime is the long-poll wait of each receive (default 20 s).
	WaitTime time.Duration

	received *prometheus.CounterVec
	stored   *prometheus.CounterVec
	errors   *prometheus.CounterVec

	mu      sync.Mutex
	lastErr map[string]error
}

// New returns a Drain; reg may be nil.
func New(queues *sqsqueue.Queues, store *deadletterstore.Store, logger *slog.Logger, reg prometheus.Registerer) *Drain {
	f := promauto.With(reg)
	return &Drain{
		queues: queues, store: store, logger: logger, WaitTime: 20 * time.Second, lastErr: map[string]error{},
		received: f.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_replay_dlq_received_total", Help: "Messages received from dead-letter queues, by job type.",
		}, []string{"job_type"}),
		stored: f.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_replay_dead_letters_stored_total", Help: "Dead letters stored (new ones; redeliveries are not counted), by job type and reason.",
		}, []string{"job_type", "reason"}),
		errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_replay_drain_errors_total", Help: "Failed drain rounds (receive, store or delete), by job type.",
		}, []string{"job_type"}),
	}
}

// Run drains the DLQs of jobTypes until ctx ends, one loop per queue.
func (d *Drain) Run(ctx context.Context, jobTypes []string) error {
	var wg sync.WaitGroup
	for _, jt := range jobTypes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.loop(ctx, jt)
		}()
	}
	wg.Wait()
	return nil
}

func (d *Drain) loop(ctx context.Context, jobType string) {
	failures := 0
	for ctx.Err() == nil {
		_, err := d.Once(ctx, jobType)
		d.mu.Lock()
		d.lastErr[jobType] = err
		d.mu.Unlock()
		if err == nil {
			failures = 0
			continue
		}
		if ctx.Err() != nil {
			return
		}
		failures++
		// Full jitter, below 1 s doubling to 30 s: drains of every job
		// type and replica that failed together retry apart.
		backoff := clock.FullJitter(time.Second, 30*time.Second, failures)
		d.errors.WithLabelValues(jobType).Inc()
		d.logger.Warn("draining dead-letter queue failed; retrying", "job_type", jobType, "error", err, "retry_in", backoff)
		if !clock.Sleep(ctx, backoff) {
			return
		}
	}
}

// Ready reports the last drain error of any queue (a readiness check).
func (d *Drain) Ready(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for jt, err := range d.lastErr {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", jt, err))
		}
	}
	return errors.Join(errs...)
}

// Once receives one batch from jobType's DLQ, stores it and deletes it, and
// returns how many messages it received.
func (d *Drain) Once(ctx context.Context, jobType string) (int, error) {
	url, err := d.queues.Ensure(ctx, sqsqueue.DeadLetterTopic(jobType))
	if err != nil {
		return 0, err
	}
	out, err := d.queues.Client().ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: &url, MaxNumberOfMessages: 10, WaitTimeSeconds: int32(d.WaitTime / time.Second), //nolint:gosec // seconds of a short wait
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
	})
	if err != nil {
		return 0, fmt.Errorf("receiving from %s: %w", d.queues.DLQName(jobType), err)
	}
	if len(out.Messages) == 0 {
		return 0, nil
	}
	d.received.WithLabelValues(jobType).Add(float64(len(out.Messages)))
	incoming := make([]deadletterstore.Incoming, len(out.Messages))
	for i, m := range out.Messages {
		incoming[i] = Parse(m, jobType)
		if incoming[i].Meta == nil {
			d.logger.Warn("dead letter without metadata: moved by the RedrivePolicy (crash loop)",
				"job_type", jobType, "message_id", incoming[i].MessageID, "job_id", incoming[i].JobID, "receive_count", incoming[i].ReceiveCount)
		}
	}
	// Each dead letter's arrival in the store is a span of its job's trace.
	spans := make([]trace.Span, len(incoming))
	for i, in := range incoming {
		_, spans[i] = tracer.Start(tracing.Extract(ctx, in.Attributes), "store dead letter "+jobType,
			trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
				semconv.MessagingSystemAWSSQS, semconv.MessagingOperationTypeProcess, semconv.MessagingDestinationName(d.queues.DLQName(jobType)),
				semconv.MessagingMessageID(in.MessageID), attribute.String("switchyard.job_id", in.JobID)))
	}
	stored, err := d.store.Ingest(ctx, incoming)
	for _, sp := range spans {
		tracing.Fail(sp, err)
		sp.End()
	}
	if err != nil {
		return len(out.Messages), err
	}
	if stored > 0 {
		for _, in := range incoming {
			reason := deadletter.ReasonMaxReceiveCount
			if in.Meta != nil {
				reason = in.Meta.Reason
			}
			d.stored.WithLabelValues(jobType, string(reason)).Inc()
		}
	}
	entries := make([]types.DeleteMessageBatchRequestEntry, len(out.Messages))
	for i, m := range out.Messages {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle}
	}
	del, err := d.queues.Client().DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: entries})
	if err != nil {
		return len(out.Messages), fmt.Errorf("deleting %d stored dead letters from %s: %w", len(entries), d.queues.DLQName(jobType), err)
	}
	if len(del.Failed) > 0 {
		// Stored already; they come back and are skipped as duplicates.
		d.logger.Warn("some stored dead letters could not be deleted from SQS; they will be received again and skipped",
			"job_type", jobType, "failed", len(del.Failed), "code", aws.ToString(del.Failed[0].Code))
	}
	return len(out.Messages), nil
}

var tracer = tracing.Tracer("github.com/switchyard/switchyard/services/replay/internal/drain")

// Parse reads a DLQ message: the worker's metadata when it carries some,
// the job id and attributes, SQS's receive count and sent time.
func Parse(m types.Message, jobType string) deadletterstore.Incoming {
	in := deadletterstore.Incoming{
		MessageID: aws.ToString(m.MessageId), SQSMessageID: aws.ToString(m.MessageId), Topic: jobType,
		Payload: []byte(aws.ToString(m.Body)), Attributes: map[string]string{},
	}
	for k, v := range m.MessageAttributes {
		switch {
		case v.StringValue != nil:
			in.Attributes[k] = *v.StringValue
		case v.BinaryValue != nil:
			in.Attributes[k] = "base64:" + base64.StdEncoding.EncodeToString(v.BinaryValue)
		}
	}
	if id := in.Attributes[wmsqs.UUIDAttribute]; id != "" && !strings.HasPrefix(id, "base64:") {
		in.MessageID = id
	}
	delete(in.Attributes, wmsqs.UUIDAttribute)
	if raw, ok := in.Attributes[deadletter.Attribute]; ok {
		delete(in.Attributes, deadletter.Attribute)
		if meta, err := deadletter.Decode(raw); err == nil {
			in.Meta = &meta
			for k, v := range meta.OriginalAttributes {
				in.Attributes[k] = v
			}
		} else {
			in.Attributes[deadletter.Attribute] = raw // kept for the operator; treated as no metadata
		}
	}
	in.JobID = in.Attributes[jobmessage.JobID]
	if n, err := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]); err == nil {
		in.ReceiveCount = n
	}
	if ms, err := strconv.ParseInt(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
		in.SentAt = time.UnixMilli(ms).UTC()
	}
	return in
}
