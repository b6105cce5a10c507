package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/switchyard/switchyard/libs/devstack"
)

// nonLoopbackIP is an IPv4 address of this machine that is not on
// loopback, so that a test can be a remote peer of a local server.
func nonLoopbackIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	require.NoError(t, err)
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	t.Fatalf("this machine has no IPv4 address outside loopback; the remote-peer attacks need one (%v)", addrs)
	return ""
}

// startUnready runs svc and waits only for /healthz (alive), not for
// readiness.
func (p *platform) startUnready(svc string) {
	p.t.Helper()
	require.NoError(p.t, p.startWaiting(svc, "/healthz"))
}

const attackRoutes = `
routes:
  - {method: POST, path: /v1/jobs/webhook, mode: async, job_type: webhook, scopes: [hooks:send]}
  - {method: GET, path: "/v1/jobs/{id}", mode: job-status, scopes: [jobs:read]}
  - {method: GET, path: "/admin/v1/jobs/{id}", mode: job-status, scopes: [switchyard:admin]}
  - name: hooks-now
    method: POST
    path: /v1/hooks
    mode: sync
    scopes: [hooks:call]
    upstream: {url: "http://127.0.0.1:1/hooks"}
    timeout: 1s
    breaker: {consecutive_failures: 2, open_for: 1m, half_open_requests: 1}
    fallback_job_type: webhook
  - name: echo
    method: GET
    path: /v1/echo/{name}
    mode: sync
    scopes: [echo]
    upstream: {url: "http://${E2E_UPSTREAM_ADDR}/echo/{name}"}
    cache: {ttl: 1m, shared: true}
`

const attackJobs = `
job_types:
  webhook:
    consumers: 1
    http: {url: "http://127.0.0.1:1/hooks", timeout: 1s}
`

