package sqsqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"golang.org/x/sync/semaphore"

	"github.com/switchyard/switchyard/libs/breakergauge"
	"github.com/switchyard/switchyard/libs/clock"
)

// ErrUnavailable is what an SQS call answers at once, without a request,
// while the process's SQS circuit breaker is open: SQS failed every recent
// call, and until the breaker's next probe succeeds nobody in this process
// asks it again. Loops that call SQS back off when they see it.
var ErrUnavailable = errors.New("SQS unavailable (circuit breaker open)")

// GuardConfig bounds what one process asks of SQS, whoever calls it: the
// relay's loops, the worker's receive loops and deleters, the depth
// samplers, the replay service. Zero values take the defaults noted.
type GuardConfig struct {
	// MaxInFlight is how many SQS requests one process has in flight at
	// most (default 64); more wait for a slot. Long polls hold one each.
	MaxInFlight int
	// TripAfter is how many consecutive failed requests (no answer, or an
	// answer of 5xx or throttling) open the breaker (default 5).
	TripAfter int
	// OpenFor is how long the breaker stays open before one probe may
	// test SQS again (default 5 s).
	OpenFor time.Duration
	// RetryAttempts is the AWS SDK's attempts per call, the first
	// included (default 3).
	RetryAttempts int
	// RetryBackoffCeiling caps the SDK's pause between attempts; pauses
	// are full-jitter exponential from 50 ms (default ceiling 2 s).
	RetryBackoffCeiling time.Duration
	// RetryTokens is the SDK's retry budget: a retry costs 5 tokens (10
	// after a timeout), a call that succeeds first time returns 1; with
	// the bucket empty, failed calls are not retried (default 100: 20
	// retries in a row, then only first attempts until SQS answers again).
	RetryTokens uint
	// AttemptTimeout bounds one request, so that a server that stopped
	// answering (paused, wedged) fails the attempt instead of holding it
	// for ever (default 25 s: a 20 s long poll and 5 s to answer it).
	AttemptTimeout time.Duration
	// Logger receives breaker state changes; nil discards them.
	Logger *slog.Logger
	// Registerer, when set, receives the guard's metrics.
	Registerer prometheus.Registerer
}

func (c *GuardConfig) setDefaults() {
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 64
	}
	if c.TripAfter == 0 {
		c.TripAfter = 5
	}
	if c.OpenFor == 0 {
		c.OpenFor = 5 * time.Second
	}
	if c.RetryAttempts == 0 {
		c.RetryAttempts = 3
	}
	if c.RetryBackoffCeiling == 0 {
		c.RetryBackoffCeiling = 2 * time.Second
	}
	if c.RetryTokens == 0 {
		c.RetryTokens = 100
	}
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = 25 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// guard is a Finalize middleware placed after the SDK's retry middleware,
// so that every attempt (first or retry) takes a slot and passes the
// breaker: an open breaker answers ErrUnavailable, which the SDK does not
// retry.
type guard struct {
	cfg     GuardConfig
	slots   *semaphore.Weighted
	breaker *gobreaker.CircuitBreaker[struct{}]
	calls   *prometheus.CounterVec
}

func newGuard(cfg GuardConfig) *guard {
	cfg.setDefaults()
	g := &guard{
		cfg:   cfg,
		slots: semaphore.NewWeighted(int64(cfg.MaxInFlight)),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_sqs_requests_total",
			Help: "SQS requests (each SDK attempt) by outcome: ok, failed (no answer, 5xx or throttled), refused (4xx), canceled, or short_circuited (the breaker was open; no request sent).",
		}, []string{"outcome"}),
	}
	g.breaker = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "sqs",
		MaxRequests: 1,
		Timeout:     cfg.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(cfg.TripAfter) }, //nolint:gosec // a small positive setting
		IsSuccessful: func(err error) bool {
			return err == nil || !sqsFailed(err)
		},
		// A caller that went away says nothing about SQS.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			level := slog.LevelInfo
			if to == gobreaker.StateOpen {
				level = slog.LevelWarn
			}
			g.cfg.Logger.Log(context.Background(), level, "SQS circuit breaker state changed", "from", from.String(), "to", to.String())
		},
	})
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(g.calls, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchyard_sqs_breaker_open",
			Help: "1 while the process's SQS circuit breaker is open (calls answered at once, unsent), 0.5 while it probes, 0 while closed.",
		}, func() float64 { return breakergauge.Open(g.breaker.State()) }))
	}
	return g
}

