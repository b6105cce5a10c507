package logging

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"
)

// Access is one HTTP request's access-log line.
type Access struct {
	Method, Route, Path string
	Status              int
	Bytes               int64
	Duration            time.Duration
	RequestID           string
	// Extra are further attributes (who called, why a request was
	// refused), written after the fixed ones.
	Extra []slog.Attr
}

// AccessMessage is the message of every access-log line.
const AccessMessage = "http request"

// LogAccess writes a's line ("http request") through logger at level.
//
// Through a logger that New built (and that no With or WithGroup has
// changed since), the line is encoded here, byte for byte as slog's JSON
// handler would write it (the service, redacted keys, the trace and span
// ids), without slog's generic per-attribute work: one line per request
// was 9 % of the gateway's CPU on its cheapest route. Any other logger,
// the text format, or an extra attribute of a kind not encoded here
// takes slog's own path.
func LogAccess(ctx context.Context, logger *slog.Logger, level slog.Level, a *Access) {
	if !logger.Enabled(ctx, level) {
		return
	}
	if h, ok := logger.Handler().(flushingHandler); ok && h.access != nil && h.access.encodes(a.Extra) {
		h.access.write(ctx, level, a)
		h.written(level)
		return
	}
	var buf [12]slog.Attr
	attrs := append(buf[:0],
		slog.String("method", a.Method),
		slog.String("route", a.Route),
		slog.String("path", a.Path),
		slog.Int("status", a.Status),
		slog.Int64("bytes", a.Bytes),
		slog.Duration("duration", a.Duration),
		slog.String("request_id", a.RequestID))
	attrs = append(attrs, a.Extra...)
	logger.LogAttrs(ctx, level, AccessMessage, attrs...)
}

// accessEncoder writes access-log lines as slog's JSON handler does, for
// the handler chain New builds: {time, level, msg, service, attributes,
// trace_id, span_id}.
type accessEncoder struct {
	w *BufferedWriter
	// prefix is `,"msg":"http request","service":"<service>"`.
	prefix string
	redact map[string]bool
	// fixed are the keys every line has, looked up in redact once.
	fixed [fixedKeys]fixedKey
	bufs  sync.Pool
}

// The keys every access-log line has, in order, and the trace's.
const (
	keyMethod = iota
	keyRoute
	keyPath
	keyStatus
	keyBytes
	keyDuration
	keyRequestID
	keyTraceID
	keySpanID
	fixedKeys
)

var fixedKeyNames = [fixedKeys]string{"method", "route", "path", "status", "bytes", "duration", "request_id", "trace_id", "span_id"}

// fixedKey is `,"key":` and whether the key's value is redacted.
type fixedKey struct {
	prefix   string
	redacted bool
}

func newAccessEncoder(w *BufferedWriter, service string, redact map[string]bool) *accessEncoder {
	p := append([]byte(`,"msg":`), appendJSONString(nil, AccessMessage)...)
	p = append(p, `,"service":`...)
	p = appendJSONString(p, service)
	e := &accessEncoder{w: w, prefix: string(p), redact: redact}
	for i, k := range fixedKeyNames {
		e.fixed[i] = fixedKey{prefix: "," + string(appendJSONString(nil, k)) + ":", redacted: redact[k]}
	}
	e.bufs.New = func() any { b := make([]byte, 0, 512); return &b }
	return e
}

// encodes reports whether every extra attribute is of a kind encoded
// here.
func (e *accessEncoder) encodes(extra []slog.Attr) bool {
	for _, a := range extra {
		if a.Key == "" {
			return false
		}
		switch a.Value.Kind() {
		case slog.KindString, slog.KindInt64, slog.KindUint64, slog.KindBool, slog.KindDuration:
		default:
			return false
		}
	}
	return true
}

func (e *accessEncoder) write(ctx context.Context, level slog.Level, a *Access) {
	bp := e.bufs.Get().(*[]byte) //nolint:forcetypeassert // the pool holds only *[]byte
	b := (*bp)[:0]
	b = append(b, `{"time":"`...)
	b = time.Now().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":`...)
	b = appendJSONString(b, level.String())
	b = append(b, e.prefix...)
	b = e.fixedString(b, keyMethod, a.Method)
	b = e.fixedString(b, keyRoute, a.Route)
	b = e.fixedString(b, keyPath, a.Path)
	b = e.fixedInt(b, keyStatus, int64(a.Status))
	b = e.fixedInt(b, keyBytes, a.Bytes)
	b = e.fixedInt(b, keyDuration, int64(a.Duration))
	b = e.fixedString(b, keyRequestID, a.RequestID)
	for _, x := range a.Extra {
		switch v := x.Value; v.Kind() {
		case slog.KindString:
			b = e.appendString(b, x.Key, v.String())
		case slog.KindInt64:
			b = e.appendInt(b, x.Key, v.Int64())
		case slog.KindDuration:
			b = e.appendInt(b, x.Key, int64(v.Duration()))
		case slog.KindUint64:
			var ok bool
			if b, ok = e.appendKey(b, x.Key); ok {
				b = strconv.AppendUint(b, v.Uint64(), 10)
			}
		case slog.KindBool:
			var ok bool
			if b, ok = e.appendKey(b, x.Key); ok {
				b = strconv.AppendBool(b, v.Bool())
			}
		}
	}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		b = e.fixedString(b, keyTraceID, sc.TraceID().String())
		if sc.HasSpanID() && !sc.IsRemote() {
			b = e.fixedString(b, keySpanID, sc.SpanID().String())
		}
	}
	b = append(b, "}\n"...)
	_, _ = e.w.Write(b)
	*bp = b
	e.bufs.Put(bp)
}

// fixedString appends fixed key k with the string v (or redacted).
func (e *accessEncoder) fixedString(b []byte, k int, v string) []byte {
	b = append(b, e.fixed[k].prefix...)
	if e.fixed[k].redacted {
		return appendJSONString(b, Redacted)
	}
	return appendJSONString(b, v)
}

// fixedInt appends fixed key k with the number v (or redacted).
func (e *accessEncoder) fixedInt(b []byte, k int, v int64) []byte {
	b = append(b, e.fixed[k].prefix...)
	if e.fixed[k].redacted {
		return appendJSONString(b, Redacted)
	}
	return strconv.AppendInt(b, v, 10)
}

// appendKey appends `,"key":` and reports true, or, for a key whose value
// is redacted, appends `,"key":"[REDACTED]"` and reports false.
func (e *accessEncoder) appendKey(b []byte, key string) ([]byte, bool) {
	b = append(b, ',')
	b = appendJSONString(b, key)
	b = append(b, ':')
	if e.redact[strings.ToLower(key)] {
		return appendJSONString(b, Redacted), false
	}
	return b, true
}

func (e *accessEncoder) appendString(b []byte, key, v string) []byte {
	b, ok := e.appendKey(b, key)
	if !ok {
		return b
	}
	return appendJSONString(b, v)
}

func (e *accessEncoder) appendInt(b []byte, key string, v int64) []byte {
	b, ok := e.appendKey(b, key)
	if !ok {
		return b
	}
	return strconv.AppendInt(b, v, 10)
}

// appendJSONString appends s quoted and escaped as slog's JSON handler
// escapes it: control characters, quote and backslash escaped, invalid
// UTF-8 as U+FFFD, U+2028 and U+2029 escaped, HTML characters left as
// they are.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
