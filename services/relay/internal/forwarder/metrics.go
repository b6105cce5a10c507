package forwarder

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the relay's Prometheus metrics.
type Metrics struct {
	forwarded   prometheus.Counter
	parked      prometheus.Counter
	errors      prometheus.Counter
	batchSize   prometheus.Histogram
	sendSeconds prometheus.Histogram
	pending     prometheus.Gauge
	oldestAge   prometheus.Gauge
	parkedRows  prometheus.Gauge
	sampleFails prometheus.Counter
}

// NewMetrics registers the relay's metrics with reg; nil registers nothing
// (for tests and benchmarks).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		forwarded: f.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_relay_forwarded_total", Help: "Outbox messages accepted by SQS.",
		}),
		parked: f.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_relay_parked_total", Help: "Outbox rows that were not forwarder envelopes, parked for inspection.",
		}),
		errors: f.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_relay_batch_errors_total", Help: "Outbox batches that failed in part or whole.",
		}),
		batchSize: f.NewHistogram(prometheus.HistogramOpts{
			Name: "switchyard_relay_batch_size", Help: "Rows per claimed outbox batch.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500},
		}),
		sendSeconds: f.NewHistogram(prometheus.HistogramOpts{
			Name: "switchyard_relay_send_seconds", Help: "Time to send one claimed batch to SQS.",
			Buckets: prometheus.ExponentialBuckets(0.002, 2, 12),
		}),
		pending: f.NewGauge(prometheus.GaugeOpts{
			Name: "switchyard_outbox_backlog_messages", Help: "Outbox messages waiting to be forwarded (sampled).",
		}),
		oldestAge: f.NewGauge(prometheus.GaugeOpts{
			Name: "switchyard_outbox_oldest_age_seconds", Help: "How long the oldest waiting outbox message has waited; 0 when none waits (sampled).",
		}),
		parkedRows: f.NewGauge(prometheus.GaugeOpts{
			Name: "switchyard_outbox_parked_messages", Help: "Outbox rows parked because they are not forwarder envelopes (sampled).",
		}),
		sampleFails: f.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_outbox_sample_errors_total", Help: "Failed reads of the outbox backlog.",
		}),
	}
}