// sqsFailed reports whether err says SQS (or the way to it) failed, as
// opposed to refusing one request for its own sake: no answer at all
// (refused connection, reset, timeout), a 5xx answer, or throttling.
func sqsFailed(err error) bool {
	var resp *smithyhttp.ResponseError
	if errors.As(err, &resp) && resp.Response != nil && resp.Response.Response != nil && resp.HTTPStatusCode() != 0 { // else no answer came
		if resp.HTTPStatusCode() >= http.StatusInternalServerError {
			return true
		}
		var api smithy.APIError
		return errors.As(err, &api) && retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary
	}
	return true
}

// ID names the middleware in the SDK's stack.
func (*guard) ID() string { return "SwitchyardSQSGuard" }

// HandleFinalize takes a slot and passes the breaker for one attempt.
func (g *guard) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
	if err := g.slots.Acquire(ctx, 1); err != nil {
		g.calls.WithLabelValues("canceled").Inc()
		return middleware.FinalizeOutput{}, middleware.Metadata{}, fmt.Errorf("waiting for one of %d SQS request slots: %w", g.cfg.MaxInFlight, err)
	}
	defer g.slots.Release(1)
	// A long poll may last 20 s: it must not be the half-open breaker's
	// one probe, or every other call would wait that long to learn
	// whether SQS is back. It waits for a short call to close the breaker.
	if awsmiddleware.GetOperationName(ctx) == "ReceiveMessage" && g.breaker.State() != gobreaker.StateClosed {
		g.calls.WithLabelValues("short_circuited").Inc()
		return middleware.FinalizeOutput{}, middleware.Metadata{}, ErrUnavailable
	}
	attemptCtx, cancel := context.WithTimeout(ctx, g.cfg.AttemptTimeout)
	defer cancel()
	var (
		out middleware.FinalizeOutput
		md  middleware.Metadata
	)
	_, err := g.breaker.Execute(func() (struct{}, error) {
		var err error
		out, md, err = next.HandleFinalize(attemptCtx, in)
		return struct{}{}, err
	})
	switch {
	case errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests):
		g.calls.WithLabelValues("short_circuited").Inc()
		return out, md, ErrUnavailable
	case err == nil:
		g.calls.WithLabelValues("ok").Inc()
	case errors.Is(err, context.Canceled):
		g.calls.WithLabelValues("canceled").Inc()
	case sqsFailed(err):
		g.calls.WithLabelValues("failed").Inc()
	default:
		g.calls.WithLabelValues("refused").Inc()
	}
	return out, md, err
}

// install adds the guard to one operation's stack, after the SDK's retry
// middleware.
func (g *guard) install(stack *middleware.Stack) error {
	if err := stack.Finalize.Insert(g, "Retry", middleware.After); err != nil {
		return fmt.Errorf("installing the SQS guard: %w", err)
	}
	return nil
}

// retryer is the SDK's standard retryer with this guard's settings: few
// attempts, full-jitter pauses, and a retry budget that empties in an
// outage instead of multiplying every call by its attempts.
func (g *guard) retryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = g.cfg.RetryAttempts
		o.MaxBackoff = g.cfg.RetryBackoffCeiling
		o.Backoff = retry.BackoffDelayerFunc(func(attempt int, _ error) (time.Duration, error) {
			return clock.FullJitter(50*time.Millisecond, g.cfg.RetryBackoffCeiling, attempt), nil
		})
		o.RateLimiter = ratelimit.NewTokenRateLimit(g.cfg.RetryTokens)
	})
}

// Available reports ErrUnavailable while the breaker is open (a call now
// would be answered at once without a request), nil otherwise. Loops ask
// it before work that only makes sense if SQS answers.
func (g *guard) Available() error {
	if g.breaker.State() == gobreaker.StateOpen {
		return ErrUnavailable
	}
	return nil
}
