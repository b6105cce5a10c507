package sqsqueue

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
)

// Depth is how many messages a queue holds, as SQS approximates it.
type Depth struct {
	// Visible messages wait to be received.
	Visible int `json:"visible"`
	// InFlight messages were received and are neither deleted nor
	// visible again (being processed, or waiting out a retry's backoff).
	InFlight int `json:"in_flight"`
	// Delayed messages were sent with a delay that has not passed.
	Delayed int `json:"delayed"`
}

// Depth reads the approximate message counts of topic's queue (or, for a
// dead-letter topic, its DLQ).
func (q *Queues) Depth(ctx context.Context, topic string) (Depth, error) {
	url, err := q.Ensure(ctx, topic)
	if err != nil {
		return Depth{}, err
	}
	out, err := q.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: &url,
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible, types.QueueAttributeNameApproximateNumberOfMessagesDelayed},
	})
	if err != nil {
		return Depth{}, fmt.Errorf("reading the depth of %s: %w", q.Name(topic), err)
	}
	n := func(a types.QueueAttributeName) int {
		v, _ := strconv.Atoi(out.Attributes[string(a)])
		return v
	}
	return Depth{
		Visible:  n(types.QueueAttributeNameApproximateNumberOfMessages),
		InFlight: n(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible),
		Delayed:  n(types.QueueAttributeNameApproximateNumberOfMessagesDelayed),
	}, nil
}

// DepthSampler reads the depth of every job type's queue and DLQ into
// Prometheus gauges at an interval: switchyard_sqs_messages{job_type,
// queue="jobs"|"dlq", state="visible"|"in_flight"|"delayed"}. One
// GetQueueAttributes call per queue and interval.
type DepthSampler struct {
	queues   *Queues
	jobTypes []string
	interval time.Duration
	logger   *slog.Logger
	messages *prometheus.GaugeVec
	errors   prometheus.Counter
}

// NewDepthSampler registers the gauges with reg (when not nil) and
// returns a sampler of jobTypes' queues every interval (default 15 s).
func NewDepthSampler(queues *Queues, jobTypes []string, interval time.Duration, reg prometheus.Registerer, logger *slog.Logger) *DepthSampler {
	if interval <= 0 {
		interval = 15 * time.Second
	}
	s := &DepthSampler{
		queues: queues, jobTypes: jobTypes, interval: interval, logger: logger,
		messages: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchyard_sqs_messages",
			Help: "Messages in each job type's SQS queue and DLQ (ApproximateNumberOfMessages*, sampled), by state: visible, in_flight (received, not deleted), delayed.",
		}, []string{"job_type", "queue", "state"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_sqs_depth_sample_errors_total",
			Help: "Failed reads of SQS queue depths.",
		}),
	}
	if reg != nil {
		reg.MustRegister(s.messages, s.errors)
	}
	return s
}

// Run samples now and every interval until ctx ends.
func (s *DepthSampler) Run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.SampleOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SampleOnce reads every queue's depth into the gauges once.
func (s *DepthSampler) SampleOnce(ctx context.Context) {
	for _, jt := range s.jobTypes {
		for queue, topic := range map[string]string{"jobs": jt, "dlq": DeadLetterTopic(jt)} {
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			d, err := s.queues.Depth(qctx, topic)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					s.errors.Inc()
					s.logger.Warn("reading SQS queue depth for metrics", "job_type", jt, "queue", queue, "error", err)
				}
				continue
			}
			s.messages.WithLabelValues(jt, queue, "visible").Set(float64(d.Visible))
			s.messages.WithLabelValues(jt, queue, "in_flight").Set(float64(d.InFlight))
			s.messages.WithLabelValues(jt, queue, "delayed").Set(float64(d.Delayed))
		}
	}
}
