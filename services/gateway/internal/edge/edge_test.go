package edge_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/geoip"
	"github.com/switchyard/switchyard/libs/geoip/geoiptest"
	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/ratelimit"
	"github.com/switchyard/switchyard/libs/synchandler"
	"github.com/switchyard/switchyard/services/gateway/app"
	"github.com/switchyard/switchyard/services/gateway/internal/edge"
	"github.com/switchyard/switchyard/services/gateway/internal/quota"
	"github.com/switchyard/switchyard/services/gateway/internal/routes"
	"github.com/switchyard/switchyard/services/gateway/internal/syncroute"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// bearerClients authenticates "Bearer <client id>"; "Bearer bad" is an
// invalid token. The token verifier has its own tests; these are the
// edge's.
type bearerClients struct{}

func (bearerClients) Authenticate(r *http.Request) (authn.Identity, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case !ok:
		return authn.Identity{}, authn.Fail(authn.ErrNoCredentials, "missing", "no token")
	case tok == "bad":
		return authn.Identity{}, authn.Fail(authn.ErrUnauthenticated, "invalid", "bad token")
	}
	return authn.Identity{ClientID: tok, Scopes: []string{"s"}}, nil
}

type gateway struct {
	url   string
	hits  *atomic.Int64
	edge  *edge.Edge
	addr  string
	audit []edge.Block
}

// newGateway serves routesYAML (sync routes of the handler "hello") with
// the edge configured by cfg, on a dual-stack listener so that clients
// can come from IPv4 and IPv6 addresses.
func newGateway(t *testing.T, cfg edge.Config, routesYAML string, opts ...func(*edge.Options)) *gateway {
	t.Helper()
	g := &gateway{hits: new(atomic.Int64)}
	handlers := synchandler.NewRegistry()
	require.NoError(t, handlers.Register("hello", synchandler.Func(func(context.Context, synchandler.Request) (synchandler.Response, error) {
		g.hits.Add(1)
		return synchandler.JSON(200, map[string]string{"hello": "world"})
	})))
	f, err := routes.Parse("routes.yaml", []byte(routesYAML), routes.Known{JobTypes: names{}, Handlers: handlers})
	require.NoError(t, err)
	logger := slog.New(slog.DiscardHandler)
	o := edge.Options{Config: cfg, File: f.Edge, Limiter: ratelimit.NewLocal(), Logger: logger, Registerer: prometheus.NewRegistry(),
		OnBlock: func(b edge.Block) { g.audit = append(g.audit, b) }}
	for _, fn := range opts {
		fn(&o)
	}
	g.edge, err = edge.New(o)
	require.NoError(t, err)
	e := httpserver.NewEcho(logger)
	e.IPExtractor = g.edge.ClientIP
	e.Pre(g.edge.Pre)
	require.NoError(t, app.Mount(e.Echo, f, app.Services{
		Guard: func(p authn.Policy, _ []string) echo.MiddlewareFunc { return authn.Guard(bearerClients{}, logger, p) },
		Sync:  syncroute.Options{Handlers: handlers, Metrics: syncroute.NewMetrics(prometheus.NewRegistry()), Logger: logger},
		Edge:  g.edge,
	}))
	l, err := net.Listen("tcp", "[::]:0")
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(e)
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(l.Addr().String())
	g.addr = port
	g.url = "http://127.0.0.1:" + port
	return g
}

type names map[string]bool

func (n names) Has(s string) bool { return n[s] }

type reply struct {
	status int
	header http.Header
	body   string
}

