package tokenapi

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the token service's Prometheus metrics.
type Metrics struct {
	issued       prometheus.Counter
	refused      *prometheus.CounterVec
	rateLimited  *prometheus.CounterVec
	jwksRequests prometheus.Counter
}

// NewMetrics registers the metrics with reg; nil registers nothing.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		issued: f.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_tokens_issued_total", Help: "Access tokens issued.",
		}),
		refused: f.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_tokens_refused_total", Help: "Token requests refused, by reason.",
		}, []string{"reason"}),
		rateLimited: f.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_tokens_rate_limited_total", Help: "Token requests refused by a rate limit, by limit (ip: per address, client: tokens per client, client_failures: failed authentications per client and address).",
		}, []string{"by"}),
		jwksRequests: f.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_tokens_jwks_requests_total", Help: "Requests for the JWKS document.",
		}),
	}
}
