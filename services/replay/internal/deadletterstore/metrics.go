package deadletterstore

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// maxFingerprintSeries bounds the series of switchyard_dead_letters: the
// most frequent fingerprints of each job type get their own, the rest
// share fingerprint="other".
const maxFingerprintSeries = 20

// StatsSampler reads the stored dead letters, grouped by job type and
// error fingerprint, into gauges at an interval: what an alert on "the
// DLQ is not empty / growing" and a dashboard of failure causes read.
type StatsSampler struct {
	store    *Store
	interval time.Duration
	logger   *slog.Logger
	letters  *prometheus.GaugeVec
	errors   prometheus.Counter
}

// NewStatsSampler registers the gauges with reg (when not nil).
func NewStatsSampler(store *Store, interval time.Duration, reg prometheus.Registerer, logger *slog.Logger) *StatsSampler {
	if interval <= 0 {
		interval = 15 * time.Second
	}
	s := &StatsSampler{
		store: store, interval: interval, logger: logger,
		letters: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchyard_dead_letters",
			Help: "Dead letters in the store by job type, error fingerprint (the 20 most frequent per type; the rest as \"other\") and status: stored (waiting for an operator) or replayed (sampled; archived ones are not counted).",
		}, []string{"job_type", "fingerprint", "status"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_dead_letters_sample_errors_total", Help: "Failed reads of the dead-letter counts.",
		}),
	}
	if reg != nil {
		reg.MustRegister(s.letters, s.errors)
	}
	return s
}

// Run samples now and every interval until ctx ends.
func (s *StatsSampler) Run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		if err := s.SampleOnce(ctx); err != nil && ctx.Err() == nil {
			s.errors.Inc()
			s.logger.Warn("reading dead-letter counts for metrics", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SampleOnce replaces the gauges with the store's current counts.
func (s *StatsSampler) SampleOnce(ctx context.Context) error {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	groups, err := s.store.Stats(qctx, Filter{})
	if err != nil {
		return err
	}
	type key struct{ topic, fingerprint, status string }
	counts := map[key]float64{}
	seen := map[string]int{}   // fingerprints given a series, per topic
	for _, g := range groups { // most frequent first
		if g.Stored+g.Replayed == 0 {
			continue // archived only
		}
		fp := g.Fingerprint
		if seen[g.Topic] >= maxFingerprintSeries {
			fp = "other"
		} else {
			seen[g.Topic]++
		}
		counts[key{g.Topic, fp, "stored"}] += float64(g.Stored)
		counts[key{g.Topic, fp, "replayed"}] += float64(g.Replayed)
	}
	s.letters.Reset()
	for k, n := range counts {
		s.letters.WithLabelValues(k.topic, k.fingerprint, k.status).Set(n)
	}
	return nil
}
