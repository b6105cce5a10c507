package tracing_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/libs/tracing"
)

func TestEnabled(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"nothing set", nil, false},
		{"exporter otlp", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{"exporter none", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, false},
		{"endpoint only", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, true},
		{"traces endpoint only", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, true},
		{"sdk disabled wins", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
				t.Setenv(k, tt.env[k])
			}
			require.Equal(t, tt.want, tracing.Enabled())
		})
	}
}

const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// TestCarriedThroughMetadata: a span started from metadata continues its
// trace, and its own context is what travels on.
func TestCarriedThroughMetadata(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	ctx := tracing.Extract(context.Background(), map[string]string{tracing.MetaTraceParent: parent, "job_id": "j"})
	require.Equal(t, parent, tracing.TraceParent(ctx), "with no span of its own, the remote parent is what travels")
	ctx, span := tp.Tracer("t").Start(ctx, "work")
	out := map[string]string{}
	tracing.Inject(ctx, out)
	span.End()

	spans := exp.GetSpans()
	require.Len(t, spans, 1)
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", spans[0].SpanContext.TraceID().String())
	require.Equal(t, "00f067aa0ba902b7", spans[0].Parent.SpanID().String())
	require.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-"+spans[0].SpanContext.SpanID().String()+"-01", out[tracing.MetaTraceParent])
	require.Equal(t, out[tracing.MetaTraceParent], tracing.TraceParent(ctx))
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", tracing.TraceID(ctx))
}

func TestNoTraceContext(t *testing.T) {
	t.Parallel()
	for _, md := range []map[string]string{nil, {}, {tracing.MetaTraceParent: "garbage"},
		{tracing.MetaTraceParent: "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}} {
		ctx := tracing.Extract(context.Background(), md)
		require.False(t, trace.SpanContextFromContext(ctx).IsValid(), "%v", md)
		require.Empty(t, tracing.TraceParent(ctx))
		require.Empty(t, tracing.TraceID(ctx))
		out := map[string]string{}
		tracing.Inject(ctx, out)
		require.Empty(t, out)
	}
}

func TestTraceIDOf(t *testing.T) {
	t.Parallel()
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", tracing.TraceIDOf(parent))
	for _, bad := range []string{"", "00-xyz", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"} {
		require.Empty(t, tracing.TraceIDOf(bad), bad)
	}
}

func TestSetupOffInstallsNothing(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	shutdown, err := tracing.Setup(context.Background(), "test", slogDiscard())
	require.NoError(t, err)
	require.NoError(t, shutdown(context.Background()))
	_, span := tracing.Tracer("t").Start(context.Background(), "x")
	require.False(t, span.IsRecording(), "the no-op provider stays")
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
