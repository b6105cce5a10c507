package edge

import (
	"hash/maphash"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

const keyTableShards = 64

// keyTable is a bounded map from a key (an address, a client) to V for
// the per-key state the edge keeps in memory. It is split into shards,
// each with its own lock and least-recently-used order, so that looking
// up, adding and evicting are O(1) whatever the number of keys, and a
// flood of new keys (one per spoofed or rotated address) costs each of
// them the same and evicts the keys least recently seen, never scans.
type keyTable[V any] struct {
	seed   maphash.Seed
	shards [keyTableShards]keyShard[V]
}

type keyShard[V any] struct {
	mu  sync.Mutex
	lru *simplelru.LRU[string, V]
}

// newKeyTable holds at most capacity keys (at least one per shard);
// onEvict, if set, is told of each key pushed out or removed, under the
// shard's lock.
func newKeyTable[V any](capacity int, onEvict func(key string, v V)) *keyTable[V] {
	per := max(1, capacity/keyTableShards)
	t := &keyTable[V]{seed: maphash.MakeSeed()}
	for i := range t.shards {
		var cb simplelru.EvictCallback[string, V]
		if onEvict != nil {
			cb = func(k string, v V) { onEvict(k, v) }
		}
		t.shards[i].lru, _ = simplelru.NewLRU[string, V](per, cb) // per > 0
	}
	return t
}

func (t *keyTable[V]) shard(key string) *keyShard[V] {
	return &t.shards[maphash.String(t.seed, key)%keyTableShards]
}

// get returns key's value, marking it recently used.
func (t *keyTable[V]) get(key string) (V, bool) {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Get(key)
}

// update replaces key's value with what fn makes of the current one
// (found reports whether there was one); keep false removes the key.
func (t *keyTable[V]) update(key string, fn func(v V, found bool) (next V, keep bool)) {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	v, found := s.lru.Get(key)
	next, keep := fn(v, found)
	switch {
	case keep:
		s.lru.Add(key, next)
	case found:
		s.lru.Remove(key)
	}
}

// remove forgets key.
func (t *keyTable[V]) remove(key string) {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lru.Remove(key)
}

// each calls fn for every key and value (for metrics; it locks each
// shard in turn).
func (t *keyTable[V]) each(fn func(key string, v V)) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for _, k := range s.lru.Keys() {
			if v, ok := s.lru.Peek(k); ok {
				fn(k, v)
			}
		}
		s.mu.Unlock()
	}
}

// len is the number of keys held.
func (t *keyTable[V]) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += s.lru.Len()
		s.mu.Unlock()
	}
	return n
}
