// Package logging builds the structured logger every Switchyard process
// uses: log/slog, JSON lines on stderr by default, with the service name on
// every line, the trace and span ids of the context a line is logged with
// (OpenTelemetry), values of secret-bearing keys redacted, and a level that
// can be changed while the process runs (the ops listener's /loglevel).
package logging

import (
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// Environment variables read by New.
const (
	EnvLevel  = "SWITCHYARD_LOG_LEVEL"  // debug, info (default), warn, error
	EnvFormat = "SWITCHYARD_LOG_FORMAT" // json (default) or text
	// EnvRedact names more keys whose values are never logged, comma
	// separated (payload fields, say), beside the built-in ones.
	EnvRedact = "SWITCHYARD_LOG_REDACT"
)

// Redacted replaces the value of a redacted key.
const Redacted = "[REDACTED]"

// builtinRedacted are keys whose values are credentials wherever they
// appear (matched case-insensitively, in any group).
var builtinRedacted = []string{
	"authorization", "proxy-authorization", "cookie", "set-cookie", "password", "passwd", "secret", "client_secret",
	"secret_id", "token", "access_token", "refresh_token", "id_token", "api_key", "apikey", "private_key", "pepper",
	"vault_token", "database_url",
}

// New returns a logger for service writing to stderr through a
// BufferedWriter (flushed every FlushInterval, and at once after a record
// at warn level or above), and the LevelVar that controls it, so the
// level can be changed while running. The LevelVar is also the process's
// (ProcessLevel); Flush writes what is buffered.
func New(service string) (*slog.Logger, *slog.LevelVar) {
	w := NewBufferedWriter(os.Stderr)
	go w.Run(context.Background(), FlushInterval)
	logger, lv := newBuffered(w, service, os.Getenv(EnvLevel), os.Getenv(EnvFormat), strings.Split(os.Getenv(EnvRedact), ",")...)
	processLevel, processWriter = lv, w
	return logger, lv
}

// newBuffered is New writing to w.
func newBuffered(w *BufferedWriter, service, level, format string, redact ...string) (*slog.Logger, *slog.LevelVar) {
	logger, lv := NewTo(w, service, level, format, redact...)
	h := flushingHandler{Handler: logger.Handler(), w: w}
	if !strings.EqualFold(format, "text") {
		h.access = newAccessEncoder(w, service, redactKeys(redact))
	}
	return slog.New(h), lv
}

var (
	processLevel  *slog.LevelVar
	processWriter *BufferedWriter
)

// Flush writes what the logger New built last holds in its buffer; a
// process calls it before it exits.
func Flush() {
	if processWriter != nil {
		_ = processWriter.Flush()
	}
}

// ProcessLevel is the level of the logger New built last, or nil.
func ProcessLevel() *slog.LevelVar { return processLevel }

// NewTo is New with explicit output, level, format and extra redacted
// keys.
func NewTo(w io.Writer, service, level, format string, redact ...string) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	if err := lv.UnmarshalText([]byte(strings.TrimSpace(level))); err != nil || level == "" {
		lv.Set(slog.LevelInfo)
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: redactor(redact)}
	var h slog.Handler
	if strings.EqualFold(format, "text") {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(traceHandler{h}).With("service", service), lv
}

// redactKeys is the set of keys whose values are redacted: the built-in
// ones and extra, lower-cased.
func redactKeys(extra []string) map[string]bool {
	keys := map[string]bool{}
	for _, k := range append(slices.Clone(builtinRedacted), extra...) {
		if k = strings.ToLower(strings.TrimSpace(k)); k != "" {
			keys[k] = true
		}
	}
	return keys
}

// redactor returns a ReplaceAttr that hides the values of secret keys.
func redactor(extra []string) func(groups []string, a slog.Attr) slog.Attr {
	keys := redactKeys(extra)
	return func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.LevelKey {
			// With a ReplaceAttr set, slog hands the level over as a
			// slog.Level (KindAny), which its JSON handler encodes through
			// encoding/json; as a string it is appended directly.
			if l, ok := a.Value.Any().(slog.Level); ok {
				return slog.String(slog.LevelKey, l.String())
			}
		}
		if a.Value.Kind() != slog.KindGroup && keys[strings.ToLower(a.Key)] {
			return slog.String(a.Key, Redacted)
		}
		return a
	}
}

// traceHandler adds trace_id and span_id to records logged with a context
// that holds a span (or a caller's trace context).
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()))
		// A remote span context is the caller's (tracing off): its span
		// is not one of ours to name.
		if sc.HasSpanID() && !sc.IsRemote() {
			r.AddAttrs(slog.String("span_id", sc.SpanID().String()))
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(attrs)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
