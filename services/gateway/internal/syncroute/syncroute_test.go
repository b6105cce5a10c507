package syncroute_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/require"
)

const (
	typeCircuitOpen = "urn:switchyard:problem:circuit-open"
	typeOverloaded  = "urn:switchyard:problem:overloaded"
	typeBadGateway  = "urn:switchyard:problem:bad-gateway"
	typeTimeout     = "urn:switchyard:problem:upstream-timeout"
	typeRejected    = "urn:switchyard:problem:request-rejected"
)

// TestBreakerLifecycle: the breaker opens after the configured consecutive
// failures, then answers without calling the upstream, half-opens after
// its interval and closes after the probes succeed.
func TestBreakerLifecycle(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, answer(500, `{"error":"boom"}`))
	g := newGateway(t, `
method: GET
path: /v1/things/{id}
mode: sync
upstream: {url: "`+up.srv.URL+`/things/{id}"}
breaker: {consecutive_failures: 3, open_for: 300ms, half_open_requests: 2}`)

	for i := range 3 {
		r := g.get(t, "/v1/things/a", "c1")
		require.Equal(t, http.StatusBadGateway, r.status, "failure %d", i)
		require.Equal(t, typeBadGateway, r.problemType())
	}
	require.Equal(t, gobreaker.StateOpen, g.route.State())
	require.EqualValues(t, 3, up.hits.Load())

	// Open: answered without the upstream (how fast: BenchmarkOpenBreaker).
	for range 200 {
		rec := g.serve(http.MethodGet, "/v1/things/a", "c1")
		require.Equal(t, http.StatusServiceUnavailable, rec.Code)
		require.Contains(t, rec.Body.String(), typeCircuitOpen)
		secs, err := strconv.Atoi(rec.Header().Get("Retry-After"))
		require.NoError(t, err)
		require.GreaterOrEqual(t, secs, 1)
	}
	require.EqualValues(t, 3, up.hits.Load(), "an open breaker does not call the upstream")

	up.set(answer(200, `{"ok":true}`))
	require.Eventually(t, func() bool { return g.route.State() == gobreaker.StateHalfOpen },
		5*time.Second, 10*time.Millisecond, "half-opens after open_for")
	require.Equal(t, http.StatusOK, g.get(t, "/v1/things/a", "c1").status)
	require.Equal(t, gobreaker.StateHalfOpen, g.route.State(), "one success of two probes")
	require.Equal(t, http.StatusOK, g.get(t, "/v1/things/a", "c1").status)
	require.Equal(t, gobreaker.StateClosed, g.route.State(), "closed after the probes succeed")
	require.EqualValues(t, 5, up.hits.Load())

	require.InDelta(t, 1, g.metric(t, "switchyard_breaker_transitions_total", "to", "open"), 0)
	require.InDelta(t, 1, g.metric(t, "switchyard_breaker_transitions_total", "to", "half-open"), 0)
	require.InDelta(t, 1, g.metric(t, "switchyard_breaker_transitions_total", "to", "closed"), 0)
}

// TestHalfOpenFailureReopens: a failed probe opens the breaker again.
func TestHalfOpenFailureReopens(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, answer(503, `{}`))
	g := newGateway(t, `
method: GET
path: /v1/x
mode: sync
upstream: {url: "`+up.srv.URL+`/x"}
breaker: {consecutive_failures: 1, open_for: 100ms, half_open_requests: 1}`)
	require.Equal(t, http.StatusBadGateway, g.get(t, "/v1/x", "c").status)
	require.Eventually(t, func() bool { return g.route.State() == gobreaker.StateHalfOpen }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, http.StatusBadGateway, g.get(t, "/v1/x", "c").status)
	require.Equal(t, gobreaker.StateOpen, g.route.State())
	require.EqualValues(t, 2, up.hits.Load())
}

// TestHalfOpenExcessIsRefused: while the half-open breaker's probe is in
// flight, further calls get 503 at once without reaching the upstream.
func TestHalfOpenExcessIsRefused(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, answer(500, `{}`))
	g := newGateway(t, `
method: GET
path: /v1/x
mode: sync
upstream: {url: "`+up.srv.URL+`/x"}
timeout: 30s
breaker: {consecutive_failures: 1, open_for: 100ms, half_open_requests: 1}`)
	require.Equal(t, http.StatusBadGateway, g.get(t, "/v1/x", "c").status)
	release := make(chan struct{})
	up.set(held(release, 200, `{}`))
	require.Eventually(t, func() bool { return g.route.State() == gobreaker.StateHalfOpen }, 5*time.Second, 5*time.Millisecond)
	probe := g.fanOut(t, 1, "/v1/x")
	require.Eventually(t, func() bool { return up.inFlight.Load() == 1 }, 5*time.Second, 2*time.Millisecond)
	r := g.get(t, "/v1/x", "c")
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.Equal(t, typeCircuitOpen, r.problemType())
	require.Equal(t, "1", r.header.Get("Retry-After"))
	close(release)
	require.Equal(t, http.StatusOK, (<-probe).status)
	require.Equal(t, gobreaker.StateClosed, g.route.State())
	require.EqualValues(t, 2, up.hits.Load())
}

