// Package tracing sets up OpenTelemetry tracing for a Switchyard process and
// carries W3C trace context through the places HTTP headers cannot go: job
// rows, outbox messages and SQS message attributes.
//
// Tracing is off unless the standard OpenTelemetry environment asks for it
// (OTEL_TRACES_EXPORTER, or an OTLP endpoint in OTEL_EXPORTER_OTLP_ENDPOINT
// or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; OTEL_SDK_DISABLED=true wins). Off,
// the global tracer provider stays OpenTelemetry's no-op one: spans cost a
// context lookup, record nothing, and an incoming traceparent still travels
// on unchanged, so traces started upstream are not broken by Switchyard.
// On, spans are batched to the exporter autoexport builds from the same
// environment (OTLP over HTTP/protobuf by default, gRPC, or console), sampled
// as OTEL_TRACES_SAMPLER says (parent-based always-on by default), with the
// resource from OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/libs/buildinfo"
)

// Metadata keys under which trace context travels in message metadata
// (outbox rows, SQS message attributes), as in HTTP headers.
const (
	MetaTraceParent = "traceparent"
	MetaTraceState  = "tracestate"
)

// propagator is W3C trace context (and baggage), installed globally by
// Setup and used by Inject and Extract whether or not tracing is on.
var propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Enabled reports whether the environment asks for traces to be exported.
func Enabled() bool {
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	if e := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); e != "" {
		return e != "none"
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup installs the W3C propagator and, when Enabled, a tracer provider
// for service. The returned shutdown flushes spans still in the batch; call
// it once the process's work has stopped.
func Setup(ctx context.Context, service string, logger *slog.Logger) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(propagator)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("tracing", "error", err)
	}))
	if !Enabled() {
		return func(context.Context) error { return nil }, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("creating the span exporter from OTEL_* settings: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("switchyard-"+service), semconv.ServiceVersion(buildinfo.String())),
		// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the above.
		resource.WithFromEnv(), resource.WithTelemetrySDK(), resource.WithHost(), resource.WithProcessPID())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("describing the tracing resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	logger.Info("tracing on", "exporter", fmt.Sprintf("%T", exp))
	return tp.Shutdown, nil
}

// Tracer returns the tracer of an instrumented package (its import path).
func Tracer(name string) trace.Tracer { return otel.Tracer(name) }

// Inject writes the trace context of ctx into metadata (traceparent, and
// tracestate when there is one). It writes nothing when ctx holds no valid
// span context.
func Inject(ctx context.Context, metadata map[string]string) {
	propagator.Inject(ctx, propagation.MapCarrier(metadata))
}

// Extract returns ctx carrying the remote span context found in metadata,
// as the parent of the spans started from it.
func Extract(ctx context.Context, metadata map[string]string) context.Context {
	return propagator.Extract(ctx, propagation.MapCarrier(metadata))
}

// ExtractHeaders is Extract for HTTP headers.
func ExtractHeaders(ctx context.Context, header propagation.HeaderCarrier) context.Context {
	return propagator.Extract(ctx, header)
}

// InjectHeaders is Inject for HTTP headers.
func InjectHeaders(ctx context.Context, header propagation.HeaderCarrier) {
	propagator.Inject(ctx, header)
}

// TraceParent returns the W3C traceparent of the span in ctx, or "".
func TraceParent(ctx context.Context) string {
	md := map[string]string{}
	propagation.TraceContext{}.Inject(ctx, propagation.MapCarrier(md))
	return md[MetaTraceParent]
}

// TraceID returns the hex trace id of the span in ctx, or "".
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

// TraceIDOf returns the trace id of a W3C traceparent, or "" when tp is
// not a valid one.
func TraceIDOf(tp string) string {
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(),
		propagation.MapCarrier{MetaTraceParent: tp}))
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

// Fail marks span failed with err (recorded as an exception event).
func Fail(span trace.Span, err error) {
	if err == nil || !span.IsRecording() {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}
