// Package syncroute serves the gateway's sync routes: a call to a Go
// handler or an HTTP upstream, answered now, behind the route's
// protections, in this order:
//
//  1. the response cache (GET routes that configure one): a fresh entry
//     answers at once; concurrent misses of one key share one call;
//  2. the bulkhead: at most max_concurrent calls in flight, the rest are
//     refused with 503 at once;
//  3. the route's timeout (504), spanning every attempt;
//  4. the circuit breaker (sony/gobreaker), once per attempt: 5xx answers,
//     timeouts and unreachable upstreams are failures; 4xx answers are
//     not, and a client that goes away counts as neither. While open it
//     refuses calls with 503 and Retry-After, or, for a request that sends
//     "Prefer: respond-async" to a route with a fallback job type, accepts
//     the request as a job (202);
//  5. retries for idempotent methods, with exponential backoff, full
//     jitter and a retry budget.
//
// An upstream's 5xx becomes a 502 whose body is not passed on; an
// unreachable upstream is a 502; 2xx-4xx answers pass through.
package syncroute

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/sony/gobreaker/v2"

	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/clock"
	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/jsonbody"
	"github.com/switchyard/switchyard/libs/problem"
	"github.com/switchyard/switchyard/libs/synchandler"
	"github.com/switchyard/switchyard/services/gateway/internal/respcache"
	"github.com/switchyard/switchyard/services/gateway/internal/routes"
)

// Options are what sync routes share.
type Options struct {
	// Handlers holds the Go handlers routes may name.
	Handlers *synchandler.Registry
	// Client calls upstreams (NewClient(NewTransport()) when nil).
	Client *http.Client
	// Cache stores responses of routes that configure caching; nil turns
	// caching off.
	Cache *respcache.Cache
	// Fallback returns the handler that accepts a request as a job of
	// jobType, for routes with a fallback job type.
	Fallback func(jobType string) (echo.HandlerFunc, error)
	// Metrics receives the routes' series (required).
	Metrics *Metrics
	// Logger receives breaker state changes.
	Logger *slog.Logger
	// PublicHost, when set, is what upstreams get as X-Forwarded-Host,
	// whatever Host the client sent (the gateway's public URL's host).
	// When empty, the client's Host is sent and is part of every cache
	// key, so that no client can have a shared answer built for a host
	// of its choosing served to others.
	PublicHost string
	// Scheme is the scheme the client used (X-Forwarded-Proto upstream):
	// believed from a trusted proxy only (edge.Edge.Scheme). Nil: https
	// over TLS, else http.
	Scheme func(c echo.Context) string
}

// Route serves one sync route.
type Route struct {
	spec     routes.Route
	sync     *routes.Sync
	label    string
	target   target
	breaker  *gobreaker.CircuitBreaker[*reply]
	openTill atomic.Int64 // unix nanoseconds at which an open breaker half-opens
	slots    chan struct{}
	budget   *retryBudget
	cache    *respcache.Cache
	flights  respcache.Group[*reply]
	fallback echo.HandlerFunc
	metrics  *routeMetrics
	logger   *slog.Logger
	// publicHost and scheme: see Options.
	publicHost string
	scheme     func(c echo.Context) string
}

