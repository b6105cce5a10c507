package syncroute_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func cachedRoute(t *testing.T, upstreamURL, cache string) *gateway {
	t.Helper()
	return newGateway(t, `
method: GET
path: /v1/items/{id}
mode: sync
upstream: {url: "`+upstreamURL+`/items/{id}"}
cache: `+cache)
}

// counting answers with the number of calls so far, so a test can tell a
// cached answer from a fresh one.
func counting(up *upstream, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		answer(200, `{"call":`+strconv.FormatInt(up.hits.Load(), 10)+`}`)(w, r)
	}
}

// TestCacheHitMissAndExpiry: a repeated GET is served from the cache with
// an Age, until the ttl passes.
func TestCacheHitMissAndExpiry(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, nil)
	up.set(counting(up))
	g := cachedRoute(t, up.srv.URL, "{ttl: 300ms}")

	first := g.get(t, "/v1/items/1", "c")
	require.Equal(t, "MISS", first.header.Get("X-Cache"))
	second := g.get(t, "/v1/items/1", "c")
	require.Equal(t, "HIT", second.header.Get("X-Cache"))
	require.Equal(t, first.body, second.body)
	require.Equal(t, "0", second.header.Get("Age"))
	require.Equal(t, "application/json", second.header.Get("Content-Type"))
	require.EqualValues(t, 1, up.hits.Load())

	other := g.get(t, "/v1/items/2", "c")
	require.Equal(t, "MISS", other.header.Get("X-Cache"), "another path is another key")
	query := g.get(t, "/v1/items/1?b=2&a=1", "c")
	require.Equal(t, "MISS", query.header.Get("X-Cache"), "the query is part of the key")
	require.Equal(t, "HIT", g.get(t, "/v1/items/1?a=1&b=2", "c").header.Get("X-Cache"), "in any order")
	require.EqualValues(t, 3, up.hits.Load())

	require.Eventually(t, func() bool {
		return g.get(t, "/v1/items/1", "c").header.Get("X-Cache") == "MISS"
	}, 5*time.Second, 20*time.Millisecond, "expires after the ttl")
	require.EqualValues(t, 4, up.hits.Load())
	require.InDelta(t, 4, g.metric(t, "switchyard_cache_requests_total", "result", "miss"), 0)
	require.GreaterOrEqual(t, g.metric(t, "switchyard_cache_requests_total", "result", "hit"), 2.0)
}

// TestHeadIsAGetWithoutTheBody: HEAD on a GET route answers the GET's
// status and headers, from the same cache entries.
func TestHeadIsAGetWithoutTheBody(t *testing.T) {
	t.Parallel()
	var methods []string
	up := newUpstream(t, nil)
	up.set(func(w http.ResponseWriter, r *http.Request) {
		methods = append(methods, r.Method)
		counting(up)(w, r)
	})
	g := cachedRoute(t, up.srv.URL, "{ttl: 1m}")
	head, err := g.do(context.Background(), t, http.MethodHead, "/v1/items/1", "c", "")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, head.status)
	require.Empty(t, head.body)
	require.Equal(t, "application/json", head.header.Get("Content-Type"))
	require.Equal(t, "MISS", head.header.Get("X-Cache"))
	get := g.get(t, "/v1/items/1", "c")
	require.Equal(t, "HIT", get.header.Get("X-Cache"), "the HEAD's GET filled the cache")
	require.NotEmpty(t, get.body)
	require.Equal(t, []string{http.MethodGet}, methods, "the upstream was asked with GET, once")
}

// TestCachePerClient: clients never see each other's cached answers,
// unless the route is shared.
func TestCachePerClient(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, nil)
	up.set(counting(up))
	g := cachedRoute(t, up.srv.URL, "{ttl: 1m}")
	a := g.get(t, "/v1/items/1", "alice")
	b := g.get(t, "/v1/items/1", "bob")
	require.Equal(t, "MISS", b.header.Get("X-Cache"))
	require.NotEqual(t, a.body, b.body)
	require.Equal(t, a.body, g.get(t, "/v1/items/1", "alice").body)
	require.EqualValues(t, 2, up.hits.Load())

	shared := newUpstream(t, nil)
	shared.set(counting(shared))
	s := cachedRoute(t, shared.srv.URL, "{ttl: 1m, shared: true}")
	s.get(t, "/v1/items/1", "alice")
	require.Equal(t, "HIT", s.get(t, "/v1/items/1", "bob").header.Get("X-Cache"))
	require.EqualValues(t, 1, shared.hits.Load())
}