// call sends a request from the local address from (127.0.0.2, ::1, ...)
// with the given headers.
func (g *gateway) call(t *testing.T, from, method, path string, header ...string) reply {
	t.Helper()
	host := "127.0.0.1"
	if strings.Contains(from, ":") {
		host = "[::1]"
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"x":1}`)
	}
	req, err := http.NewRequest(method, "http://"+host+":"+g.addr+path, body)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer anonymous")
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Authorization" {
			req.Header.Set(header[i], header[i+1])
			continue
		}
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

func defaults() edge.Config {
	return edge.Config{ForwardedHeader: "X-Forwarded-For", MaxBodyBytes: 1 << 20, HSTSMaxAge: time.Hour,
		BlockWindow: time.Minute, BlockCooldown: time.Minute, QuotaFlush: time.Second}
}

const helloRoutes = `
routes:
  - {name: open, method: GET, path: /v1/open, mode: sync, handler: hello, scopes: []}
  - name: internal
    method: GET
    path: /v1/internal
    mode: sync
    handler: hello
    scopes: []
    edge:
      ip: {allow: ["10.0.0.0/8", "fd00::/8", "127.0.0.3"]}
`

// TestForwardedForTrust: X-Forwarded-For decides the client address only
// when the TCP peer is a trusted proxy; from anyone else it is ignored.
// IPv6 peers and IPv4-mapped entries are handled.
func TestForwardedForTrust(t *testing.T) {
	cfg := defaults()
	cfg.TrustedProxies = "127.0.0.2/32, ::1/128"
	g := newGateway(t, cfg, helloRoutes)
	type tc struct {
		from, xff string
		want      int
	}
	for _, c := range []tc{
		{"127.0.0.2", "10.1.2.3", http.StatusOK},                      // trusted proxy vouches for an internal client
		{"127.0.0.2", "10.1.2.3, 198.51.100.7", http.StatusForbidden}, // the proxy saw 198.51.100.7; the left entry is the client's claim
		{"127.0.0.4", "10.1.2.3", http.StatusForbidden},               // untrusted peer: its header is ignored, 127.0.0.4 is not allowed
		{"127.0.0.3", "", http.StatusOK},                              // allowed by address, no proxy
		{"127.0.0.3", "198.51.100.7", http.StatusOK},                  // untrusted: header ignored, the peer is allowed
		{"::1", "fd00::42", http.StatusOK},                            // IPv6 trusted proxy, IPv6 client
		{"::1", "::ffff:10.9.9.9", http.StatusOK},                     // IPv4-mapped entry matches 10.0.0.0/8
		{"::1", "[2001:db8::1]:443", http.StatusForbidden},            // with a port, outside the allow list
		{"::1", "bogus", http.StatusForbidden},                        // garbage: the proxy itself (::1) is the client
	} {
		var h []string
		if c.xff != "" {
			h = []string{"X-Forwarded-For", c.xff}
		}
		r := g.call(t, c.from, http.MethodGet, "/v1/internal", h...)
		assert.Equal(t, c.want, r.status, "from %s with X-Forwarded-For %q: %s", c.from, c.xff, r.body)
		if c.want == http.StatusForbidden {
			assert.Contains(t, r.body, "urn:switchyard:problem:address-denied")
		}
	}
	assert.Equal(t, http.StatusOK, g.call(t, "127.0.0.4", http.MethodGet, "/v1/open").status, "the open route has no address rules")
	r := g.call(t, "127.0.0.4", http.MethodGet, "/v1/open")
	assert.Equal(t, "nosniff", r.header.Get("X-Content-Type-Options"))
	assert.Empty(t, r.header.Get("Strict-Transport-Security"), "no HSTS over plain HTTP")
	r = g.call(t, "127.0.0.2", http.MethodGet, "/v1/open", "X-Forwarded-Proto", "https")
	assert.Equal(t, "max-age=3600; includeSubDomains", r.header.Get("Strict-Transport-Security"), "HSTS when a trusted proxy terminated TLS")
}

// TestCountries: country rules from a generated .mmdb, and from a CDN's
// header only when a trusted proxy sent it.
func TestCountries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "country.mmdb")
	geoiptest.Write(t, path, map[string]string{"198.51.100.0/24": "KP", "203.0.113.0/24": "DE", "2001:db8:de::/48": "DE", "2001:db8:66::/48": "RU"})
	db, err := geoip.Open(path, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	cfg := defaults()
	cfg.TrustedProxies = "127.0.0.2, ::1"
	cfg.CountryHeader = "CloudFront-Viewer-Country"
	g := newGateway(t, cfg, `
edge:
  countries: {deny: [KP]}
routes:
  - {name: open, method: GET, path: /v1/open, mode: sync, handler: hello, scopes: []}
  - name: eu
    method: GET
    path: /v1/eu
    mode: sync
    handler: hello
    scopes: []
    edge:
      countries: {allow: [DE, FR]}
`, func(o *edge.Options) { o.Countries = db })
	for _, c := range []struct {
		from, path string
		header     []string
		want       int
	}{
		{"127.0.0.2", "/v1/open", []string{"X-Forwarded-For", "198.51.100.9"}, http.StatusForbidden},        // KP from the database
		{"127.0.0.2", "/v1/open", []string{"X-Forwarded-For", "::ffff:198.51.100.9"}, http.StatusForbidden}, // mapped
		{"127.0.0.2", "/v1/open", []string{"X-Forwarded-For", "203.0.113.9"}, http.StatusOK},
		{"127.0.0.2", "/v1/eu", []string{"X-Forwarded-For", "203.0.113.9"}, http.StatusOK},
		{"::1", "/v1/eu", []string{"X-Forwarded-For", "2001:db8:de::1"}, http.StatusOK},
		{"::1", "/v1/eu", []string{"X-Forwarded-For", "2001:db8:66::1"}, http.StatusForbidden},
		{"127.0.0.2", "/v1/eu", []string{"X-Forwarded-For", "192.0.2.1"}, http.StatusForbidden}, // unknown (ZZ) is not allowed
		// The CDN's header, from a trusted proxy, wins over the database.
		{"127.0.0.2", "/v1/eu", []string{"X-Forwarded-For", "192.0.2.1", "CloudFront-Viewer-Country", "fr"}, http.StatusOK},
		{"127.0.0.2", "/v1/open", []string{"X-Forwarded-For", "203.0.113.9", "CloudFront-Viewer-Country", "KP"}, http.StatusForbidden},
		// From an untrusted peer the header is a lie nobody believes.
		{"127.0.0.5", "/v1/eu", []string{"CloudFront-Viewer-Country", "DE"}, http.StatusForbidden},
	} {
		r := g.call(t, c.from, http.MethodGet, c.path, c.header...)
		assert.Equal(t, c.want, r.status, "%s %s %v: %s", c.from, c.path, c.header, r.body)
		if c.want == http.StatusForbidden {
			assert.Contains(t, r.body, "urn:switchyard:problem:country-denied")
		}
	}
}

// TestRateLimitsAndHeaders: per-address and per-client buckets, the
// route's own bucket, 429 with Retry-After and RateLimit headers, and a
// client's own plan.
func TestRateLimitsAndHeaders(t *testing.T) {
	g := newGateway(t, defaults(), `
edge:
  rate_limit:
    per_client: {rate: 1, per: 1h, burst: 3}
  clients:
    vip: {rate_limit: {rate: 1, per: 1h, burst: 6}}
routes:
  - {name: open, method: GET, path: /v1/open, mode: sync, handler: hello, scopes: []}
  - name: tight
    method: GET
    path: /v1/tight
    mode: sync
    handler: hello
    scopes: []
    edge:
      rate_limit: {per_ip: {rate: 1, per: 1h, burst: 1}}
`)
	ok := 0
	var last reply
	for range 5 {
		last = g.call(t, "127.0.0.1", http.MethodGet, "/v1/open", "Authorization", "Bearer acme")
		if last.status == http.StatusOK {
			ok++
		}
	}
	assert.Equal(t, 3, ok, "the client's burst")
	require.Equal(t, http.StatusTooManyRequests, last.status)
	assert.Contains(t, last.body, "urn:switchyard:problem:rate-limited")
	assert.Equal(t, `"client";q=3;w=10800`, last.header.Get("RateLimit-Policy"))
	assert.Regexp(t, `^"client";r=0;t=\d+$`, last.header.Get("RateLimit"))
	assert.Regexp(t, `^(3599|3600)$`, last.header.Get("Retry-After"))

	vip := 0
	for range 8 {
		if g.call(t, "127.0.0.1", http.MethodGet, "/v1/open", "Authorization", "Bearer vip").status == http.StatusOK {
			vip++
		}
	}
	assert.Equal(t, 6, vip, "vip's own plan")

	assert.Equal(t, http.StatusOK, g.call(t, "127.0.0.7", http.MethodGet, "/v1/tight", "Authorization", "Bearer other").status)
	r := g.call(t, "127.0.0.7", http.MethodGet, "/v1/tight", "Authorization", "Bearer other2")
	assert.Equal(t, http.StatusTooManyRequests, r.status, "the route's per-address bucket, whoever the client")
	assert.Equal(t, `"route-ip";q=1;w=3600`, r.header.Get("RateLimit-Policy"))
	assert.Equal(t, http.StatusOK, g.call(t, "127.0.0.8", http.MethodGet, "/v1/tight", "Authorization", "Bearer other3").status)
}

// TestQuota: the file's daily quota, in Postgres, with a 429 naming it.
func TestQuota(t *testing.T) {
	pool := stacktest.NewPool(t)
	counter := quota.New(pool, nil, slog.New(slog.DiscardHandler))
	g := newGateway(t, defaults(), `
edge:
  quota: {daily: 2}
routes:
  - {name: open, method: GET, path: /v1/open, mode: sync, handler: hello, scopes: []}
`, func(o *edge.Options) { o.Quotas = counter })
	for range 2 {
		require.Equal(t, http.StatusOK, g.call(t, "127.0.0.1", http.MethodGet, "/v1/open", "Authorization", "Bearer q").status)
	}
	r := g.call(t, "127.0.0.1", http.MethodGet, "/v1/open", "Authorization", "Bearer q")
	require.Equal(t, http.StatusTooManyRequests, r.status)
	assert.Contains(t, r.body, "urn:switchyard:problem:quota-exceeded")
	assert.Equal(t, `"daily";q=2;w=86400`, r.header.Get("RateLimit-Policy"))
	assert.NotEmpty(t, r.header.Get("Retry-After"))
	require.NoError(t, counter.Flush(context.Background()))
	var used int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT used FROM client_quota_usage WHERE client_id = 'q'`).Scan(&used))
	assert.Equal(t, 2, used)
}