// New builds the route r (a sync route) with opts.
func New(r routes.Route, opts Options) (*Route, error) {
	if r.Sync == nil {
		return nil, fmt.Errorf("route %s is not a sync route", r.Label())
	}
	if opts.Metrics == nil {
		return nil, errors.New("sync routes need metrics")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	rt := &Route{
		spec: r, sync: r.Sync, label: r.Label(),
		slots:      make(chan struct{}, r.Sync.MaxConcurrent),
		budget:     newRetryBudget(r.Sync.Retries.Budget),
		metrics:    opts.Metrics.forRoute(r.Label()),
		logger:     opts.Logger.With("route", r.Label()),
		publicHost: opts.PublicHost, scheme: opts.Scheme,
	}
	switch {
	case r.Sync.Handler != "":
		if opts.Handlers == nil {
			return nil, fmt.Errorf("route %s: no sync handler %q is registered", rt.label, r.Sync.Handler)
		}
		h, ok := opts.Handlers.Lookup(r.Sync.Handler)
		if !ok {
			return nil, fmt.Errorf("route %s: no sync handler %q is registered", rt.label, r.Sync.Handler)
		}
		rt.target = &handlerTarget{name: r.Sync.Handler, handler: h}
	case r.Sync.Upstream != nil:
		client := opts.Client
		if client == nil {
			client = NewClient(NewTransport())
		}
		rt.target = &upstreamTarget{spec: r.Sync.Upstream, client: client}
	default:
		return nil, fmt.Errorf("route %s has no target", rt.label)
	}
	if r.Sync.Cache != nil && opts.Cache != nil {
		rt.cache = opts.Cache
	}
	if r.Sync.FallbackJobType != "" {
		if opts.Fallback == nil {
			return nil, fmt.Errorf("route %s: no way to accept fallback jobs", rt.label)
		}
		h, err := opts.Fallback(r.Sync.FallbackJobType)
		if err != nil {
			return nil, fmt.Errorf("route %s: fallback: %w", rt.label, err)
		}
		rt.fallback = h
	}
	if b := r.Sync.Breaker; b.Enabled {
		rt.breaker = gobreaker.NewCircuitBreaker[*reply](gobreaker.Settings{
			Name:         rt.label,
			MaxRequests:  b.HalfOpenRequests,
			Interval:     b.Window,
			BucketPeriod: max(b.Window/10, time.Second),
			Timeout:      b.OpenFor,
			ReadyToTrip: func(c gobreaker.Counts) bool {
				if c.ConsecutiveFailures >= b.ConsecutiveFailures {
					return true
				}
				counted := c.TotalSuccesses + c.TotalFailures
				return counted >= b.MinRequests && float64(c.TotalFailures) >= b.FailureRatio*float64(counted)
			},
			IsSuccessful:  isSuccess,
			IsExcluded:    func(err error) bool { return errors.Is(err, errCanceled) },
			OnStateChange: rt.stateChanged,
		})
		opts.Metrics.registerBreaker(rt.label, rt.breaker.State)
	}
	return rt, nil
}

// isSuccess: only failures of the target count against the breaker.
func isSuccess(err error) bool {
	if err == nil {
		return true // without errors.As's target, which escapes: one allocation per call
	}
	var refusal *synchandler.Refusal
	return errors.As(err, &refusal)
}

// stateChanged runs under the breaker's lock: it must not call it.
func (rt *Route) stateChanged(_ string, from, to gobreaker.State) {
	if to == gobreaker.StateOpen {
		rt.openTill.Store(time.Now().Add(rt.sync.Breaker.OpenFor).UnixNano())
	}
	rt.metrics.transitions.WithLabelValues(to.String()).Inc()
	level := slog.LevelInfo
	if to == gobreaker.StateOpen {
		level = slog.LevelWarn
	}
	rt.logger.Log(context.Background(), level, "circuit breaker state changed", "from", from.String(), "to", to.String())
}

// State is the breaker's state (closed when the route has none).
func (rt *Route) State() gobreaker.State {
	if rt.breaker == nil {
		return gobreaker.StateClosed
	}
	return rt.breaker.State()
}

// Methods are the methods the route answers: its own, and HEAD as well for
// a GET route (RFC 9110 §9.3.2), answered like the GET without the body.
func (rt *Route) Methods() []string {
	if rt.spec.Method == http.MethodGet {
		return []string{http.MethodGet, http.MethodHead}
	}
	return []string{rt.spec.Method}
}

// Handle is the route's Echo handler.
func (rt *Route) Handle(c echo.Context) error {
	req := c.Request()
	body, err := jsonbody.Read(req, rt.sync.MaxBodyBytes, "this route's")
	if err != nil {
		rt.count(outcomeTooLarge)
		return err
	}
	if len(body) > 0 && jsonbody.IsMediaType(req.Header.Get("Content-Type")) {
		if err := jsonbody.CheckDepth(body, rt.sync.MaxJSONDepth); err != nil {
			rt.count(outcomeTooDeep)
			return err
		}
	}
	in, err := rt.inbound(c, body)
	if err != nil {
		return err
	}
	httpserver.AddLogAttrs(c, slog.String("sync_route", rt.label))

	if rt.cache != nil && (req.Method == http.MethodGet || req.Method == http.MethodHead) {
		return rt.handleCached(c, in)
	}
	rep, err := rt.execute(req.Context(), in)
	return rt.respond(c, in, rep, err, "")
}

// respond sends a call's answer: rep when the call succeeded (or a Go
// handler chose to answer 5xx), a problem otherwise.
func (rt *Route) respond(c echo.Context, in *inbound, rep *reply, err error, cacheStatus string) error {
	var se *statusError
	if err != nil && (rep == nil || !errors.As(err, &se) || !rt.target.passFailures()) {
		return rt.failed(c, in, err)
	}
	if err != nil {
		rt.count(outcomeFailed)
	} else {
		rt.count(outcomeOK)
	}
	return rt.write(c, rep, cacheStatus)
}

func (rt *Route) handleCached(c echo.Context, in *inbound) error {
	req := c.Request()
	key := rt.cacheKey(in)
	cc := respcache.ParseCacheControl(req.Header.Values("Cache-Control"))
	noStore := cc.NoStore
	refresh := cc.NoCache || cc.MaxAge == 0 || strings.EqualFold(req.Header.Get("Pragma"), "no-cache")
	if !noStore && !refresh {
		if e, ok := rt.cache.Get(key); ok {
			rt.metrics.cache["hit"].Inc()
			rt.count(outcomeCacheHit)
			h := c.Response().Header()
			copyHeader(h, e.Header)
			h.Set("Age", strconv.FormatInt(int64(e.Age(time.Now())/time.Second), 10))
			return rt.write(c, &reply{status: e.Status, body: e.Body}, "HIT")
		}
	}
	fetch := func(ctx context.Context) (*reply, error) {
		rep, err := rt.execute(ctx, in)
		if err == nil && !noStore {
			rt.store(key, rep)
		}
		return rep, err
	}
	var (
		rep *reply
		err error
	)
	if noStore || refresh {
		// The client asked for a fresh answer: no joining a call that
		// may have started before its request.
		rt.metrics.cache["bypass"].Inc()
		rep, err = fetch(req.Context())
	} else {
		call, shared := rt.flights.Join(req.Context(), key, fetch)
		result := "miss"
		if shared {
			result = "coalesced"
		}
		rt.metrics.cache[result].Inc()
		rep, err = call.Wait(req.Context())
		if err != nil && req.Context().Err() != nil {
			err = errCanceled
		}
	}
	return rt.respond(c, in, rep, err, "MISS")
}

func (rt *Route) store(key string, rep *reply) {
	ttl := respcache.Lifetime(rep.status, rep.header, rt.sync.Cache.TTL, rt.sync.Cache.Shared)
	if ttl <= 0 || !rt.keyCovers(rep.header.Values("Vary")) {
		return
	}
	now := time.Now()
	var upstreamAge time.Duration
	if n, err := strconv.ParseInt(rep.header.Get("Age"), 10, 64); err == nil && n > 0 {
		upstreamAge = time.Duration(min(n, 365*24*3600)) * time.Second
	}
	if upstreamAge >= ttl {
		return
	}
	// A clone: a handler's answer may be its own header map, kept and
	// reused.
	rt.cache.Put(key, &respcache.Entry{Status: rep.status, Header: rep.header.Clone(), Body: rep.body,
		Stored: now, Expires: now.Add(ttl - upstreamAge), UpstreamAge: upstreamAge})
}

// keyCovers reports whether the cache key holds every request header the
// upstream says its answer varies on. The upstream only sees forwarded
// headers (all in the key) and the ones the gateway sets: of those, only
// the client id is in the key, and only on per-client routes. An answer
// that varies on the caller's scopes, address or trace is not stored.
func (rt *Route) keyCovers(vary []string) bool {
	for _, v := range vary {
		for _, name := range strings.Split(v, ",") {
			name = http.CanonicalHeaderKey(strings.TrimSpace(name))
			switch {
			case name == "":
			case name == "X-Switchyard-Client-Id":
				if rt.sync.Cache.Shared {
					return false
				}
			case strings.HasPrefix(name, "X-Switchyard-"), strings.HasPrefix(name, "X-Forwarded-"),
				name == "X-Request-Id", name == "Traceparent", name == "Tracestate":
				return false
			}
		}
	}
	return true
}

// cacheKey identifies a response: the route, the scheme and (unless a
// public host is configured) the host the upstream is told of, the path
// and query, the forwarded request headers (they may change the answer)
// and, unless the route is shared, the caller.
func (rt *Route) cacheKey(in *inbound) string {
	var b strings.Builder
	b.WriteString(rt.label)
	b.WriteByte(0)
	b.WriteString(in.proto)
	b.WriteByte(0)
	b.WriteString(in.host)
	b.WriteByte(0)
	b.WriteString(in.path)
	b.WriteByte('?')
	if q, err := url.ParseQuery(in.rawQuery); err == nil {
		b.WriteString(q.Encode()) // sorted by key
	} else {
		b.WriteString(in.rawQuery)
	}
	b.WriteByte(0)
	if !rt.sync.Cache.Shared {
		b.WriteString(in.clientID)
	}
	if u, ok := rt.target.(*upstreamTarget); ok {
		for _, h := range u.spec.ForwardHeaders {
			b.WriteByte(0)
			b.WriteString(strings.Join(in.header.Values(h), ","))
		}
	}
	return b.String()
}

// execute makes the call through the bulkhead, timeout, breaker and
// retries.
func (rt *Route) execute(ctx context.Context, in *inbound) (*reply, error) {
	select {
	case rt.slots <- struct{}{}:
	default:
		return nil, errOverloaded
	}
	defer func() { <-rt.slots }()
	rt.metrics.inFlight.Inc()
	defer rt.metrics.inFlight.Dec()

	ctx, cancel := context.WithTimeoutCause(ctx, rt.sync.Timeout, errTimeout)
	defer cancel()
	rt.budget.record()
	for attempt := 0; ; attempt++ {
		rep, err := rt.attempt(ctx, in)
		if attempt >= rt.sync.Retries.Attempts || !retryable(err) || ctx.Err() != nil {
			return rep, err
		}
		if !rt.budget.withdraw() {
			rt.metrics.budgetExhausted.Inc()
			return rep, err
		}
		// Full jitter: a random pause up to backoff * 2^attempt.
		pause := clock.FullJitter(rt.sync.Retries.Backoff, rt.sync.Retries.Backoff<<10, attempt+1)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= pause {
			return rep, err
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return rep, err
		}
		rt.metrics.retries.Inc()
	}
}

// errOverloaded: the bulkhead is full.
var errOverloaded = errors.New("the route is at its concurrency limit")

// errBreakerOpen: the breaker refused the call.
type errBreakerOpen struct{ halfOpen bool }

func (e *errBreakerOpen) Error() string {
	if e.halfOpen {
		return "the circuit breaker is half-open and its probes are in flight"
	}
	return "the circuit breaker is open"
}

func (rt *Route) attempt(ctx context.Context, in *inbound) (*reply, error) {
	actx := ctx
	if d := rt.sync.Retries.PerTryTimeout; d > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeoutCause(ctx, d, errTimeout)
		defer cancel()
	}
	call := func() (*reply, error) {
		start := time.Now()
		rep, err := rt.target.call(actx, in)
		rt.metrics.attempts.Observe(time.Since(start).Seconds())
		if err == nil && rep.status >= 500 {
			return rep, &statusError{status: rep.status}
		}
		return rep, err
	}
	if rt.breaker == nil {
		return call()
	}
	rep, err := rt.breaker.Execute(call)
	switch {
	case errors.Is(err, gobreaker.ErrOpenState):
		return nil, &errBreakerOpen{}
	case errors.Is(err, gobreaker.ErrTooManyRequests):
		return nil, &errBreakerOpen{halfOpen: true}
	}
	return rep, err
}

