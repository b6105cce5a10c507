package routes

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/textproto"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Sync says how a sync route is served and protected.
type Sync struct {
	// Handler names a Go handler registered in the gateway; or
	Handler string
	// Upstream is the HTTP service that answers the route.
	Upstream *Upstream
	// Timeout bounds the whole call, retries included (default 5s).
	Timeout time.Duration
	// MaxConcurrent is the bulkhead: calls in flight at once; more are
	// refused with 503 at once (default 100).
	MaxConcurrent int
	// MaxBodyBytes limits the request body (default 1 MiB).
	MaxBodyBytes int64
	// MaxJSONDepth limits how deeply a JSON request body (Content-Type
	// application/json or +json) nests (default 32).
	MaxJSONDepth int
	// Retries applies to idempotent methods only.
	Retries Retries
	// Breaker is the route's circuit breaker.
	Breaker Breaker
	// Cache caches GET responses; nil: no caching.
	Cache *Cache
	// FallbackJobType is the job type a request that sends
	// "Prefer: respond-async" is accepted as while the breaker is open.
	FallbackJobType string
}

// Upstream is an HTTP target.
type Upstream struct {
	// URL may hold the route's {parameters}; the client's query string is
	// appended.
	URL string
	// Method is the method sent upstream (default: the route's).
	Method string
	// ForwardHeaders are the request headers passed on (default Accept,
	// Accept-Language, Content-Type).
	ForwardHeaders []string
	// Headers are added to every upstream request.
	Headers map[string]string
	// MaxResponseBytes limits the upstream's answer (default 10 MiB);
	// a longer one is a 502.
	MaxResponseBytes int64
}

// Retries says when a failed call is tried again.
type Retries struct {
	// Attempts is how many times a call may be retried (0: never).
	Attempts int
	// Backoff is the first pause between attempts; it doubles, with full
	// jitter (default 25ms).
	Backoff time.Duration
	// PerTryTimeout bounds one attempt (default: the route's timeout).
	PerTryTimeout time.Duration
	// Budget is the share of requests that may be retries (default 0.2),
	// on top of a small reserve, so that retries cannot multiply the load
	// on a failing upstream.
	Budget float64
}

// Breaker configures a route's circuit breaker.
type Breaker struct {
	// Enabled is false only when the file says `enabled: false`.
	Enabled bool
	// ConsecutiveFailures trips the breaker (default 5).
	ConsecutiveFailures uint32
	// FailureRatio trips it when at least MinRequests calls in Window
	// failed in this proportion (default 0.5 of 20 over 10s).
	FailureRatio float64
	MinRequests  uint32
	Window       time.Duration
	// OpenFor is how long an open breaker refuses calls before letting
	// probes through (default 10s).
	OpenFor time.Duration
	// HalfOpenRequests is how many probes a half-open breaker lets
	// through; that many successes close it (default 3).
	HalfOpenRequests uint32
}

// Cache configures response caching of a GET route.
type Cache struct {
	// TTL is how long a response is served from the cache, at most (the
	// upstream's max-age can shorten it).
	TTL time.Duration
	// Shared lets every client see the same cached response; by default
	// each client has its own.
	Shared bool
}

// Defaults and limits of sync routes.
const (
	DefaultSyncTimeout       = 5 * time.Second
	DefaultMaxConcurrent     = 100
	DefaultSyncMaxBodyBytes  = 1 << 20
	DefaultSyncMaxJSONDepth  = 32
	DefaultMaxResponseBytes  = 10 << 20
	DefaultRetryBackoff      = 25 * time.Millisecond
	DefaultRetryBudget       = 0.2
	maxSyncTimeout           = 5 * time.Minute
	maxCacheTTL              = 24 * time.Hour
	maxRetryAttempts         = 5
	maxSyncBodyBytes         = 10 << 20
	maxSyncJSONDepth         = 1000
	maxUpstreamResponseBytes = 100 << 20
)

var (
	syncKeys     = []string{"handler", "upstream", "timeout", "max_concurrent", "max_body_bytes", "max_json_depth", "retries", "breaker", "cache", "fallback_job_type"}
	upstreamKeys = []string{"url", "method", "forward_headers", "headers", "max_response_bytes"}
	retriesKeys  = []string{"attempts", "backoff", "per_try_timeout", "budget"}
	breakerKeys  = []string{"enabled", "consecutive_failures", "failure_ratio", "min_requests", "window", "open_for", "half_open_requests"}
	cacheKeys    = []string{"ttl", "shared"}
	urlParamRe   = regexp.MustCompile(`\{([^{}]*)\}`)
	headerNameRe = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
	// Headers the gateway sets itself or that belong to one connection.
	reservedHeaders = []string{"Connection", "Content-Length", "Host", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "X-Request-Id", "Traceparent", "Tracestate"}
)

