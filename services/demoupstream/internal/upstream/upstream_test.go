package upstream_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/services/demoupstream/internal/upstream"
)

func do(t *testing.T, method, url, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func TestKnobsAndCounters(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(upstream.NewReceiver(upstream.Config{}).Handler())
	defer srv.Close()

	resp, body := do(t, http.MethodGet, srv.URL+"/echo/a?status=404&max_age=30", "")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Equal(t, "max-age=30", resp.Header.Get("Cache-Control"))
	require.Contains(t, body, `"path":"/echo/a"`)

	resp, body = do(t, http.MethodPut, srv.URL+"/control", `{"down":true}`)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, `"down":true`)
	resp, _ = do(t, http.MethodPost, srv.URL+"/hooks", `{}`)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	resp, _ = do(t, http.MethodGet, srv.URL+"/healthz", "")
	require.Equal(t, http.StatusOK, resp.StatusCode, "health is not a knob's business")

	for _, bad := range []string{`{"failure_rate":2}`, `{"latency":"soon"}`, `{"latency":"-1s"}`, `{"downn":true}`, `not json`} {
		resp, _ = do(t, http.MethodPut, srv.URL+"/control", bad)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, bad)
	}
	_, body = do(t, http.MethodPut, srv.URL+"/control", `{"down":false,"latency":"1ms"}`)
	var c upstream.Control
	require.NoError(t, json.Unmarshal([]byte(body), &c))
	require.False(t, c.Down)
	require.EqualValues(t, 2, c.Counters.Requests, "echo and hooks count; control and health do not")

	resp, _ = do(t, http.MethodPost, srv.URL+"/hooks", `{}`)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	do(t, http.MethodPut, srv.URL+"/control", `{"reject":true}`)
	resp, body = do(t, http.MethodPost, srv.URL+"/hooks", `{}`)
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "a permanent refusal, for dead-letter drills")
	require.Contains(t, body, "reject knob")
	resp, _ = do(t, http.MethodGet, srv.URL+"/echo/x", "")
	require.Equal(t, http.StatusOK, resp.StatusCode, "reject is for deliveries only")
	do(t, http.MethodPut, srv.URL+"/control", `{"reject":false}`)
	_, body = do(t, http.MethodPost, srv.URL+"/control/reset", "")
	require.NoError(t, json.Unmarshal([]byte(body), &c))
	require.Zero(t, c.Counters.Requests)
	require.Equal(t, "1ms", strings.Trim(mustJSON(t, c.Latency), `"`))
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}
