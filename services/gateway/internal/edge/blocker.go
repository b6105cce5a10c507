package edge

import (
	"sync"
	"sync/atomic"
	"time"
)

// Blocker counts violations (authentication failures, refused addresses
// or countries, malformed requests) per key ("ip:192.0.2.1",
// "client:acme") and blocks a key that reaches Threshold within Window
// for Cooldown. Each gateway counts its own; a key blocked by one replica
// is not blocked by the others.
type Blocker struct {
	threshold int
	window    time.Duration
	cooldown  time.Duration
	now       func() time.Time
	// onBlock is told of each new block, outside the lock.
	onBlock func(b Block)

	mu     sync.Mutex
	counts map[string]*violations
	// blocked is replaced, never changed, so that the check on every
	// request reads it without a lock.
	blocked atomic.Pointer[map[string]time.Time]
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

// NewBlocker returns a Blocker; threshold 0 turns blocking off.
func NewBlocker(threshold int, window, cooldown time.Duration, onBlock func(Block)) *Blocker {
	b := &Blocker{threshold: threshold, window: window, cooldown: cooldown, now: time.Now, onBlock: onBlock, counts: map[string]*violations{}}
	empty := map[string]time.Time{}
	b.blocked.Store(&empty)
	return b
}

// Enabled reports whether the blocker ever blocks.
func (b *Blocker) Enabled() bool { return b != nil && b.threshold > 0 }

// Blocked reports whether key is blocked, and for how long still.
func (b *Blocker) Blocked(key string) (time.Duration, bool) {
	m := *b.blocked.Load()
	if len(m) == 0 {
		return 0, false
	}
	until, ok := m[key]
	if !ok {
		return 0, false
	}
	left := until.Sub(b.now())
	return left, left > 0
}

// Violation counts one violation of key.
func (b *Blocker) Violation(key, reason string) {
	if !b.Enabled() {
		return
	}
	now := b.now()
	b.mu.Lock()
	v, ok := b.counts[key]
	if !ok || now.Sub(v.start) > b.window {
		if len(b.counts) >= 100_000 {
			b.sweep(now)
		}
		v = &violations{start: now}
		b.counts[key] = v
	}
	v.n++
	if v.n < b.threshold {
		b.mu.Unlock()
		return
	}
	delete(b.counts, key)
	blk := Block{Key: key, Reason: reason, Violations: v.n, Until: now.Add(b.cooldown)}
	next := map[string]time.Time{key: blk.Until}
	for k, until := range *b.blocked.Load() {
		if until.After(now) && k != key {
			next[k] = until
		}
	}
	b.blocked.Store(&next)
	b.mu.Unlock()
	if b.onBlock != nil {
		b.onBlock(blk)
	}
}

// sweep forgets windows that have ended; callers hold mu.
func (b *Blocker) sweep(now time.Time) {
	for k, v := range b.counts {
		if now.Sub(v.start) > b.window {
			delete(b.counts, k)
		}
	}
}

// BlockedCount is the number of keys blocked now.
func (b *Blocker) BlockedCount() int {
	n := 0
	now := b.now()
	for _, until := range *b.blocked.Load() {
		if until.After(now) {
			n++
		}
	}
	return n
}
