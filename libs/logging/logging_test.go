package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/libs/logging"
)

func decode(t *testing.T, buf *bytes.Buffer) map[string]any {
	t.Helper()
	var line map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &line), buf.String())
	buf.Reset()
	return line
}

func TestRedaction(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger, _ := logging.NewTo(&buf, "svc", "info", "json", " card_number ", "")
	logger.Info("x", "Authorization", "Bearer abc", "client_secret", "s3cr3t", "card_number", "4111",
		slog.Group("req", slog.String("token", "t0k3n"), slog.String("path", "/v1")), "client_id", "c1")
	line := decode(t, &buf)
	require.Equal(t, logging.Redacted, line["Authorization"])
	require.Equal(t, logging.Redacted, line["client_secret"])
	require.Equal(t, logging.Redacted, line["card_number"], "configured key")
	require.Equal(t, map[string]any{"token": logging.Redacted, "path": "/v1"}, line["req"])
	require.Equal(t, "c1", line["client_id"])
	require.Equal(t, "svc", line["service"])
	require.NotContains(t, buf.String()+line["msg"].(string), "s3cr3t")
}

func TestTraceIDs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger, _ := logging.NewTo(&buf, "svc", "info", "json")
	logger.InfoContext(context.Background(), "no trace")
	require.NotContains(t, decode(t, &buf), "trace_id")

	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	logger.With("job_id", "j").InfoContext(ctx, "traced")
	line := decode(t, &buf)
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", line["trace_id"])
	require.Equal(t, "00f067aa0ba902b7", line["span_id"])
	require.Equal(t, "j", line["job_id"])

	remote := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	logger.InfoContext(remote, "a caller's trace, no span of ours")
	line = decode(t, &buf)
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", line["trace_id"])
	require.NotContains(t, line, "span_id")
}

func TestLevelChangesAtRuntime(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger, lv := logging.NewTo(&buf, "svc", "warn", "text")
	logger.Info("hidden")
	require.Zero(t, buf.Len())
	lv.Set(slog.LevelDebug)
	logger.Debug("shown")
	require.Contains(t, buf.String(), "shown")
}

// BenchmarkAccessLine logs a line shaped like the gateway's access log
// (the attributes it carries on an authenticated sync route) through the
// process's handler chain, to a discarding writer.
func BenchmarkAccessLine(b *testing.B) {
	logger, _ := logging.NewTo(io.Discard, "gateway", "info", "json")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		logger.LogAttrs(ctx, slog.LevelInfo, "http request",
			slog.String("method", "GET"), slog.String("route", "/v1/hello"), slog.String("path", "/v1/hello"),
			slog.Int("status", 200), slog.Int64("bytes", 27), slog.Duration("duration", 41*time.Microsecond),
			slog.String("request_id", "627118accf90ff092c9cce5ce2ffd202"), slog.String("client_id", "client-00"),
			slog.String("sync_route", "hello"))
	}
}

// TestLevelIsWrittenAsText: the level reaches the line as its name
// whatever path the handler takes to write it.
func TestLevelIsWrittenAsText(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger, _ := logging.NewTo(&buf, "svc", "debug", "json")
	for _, l := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError, slog.LevelError + 2} {
		logger.Log(context.Background(), l, "x")
		require.Equal(t, l.String(), decode(t, &buf)["level"])
	}
}
