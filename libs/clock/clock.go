// Package clock holds waiting that respects a context: the one sleep every
// retry and poll loop uses, and the backoff those loops wait for.
package clock

import (
	"context"
	"math/rand/v2"
	"time"
)

// FullJitter is the pause before retry number n (n >= 1) of a capped
// exponential backoff with full jitter: a uniformly random duration in
// [0, min(base * 2^(n-1), ceiling)], so that callers who failed together
// do not retry together.
func FullJitter(base, ceiling time.Duration, n int) time.Duration {
	bound := min(base<<min(max(n-1, 0), 30), ceiling)
	if bound <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(bound) + 1)) //nolint:gosec // jitter needs no cryptographic randomness
}

// Sleep waits for d, or until ctx ends, whichever comes first, and reports
// whether the whole of d passed (false: ctx ended). A d of zero or less
// returns true at once, unless ctx has already ended.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
