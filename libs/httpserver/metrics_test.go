package httpserver_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/httpserver"
)

func TestHTTPMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	e := httpserver.NewEcho(slog.New(slog.DiscardHandler), httpserver.WithMetrics(httpserver.NewHTTPMetrics(reg)))
	e.GET("/v1/jobs/:id", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	for _, r := range []struct{ method, path string }{
		{"GET", "/v1/jobs/1"}, {"GET", "/v1/jobs/2"}, {"GET", "/nowhere"}, {"BREW", "/v1/jobs/3"},
	} {
		e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(r.method, r.path, nil))
	}
	families, err := reg.Gather()
	require.NoError(t, err)
	byName := map[string]int{}
	for _, mf := range families {
		byName[mf.GetName()] = len(mf.GetMetric())
	}
	require.Equal(t, 3, byName["switchyard_http_requests_total"], "one series per route, method and status")
	require.Equal(t, 3, byName["switchyard_http_request_duration_seconds"])
	require.EqualValues(t, 2, requests(t, reg, "/v1/jobs/:id", "GET", "200"), "two requests, one series: the route, not the path")
	require.EqualValues(t, 1, requests(t, reg, "unmatched", "GET", "404"))
	require.EqualValues(t, 1, requests(t, reg, "/v1/jobs/:id", "OTHER", "405"), "unknown methods share one label value")
}

// requests reads the switchyard_http_requests_total series with labels.
func requests(t *testing.T, reg *prometheus.Registry, route, method, status string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "switchyard_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			if got["route"] == route && got["method"] == method && got["status"] == status {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series route=%s method=%s status=%s", route, method, status)
	return 0
}
