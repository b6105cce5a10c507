package edge

import (
	"sync/atomic"
	"time"
)

// Blocker counts violations (authentication failures, refused addresses
// or countries, malformed requests) per key ("ip:192.0.2.1",
// "ip:2001:db8:1:2::/64", "client:acme") and blocks a key that reaches
// Threshold within Window for Cooldown. Each gateway counts its own; a
// key blocked by one replica is not blocked by the others.
//
// Memory is bounded: at most Tracked keys are counted and at most Tracked
// are blocked, each table evicting its least recently used key in O(1)
// when full, so a flood from a million addresses costs each request the
// same as from one. An evicted count starts again from zero; an evicted
// block ends early (the keys a flood evicts first are the ones it has not
// touched for longest).
type Blocker struct {
	threshold int
	window    time.Duration
	cooldown  time.Duration
	now       func() time.Time
	// onBlock is told of each new block, outside any lock.
	onBlock func(b Block)

	counts  *keyTable[violations]
	blocked *keyTable[time.Time]
	// nBlocked counts the keys in blocked, so that the check on every
	// request costs one atomic load while nothing is blocked.
	nBlocked atomic.Int64
}

type violations struct {
	n     int
	start time.Time
}

// Block is one key blocked.
type Block struct {
	Key        string
	Reason     string // the violation that tipped it
	Violations int
	Until      time.Time
}

// DefaultTrackedKeys bounds the keys a Blocker counts and blocks.
const DefaultTrackedKeys = 100_000

// NewBlocker returns a Blocker that tracks at most tracked keys
// (DefaultTrackedKeys when <= 0); threshold 0 turns blocking off.
func NewBlocker(threshold int, window, cooldown time.Duration, tracked int, onBlock func(Block)) *Blocker {
	if tracked <= 0 {
		tracked = DefaultTrackedKeys
	}
	b := &Blocker{threshold: threshold, window: window, cooldown: cooldown, now: time.Now, onBlock: onBlock}
	b.counts = newKeyTable[violations](tracked, nil)
	b.blocked = newKeyTable(tracked, func(string, time.Time) { b.nBlocked.Add(-1) })
	return b
}

// Enabled reports whether the blocker ever blocks.
func (b *Blocker) Enabled() bool { return b != nil && b.threshold > 0 }

// Blocked reports whether key is blocked, and for how long still.
func (b *Blocker) Blocked(key string) (time.Duration, bool) {
	if b.nBlocked.Load() == 0 {
		return 0, false
	}
	until, ok := b.blocked.get(key)
	if !ok {
		return 0, false
	}
	left := until.Sub(b.now())
	if left <= 0 {
		b.blocked.remove(key)
		return 0, false
	}
	return left, true
}

// Violation counts one violation of key.
func (b *Blocker) Violation(key, reason string) {
	if !b.Enabled() {
		return
	}
	now := b.now()
	var tipped *Block
	b.counts.update(key, func(v violations, found bool) (violations, bool) {
		if !found || now.Sub(v.start) > b.window {
			v = violations{start: now}
		}
		v.n++
		if v.n < b.threshold {
			return v, true
		}
		tipped = &Block{Key: key, Reason: reason, Violations: v.n, Until: now.Add(b.cooldown)}
		return v, false
	})
	if tipped == nil {
		return
	}
	b.blocked.update(key, func(_ time.Time, found bool) (time.Time, bool) {
		if !found {
			b.nBlocked.Add(1)
		}
		return tipped.Until, true
	})
	if b.onBlock != nil {
		b.onBlock(*tipped)
	}
}

// BlockedCount is the number of keys blocked now.
func (b *Blocker) BlockedCount() int {
	if b.nBlocked.Load() == 0 {
		return 0
	}
	n := 0
	now := b.now()
	b.blocked.each(func(_ string, until time.Time) {
		if until.After(now) {
			n++
		}
	})
	return n
}

// Tracked is the number of keys whose violations are being counted.
func (b *Blocker) Tracked() int { return b.counts.len() }
