package respcache_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/services/gateway/internal/respcache"
)

func entry(body string, ttl time.Duration) *respcache.Entry {
	now := time.Now()
	return &respcache.Entry{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(body), Stored: now, Expires: now.Add(ttl)}
}

func TestCacheStaysWithinItsBytesEvictingTheLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	c := respcache.New(16 << 10)
	body := string(make([]byte, 1000))
	for i := range 100 {
		require.True(t, c.Put("k"+strconv.Itoa(i), entry(body, time.Minute)))
		if i == 5 {
			_, ok := c.Get("k0") // k0 is now recently used
			require.True(t, ok)
		}
		require.LessOrEqual(t, c.Stats().Bytes, int64(16<<10))
	}
	st := c.Stats()
	require.Positive(t, st.Evictions)
	require.Less(t, st.Entries, 16)
	_, ok := c.Get("k99")
	require.True(t, ok, "the newest entry stays")
	_, ok = c.Get("k1")
	require.False(t, ok, "an old, unused entry went first")

	require.False(t, c.Put("huge", entry(string(make([]byte, 8<<10)), time.Minute)), "over a quarter of the budget is never stored")

	// Replacing an entry does not count its bytes twice.
	before := c.Stats().Bytes
	require.True(t, c.Put("k99", entry(body, time.Minute)))
	require.Equal(t, before, c.Stats().Bytes)
}

func TestCacheExpiry(t *testing.T) {
	t.Parallel()
	c := respcache.New(1 << 20)
	c.Put("gone", entry("x", -time.Second))
	_, ok := c.Get("gone")
	require.False(t, ok)
	require.Zero(t, c.Stats().Entries, "an expired entry is dropped when met")
	require.Zero(t, c.Stats().Bytes)
}

func TestLifetime(t *testing.T) {
	t.Parallel()
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	tests := []struct {
		name   string
		status int
		header http.Header
		shared bool
		want   time.Duration
	}{
		{"plain 200", 200, h(), false, time.Minute},
		{"404 is cacheable", 404, h(), false, time.Minute},
		{"201 is not", 201, h(), false, 0},
		{"500 is not", 500, h(), false, 0},
		{"max-age shortens", 200, h("Cache-Control", "public, max-age=5"), false, 5 * time.Second},
		{"max-age never lengthens", 200, h("Cache-Control", "max-age=86400"), false, time.Minute},
		{"s-maxage on shared", 200, h("Cache-Control", "max-age=50, s-maxage=7"), true, 7 * time.Second},
		{"s-maxage ignored per client", 200, h("Cache-Control", "max-age=50, s-maxage=7"), false, 50 * time.Second},
		{"no-store", 200, h("Cache-Control", "No-Store"), false, 0},
		{"no-cache", 200, h("Cache-Control", "no-cache"), false, 0},
		{"private shared", 200, h("Cache-Control", "private"), true, 0},
		{"private per client", 200, h("Cache-Control", "private"), false, time.Minute},
		{"malformed max-age is stale", 200, h("Cache-Control", "max-age=soon"), false, 0},
		{"set-cookie", 200, h("Set-Cookie", "a=b"), false, 0},
		{"vary star", 200, h("Vary", "*"), false, 0},
		{"split header values", 200, h("Cache-Control", "public", "Cache-Control", "max-age=3"), false, 3 * time.Second},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, respcache.Lifetime(tt.status, tt.header, time.Minute, tt.shared), tt.name)
	}
}

func TestGroupCoalescesAndCancelsWhenEveryoneLeaves(t *testing.T) {
	t.Parallel()
	var g respcache.Group[int]
	var calls atomic.Int32
	started := make(chan struct{})
	cause := make(chan error, 1)
	fn := func(ctx context.Context) (int, error) {
		calls.Add(1)
		close(started)
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return 0, ctx.Err()
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	c1, shared1 := g.Join(ctx1, "k", fn)
	<-started
	c2, shared2 := g.Join(ctx2, "k", fn)
	require.False(t, shared1)
	require.True(t, shared2)

	cancel1()
	_, err := c1.Wait(ctx1)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 1, g.InFlight(), "one caller left; the call goes on for the other")

	cancel2()
	_, err = c2.Wait(ctx2)
	require.ErrorIs(t, err, context.Canceled)
	require.True(t, errors.Is(<-cause, respcache.ErrAbandoned), "the last caller leaving cancels the call")
	require.EqualValues(t, 1, calls.Load())
}

func TestGroupRecoversPanics(t *testing.T) {
	t.Parallel()
	var g respcache.Group[int]
	_, _, err := g.Do(context.Background(), "k", func(context.Context) (int, error) { panic("bug") })
	require.ErrorContains(t, err, "panicked: bug")
	v, _, err := g.Do(context.Background(), "k", func(context.Context) (int, error) { return 7, nil })
	require.NoError(t, err)
	require.Equal(t, 7, v)
}
