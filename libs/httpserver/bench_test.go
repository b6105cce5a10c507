package httpserver_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/libs/httpserver"
)

// countingObserver stands in for a request observer (the gateway's usage
// recorder costs a lock and a map update; this one an atomic add).
type countingObserver struct{ n int64 }

func (o *countingObserver) ObserveRequest(context.Context, string, string, int, time.Duration) { o.n++ }

// BenchmarkObservability serves a route that does nothing with the shared
// stack bare (request id, access log at warn, tracing off) and with HTTP
// metrics and a request observer, alternating blocks of requests in one
// run, and reports the ratio of the rates: the per-request cost of the
// metrics on the cheapest possible route.
func BenchmarkObservability(b *testing.B) {
	logger := slog.New(slog.NewTextHandler(httptest.NewRecorder(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	build := func(opts ...httpserver.Option) *httpserver.Echo {
		e := httpserver.NewEcho(logger, opts...)
		e.GET("/v1/jobs/:id", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
		return e
	}
	stacks := []*httpserver.Echo{
		build(),
		build(httpserver.WithMetrics(httpserver.NewHTTPMetrics(prometheus.NewRegistry())), httpserver.WithObserver(&countingObserver{})),
	}
	const block = 2000
	spent := make([]time.Duration, len(stacks))
	for b.Loop() {
		for i, e := range stacks {
			start := time.Now()
			for range block {
				req := httptest.NewRequest(http.MethodGet, "/v1/jobs/42", nil)
				req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
				e.ServeHTTP(httptest.NewRecorder(), req)
			}
			spent[i] += time.Since(start)
		}
	}
	n := float64(b.N * block)
	b.ReportMetric(n/spent[0].Seconds(), "bare_req/s")
	b.ReportMetric(n/spent[1].Seconds(), "observed_req/s")
	b.ReportMetric(spent[0].Seconds()/spent[1].Seconds(), "ratio")
	b.ReportMetric(float64(spent[1]-spent[0])/n, "added_ns/req")
}