// TestAutoBlock: an address that keeps failing authentication is blocked
// for the cool-down, whatever it sends then; the block is recorded.
func TestAutoBlock(t *testing.T) {
	cfg := defaults()
	cfg.BlockThreshold = 5
	g := newGateway(t, cfg, helloRoutes)
	for range 5 {
		assert.Equal(t, http.StatusUnauthorized, g.call(t, "127.0.0.9", http.MethodGet, "/v1/open", "Authorization", "Bearer bad").status)
	}
	r := g.call(t, "127.0.0.9", http.MethodGet, "/v1/open", "Authorization", "Bearer good")
	assert.Equal(t, http.StatusForbidden, r.status, "blocked even with a good token")
	assert.Contains(t, r.body, "urn:switchyard:problem:blocked")
	assert.NotEmpty(t, r.header.Get("Retry-After"))
	assert.Equal(t, http.StatusOK, g.call(t, "127.0.0.10", http.MethodGet, "/v1/open", "Authorization", "Bearer good").status, "other addresses are not")
	require.Len(t, g.audit, 1)
	assert.Equal(t, "ip:127.0.0.9", g.audit[0].Key)
	assert.Equal(t, 5, g.audit[0].Violations)
	hits := g.hits.Load()
	for range 20 {
		g.call(t, "127.0.0.9", http.MethodGet, "/v1/open", "Authorization", "Bearer good")
	}
	assert.Equal(t, hits, g.hits.Load(), "a blocked address reaches no handler")
	assert.Len(t, g.audit, 1, "one block, one audit entry")
}

