package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack"
)

// demoUpstream runs the demo upstream binary on addr.
func demoUpstream(t *testing.T, bin, addr string) *devstack.Process {
	t.Helper()
	logFile, err := os.OpenFile(filepath.Join(t.TempDir(), "demoupstream.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	t.Cleanup(func() { _ = logFile.Close() })
	cmd := exec.Command(filepath.Join(bin, "demoupstream"))
	cmd.Env = append(os.Environ(), "SWITCHYARD_UPSTREAM_ADDR="+addr, "SWITCHYARD_LOG_LEVEL=warn")
	proc, err := devstack.StartProcess("demoupstream", cmd, logFile, "", syscall.SIGTERM)
	require.NoError(t, err)
	t.Cleanup(func() { _ = proc.Stop(10 * time.Second) })
	require.NoError(t, proc.WaitReady(context.Background(), 30*time.Second, devstack.HTTPReady("http://"+addr+"/healthz")))
	return proc
}

const syncRoutesFile = `
routes:
  - {method: GET, path: "/v1/jobs/{id}", mode: job-status, scopes: [jobs:read]}
  - {method: POST, path: /v1/jobs/webhook, mode: async, job_type: webhook, scopes: [hooks:send]}
  - name: hooks-now
    method: POST
    path: /v1/hooks
    mode: sync
    scopes: [hooks:send]
    upstream: {url: "http://${E2E_UPSTREAM_ADDR}/hooks", forward_headers: [Content-Type, Idempotency-Key]}
    timeout: 2s
    breaker: {consecutive_failures: 2, open_for: 2s, half_open_requests: 1}
    fallback_job_type: webhook
  - name: echo
    method: GET
    path: /v1/echo/{name}
    mode: sync
    scopes: [hooks:send]
    upstream: {url: "http://${E2E_UPSTREAM_ADDR}/echo/{name}"}
    cache: {ttl: 1m}
  - {method: POST, path: /v1/text-stats, mode: sync, handler: text-stats, scopes: [hooks:send]}
`

const syncJobsFile = `
job_types:
  text-stats:
    handler: text-stats
    consumers: 1
  webhook:
    consumers: 2
    timeout: 4s
    http: {url: "http://${E2E_UPSTREAM_ADDR}/hooks", timeout: 2s}
`

// syncRoutesAndDegradeToAsync runs the whole platform with real
// tokens and a real upstream process: sync calls answer at once; with the
// upstream stopped the breaker opens, a request that prefers an
// asynchronous answer is accepted as a job, and once the upstream is back
// the worker delivers it, exactly once.
func syncRoutesAndDegradeToAsync(t *testing.T, sqsServer string) {
	bin := binaries(t)
	port, err := devstack.FreePort()
	require.NoError(t, err)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	upstream := demoUpstream(t, bin, addr)

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "routes.yaml"), []byte(syncRoutesFile), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "jobs.yaml"), []byte(syncJobsFile), 0o644))
	p := startPlatformWith(t, platformOptions{sqsEndpoint: sqsServer, env: []string{"E2E_UPSTREAM_ADDR=" + addr,
		"SWITCHYARD_ROUTES_FILE=" + filepath.Join(dir, "routes.yaml"), "SWITCHYARD_JOBS_FILE=" + filepath.Join(dir, "jobs.yaml")}})
	secret := p.client("hooker", "hooks:send", "jobs:read")
	tok, err := p.token("hooker", secret)
	require.NoError(t, err)
	auth := "Bearer " + tok

	// Sync: the Go handler and the upstream answer now.
	r := p.call("POST", "/v1/text-stats", auth, `{"text":"a b c"}`)
	require.Equal(t, http.StatusOK, r.status)
	require.EqualValues(t, 3, r.body["words"])
	r = p.call("POST", "/v1/hooks", auth, `{"order":1}`)
	require.Equal(t, http.StatusOK, r.status, "%v", r.body)
	require.EqualValues(t, 11, r.body["received_bytes"])
	require.Equal(t, http.StatusUnauthorized, p.call("POST", "/v1/hooks", "", `{"order":1}`).status)

	// Cached GET: the second answer comes from the gateway.
	first := p.call("GET", "/v1/echo/x?n=1", auth, "")
	require.Equal(t, http.StatusOK, first.status)
	require.Equal(t, "hooker", first.body["headers"].(map[string]any)["X-Switchyard-Client-Id"])
	second := p.call("GET", "/v1/echo/x?n=1", auth, "")
	require.Equal(t, "HIT", second.header.Get("X-Cache"))
	require.Equal(t, first.body["served_at"], second.body["served_at"])
	head := p.call("HEAD", "/v1/echo/x?n=1", auth, "")
	require.Equal(t, http.StatusOK, head.status, "HEAD is served on GET routes")
	require.Equal(t, "HIT", head.header.Get("X-Cache"))

	// The upstream goes away: two failures open the breaker.
	require.NoError(t, upstream.Stop(10*time.Second))
	for range 2 {
		r = p.call("POST", "/v1/hooks", auth, `{"order":2}`)
		require.Equal(t, http.StatusBadGateway, r.status)
	}
	r = p.call("POST", "/v1/hooks", auth, `{"order":2}`)
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.Equal(t, "urn:switchyard:problem:circuit-open", r.body["type"])
	require.NotEmpty(t, r.header.Get("Retry-After"))

	// Degrade to async: accepted as a job of the fallback type.
	r = p.call("POST", "/v1/hooks", auth, `{"order":3}`, "Prefer", "respond-async")
	require.Equal(t, http.StatusAccepted, r.status, "%v", r.body)
	require.Equal(t, "respond-async", r.header.Get("Preference-Applied"))
	id, _ := r.body["id"].(string)
	require.NotEmpty(t, id)
	require.Equal(t, "/v1/jobs/"+id, r.header.Get("Location"))

	// The worker tries, fails against the stopped upstream, and keeps the
	// job for a later attempt.
	require.Eventually(t, func() bool {
		s := p.call("GET", "/v1/jobs/"+id, auth, "")
		attempts, _ := s.body["attempts"].(float64)
		return attempts >= 1 && s.body["status"] != "succeeded"
	}, 60*time.Second, 50*time.Millisecond, "a delivery attempt fails while the upstream is down")

	// The upstream comes back on the same address.
	upstream = demoUpstream(t, bin, addr)
	require.NoError(t, p.awaitSucceededWith(auth, id, 90*time.Second))
	var stats struct {
		Deliveries, Unique int
	}
	getJSON(t, "http://"+addr+"/hooks/stats", &stats)
	require.Equal(t, 1, stats.Unique, "the job was delivered with its id as Idempotency-Key, once")

	// And the sync route recovers once the breaker half-opens.
	require.Eventually(t, func() bool {
		return p.call("POST", "/v1/hooks", auth, `{"order":4}`).status == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond)
	require.GreaterOrEqual(t, p.metric("gateway", "switchyard_sync_requests_total", "outcome=degraded", "route=hooks-now"), 1.0)
	_ = upstream
}

