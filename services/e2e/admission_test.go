package e2e_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// gatewayShedsBeyondItsInFlightLimit: with its limit of requests in
// flight taken by calls its upstream holds, the gateway answers further
// requests, authenticated or not, 503 busy with Retry-After after its
// shed delay (before any token check, access-log line or database work),
// counts them, and serves again as soon as a slot is free.
func gatewayShedsBeyondItsInFlightLimit(t *testing.T) {
	const shedDelay = 300 * time.Millisecond
	release := make(chan struct{})
	held := make(chan struct{}, 8)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		held <- struct{}{}
		<-release
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	defer upstream.Close()
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free()

	dir := t.TempDir()
	routes := `
routes:
  - {method: GET, path: "/v1/jobs/{id}", mode: job-status, scopes: [jobs:read]}
  - {method: GET, path: /v1/held, mode: sync, scopes: [jobs:read], upstream: {url: "` + upstream.URL + `/held"}, timeout: 30s}
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "routes.yaml"), []byte(routes), 0o644))
	p := startPlatformWith(t, platformOptions{services: []string{"tokens", "gateway"},
		env:        []string{"SWITCHYARD_ROUTES_FILE=" + filepath.Join(dir, "routes.yaml"), "SWITCHYARD_GATEWAY_MAX_IN_FLIGHT=2", "SWITCHYARD_GATEWAY_SHED_DELAY=" + shedDelay.String()},
		serviceEnv: map[string][]string{"gateway": {"SWITCHYARD_LOG_LEVEL=info"}}})
	secret := p.client("holder", "jobs:read")
	token, err := p.token("holder", secret)
	require.NoError(t, err)

	var calls sync.WaitGroup
	for range 2 {
		calls.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, p.gateway+"/v1/held", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				_ = resp.Body.Close()
			}
		})
		select {
		case <-held:
		case <-time.After(20 * time.Second):
			t.Fatal("the upstream never got the held call")
		}
	}

	before := p.metric("gateway", "switchyard_http_requests_shed_total")
	for _, auth := range []string{"", "Bearer " + token, "Bearer forged"} {
		start := time.Now()
		r := p.call("GET", "/v1/jobs/00000000-0000-0000-0000-000000000000", auth, "")
		require.Equal(t, http.StatusServiceUnavailable, r.status, "auth %q: %v", auth, r.body)
		require.Equal(t, "urn:switchyard:problem:busy", r.body["type"])
		require.Equal(t, "1", r.header.Get("Retry-After"))
		require.Empty(t, r.header.Get("X-Request-ID"), "answered before the request id middleware")
		require.GreaterOrEqual(t, time.Since(start), shedDelay, "the answer is held back by the shed delay")
	}
	require.InDelta(t, before+3, p.metric("gateway", "switchyard_http_requests_shed_total"), 0)
	log, err := os.ReadFile(filepath.Join(p.logDir, "gateway.log"))
	require.NoError(t, err)
	require.NotContains(t, string(log), `"path":"/v1/jobs/00000000-0000-0000-0000-000000000000"`, "no access-log line per shed request")

	free()
	calls.Wait()
	require.Eventually(t, func() bool {
		return p.call("GET", "/v1/jobs/00000000-0000-0000-0000-000000000000", "Bearer "+token, "").status == http.StatusNotFound
	}, 10*time.Second, 10*time.Millisecond, "served again once the held calls are answered")
	var shedLine bool
	log, err = os.ReadFile(filepath.Join(p.logDir, "gateway.log"))
	require.NoError(t, err)
	for line := range strings.SplitSeq(string(log), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "requests shed at the in-flight limit" {
			shedLine = true
		}
	}
	require.True(t, shedLine, "a warning says requests were shed")
}
