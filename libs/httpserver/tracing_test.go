package httpserver_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/logging"
	"github.com/switchyard/switchyard/libs/tracing"
)

const callerParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// TestTracingOff: with tracing off no span is made, but the caller's trace
// context reaches handlers (and what they start) and the access log.
func TestTracingOff(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	var logs bytes.Buffer
	logger, _ := logging.NewTo(&logs, "test", "info", "json")
	e := httpserver.NewEcho(logger)
	e.GET("/x", func(c echo.Context) error {
		return c.String(http.StatusOK, tracing.TraceParent(c.Request().Context()))
	})
	req := httptest.NewRequest(http.MethodGet, "/x", nil)
	req.Header.Set("Traceparent", callerParent)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	require.Equal(t, callerParent, rec.Body.String())
	require.Contains(t, logs.String(), `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"`)

	rec = httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/x", nil))
	require.Empty(t, rec.Body.String(), "no caller trace, no trace")
}

// TestTracingOn: each request is a server span named after its route,
// the child of the caller's, with the status; handlers run inside it.
func TestTracingOn(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	exp := tracetest.NewInMemoryExporter()
	prev := otel.GetTracerProvider()
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)))

	e := httpserver.NewEcho(slog.New(slog.DiscardHandler))
	var inHandler trace.SpanContext
	e.GET("/v1/jobs/:id", func(c echo.Context) error {
		inHandler = trace.SpanContextFromContext(c.Request().Context())
		return c.String(http.StatusOK, "ok")
	})
	e.GET("/boom", func(c echo.Context) error { return c.NoContent(http.StatusBadGateway) })

	req := httptest.NewRequest(http.MethodGet, "/v1/jobs/42", nil)
	req.Header.Set("Traceparent", callerParent)
	e.ServeHTTP(httptest.NewRecorder(), req)
	e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/boom", nil))

	spans := exp.GetSpans()
	require.Len(t, spans, 2)
	job := spans[0]
	require.Equal(t, "GET /v1/jobs/:id", job.Name)
	require.Equal(t, trace.SpanKindServer, job.SpanKind)
	require.Equal(t, "00f067aa0ba902b7", job.Parent.SpanID().String())
	require.Equal(t, job.SpanContext.SpanID(), inHandler.SpanID(), "the handler runs in the request's span")
	require.Contains(t, job.Attributes, attribute.Int("http.response.status_code", 200))
	boom := spans[1]
	require.False(t, boom.Parent.IsValid(), "no caller trace: a new one")
	require.Equal(t, "Error", boom.Status.Code.String())
	require.Contains(t, boom.Attributes, attribute.Int("http.response.status_code", 502))
}
