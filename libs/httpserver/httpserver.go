// Package httpserver builds the Echo instances of Switchyard's HTTP APIs
// with the behaviour every API shares: panics become 500 problems (logged
// with their stack, never sent), every error is an RFC 9457 problem with
// the request id, every response carries X-Request-ID, one access-log line
// per request, request paths are normalised before routing
// (NormalizePath), a server span per request continuing the caller's W3C
// trace context (libs/tracing), and graceful shutdown with a deadline.
package httpserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/switchyard/switchyard/libs/logging"
	"github.com/switchyard/switchyard/libs/problem"
)

// HeaderRequestID carries the request id both ways.
const HeaderRequestID = "X-Request-ID"

// canonicalRequestID is HeaderRequestID as net/http keys it.
const canonicalRequestID = "X-Request-Id"

// requestState is what the shared middleware keeps about a request. It is
// stored in the request context once, by the first middleware; later
// middleware fills it in rather than wrapping the context again, which
// would copy the *http.Request each time.
type requestState struct {
	id        string
	attrs     []slog.Attr
	attrBuf   [2]slog.Attr // room for the usual extra attributes without another allocation
	principal any
	// problemType is the type of the problem document the request was
	// answered with ("" for any other answer).
	problemType string
}

type requestStateKey struct{}

// stateContext carries a request's state in its context: one allocation
// for both (context.WithValue would add its own).
type stateContext struct {
	context.Context
	st requestState
}

func (c *stateContext) Value(key any) any {
	if _, ok := key.(requestStateKey); ok {
		return &c.st
	}
	return c.Context.Value(key)
}

func stateOf(ctx context.Context) *requestState {
	s, _ := ctx.Value(requestStateKey{}).(*requestState)
	return s
}

// ProblemType returns the type of the problem document the request of
// ctx was answered with, once answered ("" when it was not a problem), so
// that request observers can tell refusals of the same status apart
// (rate-limited and quota-exceeded are both 429).
func ProblemType(ctx context.Context) string {
	if st := stateOf(ctx); st != nil {
		return st.problemType
	}
	return ""
}

// RequestID returns the request id stored in ctx by the middleware.
func RequestID(ctx context.Context) string {
	if s := stateOf(ctx); s != nil {
		return s.id
	}
	return ""
}

// SetPrincipal records who is calling (authentication middleware does)
// in a request served through NewEcho; it reports false when ctx is not
// such a request's.
func SetPrincipal(ctx context.Context, principal any) bool {
	s := stateOf(ctx)
	if s == nil {
		return false
	}
	s.principal = principal
	return true
}

// Principal returns what SetPrincipal recorded, or nil.
func Principal(ctx context.Context) any {
	if s := stateOf(ctx); s != nil {
		return s.principal
	}
	return nil
}

// saneRequestID reports whether a client-sent request id may be echoed:
// 1 to 128 characters of [A-Za-z0-9._:+=/-], nothing that could smuggle
// into logs or headers. A loop, not a regular expression: the expression
// took ~1.2 µs per request that carries an id (as every request behind an
// ingress that sets one does), the loop ~60 ns.
func saneRequestID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := range len(id) {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == ':', c == '+', c == '=', c == '/', c == '-':
		default:
			return false
		}
	}
	return true
}

// Echo is an Echo server with the shared middleware. Its pre-routing
// middleware (the shared stack, then what Pre adds) is composed into one
// handler when it is added: echo.Echo's own ServeHTTP composes it anew
// for every request, a closure per middleware and one for routing, about
// a tenth of the allocations of a request through the gateway. Serve it
// as an http.Handler through its own ServeHTTP, not the embedded
// echo.Echo's.
type Echo struct {
	*echo.Echo
	pre   []echo.MiddlewareFunc
	use   []echo.MiddlewareFunc
	chain echo.HandlerFunc
}

// Pre adds middleware that runs before routing, after what is there.
func (e *Echo) Pre(m ...echo.MiddlewareFunc) {
	e.pre = append(e.pre, m...)
	h := e.route
	for i := len(e.pre) - 1; i >= 0; i-- {
		h = e.pre[i](h)
	}
	e.chain = h
}

// Use adds middleware that runs after routing, around the matched
// route's handler (as echo.Echo's Use).
func (e *Echo) Use(m ...echo.MiddlewareFunc) { e.use = append(e.use, m...) }

// route finds the request's route and runs its handler (and Use's
// middleware around it), as echo.Echo.ServeHTTP does after its
// pre-routing middleware. Routing reads the path from the request as the
// pre-routing middleware left it.
func (e *Echo) route(c echo.Context) error {
	r := c.Request()
	e.Router().Find(r.Method, echo.GetPath(r), c)
	h := c.Handler()
	for i := len(e.use) - 1; i >= 0; i-- {
		h = e.use[i](h)
	}
	return h(c)
}

// ServeHTTP serves a request through the composed chain.
func (e *Echo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := e.AcquireContext()
	c.Reset(r, w)
	if err := e.chain(c); err != nil {
		e.HTTPErrorHandler(err, c)
	}
	e.ReleaseContext(c)
}