// retryable: failures that another attempt may not meet. A breaker that
// refused, a client that left and a handler's refusal are final.
func retryable(err error) bool {
	var se *statusError
	switch {
	case err == nil:
		return false
	case errors.As(err, &se):
		return se.status == http.StatusBadGateway || se.status == http.StatusServiceUnavailable || se.status == http.StatusGatewayTimeout
	default:
		return errors.Is(err, errUnreachable) || errors.Is(err, errTimeout)
	}
}

// failed answers a call that did not succeed.
func (rt *Route) failed(c echo.Context, in *inbound, err error) error {
	var (
		open    *errBreakerOpen
		se      *statusError
		refusal *synchandler.Refusal
	)
	switch {
	case errors.As(err, &open):
		if rt.fallback != nil && prefersAsync(c.Request().Header) {
			rt.count(outcomeDegraded)
			c.Request().Body = io.NopCloser(bytes.NewReader(in.body))
			c.Request().ContentLength = int64(len(in.body))
			c.Response().Header().Set("Preference-Applied", "respond-async")
			return rt.fallback(c)
		}
		rt.count(outcomeOpen)
		detail := "the route's target is failing; calls resume after the Retry-After interval"
		if rt.fallback != nil {
			detail += `, or send "Prefer: respond-async" to have the request accepted as a job`
		}
		return problem.CircuitOpen.New(detail).WithHeader("Retry-After", strconv.Itoa(rt.retryAfter(open.halfOpen)))
	case errors.Is(err, errOverloaded):
		rt.count(outcomeOverloaded)
		return problem.Overloaded.Newf("the route allows %d calls at once", rt.sync.MaxConcurrent).WithHeader("Retry-After", "1")
	case errors.Is(err, errCanceled):
		rt.count(outcomeCanceled)
		return problem.ClientClosed.New("the client went away before the answer")
	case errors.Is(err, errTimeout):
		rt.count(outcomeTimeout)
		return problem.UpstreamTimeout.Newf("no answer within the route's timeout of %s", rt.sync.Timeout)
	case errors.As(err, &refusal):
		rt.count(outcomeRejected)
		p := problem.RequestRejected.New(refusal.Detail)
		p.Status = refusal.Status
		return p
	case errors.As(err, &se):
		rt.count(outcomeFailed)
		return problem.BadGateway.Newf("the upstream answered %d", se.status).WithCause(err)
	case errors.Is(err, errUnreachable):
		rt.count(outcomeUnreach)
		return problem.BadGateway.New("the upstream could not be reached").WithCause(err)
	case errors.Is(err, errTooLarge):
		rt.count(outcomeTooLarge)
		return problem.BadGateway.New("the upstream's answer is larger than the route allows").WithCause(err)
	default:
		rt.count(outcomeFailed)
		return problem.Internal.New("the request could not be completed").WithCause(err)
	}
}

