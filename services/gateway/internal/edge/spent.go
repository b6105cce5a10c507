package edge

import (
	"time"
)

// spentSet remembers keys until a time, for the per-address bucket: an
// address found spent is refused locally until its next token is due.
// Bounded like the Blocker's tables (O(1) per key, least recently used
// evicted first): an evicted address is merely asked of the limiter again.
type spentSet struct {
	until *keyTable[time.Time]
}

func newSpentSet(tracked int) spentSet {
	if tracked <= 0 {
		tracked = DefaultTrackedKeys
	}
	return spentSet{until: newKeyTable[time.Time](tracked, nil)}
}

func (s *spentSet) mark(key string, retry time.Duration) {
	if retry <= 0 {
		return
	}
	t := time.Now().Add(retry)
	s.until.update(key, func(time.Time, bool) (time.Time, bool) { return t, true })
}

func (s *spentSet) spent(key string) (time.Duration, bool) {
	t, ok := s.until.get(key)
	if !ok {
		return 0, false
	}
	left := time.Until(t)
	if left <= 0 {
		s.until.remove(key)
		return 0, false
	}
	return left, true
}
