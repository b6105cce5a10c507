package syncroute

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRetryBudget(t *testing.T) {
	t.Parallel()
	b := newRetryBudget(0.2)
	retries := func() int {
		n := 0
		for b.withdraw() {
			n++
		}
		return n
	}
	require.Equal(t, retryReserve, retries(), "a quiet route may retry its reserve")
	for range 100 {
		b.record()
	}
	require.Equal(t, 20, retries(), "then one retry per five requests")
	for range 10_000 {
		b.record()
	}
	require.Equal(t, retryReserve+20, retries(), "savings are capped: a burst after a quiet hour stays bounded")
}