// TestBodyLimitAndMediaTypes: a body over the gateway's limit is refused
// on its Content-Length before it is read; a chunked one when it passes
// the limit; a route's content types are enforced.
func TestBodyLimitAndMediaTypes(t *testing.T) {
	cfg := defaults()
	cfg.MaxBodyBytes = 1024
	g := newGateway(t, cfg, `
routes:
  - name: post
    method: POST
    path: /v1/post
    mode: sync
    handler: hello
    scopes: []
    edge: {content_types: [application/json]}
`)
	body := strings.Repeat("x", 2048)
	req, _ := http.NewRequest(http.MethodPost, g.url+"/v1/post", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer a")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	assert.True(t, resp.Close, "the connection is closed rather than the body drained")

	// Chunked: no Content-Length, cut off while reading.
	req, _ = http.NewRequest(http.MethodPost, g.url+"/v1/post", io.MultiReader(strings.NewReader(body)))
	req.Header.Set("Authorization", "Bearer a")
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)

	req, _ = http.NewRequest(http.MethodPost, g.url+"/v1/post", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer a")
	req.Header.Set("Content-Type", "text/plain")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)
	assert.Zero(t, g.hits.Load())
}

// TestCORS: preflights are answered without credentials, for allowed
// origins only; responses to allowed origins carry the headers.
func TestCORS(t *testing.T) {
	g := newGateway(t, defaults(), `
routes:
  - name: browser
    method: POST
    path: /v1/browser
    mode: sync
    handler: hello
    scopes: []
    edge:
      cors: {allow_origins: ["https://app.example.com"], allow_headers: [Authorization, Content-Type], max_age: 1h}
`)
	r := g.call(t, "127.0.0.1", http.MethodOptions, "/v1/browser", "Origin", "https://app.example.com", "Access-Control-Request-Method", "POST")
	assert.Equal(t, http.StatusNoContent, r.status)
	assert.Equal(t, "https://app.example.com", r.header.Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "3600", r.header.Get("Access-Control-Max-Age"))
	assert.Contains(t, r.header.Get("Access-Control-Allow-Methods"), "POST")
	r = g.call(t, "127.0.0.1", http.MethodOptions, "/v1/browser", "Origin", "https://evil.example", "Access-Control-Request-Method", "POST")
	assert.Empty(t, r.header.Get("Access-Control-Allow-Origin"))
	r = g.call(t, "127.0.0.1", http.MethodPost, "/v1/browser", "Origin", "https://app.example.com", "Authorization", "Bearer a", "Content-Type", "application/json")
	assert.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, "https://app.example.com", r.header.Get("Access-Control-Allow-Origin"))
}