// TestFailureRatioTrips: failures spread between successes trip the
// breaker once they reach the ratio over min_requests.
func TestFailureRatioTrips(t *testing.T) {
	t.Parallel()
	var n int
	var mu sync.Mutex
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		fail := n%2 == 0
		mu.Unlock()
		if fail {
			answer(500, `{}`)(w, r)
			return
		}
		answer(200, `{}`)(w, r)
	})
	g := newGateway(t, `
method: GET
path: /v1/x
mode: sync
upstream: {url: "`+up.srv.URL+`/x"}
breaker: {consecutive_failures: 100, failure_ratio: 0.5, min_requests: 10, window: 60s}`)
	for i := range 9 {
		g.get(t, "/v1/x", "c")
		require.Equal(t, gobreaker.StateClosed, g.route.State(), "request %d: fewer than min_requests", i+1)
	}
	g.get(t, "/v1/x", "c") // the 10th: 5 failures of 10
	require.Equal(t, gobreaker.StateOpen, g.route.State())
}

// TestClientErrorsNeverOpen: 4xx answers pass through and never count.
func TestClientErrorsNeverOpen(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, nil)
	g := newGateway(t, `
method: GET
path: /v1/x
mode: sync
upstream: {url: "`+up.srv.URL+`/x"}
breaker: {consecutive_failures: 2, failure_ratio: 0.1, min_requests: 2}`)
	for _, status := range []int{400, 401, 403, 404, 409, 422, 429, 400, 404, 404} {
		up.set(answer(status, `{"detail":"upstream says no"}`))
		r := g.get(t, "/v1/x", "c")
		require.Equal(t, status, r.status)
		require.JSONEq(t, `{"detail":"upstream says no"}`, r.body, "4xx bodies pass through")
	}
	require.Equal(t, gobreaker.StateClosed, g.route.State())
	require.EqualValues(t, 10, up.hits.Load())
}

// TestClientCancelDoesNotCount: clients that give up while the upstream
// works are neither failures nor successes.
func TestClientCancelDoesNotCount(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	up := newUpstream(t, held(release, 500, `{}`))
	defer close(release)
	g := newGateway(t, `
method: GET
path: /v1/x
mode: sync
upstream: {url: "`+up.srv.URL+`/x"}
timeout: 10s
breaker: {consecutive_failures: 2}`)
	for i := range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		want := int64(i + 1)
		go func() {
			// Cancel once the upstream is working on the request.
			for up.hits.Load() < want {
				time.Sleep(time.Millisecond)
			}
			cancel()
		}()
		_, err := g.do(ctx, t, http.MethodGet, "/v1/x", "c", "")
		require.ErrorIs(t, err, context.Canceled)
		cancel()
	}
	require.Eventually(t, func() bool { return up.inFlight.Load() == 0 }, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool {
		return g.metric(t, "switchyard_sync_requests_total", "outcome", "canceled") == 5
	}, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, gobreaker.StateClosed, g.route.State(), "5 cancellations did not open a breaker that trips at 2 failures")
}

// TestBulkhead: with max_concurrent 10 and a slow upstream, 100
// concurrent requests put exactly 10 calls in flight; the other 90 are
// refused at once, while the 10 are still waiting.
func TestBulkhead(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	up := newUpstream(t, held(release, 200, `{}`))
	g := newGateway(t, `
method: GET
path: /v1/slow
mode: sync
upstream: {url: "`+up.srv.URL+`/slow"}
timeout: 30s
max_concurrent: 10`)
	results := g.fanOut(t, 100, "/v1/slow")
	refused := 0
	for refused < 90 {
		r := <-results
		require.Equal(t, http.StatusServiceUnavailable, r.status, "only refusals arrive while the upstream holds 10")
		require.Equal(t, typeOverloaded, r.problemType())
		require.Equal(t, "1", r.header.Get("Retry-After"))
		refused++
	}
	// The 10 hold their slots; the last of them may still be on its way
	// to the upstream.
	require.Eventually(t, func() bool { return up.inFlight.Load() == 10 }, 5*time.Second, time.Millisecond)
	close(release)
	for range 10 {
		require.Equal(t, http.StatusOK, (<-results).status)
	}
	require.EqualValues(t, 10, up.hits.Load())
	require.EqualValues(t, 10, up.maxIn.Load(), "never more than 10 upstream calls at once")
	require.InDelta(t, 90, g.metric(t, "switchyard_sync_requests_total", "outcome", "overloaded"), 0)
}