// NewEcho returns an Echo with the shared middleware and error handling.
func NewEcho(logger *slog.Logger, opts ...Option) *Echo {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	e := &Echo{Echo: echo.New()}
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(logger)
	// The TCP peer, never X-Forwarded-For; the gateway replaces this with
	// its trusted-proxy resolution (netrules.ClientIP).
	e.IPExtractor = echo.ExtractIPDirect()
	// Before routing, so that a request refused for its path still gets a
	// request id, an access-log line and a problem body.
	e.Pre(requestIDMiddleware,
		traceMiddleware(),
		accessLog(logger, o.metrics, o.observers),
		middleware.RecoverWithConfig(middleware.RecoverConfig{
			DisableStackAll: true,
			LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
				logger.ErrorContext(c.Request().Context(), "panic in handler",
					"error", err, "stack", string(stack), "request_id", RequestID(c.Request().Context()))
				return err
			},
		}),
		normalizePathMiddleware)
	return e
}

func requestIDMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		// The canonical key read and written directly: Get and Set would
		// canonicalise "X-Request-ID" into a new string each time.
		var id string
		if v := req.Header[canonicalRequestID]; len(v) > 0 {
			id = v[0]
		}
		if !saneRequestID(id) {
			id = newRequestID()
		}
		c.Response().Header()[canonicalRequestID] = []string{id}
		sc := &stateContext{Context: req.Context(), st: requestState{id: id}}
		sc.st.attrs = sc.st.attrBuf[:0]
		c.SetRequest(req.WithContext(sc))
		return next(c)
	}
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// AddLogAttrs adds attributes to the access-log line of the request in c
// (authentication adds the client id).
func AddLogAttrs(c echo.Context, attrs ...slog.Attr) {
	if s := stateOf(c.Request().Context()); s != nil {
		s.attrs = append(s.attrs, attrs...)
	}
}

func accessLog(logger *slog.Logger, metrics *HTTPMetrics, observers []RequestObserver) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			req := c.Request()
			if metrics != nil {
				metrics.inFlight.Inc()
				defer metrics.inFlight.Dec()
			}
			err := next(c)
			if err != nil {
				// Let the error handler write the problem now so that the
				// logged status is the one sent.
				c.Error(err)
			}
			status := c.Response().Status
			if metrics != nil || len(observers) > 0 {
				took := time.Since(start)
				if metrics != nil {
					metrics.observe(c.Path(), req.Method, status, took)
				}
				for _, o := range observers {
					o.ObserveRequest(c.Request().Context(), metricMethod(req.Method), c.Path(), status, took)
				}
			}
			level := slog.LevelInfo
			if status >= 500 {
				level = slog.LevelError
			}
			ctx := c.Request().Context()
			a := logging.Access{Method: req.Method, Route: c.Path(), Path: req.URL.Path, Status: status,
				Bytes: c.Response().Size, Duration: time.Since(start), RequestID: RequestID(ctx)}
			if st := stateOf(ctx); st != nil {
				a.Extra = st.attrs
			}
			logging.LogAccess(ctx, logger, level, &a)
			return nil
		}
	}
}

// echoStatus adapts *echo.HTTPError to problem.StatusCoder.
type echoStatus struct{ *echo.HTTPError }

func (e echoStatus) StatusCode() int { return e.Code }

func errorHandler(logger *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		var he *echo.HTTPError
		if errors.As(err, &he) {
			err = echoStatus{he}
		}
		ctx := c.Request().Context()
		// A client that hung up before the answer is its own outcome (499,
		// as nginx logs it), never a server error in logs, metrics or alerts.
		if errors.Is(ctx.Err(), context.Canceled) {
			err = problem.ClientClosed.New("the client went away before the answer").WithCause(err)
		}
		p := problem.From(err)
		// Unexpected failures (500) are errors; other 5xx with a cause (an
		// upstream's failure, a dependency down) are warnings; expected
		// refusals (an open breaker, a full bulkhead) are already in the
		// access log and add nothing here.
		switch {
		case p.Status == http.StatusInternalServerError:
			logger.ErrorContext(ctx, "request failed", "error", err, "request_id", RequestID(ctx))
		case p.Status > 500 && p.Unwrap() != nil:
			logger.WarnContext(ctx, "request failed", "error", err, "request_id", RequestID(ctx))
		}
		if st := stateOf(ctx); st != nil {
			st.problemType = p.Type
		}
		out := *p
		out.RequestID = RequestID(ctx)
		out.Instance = c.Request().URL.Path
		if werr := problem.Write(c.Response(), &out); werr != nil {
			logger.WarnContext(ctx, "writing problem response", "error", werr)
		}
	}
}

// Serve runs srv on l until ctx ends, then shuts it down, giving in-flight
// requests up to grace to finish. With srv.TLSConfig set it serves TLS
// (HTTP/2 and HTTP/1.1).
func Serve(ctx context.Context, srv *http.Server, l net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			// The certificate comes from TLSConfig (GetCertificate).
			errc <- srv.ServeTLS(l, "", "")
			return
		}
		errc <- srv.Serve(l)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serving %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("shutting down %s: %w", l.Addr(), err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving %s: %w", l.Addr(), err)
	}
	return nil
}

// ListenPublicAndOps opens a service's two listeners, its public one and
// its ops one; if the second fails the first is closed again.
func ListenPublicAndOps(ctx context.Context, publicAddr, opsAddr string) (public, opsL net.Listener, err error) {
	public, err = (&net.ListenConfig{}).Listen(ctx, "tcp", publicAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("listening on %s: %w", publicAddr, err)
	}
	opsL, err = (&net.ListenConfig{}).Listen(ctx, "tcp", opsAddr)
	if err != nil {
		_ = public.Close()
		return nil, nil, fmt.Errorf("listening on %s: %w", opsAddr, err)
	}
	return public, opsL, nil
}

// NewServer returns an http.Server for h with timeouts that keep slow or
// idle clients from holding connections forever.
func NewServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}