// TestCacheHonoursCacheControl: the upstream's no-store, private and
// max-age, and the client's no-cache and no-store.
func TestCacheHonoursCacheControl(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		upstream  []string // response headers
		shared    bool
		wantCache bool
	}{
		{name: "plain", wantCache: true},
		{name: "no-store", upstream: []string{"Cache-Control", "no-store"}},
		{name: "no-cache", upstream: []string{"Cache-Control", "no-cache"}},
		{name: "max-age=0", upstream: []string{"Cache-Control", "max-age=0"}},
		{name: "private on a per-client route", upstream: []string{"Cache-Control", "private, max-age=60"}, wantCache: true},
		{name: "private on a shared route", upstream: []string{"Cache-Control", "private"}, shared: true},
		{name: "set-cookie", upstream: []string{"Set-Cookie", "session=1"}},
		{name: "vary star", upstream: []string{"Vary", "*"}},
		{name: "vary on a forwarded header", upstream: []string{"Vary", "Accept, Accept-Encoding"}, wantCache: true},
		{name: "vary on the caller per client", upstream: []string{"Vary", "X-Switchyard-Client-Id"}, wantCache: true},
		{name: "vary on the caller when shared", upstream: []string{"Vary", "x-switchyard-client-id"}, shared: true},
		{name: "vary on scopes", upstream: []string{"Vary", "Accept, X-Switchyard-Scopes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, nil)
			up.set(counting(up, tt.upstream...))
			g := cachedRoute(t, up.srv.URL, "{ttl: 1m, shared: "+strconv.FormatBool(tt.shared)+"}")
			g.get(t, "/v1/items/1", "c")
			second := g.get(t, "/v1/items/1", "c")
			if tt.wantCache {
				require.Equal(t, "HIT", second.header.Get("X-Cache"))
				require.EqualValues(t, 1, up.hits.Load())
			} else {
				require.Equal(t, "MISS", second.header.Get("X-Cache"))
				require.EqualValues(t, 2, up.hits.Load())
			}
		})
	}

	t.Run("upstream max-age shortens the ttl", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, nil)
		up.set(counting(up, "Cache-Control", "max-age=1"))
		g := cachedRoute(t, up.srv.URL, "{ttl: 1h}")
		g.get(t, "/v1/items/1", "c")
		require.Equal(t, "HIT", g.get(t, "/v1/items/1", "c").header.Get("X-Cache"))
		require.Eventually(t, func() bool {
			return g.get(t, "/v1/items/1", "c").header.Get("X-Cache") == "MISS"
		}, 5*time.Second, 50*time.Millisecond, "gone after max-age, long before the route's hour")
	})

	t.Run("client no-cache refreshes, client no-store bypasses", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, nil)
		up.set(counting(up))
		g := cachedRoute(t, up.srv.URL, "{ttl: 1h}")
		g.get(t, "/v1/items/1", "c")
		fresh := g.get(t, "/v1/items/1", "c", "Cache-Control", "no-cache")
		require.Equal(t, "MISS", fresh.header.Get("X-Cache"))
		require.EqualValues(t, 2, up.hits.Load())
		require.Equal(t, fresh.body, g.get(t, "/v1/items/1", "c").body, "the refreshed answer replaced the old one")

		g.get(t, "/v1/items/2", "c", "Cache-Control", "no-store")
		require.Equal(t, "MISS", g.get(t, "/v1/items/2", "c").header.Get("X-Cache"), "no-store: not stored")
	})

	t.Run("errors are not cached", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, answer(500, `{}`))
		g := cachedRoute(t, up.srv.URL, "{ttl: 1h}")
		require.Equal(t, http.StatusBadGateway, g.get(t, "/v1/items/1", "c").status)
		up.set(answer(200, `{}`))
		require.Equal(t, http.StatusOK, g.get(t, "/v1/items/1", "c").status)
	})
}

// TestCacheCoalescesMisses: 100 concurrent misses of one key make one
// upstream call, and every client gets its answer.
func TestCacheCoalescesMisses(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	up := newUpstream(t, held(release, 200, `{"v":1}`))
	g := cachedRoute(t, up.srv.URL, "{ttl: 1m}")
	results := g.fanOut(t, 100, "/v1/items/1")
	// Every request has reached the gateway and waits on the one call.
	require.Eventually(t, func() bool {
		return g.metric(t, "switchyard_cache_requests_total", "result", "coalesced") == 99
	}, 10*time.Second, 5*time.Millisecond)
	close(release)
	for range 100 {
		r := <-results
		require.Equal(t, http.StatusOK, r.status)
		require.JSONEq(t, `{"v":1}`, r.body)
	}
	require.EqualValues(t, 1, up.hits.Load())
}

// TestCoalescedCallSurvivesTheFirstClient: the client that started a
// coalesced call leaving does not fail the others; the call is cancelled
// only when every client has gone.
func TestCoalescedCallSurvivesTheFirstClient(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	up := newUpstream(t, held(release, 200, `{"v":2}`))
	g := cachedRoute(t, up.srv.URL, "{ttl: 1m}")

	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := g.do(ctx, t, http.MethodGet, "/v1/items/1", "c", "")
		first <- err
	}()
	require.Eventually(t, func() bool { return up.inFlight.Load() == 1 }, 5*time.Second, 2*time.Millisecond)
	second := make(chan response, 1)
	go func() { second <- g.get(t, "/v1/items/1", "c") }()
	require.Eventually(t, func() bool {
		return g.metric(t, "switchyard_cache_requests_total", "result", "coalesced") == 1
	}, 5*time.Second, 2*time.Millisecond)
	cancel()
	require.ErrorIs(t, <-first, context.Canceled)
	close(release)
	r := <-second
	require.Equal(t, http.StatusOK, r.status)
	require.JSONEq(t, `{"v":2}`, r.body)
	require.EqualValues(t, 1, up.hits.Load())
}