// gatewayAttacks runs one gateway and performs, against it, the
// attacks of security items 7, 8, 9 and 17; each failed before its fix.
func gatewayAttacks(t *testing.T) {
	bin := binaries(t)
	upstreamPort, err := devstack.FreePort()
	require.NoError(t, err)
	upstreamAddr := "127.0.0.1:" + strconv.Itoa(upstreamPort)
	demoUpstream(t, bin, upstreamAddr)
	p := startPlatformWith(t, platformOptions{
		services: []string{"tokens", "gateway"}, routes: attackRoutes, jobs: attackJobs,
		env: []string{"E2E_UPSTREAM_ADDR=" + upstreamAddr},
		// The ops listeners on every interface, as in a container.
		opsOnAllInterfaces: true,
		serviceEnv: map[string][]string{"gateway": {"SWITCHYARD_OPS_TOKEN=ops-token-for-the-test",
			// The test is the load balancer; a client failing 5 times in a
			// minute is blocked.
			"SWITCHYARD_EDGE_TRUSTED_PROXIES=127.0.0.1/32", "SWITCHYARD_EDGE_BLOCK_THRESHOLD=5"}},
	})
	opsPort := p.opsPorts["gateway"]

	// Item 8: while the breaker is open, a caller holding the sync route's
	// scope but not the job type's submit scope cannot create a job.
	t.Run("fallback needs the submit route's scopes", func(t *testing.T) {
		callerOnly := "Bearer " + p.bearerWith("caller-only", "hooks:call")
		full := "Bearer " + p.bearerWith("caller-and-submitter", "hooks:call", "hooks:send")
		for range 2 {
			r := p.call("POST", "/v1/hooks", full, `{"n":1}`)
			require.Equal(t, http.StatusBadGateway, r.status, "the upstream is down: %v", r.body)
		}
		r := p.call("POST", "/v1/hooks", callerOnly, `{"n":2}`, "Prefer", "respond-async")
		require.Equal(t, http.StatusForbidden, r.status, "the breaker is open; the fallback needs hooks:send: %v", r.body)
		require.Contains(t, r.header.Get("WWW-Authenticate"), `error="insufficient_scope"`)
		r = p.call("POST", "/v1/hooks", full, `{"n":3}`, "Prefer", "respond-async")
		require.Equal(t, http.StatusAccepted, r.status, r.body)
		require.Equal(t, 1, p.count(`SELECT count(*) FROM jobs`), "one job: the one its caller may submit")
	})

	// Item 7: a client's Host (and an X-Forwarded-Proto it sets itself)
	// must not shape an answer the shared cache gives others.
	t.Run("no cache poisoning through Host or X-Forwarded-Proto", func(t *testing.T) {
		echo := func(from, bearer, host string, header ...string) map[string]any {
			req, err := http.NewRequest(http.MethodGet, p.gateway+"/v1/echo/poison", nil)
			require.NoError(t, err)
			req.Header.Set("Authorization", bearer)
			for i := 0; i+1 < len(header); i += 2 {
				req.Header.Set(header[i], header[i+1])
			}
			if host != "" {
				req.Host = host
			}
			resp, err := clientFrom(from).Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			var body struct {
				Headers map[string]any `json:"headers"`
			}
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
			return body.Headers
		}
		// The attacker is a peer the gateway does not trust as a proxy.
		attacker := echo("127.0.0.2", "Bearer "+p.bearerWith("attacker", "echo"), "evil.example", "X-Forwarded-Proto", "https")
		assert.Equal(t, "http", attacker["X-Forwarded-Proto"], "X-Forwarded-Proto from an untrusted peer is not believed")
		victim := echo("127.0.0.1", "Bearer "+p.bearerWith("victim", "echo"), "")
		require.NotEqual(t, "evil.example", victim["X-Forwarded-Host"], "the victim got the answer built for the attacker's Host")
		require.Equal(t, strings.TrimPrefix(p.gateway, "http://"), victim["X-Forwarded-Host"])
		require.Equal(t, "http", victim["X-Forwarded-Proto"])
	})

	// Item 5: an attacker holding a /64 uses a new address for every
	// failed attempt; the failures add up to one block for the prefix.
	t.Run("IPv6 rotation within a /64 is one client", func(t *testing.T) {
		good := "Bearer " + p.bearerWith("rotating-reader", "jobs:read")
		path := "/v1/jobs/" + uuid.NewString()
		for i := range 5 {
			r := p.call("GET", path, "Bearer not-a-token", "", "X-Forwarded-For", fmt.Sprintf("2001:db8:77:1:%x::%x", i+1, 3*i+1))
			require.Equal(t, http.StatusUnauthorized, r.status)
		}
		r := p.call("GET", path, good, "", "X-Forwarded-For", "2001:db8:77:1:abcd::1")
		require.Equal(t, http.StatusForbidden, r.status, "a fresh address of the same /64, even with a good token: %v", r.body)
		require.NotEmpty(t, r.header.Get("Retry-After"))
		r = p.call("GET", path, good, "", "X-Forwarded-For", "2001:db8:77:2::1")
		require.Equal(t, http.StatusNotFound, r.status, "the next /64 is another client")
	})

	// Item 16 on the gateway: refused calls to its /admin/ routes are in
	// the audit log (the replay service's: TestAdminRefusalsAudited).
	t.Run("refused admin calls are audited", func(t *testing.T) {
		path := "/admin/v1/jobs/" + uuid.NewString()
		require.Equal(t, http.StatusUnauthorized, p.call("GET", path, "", "").status)
		require.Equal(t, http.StatusForbidden, p.call("GET", path, "Bearer "+p.bearerWith("not-an-admin", "jobs:read"), "").status)
		require.Eventually(t, func() bool {
			return p.count(`SELECT count(*) FROM admin_audit WHERE action = 'admin.refused' AND target = 'GET `+path+`'
				AND actor IN ('anonymous', 'not-an-admin')`) == 2
		}, 10*time.Second, 20*time.Millisecond)
	})

	// Item 17: the ops listener is reachable from the network (a
	// container's ops port); changing the log level needs loopback or the
	// ops token.
	t.Run("ops changes need loopback or the ops token", func(t *testing.T) {
		ip := nonLoopbackIP(t)
		put := func(from, to, authorization string) int {
			req, err := http.NewRequest(http.MethodPut, "http://"+to+":"+strconv.Itoa(opsPort)+"/loglevel", strings.NewReader("debug"))
			require.NoError(t, err)
			if authorization != "" {
				req.Header.Set("Authorization", authorization)
			}
			resp, err := clientFrom(from).Do(req)
			require.NoError(t, err)
			_ = resp.Body.Close()
			return resp.StatusCode
		}
		require.Equal(t, http.StatusForbidden, put(ip, ip, ""), "a remote peer without the token")
		require.Equal(t, http.StatusForbidden, put(ip, ip, "Bearer wrong"), "a remote peer with a wrong token")
		require.Equal(t, http.StatusOK, put(ip, ip, "Bearer ops-token-for-the-test"))
		require.Equal(t, http.StatusOK, put("127.0.0.1", "127.0.0.1", ""), "loopback (port-forward, exec)")
	})

	// Item 1's class at the gateway: one address holding idle keep-alive
	// connections keeps at most its share of them (each costs ~20 KiB
	// while open); the rest are closed on arrival, and a client from
	// another address is served.
	t.Run("one address holds at most its share of connections", func(t *testing.T) {
		const n, share = 1_200, 1_024
		held, pending := holdConnections(t, strings.TrimPrefix(p.gateway, "http://"), "127.0.0.5", "/nothing-here", n)
		t.Logf("%d idle connections from one address: %d answered and held by the gateway, %d not yet accepted", n, held, pending)
		require.LessOrEqual(t, held, share)
		require.GreaterOrEqual(t, p.metric("gateway", "switchyard_http_connections_refused_total"), float64(n-share-pending))
		resp, err := clientFrom("127.0.0.6").Get(p.gateway + "/nothing-here")
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusNotFound, resp.StatusCode, "another address is served meanwhile")
	})

	// Item 9: a gateway whose disabled-client list cannot load (here its
	// database user may not read oauth_clients) must not let tokens
	// through as if no client were disabled.
	t.Run("disabled clients fail closed until loaded", func(t *testing.T) {
		ctx := context.Background()
		role := "blind_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
		for _, stmt := range []string{
			"CREATE ROLE " + role + " LOGIN",
			"GRANT ALL ON ALL TABLES IN SCHEMA public TO " + role,
			"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO " + role,
			"REVOKE SELECT ON oauth_clients FROM " + role,
		} {
			_, err := p.pool.Exec(ctx, stmt)
			require.NoError(t, err, stmt)
		}
		t.Cleanup(func() {
			_, _ = p.pool.Exec(context.Background(), "REASSIGN OWNED BY "+role+" TO CURRENT_USER")
			_, _ = p.pool.Exec(context.Background(), "DROP OWNED BY "+role)
			_, _ = p.pool.Exec(context.Background(), "DROP ROLE "+role)
		})
		cfg, err := pgx.ParseConfig(p.pool.Config().ConnString())
		require.NoError(t, err)
		u := url.URL{Scheme: "postgres", User: url.User(role), Host: net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), Path: "/" + cfg.Database, RawQuery: "sslmode=disable"}
		p.svcEnv["gateway2"] = []string{"DATABASE_URL=" + u.String()}
		p.startUnready("gateway2")
		// The token is valid and its client is not disabled.
		req, err := http.NewRequest(http.MethodGet, p.gateway2+"/v1/jobs/"+uuid.NewString(), nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+p.bearerWith("reader", "jobs:read"))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "no client can be told apart from a disabled one yet")
		require.NotEmpty(t, resp.Header.Get("Retry-After"))
		code, ready := p.readiness("gateway2")
		require.Equal(t, http.StatusServiceUnavailable, code)
		require.Contains(t, fmt.Sprint(ready), "disabled_clients")
	})
}

