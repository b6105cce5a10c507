package quota

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// TestQuotaSurvivesRestartAndIsShared: two counters over one database
// (two replicas, or one gateway before and after a restart) share the
// quota: together they admit the limit and no more once flushed.
func TestQuotaSurvivesRestartAndIsShared(t *testing.T) {
	pool := stacktest.NewPool(t)
	ctx := context.Background()
	limits := Limits{Daily: 10, Monthly: 1000}
	first := New(pool, nil, slog.New(slog.DiscardHandler))
	for i := range 6 {
		d := first.Take(ctx, "acme", limits)
		require.True(t, d.Allowed, "request %d", i)
		assert.Equal(t, Day, d.Period)
		assert.Equal(t, int64(10-i-1), d.Remaining)
	}
	require.NoError(t, first.Flush(ctx))

	// "Restart": a new counter reads the usage before deciding.
	second := New(pool, nil, slog.New(slog.DiscardHandler))
	allowed := 0
	for range 10 {
		if second.Take(ctx, "acme", limits).Allowed {
			allowed++
		}
	}
	assert.Equal(t, 4, allowed, "the day's quota holds across the restart")
	d := second.Take(ctx, "acme", limits)
	require.False(t, d.Allowed)
	assert.Equal(t, Day, d.Period)
	assert.Positive(t, d.Reset)
	assert.LessOrEqual(t, d.Reset, 24*time.Hour)
	require.NoError(t, second.Flush(ctx))

	var used int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT used FROM client_quota_usage WHERE client_id = 'acme' AND period = 'day'`).Scan(&used))
	assert.Equal(t, int64(10), used, "denied requests are not counted")
	require.NoError(t, pool.QueryRow(ctx, `SELECT used FROM client_quota_usage WHERE client_id = 'acme' AND period = 'month'`).Scan(&used))
	assert.Equal(t, int64(10), used)

	// The first replica still believes 6 were used: it admits until its
	// next flush tells it the total (the bounded overrun), then refuses.
	assert.True(t, first.Take(ctx, "acme", limits).Allowed)
	require.NoError(t, first.Flush(ctx))
	assert.False(t, first.Take(ctx, "acme", limits).Allowed)
}

// TestConcurrentReplicas: two replicas hammering one client's quota admit
// at most the quota plus what they admit between flushes.
func TestConcurrentReplicas(t *testing.T) {
	pool := stacktest.NewPool(t)
	ctx, cancel := context.WithCancel(context.Background())
	limits := Limits{Daily: 500}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	var runs sync.WaitGroup
	for range 2 {
		c := New(pool, nil, slog.New(slog.DiscardHandler))
		runs.Go(func() { c.Run(ctx, 20*time.Millisecond) })
		for range 4 {
			wg.Go(func() {
				deadline := time.Now().Add(time.Second)
				for time.Now().Before(deadline) {
					if c.Take(ctx, "busy", limits).Allowed {
						admitted.Add(1)
					}
					time.Sleep(time.Millisecond) // a client's pace, not synchronisation
				}
			})
		}
	}
	wg.Wait()
	cancel()
	runs.Wait()
	var used int64
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT used FROM client_quota_usage WHERE client_id = 'busy'`).Scan(&used))
	assert.Equal(t, admitted.Load(), used, "every admitted request is counted, after the final flush")
	assert.GreaterOrEqual(t, used, int64(500))
	assert.LessOrEqual(t, used, int64(1000), "overrun bounded by a few flush intervals of traffic (without flushes: thousands)")
	t.Logf("admitted %d against a quota of 500", used)
}

func TestPeriods(t *testing.T) {
	ts := time.Date(2026, 12, 31, 23, 59, 0, 0, time.FixedZone("x", 3600))
	s, e := periodOf(Day, ts)
	assert.Equal(t, time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC), s)
	assert.Equal(t, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), e)
	s, e = periodOf(Month, ts)
	assert.Equal(t, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), s)
	assert.Equal(t, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), e)
}
