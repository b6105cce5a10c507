package ops_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/ops"
)

func get(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url) //nolint:noctx
	require.NoError(t, err)
	defer resp.Body.Close()
	var body map[string]any
	if resp.Header.Get("Content-Type") == "application/json" {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode, body
}

func TestReadinessAndDrain(t *testing.T) {
	t.Parallel()
	srv := ops.New(slog.New(slog.DiscardHandler), nil)
	var dbDown, vaultDown atomic.Bool
	srv.AddCheck("postgres", func(context.Context) error {
		if dbDown.Load() {
			return errors.New("connection refused")
		}
		return nil
	})
	srv.AddDegradedCheck("vault", func(context.Context) error {
		if vaultDown.Load() {
			return errors.New("vault unreachable; serving cached secrets")
		}
		return nil
	})
	l, err := net.Listen("tcp", "127.0.0.1:0") //nolint:noctx
	require.NoError(t, err)
	base := "http://" + l.Addr().String()

	ctx, cancel := context.WithCancel(context.Background())
	workStopped := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- srv.Serve(ctx, l, func(ctx context.Context) error {
			<-ctx.Done()
			<-release // in-flight work finishing
			close(workStopped)
			return nil
		})
	}()

	code, body := get(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ready", body["status"])

	dbDown.Store(true)
	code, body = get(t, base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "connection refused", body["checks"].(map[string]any)["postgres"].(map[string]any)["error"])
	dbDown.Store(false)

	// A degraded dependency is reported, and the process stays in service.
	vaultDown.Store(true)
	code, body = get(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "degraded", body["status"])
	require.Equal(t, "degraded", body["checks"].(map[string]any)["vault"].(map[string]any)["status"])
	dbDown.Store(true)
	code, body = get(t, base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, "a failing check still fails readiness")
	require.Equal(t, "not_ready", body["status"])
	dbDown.Store(false)
	vaultDown.Store(false)

	code, _ = get(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code)

	// Shutdown: readiness fails at once, liveness holds, and the listener
	// stays up until the work has finished.
	cancel()
	require.Eventually(t, func() bool {
		code, body := get(t, base+"/readyz")
		return code == http.StatusServiceUnavailable && body["status"] == "draining"
	}, 5*time.Second, 5*time.Millisecond)
	code, _ = get(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)
	close(release)
	<-workStopped
	require.NoError(t, <-done)
	_, err = http.Get(base + "/healthz") //nolint:noctx
	require.Error(t, err, "the listener is closed once work is done")
}

func TestLogLevel(t *testing.T) {
	t.Parallel()
	srv := ops.New(slog.New(slog.DiscardHandler), nil)
	lv := new(slog.LevelVar)
	srv.SetLevelVar(lv)
	h := srv.Handler()
	do := func(method, target, body string) (int, string) {
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		req.RemoteAddr = "127.0.0.1:40000"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, strings.TrimSpace(rec.Body.String())
	}
	code, body := do(http.MethodGet, "/loglevel", "")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"level":"info"}`, body)

	code, _ = do(http.MethodPut, "/loglevel", "debug")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, slog.LevelDebug, lv.Level())
	code, _ = do(http.MethodPut, "/loglevel?level=WARN", "")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, slog.LevelWarn, lv.Level())

	code, body = do(http.MethodPut, "/loglevel", "loud")
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, "loud")
	code, _ = do(http.MethodPut, "/loglevel", "")
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, slog.LevelWarn, lv.Level(), "a refused change changes nothing")
}

// TestLogLevelFromRemotePeer: a peer that is not on loopback changes
// nothing without the admin token, wrong or right scheme alike.
func TestLogLevelFromRemotePeer(t *testing.T) {
	t.Parallel()
	srv := ops.New(slog.New(slog.DiscardHandler), nil)
	lv := new(slog.LevelVar)
	srv.SetLevelVar(lv)
	h := srv.Handler()
	put := func(authorization string) int {
		req := httptest.NewRequest(http.MethodPut, "/loglevel", strings.NewReader("debug"))
		req.RemoteAddr = "192.0.2.10:40000"
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	require.Equal(t, http.StatusForbidden, put(""), "no token configured: loopback only")
	require.Equal(t, http.StatusForbidden, put("Bearer anything"))
	srv.SetAdminToken("s3cret-ops-token")
	require.Equal(t, http.StatusForbidden, put(""))
	require.Equal(t, http.StatusForbidden, put("Bearer s3cret-ops-tokeN"))
	require.Equal(t, http.StatusForbidden, put("Basic s3cret-ops-token"))
	require.Equal(t, slog.LevelInfo, lv.Level(), "nothing changed")
	require.Equal(t, http.StatusOK, put("Bearer s3cret-ops-token"))
	require.Equal(t, slog.LevelDebug, lv.Level())
}

// TestProfilesArePrivileged: Go's profiles are served to a loopback peer
// and to a remote one with the admin token, and refused to anyone else
// (they cost CPU and show the process's insides).
func TestProfilesArePrivileged(t *testing.T) {
	t.Parallel()
	srv := ops.New(slog.New(slog.DiscardHandler), nil)
	srv.SetAdminToken("s3cret-ops-token")
	h := srv.Handler()
	get := func(path, peer, authorization string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.RemoteAddr = peer
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/allocs", "/debug/pprof/goroutine", "/debug/pprof/cmdline", "/debug/pprof/profile?seconds=1", "/debug/pprof/trace?seconds=1"} {
		require.Equal(t, http.StatusForbidden, get(path, "192.0.2.10:40000", "").Code, path)
		require.Equal(t, http.StatusForbidden, get(path, "192.0.2.10:40000", "Bearer wrong").Code, path)
	}
	rec := get("/debug/pprof/heap", "127.0.0.1:40000", "")
	require.Equal(t, http.StatusOK, rec.Code)
	require.NotEmpty(t, rec.Body.Bytes(), "a heap profile")
	rec = get("/debug/pprof/goroutine?debug=1", "192.0.2.10:40000", "Bearer s3cret-ops-token")
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), "goroutine profile:")
}