// bearerWith returns an access token of a new client with scopes.
func (p *platform) bearerWith(clientID string, scopes ...string) string {
	p.t.Helper()
	secret := p.client(clientID, scopes...)
	tok, err := p.token(clientID, secret)
	require.NoError(p.t, err)
	return tok
}

// recorder is an HTTP server that counts and keeps what it receives.
type recorder struct {
	url   string
	calls atomic.Int64
	mu    sync.Mutex
	seen  []string
}

func newRecorder(t *testing.T, listen string, h http.HandlerFunc) *recorder {
	t.Helper()
	l, err := net.Listen("tcp", listen)
	require.NoError(t, err)
	r := &recorder{url: "http://" + l.Addr().String()}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.calls.Add(1)
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.seen = append(r.seen, req.Method+" "+req.Host+req.URL.String()+" "+req.Header.Get("X-Hook-Secret")+" "+string(body))
		r.mu.Unlock()
		if h != nil {
			h(w, req)
			return
		}
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r
}

// workerHTTPTargetAttacks (security item 15): a target that redirects
// must not have the worker re-send the payload and the type's secret
// header to the host it names, and a proxy in the worker's environment
// must not receive the payloads.
func workerHTTPTargetAttacks(t *testing.T) {
	ip := nonLoopbackIP(t)
	stolen := newRecorder(t, "127.0.0.1:0", nil)
	proxy := newRecorder(t, "127.0.0.1:0", nil)
	target := newRecorder(t, "0.0.0.0:0", func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/redirect" {
			http.Redirect(w, req, stolen.url+"/steal", http.StatusTemporaryRedirect)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	_, port, err := net.SplitHostPort(strings.TrimPrefix(target.url, "http://"))
	require.NoError(t, err)
	base := "http://" + net.JoinHostPort(ip, port)
	jobs := fmt.Sprintf(`
job_types:
  hook-redirect:
    consumers: 1
    http: {url: "%[1]s/redirect", timeout: 2s, headers: {X-Hook-Secret: static-secret}}
    retry: {attempts: 2, base: 200ms, max: 1s}
  hook-ok:
    consumers: 1
    http: {url: "%[1]s/ok", timeout: 2s, headers: {X-Hook-Secret: static-secret}}
    retry: {attempts: 2, base: 200ms, max: 1s}
  hook-down:
    consumers: 1
    http: {url: "%[2]s/internal/orders?api_key=s3cret-in-the-url", timeout: 2s}
    retry: {attempts: 2, base: 200ms, max: 1s}
`, base, "http://"+net.JoinHostPort(ip, strconv.Itoa(freePort(t))))
	routes := `
routes:
  - {method: POST, path: /v1/jobs/hook-redirect, mode: async, job_type: hook-redirect, scopes: [jobs:submit]}
  - {method: POST, path: /v1/jobs/hook-ok, mode: async, job_type: hook-ok, scopes: [jobs:submit]}
  - {method: POST, path: /v1/jobs/hook-down, mode: async, job_type: hook-down, scopes: [jobs:submit]}
  - {method: GET, path: "/v1/jobs/{id}", mode: job-status, scopes: [jobs:read]}
`
	p := startPlatformWith(t, platformOptions{
		services: []string{"tokens", "relay", "worker", "gateway"}, jobs: jobs, routes: routes,
		serviceEnv: map[string][]string{"worker": {"HTTP_PROXY=" + proxy.url, "http_proxy=" + proxy.url}},
	})
	bearer := "Bearer " + p.bearer("hooks")
	redirected := p.submitAs("hooks", "hook-redirect", `{"order":"secret payload"}`)
	ok := p.submitAs("hooks", "hook-ok", `{"order":"fine"}`)
	require.NoError(t, p.awaitSucceededWith(bearer, ok, time.Minute))
	require.Eventually(t, func() bool {
		r := p.call("GET", "/v1/jobs/"+redirected, bearer, "")
		return r.body["status"] == "dead_lettered"
	}, time.Minute, 50*time.Millisecond, "a redirect is a permanent failure")
	stolen.mu.Lock()
	defer stolen.mu.Unlock()
	proxy.mu.Lock()
	defer proxy.mu.Unlock()
	require.Zero(t, stolen.calls.Load(), "the host the target redirected to received: %v", stolen.seen)
	require.Zero(t, proxy.calls.Load(), "the proxy from the environment received: %v", proxy.seen)
	require.EqualValues(t, 2, target.calls.Load(), "the target got each job once, directly")
	r := p.call("GET", "/v1/jobs/"+redirected, bearer, "")
	require.EqualValues(t, 1, r.body["attempts"], "permanent: not retried")
	require.Equal(t, "target_redirected", r.body["last_error_class"])

	// Security item 14: a target that cannot be reached fails with an
	// error naming its URL (an internal address, a key in the query); the
	// job's owner sees a class and a message, the operators the detail.
	down := p.submitAs("hooks", "hook-down", `{"order":"x"}`)
	require.Eventually(t, func() bool {
		return p.call("GET", "/v1/jobs/"+down, bearer, "").body["status"] == "dead_lettered"
	}, time.Minute, 50*time.Millisecond)
	r = p.call("GET", "/v1/jobs/"+down, bearer, "")
	raw, err := json.Marshal(r.body)
	require.NoError(t, err)
	for _, secret := range []string{"s3cret-in-the-url", ip, "/internal/orders", "connection refused"} {
		require.NotContains(t, string(raw), secret, "the job's owner sees no detail of the target")
	}
	require.Equal(t, "target_unreachable", r.body["last_error_class"])
	require.Equal(t, "the target could not be reached", r.body["last_error"])
	var detail string
	require.NoError(t, p.pool.QueryRow(context.Background(), `SELECT error FROM job_attempts WHERE job_id = $1 ORDER BY attempt DESC LIMIT 1`, down).Scan(&detail))
	require.Contains(t, detail, "s3cret-in-the-url", "operators keep the detail")
}

// freePort is a port nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	port, err := devstack.FreePort()
	require.NoError(t, err)
	return port
}

