package accesstoken

import (
	"fmt"
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	failures  *prometheus.CounterVec
	fetches   *prometheus.CounterVec
	cacheHits prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) metrics {
	f := promauto.With(reg)
	return metrics{
		failures: f.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_auth_failures_total", Help: "Requests refused by authentication, by reason.",
		}, []string{"reason"}),
		fetches: f.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_auth_issuer_fetches_total", Help: "Discovery and JWKS requests to the issuer, by outcome.",
		}, []string{"outcome"}),
		cacheHits: f.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_auth_token_cache_hits_total", Help: "Requests whose token was found in the verified-token cache.",
		}),
	}
}

// maxIssuerResponse bounds discovery and JWKS documents.
const maxIssuerResponse = 1 << 20

// countingClient returns a copy of c whose requests are counted and whose
// response bodies are cut off at maxIssuerResponse.
func countingClient(c *http.Client, m metrics) *http.Client {
	out := *c
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	out.Transport = roundTripper(func(r *http.Request) (*http.Response, error) {
		resp, err := base.RoundTrip(r)
		if err != nil {
			m.fetches.WithLabelValues("error").Inc()
			return nil, err
		}
		m.fetches.WithLabelValues(fmt.Sprintf("%dxx", resp.StatusCode/100)).Inc()
		resp.Body = limitedBody{Reader: io.LimitReader(resp.Body, maxIssuerResponse), Closer: resp.Body}
		return resp, nil
	})
	return &out
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type limitedBody struct {
	io.Reader
	io.Closer
}
