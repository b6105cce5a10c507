package secrets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/sync/semaphore"
)

// ErrUnavailable is what a call to Vault answers at once, without a
// request, while the process's Vault circuit breaker is open: Vault failed
// every recent request, and until the breaker's next probe succeeds nobody
// in this process asks it again. A token request that needs a signature
// is then answered 503 at once instead of after a timeout.
var ErrUnavailable = errors.New("vault unavailable (circuit breaker open)")

// Guard settings: a process has at most guardMaxInFlight requests to Vault
// in flight (more wait for a slot, as long as their context lets them);
// guardTripAfter consecutive failures (no answer, or a 5xx answer such as
// a sealed Vault's 503) open the breaker for guardOpenFor, after which one
// probe may test Vault again.
const (
	guardMaxInFlight = 32
	guardTripAfter   = 5
	guardOpenFor     = 5 * time.Second
)

// guard is the Vault client's transport: every request to Vault, from
// every caller in the process (token signing, secret reads, renewals,
// logins), takes one of a bounded number of slots and passes one circuit
// breaker.
type guard struct {
	next    http.RoundTripper
	slots   *semaphore.Weighted
	breaker *gobreaker.CircuitBreaker[struct{}]
	// failed and shortCircuited count requests, for metrics.
	failed, shortCircuited atomic.Int64
}

func newGuard(next http.RoundTripper, openFor time.Duration, logger *slog.Logger) *guard {
	g := &guard{next: next, slots: semaphore.NewWeighted(guardMaxInFlight)}
	g.breaker = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "vault",
		MaxRequests: 1,
		Timeout:     openFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= guardTripAfter },
		// A caller that went away says nothing about Vault; one whose
		// deadline passed without an answer does (a paused or wedged Vault
		// answers nothing).
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			level := slog.LevelInfo
			if to == gobreaker.StateOpen {
				level = slog.LevelWarn
			}
			logger.Log(context.Background(), level, "Vault circuit breaker state changed", "from", from.String(), "to", to.String())
		},
	})
	return g
}

// errServerFailed marks a 5xx answer as a failure for the breaker; the
// caller still gets the answer itself.
var errServerFailed = errors.New("vault answered 5xx")

// RoundTrip implements http.RoundTripper.
func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := g.slots.Acquire(req.Context(), 1); err != nil {
		return nil, fmt.Errorf("waiting for one of %d Vault request slots: %w", guardMaxInFlight, err)
	}
	defer g.slots.Release(1)
	var answer *http.Response
	_, err := g.breaker.Execute(func() (struct{}, error) {
		resp, err := g.next.RoundTrip(req) //nolint:bodyclose // handed to the caller, who closes it
		if err != nil {
			if req.Context().Err() != nil {
				return struct{}{}, req.Context().Err()
			}
			return struct{}{}, err
		}
		answer = resp
		if resp.StatusCode >= http.StatusInternalServerError {
			return struct{}{}, errServerFailed
		}
		return struct{}{}, nil
	})
	switch {
	case errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests):
		g.shortCircuited.Add(1)
		return nil, ErrUnavailable
	case errors.Is(err, errServerFailed):
		g.failed.Add(1)
		return answer, nil
	case err != nil:
		if !errors.Is(err, context.Canceled) {
			g.failed.Add(1)
		}
		return nil, err
	}
	return answer, nil
}
