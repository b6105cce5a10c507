// Package ratelimit decides whether a request may pass a set of rate
// limits, with the generic cell rate algorithm (GCRA): a token bucket of
// Burst requests refilled at Rate per Period, stored as one timestamp per
// key (the "theoretical arrival time"). The same arithmetic runs in
// process (Local) or atomically in Redis (Redis, a Lua script using the
// Redis server's clock, so that every gateway replica shares one bucket);
// Failover uses Redis and falls back to Local while Redis is unreachable.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Limit is a token bucket: Burst requests at once, refilled at Rate
// requests per Period.
type Limit struct {
	Rate   float64
	Period time.Duration
	Burst  int
}

// Valid reports whether the limit can be enforced.
func (l Limit) Valid() error {
	switch {
	case l.Rate <= 0 || math.IsInf(l.Rate, 0) || math.IsNaN(l.Rate):
		return fmt.Errorf("rate %v must be a positive number", l.Rate)
	case l.Period <= 0:
		return fmt.Errorf("period %v must be positive", l.Period)
	case l.Burst < 1:
		return fmt.Errorf("burst %d must be at least 1", l.Burst)
	case l.interval() < 1:
		return fmt.Errorf("%v per %v is more than one request per microsecond", l.Rate, l.Period)
	}
	return nil
}

// interval is the time one request's token takes to refill, in µs.
func (l Limit) interval() int64 {
	return int64(float64(l.Period.Microseconds()) / l.Rate)
}

// tolerance is how far ahead of now the bucket's arrival time may run, µs.
func (l Limit) tolerance() int64 { return l.interval() * int64(l.Burst) }

// Check is one bucket a request must pass.
type Check struct {
	// Key names the bucket ("client:abc", "ip:192.0.2.1|route:x").
	Key string
	// Name is the policy's name in RateLimit headers ("client", "ip").
	Name  string
	Limit Limit
}

// Decision is the answer for a request.
type Decision struct {
	// Allowed: every bucket had a token, and one was taken from each.
	Allowed bool
	// Limiting is the index of the check that decided: the one that
	// refused, or when allowed the one with the fewest tokens left.
	Limiting int
	// Remaining is the tokens left in the limiting bucket.
	Remaining int
	// RetryAfter is how long until the refused request would pass.
	RetryAfter time.Duration
	// Reset is how long until the limiting bucket is full again.
	Reset time.Duration
}

// Limiter takes one token from each bucket of a request, or none.
type Limiter interface {
	// Allow decides for checks together: all of them pass, and each
	// bucket loses a token, or the request is refused and no bucket
	// changes.
	Allow(ctx context.Context, checks []Check) (Decision, error)
}

// ErrNoChecks is returned for an empty list of checks.
var ErrNoChecks = errors.New("ratelimit: no checks")

// bucketState is what GCRA computed for one bucket.
type bucketState struct {
	newTAT    int64
	allowed   bool
	remaining int64
	retry     int64
	reset     int64
}

// gcra evaluates one bucket whose arrival time is tat (0: new) at now.
// Local and the Lua script in redis.go compute exactly this.
func gcra(tat, now int64, l Limit) bucketState {
	interval, tolerance := l.interval(), l.tolerance()
	if tat < now {
		tat = now
	}
	newTAT := tat + interval
	allowAt := newTAT - tolerance
	if now < allowAt {
		return bucketState{newTAT: tat, retry: allowAt - now, reset: tat - now}
	}
	return bucketState{newTAT: newTAT, allowed: true, remaining: (now - allowAt) / interval, reset: newTAT - now}
}

// decide folds the buckets' states into one decision.
func decide(states []bucketState) Decision {
	d := Decision{Allowed: true, Remaining: math.MaxInt}
	var retry int64 = -1
	for i, s := range states {
		if !s.allowed {
			d.Allowed = false
			if s.retry > retry {
				retry, d.Limiting = s.retry, i
				d.Remaining, d.Reset = 0, time.Duration(s.reset)*time.Microsecond
			}
			continue
		}
		if d.Allowed && int(s.remaining) < d.Remaining {
			d.Limiting, d.Remaining, d.Reset = i, int(s.remaining), time.Duration(s.reset)*time.Microsecond
		}
	}
	if !d.Allowed {
		d.RetryAfter = time.Duration(retry) * time.Microsecond
	}
	return d
}