func defaultSync() *Sync {
	return &Sync{
		Timeout: DefaultSyncTimeout, MaxConcurrent: DefaultMaxConcurrent, MaxBodyBytes: DefaultSyncMaxBodyBytes,
		MaxJSONDepth: DefaultSyncMaxJSONDepth,
		Retries:      Retries{Backoff: DefaultRetryBackoff, Budget: DefaultRetryBudget},
		Breaker: Breaker{Enabled: true, ConsecutiveFailures: 5, FailureRatio: 0.5, MinRequests: 20,
			Window: 10 * time.Second, OpenFor: 10 * time.Second, HalfOpenRequests: 3},
	}
}

type failFunc func(line int, field, format string, args ...any) error

// parseSyncField reads one sync key of a route into s.
func parseSyncField(s *Sync, key string, v *yaml.Node, field string, fail failFunc) error {
	at := func(err error) error {
		if err == nil {
			return nil
		}
		var e *Error
		if errors.As(err, &e) {
			return err
		}
		return fail(v.Line, field, "%v", err)
	}
	switch key {
	case "handler":
		return at(scalar(v, &s.Handler))
	case "fallback_job_type":
		return at(scalar(v, &s.FallbackJobType))
	case "timeout":
		return at(positiveDuration(v, &s.Timeout))
	case "max_concurrent":
		return at(intIn(v, 1, 100_000, &s.MaxConcurrent))
	case "max_body_bytes":
		return at(int64In(v, 1, maxSyncBodyBytes, &s.MaxBodyBytes))
	case "max_json_depth":
		return at(intIn(v, 1, maxSyncJSONDepth, &s.MaxJSONDepth))
	case "upstream":
		s.Upstream = &Upstream{MaxResponseBytes: DefaultMaxResponseBytes}
		return eachField(v, field, upstreamKeys, fail, func(k string, n *yaml.Node) error {
			switch k {
			case "url":
				return scalar(n, &s.Upstream.URL)
			case "method":
				return scalar(n, &s.Upstream.Method)
			case "forward_headers":
				return headerList(n, &s.Upstream.ForwardHeaders)
			case "headers":
				return headerMap(n, &s.Upstream.Headers)
			default: // max_response_bytes
				return int64In(n, 1, maxUpstreamResponseBytes, &s.Upstream.MaxResponseBytes)
			}
		})
	case "retries":
		return eachField(v, field, retriesKeys, fail, func(k string, n *yaml.Node) error {
			switch k {
			case "attempts":
				return intIn(n, 0, maxRetryAttempts, &s.Retries.Attempts)
			case "backoff":
				return positiveDuration(n, &s.Retries.Backoff)
			case "per_try_timeout":
				return positiveDuration(n, &s.Retries.PerTryTimeout)
			default: // budget
				return ratio(n, &s.Retries.Budget)
			}
		})
	case "breaker":
		return eachField(v, field, breakerKeys, fail, func(k string, n *yaml.Node) error {
			switch k {
			case "enabled":
				return boolean(n, &s.Breaker.Enabled)
			case "consecutive_failures":
				return uint32In(n, 1, 10_000, &s.Breaker.ConsecutiveFailures)
			case "failure_ratio":
				return ratio(n, &s.Breaker.FailureRatio)
			case "min_requests":
				return uint32In(n, 1, 1_000_000, &s.Breaker.MinRequests)
			case "window":
				if err := positiveDuration(n, &s.Breaker.Window); err != nil {
					return err
				}
				if s.Breaker.Window < time.Second {
					return errors.New("must be at least 1s")
				}
				return nil
			case "open_for":
				return positiveDuration(n, &s.Breaker.OpenFor)
			default: // half_open_requests
				return uint32In(n, 1, 1000, &s.Breaker.HalfOpenRequests)
			}
		})
	default: // cache
		s.Cache = &Cache{}
		if err := eachField(v, field, cacheKeys, fail, func(k string, n *yaml.Node) error {
			if k == "shared" {
				return boolean(n, &s.Cache.Shared)
			}
			return positiveDuration(n, &s.Cache.TTL)
		}); err != nil {
			return err
		}
		if s.Cache.TTL == 0 {
			return fail(v.Line, field+".ttl", "is required (how long a response is served from the cache, e.g. 30s)")
		}
		if s.Cache.TTL > maxCacheTTL {
			return fail(v.Line, field+".ttl", "is at most %s", maxCacheTTL)
		}
		return nil
	}
}