// shippedThrottling (security item 10): the routes file the platform
// ships (task dev, compose, the images) throttles every route per client
// and per source address. Every route is hammered by a client of its own
// from an address of its own, and an unauthenticated flood from one
// address: all get 429 beyond their burst.
func shippedThrottling(t *testing.T) {
	root, err := devstack.ModuleRoot(".")
	require.NoError(t, err)
	shippedRoutes, err := os.ReadFile(filepath.Join(root, "deployments", "config", "routes.yaml"))
	require.NoError(t, err)
	shippedJobs, err := os.ReadFile(filepath.Join(root, "deployments", "config", "jobs.yaml"))
	require.NoError(t, err)
	var doc struct {
		Routes []struct {
			Method string   `yaml:"method"`
			Path   string   `yaml:"path"`
			Scopes []string `yaml:"scopes"`
		} `yaml:"routes"`
	}
	require.NoError(t, yaml.Unmarshal(shippedRoutes, &doc))
	require.NotEmpty(t, doc.Routes)
	p := startPlatformWith(t, platformOptions{
		services: []string{"tokens", "gateway"}, routes: string(shippedRoutes), jobs: string(shippedJobs),
		// The shipped limits, made small enough to reach in a test.
		env: []string{"SWITCHYARD_DEFAULT_RATE_PER_CLIENT=0.5", "SWITCHYARD_DEFAULT_BURST_PER_CLIENT=5",
			"SWITCHYARD_DEFAULT_RATE_PER_IP=0.5", "SWITCHYARD_DEFAULT_BURST_PER_IP=20",
			"SWITCHYARD_EDGE_TRUSTED_PROXIES=127.0.0.1/32"},
	})
	send := func(method, path, authorization, from string) *http.Response {
		req, err := http.NewRequest(method, p.gateway+path, strings.NewReader(`{"text":"x"}`))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", from)
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp
	}
	for i, rt := range doc.Routes {
		path := rt.Path
		for _, seg := range strings.Split(rt.Path, "/") {
			if strings.HasPrefix(seg, "{") {
				path = strings.Replace(path, seg, uuid.NewString(), 1)
			}
		}
		bearer := "Bearer " + p.bearerWith(fmt.Sprintf("throttled-%d", i), rt.Scopes...)
		from := fmt.Sprintf("198.51.100.%d", i+1)
		limited := 0
		for range 10 {
			resp := send(rt.Method, path, bearer, from)
			if resp.StatusCode == http.StatusTooManyRequests {
				limited++
				require.NotEmpty(t, resp.Header.Get("Retry-After"))
				require.Contains(t, resp.Header.Get("RateLimit-Policy"), `"client";q=5`, "%s %s", rt.Method, rt.Path)
			}
		}
		require.GreaterOrEqual(t, limited, 5, "%s %s: one client beyond its burst of 5", rt.Method, rt.Path)
	}
	limited := 0
	for range 40 {
		if send("GET", "/v1/jobs/"+uuid.NewString(), "", "203.0.113.77").StatusCode == http.StatusTooManyRequests {
			limited++
		}
	}
	require.GreaterOrEqual(t, limited, 15, "unauthenticated requests from one address beyond its burst of 20")
}

