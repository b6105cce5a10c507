package routes_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/services/gateway/internal/routes"
)

func TestParseSync(t *testing.T) {
	t.Parallel()
	f, err := routes.Parse("r.yaml", []byte(`
routes:
  - name: quotes
    method: GET
    path: /v1/quotes/{symbol}
    mode: sync
    scopes: [quotes:read]
    upstream:
      url: "http://quotes.internal:8080/q/{symbol}?fmt=json"
      forward_headers: [accept, Accept-Language, accept]
      headers: {X-Api-Key: k1}
      max_response_bytes: 65536
    timeout: 2s
    max_concurrent: 50
    retries: {attempts: 2, backoff: 10ms, per_try_timeout: 500ms, budget: 0.1}
    breaker: {consecutive_failures: 3, failure_ratio: 0.25, min_requests: 40, window: 30s, open_for: 15s, half_open_requests: 2}
    cache: {ttl: 30s, shared: true}
  - method: POST
    path: /v1/text-stats
    mode: sync
    handler: text-stats
    scopes: []
  - method: POST
    path: /v1/hooks
    mode: sync
    upstream: {url: "https://hooks.internal/in", method: PUT}
    fallback_job_type: webhook
    scopes: [hooks:send]
`), known)
	require.NoError(t, err)
	q := f.Routes[0].Sync
	require.Equal(t, "http://quotes.internal:8080/q/{symbol}?fmt=json", q.Upstream.URL)
	require.Equal(t, "GET", q.Upstream.Method, "defaults to the route's method")
	require.Equal(t, []string{"Accept", "Accept-Language"}, q.Upstream.ForwardHeaders, "canonical, folded")
	require.Equal(t, map[string]string{"X-Api-Key": "k1"}, q.Upstream.Headers)
	require.EqualValues(t, 65536, q.Upstream.MaxResponseBytes)
	require.Equal(t, 2*time.Second, q.Timeout)
	require.Equal(t, 50, q.MaxConcurrent)
	require.Equal(t, routes.Retries{Attempts: 2, Backoff: 10 * time.Millisecond, PerTryTimeout: 500 * time.Millisecond, Budget: 0.1}, q.Retries)
	require.Equal(t, routes.Breaker{Enabled: true, ConsecutiveFailures: 3, FailureRatio: 0.25, MinRequests: 40,
		Window: 30 * time.Second, OpenFor: 15 * time.Second, HalfOpenRequests: 2}, q.Breaker)
	require.Equal(t, &routes.Cache{TTL: 30 * time.Second, Shared: true}, q.Cache)

	ts := f.Routes[1].Sync
	require.Equal(t, "text-stats", ts.Handler)
	require.Equal(t, routes.DefaultSyncTimeout, ts.Timeout)
	require.Equal(t, routes.DefaultMaxConcurrent, ts.MaxConcurrent)
	require.True(t, ts.Breaker.Enabled, "a breaker by default")
	require.Nil(t, ts.Cache, "no cache unless asked")

	h := f.Routes[2].Sync
	require.Equal(t, "PUT", h.Upstream.Method)
	require.Equal(t, []string{"Accept", "Accept-Language", "Content-Type"}, h.Upstream.ForwardHeaders)
	require.Equal(t, "webhook", h.FallbackJobType)
}

