package tokenapi

import (
	"errors"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// Limits are the token endpoint's rate limits, token buckets kept in
// memory (LRU-bounded). A rate <= 0 switches a limit off.
//
//   - PerIP: every request, per client address (behind trusted proxies,
//     the address they report; IPv6 by prefix), before anything else.
//   - PerClientFailure: failed secret checks per client id and address.
//     Checked before the secret is hashed and charged only by a failure,
//     so an attacker who knows a client's id exhausts only their own
//     bucket, never the real client's.
//   - PerClient: tokens issued per client. Checked before the secret is
//     hashed and charged only by a success, so only the holder of the
//     secret can spend it.
type Limits struct {
	PerIP                 float64
	PerIPBurst            int
	PerClient             float64
	PerClientBurst        int
	PerClientFailure      float64
	PerClientFailureBurst int
	// Tracked bounds how many keys each limit keeps buckets for (LRU).
	Tracked int
}

// Validate checks the limits.
func (l Limits) Validate() error {
	if (l.PerIP > 0 && l.PerIPBurst < 1) || (l.PerClient > 0 && l.PerClientBurst < 1) ||
		(l.PerClientFailure > 0 && l.PerClientFailureBurst < 1) {
		return errors.New("a rate limit needs a burst of at least 1")
	}
	if l.Tracked < 1 {
		return errors.New("rate limits must track at least one key")
	}
	return nil
}

type limiters struct {
	cfg      Limits
	ips      *lru.Cache[string, *rate.Limiter]
	clients  *lru.Cache[string, *rate.Limiter]
	failures *lru.Cache[string, *rate.Limiter]
}

func newLimiters(cfg Limits) *limiters {
	// Sizes are validated > 0.
	ips, _ := lru.New[string, *rate.Limiter](cfg.Tracked)
	clients, _ := lru.New[string, *rate.Limiter](cfg.Tracked)
	failures, _ := lru.New[string, *rate.Limiter](cfg.Tracked)
	return &limiters{cfg: cfg, ips: ips, clients: clients, failures: failures}
}

// allowIP takes a token from the address's bucket.
func (l *limiters) allowIP(addrKey string) (time.Duration, bool) {
	return take(l.ips, addrKey, l.cfg.PerIP, l.cfg.PerIPBurst)
}

// clientSpent says whether the client's issued-token bucket is empty.
func (l *limiters) clientSpent(id string) (time.Duration, bool) {
	return peek(l.clients, id, l.cfg.PerClient, l.cfg.PerClientBurst)
}

// issued charges the client's bucket for a token issued.
func (l *limiters) issued(id string) {
	take(l.clients, id, l.cfg.PerClient, l.cfg.PerClientBurst)
}

// failuresSpent says whether the (client, address) failure bucket is empty.
func (l *limiters) failuresSpent(id, addrKey string) (time.Duration, bool) {
	return peek(l.failures, id+"|"+addrKey, l.cfg.PerClientFailure, l.cfg.PerClientFailureBurst)
}

// failed charges the (client, address) failure bucket.
func (l *limiters) failed(id, addrKey string) {
	take(l.failures, id+"|"+addrKey, l.cfg.PerClientFailure, l.cfg.PerClientFailureBurst)
}

func bucket(c *lru.Cache[string, *rate.Limiter], key string, r float64, burst int) *rate.Limiter {
	lim, ok := c.Get(key)
	if !ok {
		lim = rate.NewLimiter(rate.Limit(r), burst)
		if prev, found, _ := c.PeekOrAdd(key, lim); found {
			lim = prev
		}
	}
	return lim
}

// take takes a token from key's bucket, or says how long until one is free.
func take(c *lru.Cache[string, *rate.Limiter], key string, r float64, burst int) (time.Duration, bool) {
	if r <= 0 {
		return 0, true
	}
	res := bucket(c, key, r, burst).Reserve()
	if d := res.Delay(); d > 0 {
		res.Cancel()
		return d, false
	}
	return 0, true
}

// peek reports whether key's bucket is empty (and for how long), taking
// nothing. A key never seen has a full bucket and is not added.
func peek(c *lru.Cache[string, *rate.Limiter], key string, r float64, burst int) (time.Duration, bool) {
	if r <= 0 {
		return 0, false
	}
	lim, ok := c.Get(key)
	if !ok {
		return 0, false
	}
	tokens := lim.Tokens()
	if tokens >= 1 {
		return 0, false
	}
	return time.Duration((1 - tokens) / r * float64(time.Second)), true
}