func TestConfigErrors(t *testing.T) {
	cfg := defaults()
	cfg.TrustedProxies = "10.0.0.1/8"
	_, err := edge.New(edge.Options{Config: cfg, Logger: slog.Default()})
	require.Error(t, err)
	cfg = defaults()
	cfg.ForwardedHeader = "X-Real-IP"
	_, err = edge.New(edge.Options{Config: cfg, Logger: slog.Default()})
	require.Error(t, err)
	_, err = edge.New(edge.Options{Config: defaults(), File: routes.Edge{Countries: routes.CountryRules{Deny: []string{"KP"}}}, Logger: slog.Default()})
	require.True(t, err != nil && !errors.Is(err, context.Canceled), "country rules without a source of countries")
}

// TestPerAddressLimit: the file's per-address bucket is charged once per
// request, authenticated or not; a spent address is refused before
// authentication.
func TestPerAddressLimit(t *testing.T) {
	g := newGateway(t, defaults(), `
edge:
  rate_limit:
    per_ip: {rate: 1, per: 1h, burst: 3}
routes:
  - {name: open, method: GET, path: /v1/open, mode: sync, handler: hello, scopes: []}
`)
	assert.Equal(t, http.StatusUnauthorized, g.call(t, "127.0.0.11", http.MethodGet, "/v1/open", "Authorization", "Bearer bad").status)
	assert.Equal(t, http.StatusNotFound, g.call(t, "127.0.0.11", http.MethodGet, "/v1/nowhere").status)
	assert.Equal(t, http.StatusOK, g.call(t, "127.0.0.11", http.MethodGet, "/v1/open", "Authorization", "Bearer good").status)
	r := g.call(t, "127.0.0.11", http.MethodGet, "/v1/open", "Authorization", "Bearer good")
	assert.Equal(t, http.StatusTooManyRequests, r.status, "three requests of any kind spent the burst")
	assert.Equal(t, `"ip";q=3;w=10800`, r.header.Get("RateLimit-Policy"))
	hits := g.hits.Load()
	r = g.call(t, "127.0.0.11", http.MethodGet, "/v1/open", "Authorization", "Bearer bad")
	assert.Equal(t, http.StatusTooManyRequests, r.status, "refused before authentication")
	assert.NotEmpty(t, r.header.Get("Retry-After"))
	assert.Equal(t, hits, g.hits.Load())
	assert.Equal(t, http.StatusOK, g.call(t, "127.0.0.12", http.MethodGet, "/v1/open", "Authorization", "Bearer good").status, "another address")
}