// TestFailureMapping: timeouts are 504, an unreachable upstream and an
// upstream 5xx are 502, and the upstream's error body is never passed on.
func TestFailureMapping(t *testing.T) {
	t.Parallel()
	slow := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(10 * time.Second):
		case <-r.Context().Done():
		}
	})
	leaky := newUpstream(t, answer(500, `{"trace":"secret stack trace at db.go:42"}`))
	closed := newUpstream(t, answer(200, `{}`))
	closedURL := closed.srv.URL
	closed.srv.Close()

	tests := []struct {
		name, url    string
		status       int
		problem      string
		mustNotLeak  string
		wantOutcome  string
		wantInDetail string
	}{
		{"timeout", slow.srv.URL, http.StatusGatewayTimeout, typeTimeout, "", "timeout", "200ms"},
		{"connection refused", closedURL, http.StatusBadGateway, typeBadGateway, "", "unreachable", "could not be reached"},
		{"upstream 500", leaky.srv.URL, http.StatusBadGateway, typeBadGateway, "secret", "failed", "answered 500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, `
method: GET
path: /v1/x
mode: sync
upstream: {url: "`+tt.url+`/x"}
timeout: 200ms`)
			r := g.get(t, "/v1/x", "c")
			require.Equal(t, tt.status, r.status)
			require.Equal(t, tt.problem, r.problemType())
			require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
			require.Contains(t, r.body, tt.wantInDetail)
			require.Contains(t, r.body, `"request_id"`)
			if tt.mustNotLeak != "" {
				require.NotContains(t, r.body, tt.mustNotLeak)
			}
			require.InDelta(t, 1, g.metric(t, "switchyard_sync_requests_total", "outcome", tt.wantOutcome), 0)
		})
	}
}

// TestForwarding: path parameters, query, forwarded and static headers,
// the caller's identity and request id reach the upstream; Authorization
// and unlisted headers do not.
func TestForwarding(t *testing.T) {
	t.Parallel()
	var got *http.Request
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(context.Background())
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "hop")
		w.Header().Set("X-Upstream", "yes")
		answer(201, `{"created":true}`)(w, r)
	})
	g := newGateway(t, `
method: PUT
path: /v1/things/{id}
mode: sync
upstream:
  url: "`+up.srv.URL+`/api/things/{id}?v=2"
  forward_headers: [Accept, Content-Type, If-Match]
  headers: {X-Api-Key: static-key}`)
	r, err := g.do(context.Background(), t, http.MethodPut, "/v1/things/a%20b?x=1&y=2", "client-7", `{"n":1}`,
		"Authorization", "Bearer client-token", "If-Match", `"v1"`, "X-Other", "no", "X-Request-ID", "req-123",
		"X-Switchyard-Client-Id", "spoofed")
	require.NoError(t, err)
	require.Equal(t, 201, r.status)
	require.Equal(t, "yes", r.header.Get("X-Upstream"))
	require.Empty(t, r.header.Get("X-Hop"), "headers named by Connection are hop-by-hop")
	require.Equal(t, "req-123", r.header.Get("X-Request-ID"))

	require.Equal(t, http.MethodPut, got.Method)
	require.Equal(t, "/api/things/a%20b", got.URL.EscapedPath())
	require.Equal(t, "v=2&x=1&y=2", got.URL.RawQuery)
	require.Equal(t, `"v1"`, got.Header.Get("If-Match"))
	require.Equal(t, "static-key", got.Header.Get("X-Api-Key"))
	require.Equal(t, "client-7", got.Header.Get("X-Switchyard-Client-Id"), "the identity is the gateway's, not the client's claim")
	require.Equal(t, "t", got.Header.Get("X-Switchyard-Scopes"))
	require.Equal(t, "req-123", got.Header.Get("X-Request-Id"))
	require.Empty(t, got.Header.Get("Authorization"), "the client's token stays at the gateway")
	require.Empty(t, got.Header.Get("X-Other"))
}

// TestPathParameters: parameters reach the upstream unescaped once and
// escaped for where they go; none can climb out of the route's prefix or
// add query fields.
func TestPathParameters(t *testing.T) {
	t.Parallel()
	var got *http.Request
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(context.Background())
		answer(200, `{}`)(w, r)
	})
	g := newGateway(t, `
method: GET
path: /v1/things/{id}
mode: sync
upstream: {url: "`+up.srv.URL+`/api/things/{id}?ref={id}"}`)
	tests := []struct {
		path, wantPath, wantID string
	}{
		{"/v1/things/plain", "/api/things/plain", "plain"},
		{"/v1/things/a%2Fb", "/api/things/a%2Fb", "a/b"},
		{"/v1/things/x&admin=1", "/api/things/x&admin=1", "x&admin=1"},
		{"/v1/things/%E2%82%AC", "/api/things/%E2%82%AC", "€"},
	}
	for _, tt := range tests {
		r := g.get(t, tt.path, "c")
		require.Equal(t, http.StatusOK, r.status, tt.path)
		require.Equal(t, tt.wantPath, got.URL.EscapedPath(), tt.path)
		require.Equal(t, []string{tt.wantID}, got.URL.Query()["ref"], "%s: the query gets one field", tt.path)
	}
	hits := up.hits.Load()
	// Dot segments are resolved before routing (httpserver.NormalizePath):
	// these paths are /v1 and /v1/things, which no route serves.
	for _, bad := range []string{"/v1/things/..", "/v1/things/%2e%2e", "/v1/things/.", "/v1/things/%2E"} {
		r := g.get(t, bad, "c")
		require.Equal(t, http.StatusNotFound, r.status, bad)
	}
	require.Equal(t, hits, up.hits.Load(), "refused before any call")
}

// TestRetries: an idempotent route retries 502/503/504 answers and
// unreachable upstreams, within its attempts.
func TestRetries(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, nil)
	var calls int
	var mu sync.Mutex
	up.set(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n <= 2 {
			answer(503, `{}`)(w, r)
			return
		}
		answer(200, `{"third":"time lucky"}`)(w, r)
	})
	g := newGateway(t, `
method: GET
path: /v1/x
mode: sync
upstream: {url: "`+up.srv.URL+`/x"}
retries: {attempts: 2, backoff: 1ms}`)
	r := g.get(t, "/v1/x", "c")
	require.Equal(t, http.StatusOK, r.status)
	require.EqualValues(t, 3, up.hits.Load())
	require.InDelta(t, 2, g.metric(t, "switchyard_sync_retries_total"), 0)

	// A 500 is not retried (the upstream may have acted on it).
	up.set(answer(500, `{}`))
	require.Equal(t, http.StatusBadGateway, g.get(t, "/v1/x", "c").status)
	require.EqualValues(t, 4, up.hits.Load())
}

// TestGoHandler: a registered handler answers; a refusal is a 4xx problem
// that does not count; a panic is a 500 that counts; a handler's own 5xx
// is passed on and counts.
func TestGoHandler(t *testing.T) {
	t.Parallel()
	g := newGateway(t, `
method: POST
path: /v1/text-stats
mode: sync
handler: text-stats
breaker: {consecutive_failures: 2}`)
	r, err := g.do(context.Background(), t, http.MethodPost, "/v1/text-stats", "c", `{"text":"one two\nthree"}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, `"words":3`)
	for range 3 {
		r, err = g.do(context.Background(), t, http.MethodPost, "/v1/text-stats", "c", `{"txt":1}`)
		require.NoError(t, err)
		require.Equal(t, http.StatusBadRequest, r.status)
		require.Equal(t, typeRejected, r.problemType())
		require.Contains(t, r.body, "must be a JSON object")
	}
	require.Equal(t, gobreaker.StateClosed, g.route.State(), "refusals are not failures")

	p := newGateway(t, `
method: GET
path: /v1/panics
mode: sync
handler: panics
breaker: {consecutive_failures: 2}`)
	r = p.get(t, "/v1/panics", "c")
	require.Equal(t, http.StatusInternalServerError, r.status)
	require.NotContains(t, r.body, "handler bug")
	p.get(t, "/v1/panics", "c")
	require.Equal(t, gobreaker.StateOpen, p.route.State(), "panics are failures")

	f := newGateway(t, `
method: GET
path: /v1/fails
mode: sync
handler: fails
breaker: {consecutive_failures: 2}`)
	r = f.get(t, "/v1/fails", "c")
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.Equal(t, `{"busy":true}`, r.body, "a handler's own answer is sent as it is")
	f.get(t, "/v1/fails", "c")
	require.Equal(t, gobreaker.StateOpen, f.route.State())
}

