package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

const localShards = 64

// Local keeps buckets in this process's memory. Buckets that are full
// again are forgotten, so memory follows the number of recently active
// keys, not every key ever seen.
type Local struct {
	seed   maphash.Seed
	now    func() time.Time
	shards [localShards]localShard
}

type localShard struct {
	mu      sync.Mutex
	tats    map[string]int64
	sweepAt int
}

// NewLocal returns an empty in-process limiter.
func NewLocal() *Local {
	l := &Local{seed: maphash.MakeSeed(), now: time.Now}
	for i := range l.shards {
		l.shards[i].tats = map[string]int64{}
		l.shards[i].sweepAt = 1024
	}
	return l
}

// Allow implements Limiter. Buckets in different shards are locked one
// after another in index order, so two requests never deadlock.
func (l *Local) Allow(_ context.Context, checks []Check) (Decision, error) {
	if len(checks) == 0 {
		return Decision{}, ErrNoChecks
	}
	now := l.now().UnixMicro()
	var idx [4]int
	shards := idx[:0]
	for _, c := range checks {
		shards = append(shards, int(maphash.String(l.seed, c.Key)%localShards))
	}
	locked := uint64(0)
	for _, s := range sortedUnique(shards) {
		l.shards[s].mu.Lock()
		locked |= 1 << s
	}
	defer func() {
		for s := range localShards {
			if locked&(1<<s) != 0 {
				l.shards[s].mu.Unlock()
			}
		}
	}()
	var st [4]bucketState
	states := st[:0]
	for i, c := range checks {
		states = append(states, gcra(l.shards[shards[i]].tats[c.Key], now, c.Limit))
	}
	d := decide(states)
	if d.Allowed {
		for i, c := range checks {
			sh := &l.shards[shards[i]]
			sh.tats[c.Key] = states[i].newTAT
			if len(sh.tats) >= sh.sweepAt {
				sh.sweep(now)
			}
		}
	}
	return d, nil
}

// sweep forgets buckets that are full again (arrival time in the past).
func (s *localShard) sweep(now int64) {
	for k, tat := range s.tats {
		if tat <= now {
			delete(s.tats, k)
		}
	}
	s.sweepAt = max(1024, 2*len(s.tats))
}

func sortedUnique(xs []int) []int {
	out := make([]int, 0, len(xs))
	for _, x := range xs {
		i := 0
		for i < len(out) && out[i] < x {
			i++
		}
		if i < len(out) && out[i] == x {
			continue
		}
		out = append(out, 0)
		copy(out[i+1:], out[i:])
		out[i] = x
	}
	return out
}

// Len is the number of buckets held (for tests and metrics).
func (l *Local) Len() int {
	n := 0
	for i := range l.shards {
		l.shards[i].mu.Lock()
		n += len(l.shards[i].tats)
		l.shards[i].mu.Unlock()
	}
	return n
}
