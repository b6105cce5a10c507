package httpserver

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/libs/tracing"
)

const tracerName = "github.com/switchyard/switchyard/libs/httpserver"

// traceMiddleware gives every request a server span, the child of the
// caller's traceparent when it sent one, named after the matched route
// once routing is done. With tracing off it only takes the caller's trace
// context into the request context (when there is one), so that what the
// request starts (a job, an upstream call) continues the caller's trace.
func traceMiddleware() echo.MiddlewareFunc {
	if !tracing.Enabled() {
		return func(next echo.HandlerFunc) echo.HandlerFunc {
			return func(c echo.Context) error {
				req := c.Request()
				if req.Header.Get("Traceparent") != "" {
					c.SetRequest(req.WithContext(tracing.ExtractHeaders(req.Context(), propagation.HeaderCarrier(req.Header))))
				}
				return next(c)
			}
		}
	}
	tracer := tracing.Tracer(tracerName)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			ctx := tracing.ExtractHeaders(req.Context(), propagation.HeaderCarrier(req.Header))
			ctx, span := tracer.Start(ctx, req.Method, trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(semconv.HTTPRequestMethodKey.String(req.Method), semconv.URLPath(req.URL.Path),
					semconv.ClientAddress(c.RealIP()), attribute.String("switchyard.request_id", RequestID(ctx))))
			defer span.End()
			c.SetRequest(req.WithContext(ctx))
			err := next(c)
			if err != nil {
				// Write the problem now, so that the span has the status sent.
				c.Error(err)
			}
			status := c.Response().Status
			if route := c.Path(); route != "" {
				span.SetName(req.Method + " " + route)
				span.SetAttributes(semconv.HTTPRoute(route))
			}
			span.SetAttributes(semconv.HTTPResponseStatusCode(status))
			if status >= http.StatusInternalServerError {
				span.SetStatus(codes.Error, http.StatusText(status))
			}
			return nil
		}
	}
}