// TestIPv6RotationIsOneClient (security item 5): an attacker who holds a
// /64 rotates its address on every request; the failures add up to one
// block for the whole prefix, and a neighbouring /64 is unaffected.
func TestIPv6RotationIsOneClient(t *testing.T) {
	cfg := defaults()
	cfg.BlockThreshold = 5
	cfg.TrustedProxies = "127.0.0.1/32"
	g := newGateway(t, cfg, helloRoutes)
	for i := range 5 {
		from := fmt.Sprintf("2001:db8:1:2:%x::%x", i+1, i*7+3)
		assert.Equal(t, http.StatusUnauthorized, g.call(t, "127.0.0.1", http.MethodGet, "/v1/open", "Authorization", "Bearer bad", "X-Forwarded-For", from).status)
	}
	r := g.call(t, "127.0.0.1", http.MethodGet, "/v1/open", "Authorization", "Bearer good", "X-Forwarded-For", "2001:db8:1:2:ffff::1")
	assert.Equal(t, http.StatusForbidden, r.status, "a new address in the same /64 is blocked")
	require.Len(t, g.audit, 1)
	assert.Equal(t, "ip:2001:db8:1:2::/64", g.audit[0].Key)
	assert.Equal(t, http.StatusOK, g.call(t, "127.0.0.1", http.MethodGet, "/v1/open", "Authorization", "Bearer good", "X-Forwarded-For", "2001:db8:1:3::1").status,
		"the next /64 is someone else")
}

// TestBlockerIsBounded: a flood of distinct keys never grows the tables
// past their bound, and keys still counted block as before.
func TestBlockerIsBounded(t *testing.T) {
	b := edge.NewBlocker(3, time.Minute, time.Minute, 1024, nil)
	for i := range 100_000 {
		b.Violation("ip:"+strconv.Itoa(i), "auth_failure")
	}
	require.LessOrEqual(t, b.Tracked(), 1024)
	for range 3 {
		b.Violation("ip:attacker", "auth_failure")
	}
	_, blocked := b.Blocked("ip:attacker")
	require.True(t, blocked)
	require.Equal(t, 1, b.BlockedCount())
}

// BenchmarkBlockerFlood (security item 5) measures what a request from a
// new address costs the edge's per-address state (the block check, the
// violation count) once keys addresses are already held:
// flat from 1k to 1M keys, where a table scan would grow with them.
func BenchmarkBlockerFlood(b *testing.B) {
	for _, keys := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			bl := edge.NewBlocker(50, time.Minute, time.Minute, 0, nil)
			addr := func(i int) string {
				return fmt.Sprintf("ip:10.%d.%d.%d", (i>>16)&0xff, (i>>8)&0xff, i&0xff)
			}
			for i := range keys {
				bl.Violation(addr(i), "auth_failure")
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				k := addr(keys + i)
				if _, blocked := bl.Blocked(k); !blocked {
					bl.Violation(k, "auth_failure")
				}
			}
		})
	}
}