// adminRefusalsAudited (security item 16): refused calls to the admin
// API, without a token and with a token lacking the admin scopes, are in
// the audit log, but a flood of them writes at most a source's burst and
// rate, with the rest counted on the source's next row.
func adminRefusalsAudited(t *testing.T) {
	p := startPlatformWith(t, platformOptions{services: []string{"tokens", "replay"}})
	nosy := "Bearer " + p.bearerWith("nosy", "jobs:read")
	admin := func(authorization string) int {
		req, err := http.NewRequest(http.MethodGet, p.replay+"/admin/v1/dead-letters", nil)
		require.NoError(t, err)
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	start := time.Now()
	const flood = 300
	for range flood {
		require.Equal(t, http.StatusUnauthorized, admin(""))
	}
	for range 20 {
		require.Equal(t, http.StatusForbidden, admin(nosy))
	}
	took := time.Since(start)
	refused := func(actor string) int {
		return p.count(`SELECT count(*) FROM admin_audit WHERE action = 'admin.refused' AND actor = '` + actor + `'`)
	}
	require.Eventually(t, func() bool { return refused("anonymous") > 0 && refused("nosy") > 0 }, 10*time.Second, 20*time.Millisecond)
	anonymous := refused("anonymous")
	t.Logf("%d unauthenticated and 20 under-scoped calls in %s: %d and %d audit rows", flood, took.Round(time.Millisecond), anonymous, refused("nosy"))
	// Burst 10, then 1/s per source.
	require.LessOrEqual(t, anonymous, 10+int(took.Seconds())+1, "a flood cannot fill the audit log")
	var outcome, source string
	require.NoError(t, p.pool.QueryRow(context.Background(),
		`SELECT outcome, source_ip FROM admin_audit WHERE actor = 'nosy' ORDER BY id LIMIT 1`).Scan(&outcome, &source))
	require.Equal(t, "refused: 403", outcome)
	require.Equal(t, "127.0.0.1", source)
	// The next row of the flooding source counts what was left out.
	require.Eventually(t, func() bool {
		admin("")
		var suppressed int
		err := p.pool.QueryRow(context.Background(), `SELECT COALESCE(max((counts->>'suppressed_before')::int), 0)
			FROM admin_audit WHERE actor = 'anonymous'`).Scan(&suppressed)
		return err == nil && suppressed > 0
	}, 10*time.Second, 200*time.Millisecond)
	require.Positive(t, p.metric("replay", "switchyard_audit_refusals_suppressed_total"))
}
