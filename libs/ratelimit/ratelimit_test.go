package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

var tenPerSecond = Limit{Rate: 10, Period: time.Second, Burst: 5}

// TestGCRA: a full bucket passes Burst requests at once, then one per
// interval; a refusal says when the next would pass.
func TestGCRA(t *testing.T) {
	l := NewLocal()
	clock := time.Unix(1_700_000_000, 0)
	l.now = func() time.Time { return clock }
	check := []Check{{Key: "k", Limit: tenPerSecond}}
	for i := range 5 {
		d, err := l.Allow(context.Background(), check)
		require.NoError(t, err)
		require.True(t, d.Allowed, "request %d of the burst", i)
		assert.Equal(t, 4-i, d.Remaining)
	}
	d, _ := l.Allow(context.Background(), check)
	require.False(t, d.Allowed)
	assert.Equal(t, 100*time.Millisecond, d.RetryAfter)
	assert.Equal(t, 500*time.Millisecond, d.Reset)

	clock = clock.Add(100 * time.Millisecond)
	d, _ = l.Allow(context.Background(), check)
	require.True(t, d.Allowed, "one token back after one interval")
	d, _ = l.Allow(context.Background(), check)
	require.False(t, d.Allowed)

	clock = clock.Add(time.Second)
	assert.Equal(t, 1, l.Len())
	l.shards[0].sweep(clock.UnixMicro()) // whichever shard: full buckets are forgotten
	for i := range l.shards {
		l.shards[i].sweep(clock.UnixMicro())
	}
	assert.Equal(t, 0, l.Len(), "a full bucket is forgotten")
}

// TestAllOrNothing: a request refused by one bucket takes nothing from
// the others.
func TestAllOrNothing(t *testing.T) {
	for name, lim := range limiters(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			key := stacktest.RandomSuffix(t, 8)
			tight := Check{Key: key + ":tight", Name: "tight", Limit: Limit{Rate: 1, Period: time.Hour, Burst: 1}}
			wide := Check{Key: key + ":wide", Name: "wide", Limit: Limit{Rate: 1, Period: time.Hour, Burst: 3}}
			d, err := lim.Allow(ctx, []Check{wide, tight})
			require.NoError(t, err)
			require.True(t, d.Allowed)
			assert.Equal(t, 1, d.Limiting, "the tight bucket has fewer left")
			assert.Equal(t, 0, d.Remaining)
			for range 3 {
				d, err = lim.Allow(ctx, []Check{wide, tight})
				require.NoError(t, err)
				require.False(t, d.Allowed)
				assert.Equal(t, 1, d.Limiting)
				assert.InDelta(t, time.Hour.Seconds(), d.RetryAfter.Seconds(), 2)
			}
			for i := range 2 {
				d, err = lim.Allow(ctx, []Check{wide})
				require.NoError(t, err)
				require.True(t, d.Allowed, "wide bucket request %d: refusals took nothing", i)
			}
			d, _ = lim.Allow(ctx, []Check{wide})
			require.False(t, d.Allowed)
		})
	}
}

// TestRateOverTime: over 1.5 s of hammering from 8 goroutines, a 100/s
// bucket with burst 10 lets through about 10 + 150: never more, and no
// fewer unless fewer were asked (a loaded machine's slow round trips to
// Redis; the burst covers the 8 callers, so asking below the rate is
// never refused).
func TestRateOverTime(t *testing.T) {
	for name, lim := range limiters(t) {
		t.Run(name, func(t *testing.T) {
			key := stacktest.RandomSuffix(t, 8)
			c := []Check{{Key: key, Limit: Limit{Rate: 100, Period: time.Second, Burst: 10}}}
			var allowed, calls atomic.Int64
			start := time.Now()
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for time.Since(start) < 1500*time.Millisecond {
						d, err := lim.Allow(context.Background(), c)
						calls.Add(1)
						if err != nil {
							t.Error(err)
							return
						}
						if d.Allowed {
							allowed.Add(1)
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start).Seconds()
			most := 10 + 100*elapsed
			got := float64(allowed.Load())
			assert.LessOrEqual(t, got, 1.1*most, "allowed %d in %.2fs", allowed.Load(), elapsed)
			least := min(most, float64(calls.Load()))
			assert.GreaterOrEqual(t, got, 0.9*least, "allowed %d of %d calls in %.2fs", allowed.Load(), calls.Load(), elapsed)
		})
	}
}

// TestFailover: with Redis stopped, decisions are local and say so; when
// Redis is back, they are shared again.
func TestFailover(t *testing.T) {
	srv := stacktest.NewRedisServer(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = client.Close() })
	reg := prometheus.NewRegistry()
	f := NewFailover(FailoverConfig{Primary: NewRedis(client, "t:"), Fallback: NewLocal(), RetryEvery: 100 * time.Millisecond,
		Timeout: 500 * time.Millisecond, Logger: slog.New(slog.DiscardHandler), Registerer: reg})
	c := []Check{{Key: "k", Limit: Limit{Rate: 1, Period: time.Hour, Burst: 2}}}
	ctx := context.Background()
	allowed := func() bool {
		d, err := f.Allow(ctx, c)
		require.NoError(t, err)
		return d.Allowed
	}
	require.True(t, allowed())
	require.NoError(t, f.Ready(ctx))
	srv.Stop()
	require.True(t, allowed(), "local bucket: full")
	require.Error(t, f.Ready(ctx))
	assert.Equal(t, 0.0, testutil.ToFloat64(f.up))
	require.True(t, allowed())
	require.False(t, allowed(), "local bucket of burst 2 holds locally")
	assert.Equal(t, 1.0, testutil.ToFloat64(f.decision.WithLabelValues("local", "limited")))

	srv.Start()
	require.Eventually(t, func() bool {
		_, _ = f.Allow(ctx, []Check{{Key: "probe", Limit: c[0].Limit}})
		return f.Ready(ctx) == nil
	}, 10*time.Second, 50*time.Millisecond)
	assert.Equal(t, 1.0, testutil.ToFloat64(f.up))
	require.True(t, allowed(), "a new Redis has an empty bucket")
}

// limiters are the implementations under test, Redis on a server of the
// test's own.
func limiters(t *testing.T) map[string]Limiter {
	srv := stacktest.NewRedisServer(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = client.Close() })
	return map[string]Limiter{"local": NewLocal(), "redis": NewRedis(client, "test:")}
}

func TestLimitValid(t *testing.T) {
	assert.NoError(t, tenPerSecond.Valid())
	for _, bad := range []Limit{{Rate: 0, Period: time.Second, Burst: 1}, {Rate: 1, Period: 0, Burst: 1}, {Rate: 1, Period: time.Second}, {Rate: 1e7, Period: time.Second, Burst: 1}} {
		assert.Error(t, bad.Valid(), fmt.Sprint(bad))
	}
}

// BenchmarkDecision is the cost of one decision with two buckets, in
// process and in Redis (one script call over loopback).
func BenchmarkDecision(b *testing.B) {
	srv := stacktest.NewRedisServer(b)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	b.Cleanup(func() { _ = client.Close() })
	lim := Limit{Rate: 1e6, Period: time.Second, Burst: 1000}
	for name, l := range map[string]Limiter{"local": NewLocal(), "redis": NewRedis(client, "bench:")} {
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			var n atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				i := n.Add(1)
				checks := []Check{{Key: fmt.Sprintf("ip:%d", i), Limit: lim}, {Key: fmt.Sprintf("client:%d", i), Limit: lim}}
				for pb.Next() {
					if _, err := l.Allow(ctx, checks); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
