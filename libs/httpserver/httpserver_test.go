package httpserver_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
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
