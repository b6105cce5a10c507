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