// malformedRoutesFileStopsStartup: the gateway refuses to start on a
// routes file it cannot serve, naming the file, line and field, with exit
// status 2.
func malformedRoutesFileStopsStartup(t *testing.T) {
	bin := binaries(t)
	dir := t.TempDir()
	jobs := filepath.Join(dir, "jobs.yaml")
	require.NoError(t, os.WriteFile(jobs, []byte(jobsFile), 0o644))
	route := func(extra string) string {
		return "routes:\n  - method: GET\n    path: /v1/x\n    mode: sync\n    scopes: [a]\n    " + extra + "\n"
	}
	tests := []struct {
		name, doc, want string
	}{
		{"bad YAML", "routes:\n  - method: GET\n   path: /x\n", "routes.yaml: parsing YAML"},
		{"unknown target", route("handler: no-such-handler"), `routes.yaml:2: routes[0].handler: no sync handler "no-such-handler" is registered in the gateway (registered: hello, text-stats)`},
		{"duplicate route", route("handler: text-stats") + "  - {method: GET, path: /v1/x, mode: sync, scopes: [a], handler: text-stats}\n", "routes.yaml:7: routes[1]: GET /v1/x duplicates the route at line 2"},
		{"negative timeout", route(`upstream: {url: "http://127.0.0.1:1/x"}` + "\n    timeout: -5s"), "routes.yaml:7: routes[0].timeout: -5s must be positive"},
		// Security item 6: a template that lets a request choose the host
		// (SSRF) never loads.
		{"host from a parameter", "routes:\n  - {method: GET, path: \"/v1/x/{host}\", mode: sync, scopes: [a], upstream: {url: \"https://{host}/internal\"}}\n",
			"parameters may fill only the path or the query, never the host or port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(t.TempDir(), "routes.yaml")
			require.NoError(t, os.WriteFile(file, []byte(tt.doc), 0o644))
			cmd := exec.Command(filepath.Join(bin, "gateway"))
			cmd.Env = append(os.Environ(), "SWITCHYARD_ROUTES_FILE="+file, "SWITCHYARD_JOBS_FILE="+jobs,
				"DATABASE_URL=postgres://127.0.0.1:1/none", "SWITCHYARD_AUTH_ISSUER=http://127.0.0.1:1")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			cmd.Stdout = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit, "the gateway must not start: %s", stderr.String())
			require.Equal(t, 2, exit.ExitCode(), stderr.String())
			require.Contains(t, stderr.String(), strings.ReplaceAll(tt.want, `"`, `\"`))
			require.Contains(t, stderr.String(), "invalid configuration")
		})
	}
}

func getJSON(t *testing.T, url string, out any) {
	t.Helper()
	resp, err := http.Get(url) //nolint:gosec,noctx // a test's own URL
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(out))
}
