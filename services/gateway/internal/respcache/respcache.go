// Package respcache holds the gateway's response cache for GET sync
// routes: an LRU bounded by the bytes it holds (shared by every route),
// entries that expire on their own clock, and Group, which coalesces
// concurrent misses of one key into a single upstream call.
//
// What may be cached and for how long is decided by the caller
// (Cacheable); this package stores and forgets.
package respcache

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Entry is one cached response.
type Entry struct {
	Status int
	Header http.Header
	Body   []byte
	// Stored is when the response was received; Expires when it stops
	// being served.
	Stored  time.Time
	Expires time.Time
	// UpstreamAge is the Age the upstream sent, added to the time the
	// entry spent here.
	UpstreamAge time.Duration
}

// Age is the entry's age at now, as the Age header reports it.
func (e *Entry) Age(now time.Time) time.Duration { return now.Sub(e.Stored) + e.UpstreamAge }

// entryOverhead approximates the bookkeeping of one entry (list element,
// map slot, Entry, header map) for the byte budget.
const entryOverhead = 256

func (e *Entry) size(key string) int64 {
	n := int64(len(key) + len(e.Body) + entryOverhead)
	for k, vs := range e.Header {
		n += int64(len(k))
		for _, v := range vs {
			n += int64(len(v))
		}
	}
	return n
}

// Stats are the cache's figures.
type Stats struct {
	Entries   int
	Bytes     int64
	Evictions uint64
}

// Cache is a byte-bounded LRU of responses, safe for concurrent use.
type Cache struct {
	maxBytes int64
	now      func() time.Time

	mu        sync.Mutex
	lru       *simplelru.LRU[string, *Entry]
	bytes     int64
	evictions uint64
}

// New returns a cache holding at most maxBytes (keys, bodies, headers and
// bookkeeping); an entry larger than a quarter of that is never stored.
func New(maxBytes int64) *Cache {
	c := &Cache{maxBytes: maxBytes, now: time.Now}
	// The LRU's own entry limit is never reached: the byte budget evicts
	// first (every entry costs at least entryOverhead bytes).
	lru, err := simplelru.NewLRU(int(max(maxBytes/entryOverhead, 1)), func(key string, e *Entry) {
		c.bytes -= e.size(key)
	})
	if err != nil {
		panic(err) // only for a non-positive size, excluded above
	}
	c.lru = lru
	return c
}

// Get returns the fresh entry under key; an expired one is dropped.
func (c *Cache) Get(key string) (*Entry, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.lru.Get(key)
	if !ok {
		return nil, false
	}
	if !now.Before(e.Expires) {
		c.lru.Remove(key)
		return nil, false
	}
	return e, true
}

// Put stores e under key (replacing what was there) and evicts the least
// recently used entries beyond the byte budget. It reports whether e was
// stored.
func (c *Cache) Put(key string, e *Entry) bool {
	size := e.size(key)
	if size > c.maxBytes/4 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Remove(key)
	c.lru.Add(key, e)
	c.bytes += size
	for c.bytes > c.maxBytes {
		if _, _, ok := c.lru.RemoveOldest(); !ok {
			break
		}
		c.evictions++
	}
	return true
}

// Stats returns the cache's current figures.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Entries: c.lru.Len(), Bytes: c.bytes, Evictions: c.evictions}
}

// cacheableStatus lists the statuses a response may be cached with (RFC
// 9110 §15.1's heuristically cacheable codes the gateway sees).
var cacheableStatus = map[int]bool{200: true, 203: true, 204: true, 300: true, 301: true, 404: true, 405: true, 410: true, 414: true, 501: true}

// Lifetime says how long a response may be served from the cache, given
// the route's ttl: 0 when it must not be stored at all. The upstream
// decides within ttl: no-store, no-cache, private (on a shared route),
// Set-Cookie, Vary: * and uncacheable statuses forbid storing; max-age
// (s-maxage on a shared route) shortens the lifetime.
func Lifetime(status int, h http.Header, ttl time.Duration, shared bool) time.Duration {
	if !cacheableStatus[status] || len(h.Values("Set-Cookie")) > 0 || strings.TrimSpace(h.Get("Vary")) == "*" {
		return 0
	}
	d := ParseCacheControl(h.Values("Cache-Control"))
	if d.NoStore || d.NoCache || (shared && d.Private) {
		return 0
	}
	if shared && d.SMaxAge >= 0 {
		return min(ttl, d.SMaxAge)
	}
	if d.MaxAge >= 0 {
		return min(ttl, d.MaxAge)
	}
	return ttl
}

// Directives are the Cache-Control directives the cache acts on.
type Directives struct {
	NoStore, NoCache, Private bool
	// MaxAge and SMaxAge are -1 when absent.
	MaxAge, SMaxAge time.Duration
}

// ParseCacheControl reads Cache-Control header values. Unknown directives
// are ignored; a malformed max-age counts as 0 (RFC 9111 §4.2.1: treat
// an invalid freshness lifetime as stale).
func ParseCacheControl(values []string) Directives {
	d := Directives{MaxAge: -1, SMaxAge: -1}
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			name, arg, _ := strings.Cut(strings.TrimSpace(part), "=")
			switch strings.ToLower(name) {
			case "no-store":
				d.NoStore = true
			case "no-cache":
				d.NoCache = true
			case "private":
				d.Private = true
			case "max-age":
				d.MaxAge = seconds(arg)
			case "s-maxage":
				d.SMaxAge = seconds(arg)
			}
		}
	}
	return d
}

func seconds(arg string) time.Duration {
	n, err := strconv.ParseInt(strings.Trim(arg, `"`), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(min(n, int64(maxCacheSeconds))) * time.Second
}

// maxCacheSeconds caps parsed lifetimes (a year) to stay clear of overflow.
const maxCacheSeconds = 365 * 24 * 3600
