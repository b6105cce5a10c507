// Package clock holds waiting that respects a context: the one sleep every
// retry and poll loop uses.
package clock

import (
	"context"
	"time"
)

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