// TestHandlersHeaderIsOnlyRead: a handler may answer every call with the
// same header map; the gateway sends its own Content-Length, adds its
// headers to the response, and leaves the map as it was, cached or not.
func TestHandlersHeaderIsOnlyRead(t *testing.T) {
	t.Parallel()
	before := sharedHeader.Clone()
	for _, cache := range []string{"", "\ncache: {ttl: 1m}"} {
		g := newGateway(t, "method: GET\npath: /v1/shared\nmode: sync\nhandler: shared-header"+cache)
		for i := range 3 {
			r := g.get(t, "/v1/shared", "c")
			if cache != "" && i > 0 {
				require.Equal(t, "HIT", r.header.Get("X-Cache"), "served from the cache's copy")
			}
			require.Equal(t, http.StatusOK, r.status)
			require.Equal(t, `{"shared":true}`, r.body)
			require.Equal(t, strconv.Itoa(len(r.body)), r.header.Get("Content-Length"))
			require.Equal(t, "application/json", r.header.Get("Content-Type"))
			require.NotEmpty(t, r.header.Get("X-Request-Id"))
		}
		require.Equal(t, before, sharedHeader, "the handler's map is unchanged")
	}
}

// TestDegradeToAsync: while the breaker is open, a request that prefers
// an asynchronous answer is accepted as a job; others get 503.
func TestDegradeToAsync(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, answer(500, `{}`))
	g := newGateway(t, `
method: POST
path: /v1/hooks
mode: sync
upstream: {url: "`+up.srv.URL+`/hooks"}
breaker: {consecutive_failures: 1, open_for: 1m}
fallback_job_type: webhook`)
	r, err := g.do(context.Background(), t, http.MethodPost, "/v1/hooks", "c", `{"n":1}`, "Prefer", "respond-async")
	require.NoError(t, err)
	require.Equal(t, http.StatusBadGateway, r.status, "a closed breaker calls the upstream even when async is preferred")
	require.Equal(t, gobreaker.StateOpen, g.route.State())

	r, err = g.do(context.Background(), t, http.MethodPost, "/v1/hooks", "c", `{"n":1}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.Contains(t, r.body, "respond-async", "the problem says how to degrade")
	secs, err := strconv.Atoi(r.header.Get("Retry-After"))
	require.NoError(t, err)
	require.InDelta(t, 60, secs, 2, "Retry-After counts down to half-open")

	r, err = g.do(context.Background(), t, http.MethodPost, "/v1/hooks", "c", `{"n":12345}`, "Prefer", "wait=5, respond-async")
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, r.status)
	require.Equal(t, "respond-async", r.header.Get("Preference-Applied"))
	require.Contains(t, r.body, `"payload_bytes":11`, "the job gets the whole body")
	require.EqualValues(t, 1, g.jobs.Load())
	require.EqualValues(t, 1, up.hits.Load())
}

// TestBodyLimit: a body over max_body_bytes is a 413 before any call.
func TestBodyLimit(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, answer(200, `{}`))
	g := newGateway(t, `
method: POST
path: /v1/x
mode: sync
upstream: {url: "`+up.srv.URL+`/x"}
max_body_bytes: 16`)
	r, err := g.do(context.Background(), t, http.MethodPost, "/v1/x", "c", `{"text":"`+strings.Repeat("a", 32)+`"}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusRequestEntityTooLarge, r.status)
	require.EqualValues(t, 0, up.hits.Load())
}

// TestJSONDepthLimit: a JSON body nested deeper than max_json_depth is a
// 400 before any call; other media types are the upstream's business.
func TestJSONDepthLimit(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, answer(200, `{}`))
	g := newGateway(t, `
method: POST
path: /v1/x
mode: sync
upstream: {url: "`+up.srv.URL+`/x", forward_headers: [Content-Type]}
max_json_depth: 3`)
	deep := `{"a":[{"b":[]}]}`
	r, err := g.do(context.Background(), t, http.MethodPost, "/v1/x", "c", deep)
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.body, "urn:switchyard:problem:json-too-deep")
	require.EqualValues(t, 0, up.hits.Load())

	r, err = g.do(context.Background(), t, http.MethodPost, "/v1/x", "c", `{"a":[{"b":1}]}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status)
	r, err = g.do(context.Background(), t, http.MethodPost, "/v1/x", "c", deep, "Content-Type", "text/plain")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status)
	require.EqualValues(t, 2, up.hits.Load())
}
