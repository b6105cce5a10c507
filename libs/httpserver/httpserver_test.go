package httpserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/problem"
)

func TestPanicBecomesAProblem(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	e := httpserver.NewEcho(slog.New(slog.NewJSONHandler(&logs, nil)))
	e.GET("/boom", func(echo.Context) error { panic("secret internal state") })
	e.GET("/ok", func(c echo.Context) error { return c.String(http.StatusOK, "fine") })

	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/boom", nil))
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	require.Equal(t, problem.ContentType, rec.Header().Get("Content-Type"))
	require.NotContains(t, rec.Body.String(), "secret", "no panic value or stack reaches the client")
	require.NotContains(t, rec.Body.String(), "goroutine")
	var p map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
	require.Equal(t, problem.Internal.Type(), p["type"])
	require.Equal(t, rec.Header().Get(httpserver.HeaderRequestID), p["request_id"])
	require.Contains(t, logs.String(), "secret internal state", "the operator sees it in the log")

	// The server goes on serving.
	rec = httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ok", nil))
	require.Equal(t, http.StatusOK, rec.Code)
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	e := httpserver.NewEcho(slog.New(slog.DiscardHandler))
	e.GET("/id", func(c echo.Context) error {
		return c.String(http.StatusOK, httpserver.RequestID(c.Request().Context()))
	})
	for sent, echoed := range map[string]bool{
		"abc-123":                              true,
		"0af7651916cd43dd":                     true,
		"":                                     false,
		"has space":                            false,
		"x\r\nInjected: 1":                     false,
		string(bytes.Repeat([]byte("a"), 129)): false,
		string(bytes.Repeat([]byte("Z"), 128)): true,
		"a.b_c:d+e=f/g-h":                      true,
		"caf\u00e9":                            false,
		"semi;colon":                           false,
		"quote\"":                              false,
	} {
		req := httptest.NewRequest(http.MethodGet, "/id", nil)
		req.Header.Set(httpserver.HeaderRequestID, sent)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		got := rec.Header().Get(httpserver.HeaderRequestID)
		require.Equal(t, got, rec.Body.String(), "handlers see the id the client gets")
		if echoed {
			require.Equal(t, sent, got)
		} else {
			require.Len(t, got, 32, "replaced by a generated id: %q", sent)
		}
	}
}

// TestClientGoneIsNotAServerError: a request whose client hangs up while
// the handler waits (the handler then fails with the context's error) is
// answered 499, counted as 499 and logged without an error line, never as
// 500 internal (issue 22, item 6: 416 such requests were 500s after a wrk
// run stopped).
func TestClientGoneIsNotAServerError(t *testing.T) {
	t.Parallel()
	var logs syncLog
	reg := prometheus.NewRegistry()
	e := httpserver.NewEcho(slog.New(slog.NewJSONHandler(&logs, nil)), httpserver.WithMetrics(httpserver.NewHTTPMetrics(reg)))
	entered := make(chan struct{})
	e.GET("/slow", func(c echo.Context) error {
		close(entered)
		<-c.Request().Context().Done()
		return fmt.Errorf("waiting for the database: %w", c.Request().Context().Err())
	})
	srv := httptest.NewServer(e)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/slow", nil)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-entered
	cancel()
	require.Error(t, <-done)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), `"status":499`) }, 5*time.Second, 10*time.Millisecond,
		"the access log says 499: %s", logs.String())
	require.NotContains(t, logs.String(), `"level":"ERROR"`)
	require.NotContains(t, logs.String(), `"status":500`)
	families, err := reg.Gather()
	require.NoError(t, err)
	statuses := ""
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "status" {
					statuses += l.GetValue() + " "
				}
			}
		}
	}
	require.Contains(t, statuses, "499")
	require.NotContains(t, statuses, "500")
}

// syncLog is a log buffer safe for the server's goroutines.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestMiddlewareOrder: what Pre adds runs after the shared stack (it sees
// the request id and a normalised path) and before routing (a rewrite it
// makes picks the route); what Use adds runs around the matched route's
// handler, once routing has named the route.
func TestMiddlewareOrder(t *testing.T) {
	t.Parallel()
	e := httpserver.NewEcho(slog.New(slog.DiscardHandler))
	var order []string
	e.Pre(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			order = append(order, "pre1 id="+fmt.Sprint(httpserver.RequestID(c.Request().Context()) != "")+" path="+c.Request().URL.Path)
			if c.Request().URL.Path == "/old" {
				c.Request().URL.Path = "/new"
			}
			return next(c)
		}
	})
	e.Pre(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			order = append(order, "pre2 route="+c.Path())
			return next(c)
		}
	})
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			order = append(order, "use route="+c.Path())
			return next(c)
		}
	})
	e.GET("/new", func(c echo.Context) error {
		order = append(order, "handler")
		return c.String(http.StatusOK, "new")
	})

	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/a/../old", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "new", rec.Body.String())
	require.Equal(t, []string{"pre1 id=true path=/old", "pre2 route=", "use route=/new", "handler"}, order)

	// Unmatched: the pre-routing middleware runs, the route's does not,
	// and the answer is the shared problem.
	order = nil
	rec = httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/missing", nil))
	require.Equal(t, http.StatusNotFound, rec.Code)
	require.Equal(t, problem.ContentType, rec.Header().Get("Content-Type"))
	require.Equal(t, []string{"pre1 id=true path=/missing", "pre2 route="}, order[:2])
}
