package jobs

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Default retry policy of a job type that declares none.
const (
	DefaultRetryAttempts = 5
	DefaultRetryBase     = 2 * time.Second
	DefaultRetryMax      = 5 * time.Minute
	// MaxRetryDelay is the longest SQS can hide a message (its visibility
	// timeout limit of 12 hours), which is how the worker waits.
	MaxRetryDelay = 12 * time.Hour
	// MaxRetryAttempts bounds attempts; each one is an SQS receive, and
	// the queue's RedrivePolicy must allow more receives than attempts.
	MaxRetryAttempts = 100
)

// RetryPolicy decides how often and how long apart a failing job is tried.
// The wait before attempt n+1 is Base·2^(n-1), capped at Max, with "equal
// jitter": a uniformly random point in its upper half, so that jobs which
// failed together spread out but none retries sooner than half its step.
type RetryPolicy struct {
	// Attempts is how many times the handler runs before the job is
	// dead-lettered (1 = no retries).
	Attempts int
	// Base is the wait after the first failure.
	Base time.Duration
	// Max caps any single wait.
	Max time.Duration
}

// DefaultRetryPolicy is the policy of a job type that declares none.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{Attempts: DefaultRetryAttempts, Base: DefaultRetryBase, Max: DefaultRetryMax}
}

// Validate reports a policy the worker cannot follow.
func (p RetryPolicy) Validate() error {
	var errs []error
	if p.Attempts < 1 || p.Attempts > MaxRetryAttempts {
		errs = append(errs, fmt.Errorf("retry.attempts %d must be between 1 and %d", p.Attempts, MaxRetryAttempts))
	}
	if p.Base < 0 {
		errs = append(errs, fmt.Errorf("retry.base %s must not be negative", p.Base))
	}
	if p.Max < p.Base || p.Max > MaxRetryDelay {
		errs = append(errs, fmt.Errorf("retry.max %s must be between retry.base (%s) and %s", p.Max, p.Base, MaxRetryDelay))
	}
	return errors.Join(errs...)
}

// Exhausted reports whether a job that has failed failures times has used
// all its attempts.
func (p RetryPolicy) Exhausted(failures int) bool { return failures >= p.Attempts }

// Delay is the wait after the failures-th failure (failures >= 1); jitter
// is a number in [0, 1), from a random source in production.
func (p RetryPolicy) Delay(failures int, jitter float64) time.Duration {
	if failures < 1 {
		failures = 1
	}
	step := float64(p.Base) * math.Pow(2, float64(failures-1))
	if step > float64(p.Max) || math.IsInf(step, 0) {
		step = float64(p.Max)
	}
	jitter = min(max(jitter, 0), 1)
	return time.Duration(step/2 + jitter*step/2)
}
