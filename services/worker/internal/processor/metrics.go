package processor

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the worker's Prometheus metrics.
type Metrics struct {
	messages *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the worker's metrics with reg; nil registers nothing.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		messages: f.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_worker_messages_total", Help: "Messages processed, by job type and outcome.",
		}, []string{"job_type", "outcome"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name: "switchyard_worker_message_seconds", Help: "Time to process one message, by job type and outcome.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"job_type", "outcome"}),
	}
}

func (m *Metrics) observe(jobType, outcome string, d time.Duration) {
	m.messages.WithLabelValues(jobType, outcome).Inc()
	m.duration.WithLabelValues(jobType, outcome).Observe(d.Seconds())
}
