package tokenapi

import (
	"errors"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// Limits are the token endpoint's rate limits: token buckets per peer IP
// (checked before anything else) and per presented client id (checked
// before the secret is hashed). A rate <= 0 switches a limit off.
type Limits struct {
	PerIP          float64
	PerIPBurst     int
	PerClient      float64
	PerClientBurst int
	// Tracked bounds how many IPs and client ids have buckets (LRU).
	Tracked int
}

// Validate checks the limits.
func (l Limits) Validate() error {
	if (l.PerIP > 0 && l.PerIPBurst < 1) || (l.PerClient > 0 && l.PerClientBurst < 1) {
		return errors.New("a rate limit needs a burst of at least 1")
	}
	if l.Tracked < 1 {
		return errors.New("rate limits must track at least one key")
	}
	return nil
}

type limiters struct {
	cfg     Limits
	ips     *lru.Cache[string, *rate.Limiter]
	clients *lru.Cache[string, *rate.Limiter]
}

func newLimiters(cfg Limits) *limiters {
	ips, _ := lru.New[string, *rate.Limiter](cfg.Tracked)     // size validated > 0
	clients, _ := lru.New[string, *rate.Limiter](cfg.Tracked) // size validated > 0
	return &limiters{cfg: cfg, ips: ips, clients: clients}
}

func (l *limiters) allowIP(ip string) (time.Duration, bool) {
	return allow(l.ips, ip, l.cfg.PerIP, l.cfg.PerIPBurst)
}

func (l *limiters) allowClient(id string) (time.Duration, bool) {
	return allow(l.clients, id, l.cfg.PerClient, l.cfg.PerClientBurst)
}

// allow takes a token from key's bucket, or says how long until one is free.
func allow(c *lru.Cache[string, *rate.Limiter], key string, r float64, burst int) (time.Duration, bool) {
	if r <= 0 {
		return 0, true
	}
	lim, ok := c.Get(key)
	if !ok {
		lim = rate.NewLimiter(rate.Limit(r), burst)
		if prev, found, _ := c.PeekOrAdd(key, lim); found {
			lim = prev
		}
	}
	res := lim.Reserve()
	if d := res.Delay(); d > 0 {
		res.Cancel()
		return d, false
	}
	return 0, true
}
