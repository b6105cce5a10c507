package processor

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/switchyard/switchyard/libs/deadletter"
)

// Metrics are the worker's Prometheus metrics.
type Metrics struct {
	messages     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	deadLetters  *prometheus.CounterVec
	retryDelay   *prometheus.HistogramVec
	visibilities *prometheus.CounterVec
	dbWaiting    prometheus.Gauge
}

// NewMetrics registers the worker's metrics with reg; nil registers nothing.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		messages: f.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_worker_messages_total", Help: "Messages processed, by job type and outcome (succeeded, duplicate, retrying, dead_lettered, cancelled, early, error).",
		}, []string{"job_type", "outcome"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name: "switchyard_worker_message_seconds", Help: "Time to process one message, by job type and outcome.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"job_type", "outcome"}),
		deadLetters: f.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_worker_dead_letters_total", Help: "Messages the worker sent to a dead-letter queue, by job type and reason.",
		}, []string{"job_type", "reason"}),
		retryDelay: f.NewHistogramVec(prometheus.HistogramOpts{
			Name: "switchyard_worker_retry_delay_seconds", Help: "Backoff before the next attempt of a failed job, by job type.",
			Buckets: prometheus.ExponentialBuckets(0.5, 2, 16),
		}, []string{"job_type"}),
		visibilities: f.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_worker_visibility_changes_total", Help: "SQS visibility changes by kind (heartbeat of a running handler, backoff of a failed attempt, schedule: an early message of a scheduled job hidden until due) and result.",
		}, []string{"job_type", "kind", "result"}),
		dbWaiting: f.NewGauge(prometheus.GaugeOpts{
			Name: "switchyard_worker_waiting_for_database", Help: "Messages held by consumers that wait for an unreachable Postgres to answer again.",
		}),
	}
}

func (m *Metrics) waitingForDatabase(delta float64) { m.dbWaiting.Add(delta) }

func (m *Metrics) observe(jobType, outcome string, d time.Duration) {
	m.messages.WithLabelValues(jobType, outcome).Inc()
	m.duration.WithLabelValues(jobType, outcome).Observe(d.Seconds())
}

func (m *Metrics) deadLettered(jobType string, reason deadletter.Reason) {
	m.deadLetters.WithLabelValues(jobType, string(reason)).Inc()
}

func (m *Metrics) retryScheduled(jobType string, d time.Duration) {
	m.retryDelay.WithLabelValues(jobType).Observe(d.Seconds())
}

func (m *Metrics) visibilityChange(jobType, kind string, ok bool) {
	result := "ok"
	if !ok {
		result = "error"
	}
	m.visibilities.WithLabelValues(jobType, kind, result).Inc()
}
