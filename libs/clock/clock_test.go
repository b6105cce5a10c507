package clock_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/clock"
)

func TestSleepWaitsTheWholeDuration(t *testing.T) {
	start := time.Now()
	require.True(t, clock.Sleep(context.Background(), 20*time.Millisecond))
	require.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond)
}

func TestSleepEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool)
	go func() { done <- clock.Sleep(ctx, time.Hour) }()
	cancel()
	require.False(t, <-done, "a cancelled context ends the hour's sleep")
}

func TestSleepOfNothing(t *testing.T) {
	require.True(t, clock.Sleep(context.Background(), 0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.False(t, clock.Sleep(ctx, -time.Second), "an ended context reports false even for no wait")
}

// TestFullJitter: every pause lies within the exponential bound of its
// retry and the ceiling, and the pauses of one retry are spread, not equal.
func TestFullJitter(t *testing.T) {
	const base, ceiling = 100 * time.Millisecond, 10 * time.Second
	for n, bound := range map[int]time.Duration{1: base, 2: 2 * base, 4: 8 * base, 8: ceiling, 40: ceiling} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := clock.FullJitter(base, ceiling, n)
			require.GreaterOrEqual(t, d, time.Duration(0))
			require.LessOrEqual(t, d, bound, "retry %d", n)
			seen[d] = true
		}
		require.Greater(t, len(seen), 100, "retry %d: pauses are random", n)
	}
	require.Zero(t, clock.FullJitter(0, ceiling, 3))
}
