package logging

import (
	"context"
	"encoding/json"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
)

var timeField = regexp.MustCompile(`^\{"time":"[^"]+"`)

// line logs a through a logger New would build (fast) or through the same
// chain with LogAttrs (slog's own path), and returns the line without its
// time.
func line(ctx context.Context, t *testing.T, fast bool, level slog.Level, a *Access, redact ...string) string {
	t.Helper()
	out := &lockedBuffer{}
	w := NewBufferedWriter(out)
	logger, _ := newBuffered(w, "gate\"way", "debug", "json", redact...)
	if fast {
		h, ok := logger.Handler().(flushingHandler)
		require.True(t, ok)
		require.NotNil(t, h.access)
		require.True(t, h.access.encodes(a.Extra), "the case is one the fast path encodes")
		LogAccess(ctx, logger, level, a)
	} else {
		attrs := append([]slog.Attr{
			slog.String("method", a.Method), slog.String("route", a.Route), slog.String("path", a.Path),
			slog.Int("status", a.Status), slog.Int64("bytes", a.Bytes), slog.Duration("duration", a.Duration),
			slog.String("request_id", a.RequestID),
		}, a.Extra...)
		logger.LogAttrs(ctx, level, AccessMessage, attrs...)
	}
	require.NoError(t, w.Flush())
	got := out.String()
	require.True(t, strings.HasSuffix(got, "\n"))
	require.Equal(t, 1, strings.Count(got, "\n"), got)
	var v map[string]any
	require.NoError(t, json.Unmarshal([]byte(got), &v), got)
	require.True(t, timeField.MatchString(got), got)
	return timeField.ReplaceAllString(got, `{"time":"T"`)
}

// TestAccessLineIsSlogsLine: the access-log fast path writes, byte for
// byte (but the time), what slog's JSON handler writes through the same
// chain: escaping of control characters, quotes, invalid UTF-8, U+2028,
// HTML characters; redacted keys (built-in and configured); extra
// attributes of every kind it encodes; trace and span ids, and only the
// trace id for a caller's remote span context.
func TestAccessLineIsSlogsLine(t *testing.T) {
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	local := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	remote := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, Remote: true}))
	cases := []struct {
		name   string
		ctx    context.Context
		level  slog.Level
		a      Access
		redact []string
	}{
		{"plain", context.Background(), slog.LevelInfo, Access{Method: "GET", Route: "/v1/jobs/:id", Path: "/v1/jobs/42", Status: 200, Bytes: 123, Duration: 1234567 * time.Nanosecond, RequestID: "abc"}, nil},
		{"escapes", context.Background(), slog.LevelError, Access{Method: "PO\"ST", Route: "", Path: "/a\\b\n\r\t\x01\x1f<>&é\u2028\u2029\xff\xfe end", Status: 500, Bytes: -1, RequestID: "日本"}, nil},
		{"extra kinds and redaction", context.Background(), slog.LevelWarn, Access{Method: "POST", Route: "/r", Path: "/r", Status: 401, Extra: []slog.Attr{
			slog.String("client_id", "c1"), slog.String("Authorization", "Bearer x"), slog.String("api_key", "k"),
			slog.Int64("n", -5), slog.Uint64("u", 7), slog.Bool("ok", true), slog.Duration("waited", 3*time.Millisecond),
			slog.Bool("token", false), slog.Uint64("secret", 1), slog.Int("path2", 3),
		}}, nil},
		{"configured redaction of a fixed key", context.Background(), slog.LevelInfo, Access{Method: "GET", Route: "/x", Path: "/x/secret-path", Status: 200, RequestID: "r"}, []string{" PATH ", "request_id"}},
		{"local span", local, slog.LevelInfo, Access{Method: "GET", Route: "/x", Path: "/x", Status: 204}, nil},
		{"remote span", remote, slog.LevelInfo, Access{Method: "GET", Route: "/x", Path: "/x", Status: 204}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := line(c.ctx, t, false, c.level, &c.a, c.redact...)
			got := line(c.ctx, t, true, c.level, &c.a, c.redact...)
			require.Equal(t, want, got)
		})
	}
}

// TestAccessLineFallsBack: a logger changed by With, the text format, an
// extra attribute of a kind the fast path does not encode, and a level
// the logger does not log all get slog's own behaviour.
func TestAccessLineFallsBack(t *testing.T) {
	out := &lockedBuffer{}
	w := NewBufferedWriter(out)
	logger, _ := newBuffered(w, "svc", "info", "json")
	with := logger.With("component", "x")
	h, _ := with.Handler().(flushingHandler)
	require.Nil(t, h.access, "With drops the fast path")
	LogAccess(context.Background(), with, slog.LevelInfo, &Access{Method: "GET", Status: 200})
	h, _ = logger.Handler().(flushingHandler)
	require.False(t, h.access.encodes([]slog.Attr{slog.Any("err", struct{}{})}))
	LogAccess(context.Background(), logger, slog.LevelInfo, &Access{Method: "GET", Status: 200, Extra: []slog.Attr{slog.Any("obj", map[string]int{"a": 1})}})
	LogAccess(context.Background(), logger, slog.LevelDebug, &Access{Method: "HIDDEN"})
	require.NoError(t, w.Flush())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 2, "the debug line is not written")
	require.Contains(t, lines[0], `"component":"x"`)
	require.Contains(t, lines[1], `"obj":{"a":1}`)

	text := &lockedBuffer{}
	tw := NewBufferedWriter(text)
	tl, _ := newBuffered(tw, "svc", "info", "text")
	h, _ = tl.Handler().(flushingHandler)
	require.Nil(t, h.access, "the text format has no fast path")
	LogAccess(context.Background(), tl, slog.LevelInfo, &Access{Method: "GET", Status: 200})
	require.NoError(t, tw.Flush())
	require.Contains(t, text.String(), "msg=\"http request\"")
}

// BenchmarkAccessLog: one access-log line through the process's chain,
// slog's path against the fast path, in one run.
func BenchmarkAccessLog(b *testing.B) {
	w := NewBufferedWriter(&lockedBuffer{})
	logger, _ := newBuffered(w, "gateway", "info", "json")
	a := &Access{Method: "POST", Route: "/v1/jobs/text-stats", Path: "/v1/jobs/text-stats", Status: 202, Bytes: 150,
		Duration: 1500 * time.Microsecond, RequestID: "0af7651916cd43dd8448eb211c80319c",
		Extra: []slog.Attr{slog.String("client_id", "bench-client")}}
	ctx := context.Background()
	var slogPath, fastPath time.Duration
	const block = 1000
	for b.Loop() {
		start := time.Now()
		for range block {
			logger.LogAttrs(ctx, slog.LevelInfo, AccessMessage, slog.String("method", a.Method), slog.String("route", a.Route),
				slog.String("path", a.Path), slog.Int("status", a.Status), slog.Int64("bytes", a.Bytes),
				slog.Duration("duration", a.Duration), slog.String("request_id", a.RequestID), a.Extra[0])
		}
		slogPath += time.Since(start)
		start = time.Now()
		for range block {
			LogAccess(ctx, logger, slog.LevelInfo, a)
		}
		fastPath += time.Since(start)
		_ = w.Flush()
	}
	n := float64(b.N * block)
	b.ReportMetric(float64(slogPath.Nanoseconds())/n, "slog_ns/line")
	b.ReportMetric(float64(fastPath.Nanoseconds())/n, "fast_ns/line")
}