// retryAfter is the whole seconds until an open breaker half-opens (at
// least 1).
func (rt *Route) retryAfter(halfOpen bool) int {
	if halfOpen {
		return 1
	}
	left := time.Until(time.Unix(0, rt.openTill.Load()))
	return max(1, int(math.Ceil(left.Seconds())))
}

func (rt *Route) count(outcome string) {
	rt.metrics.outcomes[outcome].Inc()
}

// write sends rep; cacheStatus ("HIT", "MISS" or "") goes to X-Cache.
func (rt *Route) write(c echo.Context, rep *reply, cacheStatus string) error {
	h := c.Response().Header()
	if rep.header != nil {
		copyHeader(h, rep.header)
	}
	if cacheStatus != "" {
		h.Set("X-Cache", cacheStatus)
	}
	if c.Request().Method == http.MethodHead || rep.status == http.StatusNoContent || rep.status == http.StatusNotModified {
		c.Response().WriteHeader(rep.status)
		return nil
	}
	h.Set("Content-Length", strconv.Itoa(len(rep.body)))
	c.Response().WriteHeader(rep.status)
	if _, err := c.Response().Write(rep.body); err != nil {
		return fmt.Errorf("writing the response: %w", err)
	}
	return nil
}

// copyHeader sets src's headers in dst, all but Content-Length (write
// sets it). dst shares src's value slices, capped at their length, so
// that an Add to dst makes a slice of its own instead of writing into
// src's (a cached entry's, or a handler's).
func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		if k != "Content-Length" {
			dst[k] = vs[:len(vs):len(vs)]
		}
	}
}

