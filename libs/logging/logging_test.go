package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

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
