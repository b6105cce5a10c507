package edge

import (
	"sync"
	"time"
)

// spentSet remembers keys until a time, for the per-address bucket: an
// address found spent is refused locally until its next token is due.
type spentSet struct {
	mu    sync.Mutex
	until map[string]time.Time
}

func (s *spentSet) mark(key string, retry time.Duration) {
	if retry <= 0 {
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.until == nil {
		s.until = map[string]time.Time{}
	}
	if len(s.until) > 100_000 {
		for k, t := range s.until {
			if !t.After(now) {
				delete(s.until, k)
			}
		}
	}
	s.until[key] = now.Add(retry)
}

func (s *spentSet) spent(key string) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.until[key]
	if !ok {
		return 0, false
	}
	left := time.Until(t)
	if left <= 0 {
		delete(s.until, key)
		return 0, false
	}
	return left, true
}