func (rt *Route) inbound(c echo.Context, body []byte) (*inbound, error) {
	req := c.Request()
	params, err := paramsOf(c)
	if err != nil {
		return nil, err
	}
	in := &inbound{
		method: req.Method, path: req.URL.EscapedPath(), rawQuery: req.URL.RawQuery,
		params: params, header: req.Header, body: body,
		requestID: httpserver.RequestID(req.Context()), remoteIP: c.RealIP(), proto: rt.schemeOf(c), host: req.Host,
	}
	if rt.publicHost != "" {
		in.host = rt.publicHost
	}
	if id, ok := authn.FromContext(req.Context()); ok {
		in.clientID, in.scopes = id.ClientID, id.Scopes
	}
	return in, nil
}

// schemeOf is the client's scheme, never from a header the client could
// set itself.
func (rt *Route) schemeOf(c echo.Context) string {
	if rt.scheme != nil {
		return rt.scheme(c)
	}
	if c.Request().TLS != nil {
		return "https"
	}
	return "http"
}

// paramsOf returns the path parameters, unescaped: Echo matches on the
// raw path when the request escaped something (%2F, say) and then hands
// parameters over escaped. "." and ".." are refused, so that no upstream
// path can climb out of the route's prefix.
func paramsOf(c echo.Context) (map[string]string, error) {
	params := make(map[string]string, len(c.ParamNames()))
	raw := c.Request().URL.RawPath != ""
	for _, name := range c.ParamNames() {
		v := c.Param(name)
		if raw {
			u, err := url.PathUnescape(v)
			if err != nil {
				return nil, problem.InvalidParameter.Newf("path parameter %s is not validly escaped", name)
			}
			v = u
		}
		if v == "." || v == ".." {
			return nil, problem.InvalidParameter.Newf("path parameter %s may not be %q", name, v)
		}
		params[name] = v
	}
	return params, nil
}

// prefersAsync reports whether the request sends Prefer: respond-async
// (RFC 7240).
func prefersAsync(h http.Header) bool {
	for _, v := range h.Values("Prefer") {
		for _, pref := range strings.Split(v, ",") {
			name, _, _ := strings.Cut(strings.TrimSpace(pref), "=")
			name, _, _ = strings.Cut(name, ";")
			if strings.EqualFold(strings.TrimSpace(name), "respond-async") {
				return true
			}
		}
	}
	return false
}