func TestParseSyncErrors(t *testing.T) {
	t.Parallel()
	sync := func(method, path, extra string) string {
		return "routes:\n  - method: " + method + "\n    path: " + path + "\n    mode: sync\n    scopes: [a]\n    " +
			strings.ReplaceAll(strings.TrimSpace(extra), "\n", "\n    ") + "\n"
	}
	up := `upstream: {url: "http://up:1/x"}`
	tests := []struct {
		name, doc, want string
	}{
		{"no target", sync("GET", "/a", "timeout: 1s"), "r.yaml:2: routes[0]: a sync route names a handler"},
		{"no target at all", "routes:\n  - {method: GET, path: /a, mode: sync, scopes: [a]}\n", "routes[0]: a sync route names a handler"},
		{"both targets", sync("GET", "/a", up+"\nhandler: text-stats"), "names a handler or an upstream, not both"},
		{"unknown handler", sync("GET", "/a", "handler: nope"), `routes[0].handler: no sync handler "nope" is registered in the gateway`},
		{"relative url", sync("GET", "/a", `upstream: {url: "/x"}`), `routes[0].upstream: url "/x" must be an absolute http(s) URL`},
		{"ftp url", sync("GET", "/a", `upstream: {url: "ftp://h/x"}`), "must be an absolute http(s) URL"},
		{"credentials in url", sync("GET", "/a", `upstream: {url: "http://u:p@h/x"}`), "must not hold credentials"},
		{"unknown url param", sync("GET", "/a/{id}", `upstream: {url: "http://h/x/{name}"}`), "url parameter {name} is not a parameter of the route's path"},
		{"param as the host", sync("GET", "/a/{host}", `upstream: {url: "https://{host}/x"}`), "parameters may fill only the path or the query, never the host"},
		{"param in the host", sync("GET", "/a/{n}", `upstream: {url: "http://api{n}.internal/x"}`), "never the host or port"},
		{"param as the port", sync("GET", "/a/{p}", `upstream: {url: "http://h:{p}/x"}`), "never the host or port"},
		{"param as user info", sync("GET", "/a/{u}", `upstream: {url: "http://{u}@h/x"}`), "never the host or port"},
		{"param with no path", sync("GET", "/a/{h}", `upstream: {url: "http://h.{h}"}`), "never the host or port"},
		{"param as the scheme", sync("GET", "/a/{s}", `upstream: {url: "{s}://h/x"}`), "no parameter in its scheme"},
		{"unknown upstream field", sync("GET", "/a", `upstream: {url: "http://h/x", uri: y}`), "r.yaml:6: routes[0].upstream.uri: unknown field"},
		{"reserved header", sync("GET", "/a", `upstream: {url: "http://h/x", forward_headers: [Host]}`), "routes[0].upstream.forward_headers: Host is set by the gateway"},
		{"identity header", sync("GET", "/a", `upstream: {url: "http://h/x", headers: {X-Switchyard-Client-Id: x}}`), "X-Switchyard-Client-Id is set by the gateway"},
		{"negative timeout", sync("GET", "/a", up+"\ntimeout: -1s"), "r.yaml:7: routes[0].timeout: -1s must be positive"},
		{"timeout not a duration", sync("GET", "/a", up+"\ntimeout: 5"), `routes[0].timeout: "5" is not a duration`},
		{"huge timeout", sync("GET", "/a", up+"\ntimeout: 1h"), "routes[0].timeout: is at most 5m0s"},
		{"zero bulkhead", sync("GET", "/a", up+"\nmax_concurrent: 0"), "routes[0].max_concurrent: 0 is not from 1 to 100000"},
		{"bulkhead not a number", sync("GET", "/a", up+"\nmax_concurrent: lots"), "routes[0].max_concurrent: must be a whole number"},
		{"retries on POST", sync("POST", "/a", up+"\nretries: {attempts: 1}"), "routes[0].retries: retries apply to idempotent methods only"},
		{"too many retries", sync("GET", "/a", up+"\nretries: {attempts: 9}"), "routes[0].retries.attempts: 9 is not from 0 to 5"},
		{"per-try over timeout", sync("GET", "/a", up+"\ntimeout: 1s\nretries: {attempts: 1, per_try_timeout: 2s}"), "per_try_timeout: 2s is longer than the route's timeout 1s"},
		{"ratio over 1", sync("GET", "/a", up+"\nbreaker: {failure_ratio: 1.5}"), "routes[0].breaker.failure_ratio: must be a number above 0 and at most 1"},
		{"short window", sync("GET", "/a", up+"\nbreaker: {window: 10ms}"), "routes[0].breaker.window: must be at least 1s"},
		{"breaker enabled not bool", sync("GET", "/a", up+"\nbreaker: {enabled: maybe}"), "routes[0].breaker.enabled: must be true or false"},
		{"probes over bulkhead", sync("GET", "/a", up+"\nmax_concurrent: 2\nbreaker: {half_open_requests: 3}"), "3 probes cannot pass a bulkhead of max_concurrent 2"},
		{"cache on POST", sync("POST", "/a", up+"\ncache: {ttl: 1s}"), "routes[0].cache: only GET routes are cached"},
		{"cache without ttl", sync("GET", "/a", up+"\ncache: {shared: true}"), "routes[0].cache.ttl: is required"},
		{"fallback unknown", sync("POST", "/a", up+"\nfallback_job_type: nope"), `routes[0].fallback_job_type: no job type "nope"`},
		{"fallback on GET", sync("GET", "/a", up+"\nfallback_job_type: webhook"), "only POST, PUT and PATCH routes carry a payload"},
		{"fallback with params", sync("POST", "/a/{id}", `upstream: {url: "http://h/{id}"}`+"\nfallback_job_type: webhook"), "a route with path parameters cannot fall back"},
		{"fallback without breaker", sync("POST", "/a", up+"\nbreaker: {enabled: false}\nfallback_job_type: webhook"), "the breaker must be enabled"},
		{"sync field on async", "routes:\n  - {method: POST, path: /a, mode: async, job_type: webhook, scopes: [a], timeout: 1s}\n", "routes[0]: only sync routes take handler, upstream"},
		{"job_type on sync", sync("POST", "/a", up+"\njob_type: webhook"), "only async routes name a job type"},
		{"duplicate sync route", sync("GET", "/a/{id}", `upstream: {url: "http://h/{id}"}`) + "  - {method: GET, path: \"/a/{x}\", mode: sync, scopes: [a], handler: text-stats}\n",
			"r.yaml:7: routes[1]: GET /a/{x} duplicates the route at line 2"},
		{"bad YAML", "routes:\n  - method: GET\n   path: /a\n", "r.yaml: parsing YAML"},
	}
	for _, tt := range tests {
		_, err := routes.Parse("r.yaml", []byte(tt.doc), known)
		require.Error(t, err, tt.name)
		require.Contains(t, err.Error(), tt.want, tt.name)
	}
}