// checkSync validates a sync route as a whole.
func checkSync(r Route, field string, known Known, fail failFunc) error {
	s := r.Sync
	switch {
	case s.Handler != "" && s.Upstream != nil:
		return fail(r.Line, field, "a sync route names a handler or an upstream, not both")
	case s.Handler != "":
		if known.Handlers == nil || !known.Handlers.Has(s.Handler) {
			return fail(r.Line, field+".handler", "no sync handler %q is registered in the gateway%s", s.Handler, registered(known.Handlers))
		}
	case s.Upstream != nil:
		if err := checkUpstream(r, s.Upstream); err != nil {
			return fail(r.Line, field+".upstream", "%v", err)
		}
	default:
		return fail(r.Line, field, "a sync route names a handler (a Go handler registered in the gateway) or an upstream")
	}
	if s.Timeout > maxSyncTimeout {
		return fail(r.Line, field+".timeout", "is at most %s", maxSyncTimeout)
	}
	if s.Retries.Attempts > 0 && !idempotent(r.Method) {
		return fail(r.Line, field+".retries", "retries apply to idempotent methods only (GET, HEAD, PUT, DELETE): a %s may have had its effect", r.Method)
	}
	if s.Retries.PerTryTimeout > s.Timeout {
		return fail(r.Line, field+".retries.per_try_timeout", "%s is longer than the route's timeout %s", s.Retries.PerTryTimeout, s.Timeout)
	}
	if s.Breaker.HalfOpenRequests > uint32(s.MaxConcurrent) { //nolint:gosec // MaxConcurrent is at most 100,000
		return fail(r.Line, field+".breaker.half_open_requests", "%d probes cannot pass a bulkhead of max_concurrent %d", s.Breaker.HalfOpenRequests, s.MaxConcurrent)
	}
	if s.Cache != nil && r.Method != http.MethodGet {
		return fail(r.Line, field+".cache", "only GET routes are cached")
	}
	if s.FallbackJobType != "" {
		if !known.JobTypes.Has(s.FallbackJobType) {
			return fail(r.Line, field+".fallback_job_type", "no job type %q is declared in the job types file", s.FallbackJobType)
		}
		if r.Method != http.MethodPost && r.Method != http.MethodPut && r.Method != http.MethodPatch {
			return fail(r.Line, field+".fallback_job_type", "only POST, PUT and PATCH routes carry a payload to accept as a job")
		}
		if len(r.Params()) > 0 {
			return fail(r.Line, field+".fallback_job_type", "a route with path parameters cannot fall back to a job (the job's payload is the request body alone)")
		}
		if !s.Breaker.Enabled {
			return fail(r.Line, field+".fallback_job_type", "falls back while the breaker is open: the breaker must be enabled")
		}
	}
	return nil
}

func checkUpstream(r Route, u *Upstream) error {
	if u.URL == "" {
		return errors.New("url is required")
	}
	// No parameter may stand in the scheme or the authority: a value
	// there would choose the host the gateway calls. This is decided on
	// the template itself, before anything is filled in.
	if err := paramsOnlyAfterAuthority(u.URL); err != nil {
		return err
	}
	// Parameters are checked and replaced before parsing, so that
	// {name} in the path is not taken for an invalid character.
	var bad error
	filled := urlParamRe.ReplaceAllStringFunc(u.URL, func(m string) string {
		name := m[1 : len(m)-1]
		if !slices.Contains(r.Params(), name) {
			bad = fmt.Errorf("url parameter {%s} is not a parameter of the route's path %s", name, r.Path)
		}
		return "x"
	})
	if bad != nil {
		return bad
	}
	parsed, err := url.Parse(filled)
	if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
		return fmt.Errorf("url %q must be an absolute http(s) URL", u.URL)
	}
	if parsed.User != nil {
		return errors.New("url must not hold credentials: send them in headers")
	}
	if parsed.Fragment != "" || strings.ContainsAny(u.URL, "#") {
		return fmt.Errorf("url %q: parameters belong in the path or query, and there is no fragment", u.URL)
	}
	if u.Method == "" {
		u.Method = r.Method
	} else if !slices.Contains(methods, u.Method) {
		return fmt.Errorf("method %q is not one of %s", u.Method, strings.Join(methods, ", "))
	}
	if u.ForwardHeaders == nil {
		u.ForwardHeaders = []string{"Accept", "Accept-Language", "Content-Type"}
	}
	return nil
}

