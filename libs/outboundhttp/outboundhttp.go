// Package outboundhttp is how Switchyard calls other people's HTTP
// services (a sync route's upstream, a job type's target): pooled
// keep-alive connections with a bounded dial and TLS handshake, no proxy
// from the environment (HTTP_PROXY would otherwise receive every request
// and payload), no transparent decompression (bodies pass as sent), and
// redirects never followed: a 3xx is the answer, so that a request and
// its secret headers go to the configured URL and nowhere else.
package outboundhttp

import (
	"net"
	"net/http"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/switchyard/switchyard/libs/tracing"
)

// NewTransport returns the transport for outbound calls.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 5 * time.Second,
		ForceAttemptHTTP2:   true,
		DisableCompression:  true,
	}
}

// NewClient returns a client over transport that never follows a
// redirect.
func NewClient(transport http.RoundTripper) *http.Client {
	return &http.Client{
		Transport:     transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// ForJobs returns the client a job handler calls out with: client, or
// when nil a NewClient over NewTransport; with tracing on, its transport
// is wrapped so that each call is a client span in the job's trace and the
// other side receives that span as its traceparent.
func ForJobs(client *http.Client) *http.Client {
	if client == nil {
		client = NewClient(NewTransport())
	}
	if tracing.Enabled() {
		traced := *client
		traced.Transport = otelhttp.NewTransport(client.Transport)
		client = &traced
	}
	return client
}