// paramsOnlyAfterAuthority refuses a URL template with a parameter (or a
// brace) before the end of its authority: in the scheme, user info, host
// or port ("https://{host}/x", "http://api{n}.internal/x",
// "http://h:{port}/x", "{scheme}://h/x").
func paramsOnlyAfterAuthority(template string) error {
	scheme, rest, ok := strings.Cut(template, "://")
	if !ok || strings.ContainsAny(scheme, "{}") {
		return fmt.Errorf("url %q must be an absolute http(s) URL with no parameter in its scheme", template)
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if strings.ContainsAny(rest[:end], "{}") {
		return fmt.Errorf("url %q: parameters may fill only the path or the query, never the host or port (it would let a request choose where the gateway connects)", template)
	}
	return nil
}

func registered(handlers Names) string {
	lister, ok := handlers.(interface{ Names() []string })
	if !ok || len(lister.Names()) == 0 {
		return ""
	}
	return " (registered: " + strings.Join(lister.Names(), ", ") + ")"
}

func idempotent(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodPut || method == http.MethodDelete
}

// eachField walks a mapping node, refusing keys not in allowed.
func eachField(n *yaml.Node, field string, allowed []string, fail failFunc, fn func(key string, v *yaml.Node) error) error {
	if n.Kind != yaml.MappingNode {
		return fail(n.Line, field, "must be a mapping (%s)", strings.Join(allowed, ", "))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !slices.Contains(allowed, k.Value) {
			return fail(k.Line, field+"."+k.Value, "unknown field (known: %s)", strings.Join(allowed, ", "))
		}
		if err := fn(k.Value, v); err != nil {
			var e *Error
			if errors.As(err, &e) {
				return err
			}
			return fail(v.Line, field+"."+k.Value, "%v", err)
		}
	}
	return nil
}

func positiveDuration(n *yaml.Node, out *time.Duration) error {
	var s string
	if err := scalar(n, &s); err != nil {
		return errors.New("must be a duration such as 250ms or 2s")
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 250ms or 2s", s)
	}
	if d <= 0 {
		return fmt.Errorf("%s must be positive", s)
	}
	*out = d
	return nil
}

func int64In(n *yaml.Node, lo, hi int64, out *int64) error {
	var v int64
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&v) != nil {
		return fmt.Errorf("must be a whole number from %d to %d", lo, hi)
	}
	if v < lo || v > hi {
		return fmt.Errorf("%d is not from %d to %d", v, lo, hi)
	}
	*out = v
	return nil
}

func intIn(n *yaml.Node, lo, hi int, out *int) error {
	var v int64
	if err := int64In(n, int64(lo), int64(hi), &v); err != nil {
		return err
	}
	*out = int(v)
	return nil
}

func uint32In(n *yaml.Node, lo, hi uint32, out *uint32) error {
	var v int64
	if err := int64In(n, int64(lo), int64(hi), &v); err != nil {
		return err
	}
	*out = uint32(v) //nolint:gosec // bounded by hi
	return nil
}

func ratio(n *yaml.Node, out *float64) error {
	var v float64
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!float" && n.Tag != "!!int") || n.Decode(&v) != nil || math.IsNaN(v) || v <= 0 || v > 1 {
		return errors.New("must be a number above 0 and at most 1")
	}
	*out = v
	return nil
}

func boolean(n *yaml.Node, out *bool) error {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(out) != nil {
		return errors.New("must be true or false")
	}
	return nil
}

func headerName(n *yaml.Node) (string, error) {
	var h string
	if err := scalar(n, &h); err != nil || !headerNameRe.MatchString(h) {
		return "", fmt.Errorf("%q is not a header name", n.Value)
	}
	h = textproto.CanonicalMIMEHeaderKey(h)
	if slices.Contains(reservedHeaders, h) || strings.HasPrefix(h, "X-Switchyard-") {
		return "", fmt.Errorf("%s is set by the gateway", h)
	}
	return h, nil
}

func headerList(n *yaml.Node, out *[]string) error {
	if n.Kind != yaml.SequenceNode {
		return errors.New("must be a list of header names")
	}
	list := []string{}
	for _, item := range n.Content {
		h, err := headerName(item)
		if err != nil {
			return err
		}
		if !slices.Contains(list, h) {
			list = append(list, h)
		}
	}
	*out = list
	return nil
}

func headerMap(n *yaml.Node, out *map[string]string) error {
	if n.Kind != yaml.MappingNode {
		return errors.New("must be a mapping of header names to values")
	}
	m := map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		h, err := headerName(n.Content[i])
		if err != nil {
			return err
		}
		var v string
		if err := scalar(n.Content[i+1], &v); err != nil || strings.ContainsAny(v, "\r\n\x00") {
			return fmt.Errorf("header %s: the value must be a string on one line", h)
		}
		m[h] = v
	}
	*out = m
	return nil
}
