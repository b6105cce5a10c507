// Package edge is what stands in front of the gateway's routes, so that the
// gateway can face the internet without a WAF or an API gateway before it:
// security headers, the client address behind trusted proxies, address and
// country rules, a body limit enforced before the body is read, rate limits
// per address and per client (shared through Redis when configured),
// quotas per client, content types, CORS, and automatic blocking of
// addresses and clients that keep failing authentication or breaking
// rules.
//
// The order for a request: Pre (before routing: headers, address, block
// list, the file's address and country rules, body limit, per-address
// limit), then per route Outer (the route's address and country rules,
// per-address limit and content types), the authentication guard, and
// Inner (block list for the client, per-client limits, quota).
package edge

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/geoip"
	"github.com/switchyard/switchyard/libs/netrules"
	"github.com/switchyard/switchyard/libs/problem"
	"github.com/switchyard/switchyard/libs/ratelimit"
	"github.com/switchyard/switchyard/services/gateway/internal/quota"
	"github.com/switchyard/switchyard/services/gateway/internal/routes"
)

// Config is the edge's part of the gateway's environment.
type Config struct {
	TrustedProxies  string        `conf:"env:SWITCHYARD_EDGE_TRUSTED_PROXIES,help:CIDRs of the proxies and load balancers whose forwarding header is believed (empty: none; the TCP peer is the client)"`
	ForwardedHeader string        `conf:"default:X-Forwarded-For,env:SWITCHYARD_EDGE_FORWARDED_HEADER,help:the one forwarding header the trusted proxies maintain: X-Forwarded-For or Forwarded"`
	CountryHeader   string        `conf:"env:SWITCHYARD_EDGE_COUNTRY_HEADER,help:header a trusted CDN sets to the client's ISO country (e.g. CloudFront-Viewer-Country); believed only from trusted proxies"`
	CountryDB       string        `conf:"env:SWITCHYARD_EDGE_COUNTRY_DB,help:MaxMind-format country database (.mmdb: GeoLite2/GeoIP2 Country) for country rules; reloaded when replaced"`
	MaxBodyBytes    int64         `conf:"default:1048576,env:SWITCHYARD_GATEWAY_MAX_BODY_BYTES,help:largest request body on any route; larger is 413 before it is read (routes and job types may allow less)"`
	HSTSMaxAge      time.Duration `conf:"default:8760h,env:SWITCHYARD_GATEWAY_HSTS_MAX_AGE,help:Strict-Transport-Security max-age on HTTPS responses (0: no header)"`
	IPv6Prefix      int           `conf:"default:64,env:SWITCHYARD_EDGE_IPV6_PREFIX,help:IPv6 clients are limited and blocked by this prefix length (a /64 is one subscriber; 128: each address)"`
	TrackedKeys     int           `conf:"default:100000,env:SWITCHYARD_EDGE_TRACKED_KEYS,help:addresses and clients the auto-block and spent-address tables hold at most (least recently seen evicted first)"`
	BlockThreshold  int           `conf:"default:50,env:SWITCHYARD_EDGE_BLOCK_THRESHOLD,help:authentication failures or rule violations within the window that block an address or client (0: never block)"`
	BlockWindow     time.Duration `conf:"default:1m,env:SWITCHYARD_EDGE_BLOCK_WINDOW,help:window in which violations are counted"`
	BlockCooldown   time.Duration `conf:"default:15m,env:SWITCHYARD_EDGE_BLOCK_COOLDOWN,help:how long a block lasts"`
	QuotaFlush      time.Duration `conf:"default:1s,env:SWITCHYARD_EDGE_QUOTA_FLUSH,help:how often quota counts are added to Postgres (a quota can be overrun by what the replicas admit in this time)"`
}

// Validate checks what the types do not.
func (c Config) Validate() error {
	if _, err := netrules.NewClientIP(c.TrustedProxies, c.ForwardedHeader); err != nil {
		return fmt.Errorf("SWITCHYARD_EDGE_TRUSTED_PROXIES / _FORWARDED_HEADER: %w", err)
	}
	if c.MaxBodyBytes < 1 {
		return fmt.Errorf("SWITCHYARD_GATEWAY_MAX_BODY_BYTES %d must be positive", c.MaxBodyBytes)
	}
	if c.BlockThreshold < 0 || (c.BlockThreshold > 0 && (c.BlockWindow <= 0 || c.BlockCooldown <= 0)) {
		return fmt.Errorf("auto-block needs a threshold ≥ 0 and, when on, a positive window and cool-down")
	}
	if c.IPv6Prefix < 1 || c.IPv6Prefix > 128 {
		return fmt.Errorf("SWITCHYARD_EDGE_IPV6_PREFIX %d must be from 1 to 128", c.IPv6Prefix)
	}
	if c.TrackedKeys < keyTableShards {
		return fmt.Errorf("SWITCHYARD_EDGE_TRACKED_KEYS %d must be at least %d", c.TrackedKeys, keyTableShards)
	}
	if c.QuotaFlush <= 0 {
		return fmt.Errorf("SWITCHYARD_EDGE_QUOTA_FLUSH must be positive")
	}
	return nil
}

// Options are what New builds an Edge from.
type Options struct {
	Config Config
	// File is the routes file's own edge section.
	File routes.Edge
	// Limiter decides rate limits (required when any route has one).
	Limiter ratelimit.Limiter
	// Quotas counts quotas (required when the file sets any).
	Quotas *quota.Counter
	// Countries looks up the client's country (nil: only CountryHeader).
	Countries *geoip.DB
	// OnBlock records a new block (the audit log).
	OnBlock    func(Block)
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Edge holds the protections; see the package comment for the order.
type Edge struct {
	cfg       Config
	file      routes.Edge
	clientIP  netrules.ClientIP
	limiter   ratelimit.Limiter
	quotas    *quota.Counter
	countries *geoip.DB
	blocker   *Blocker
	logger    *slog.Logger
	hsts      string
	filePerIP []ratelimit.Check
	// ipSpent remembers addresses whose per-address bucket was found
	// empty, until it has a token again, so that Pre refuses them without
	// asking the limiter (see Pre).
	ipSpent spentSet
	metrics metrics
}

type metrics struct {
	refused *prometheus.CounterVec
	blocks  *prometheus.CounterVec
}

// Reasons a request is refused, the label of switchyard_edge_refusals_total.
const (
	reasonAddress     = "address_denied"
	reasonCountry     = "country_denied"
	reasonBlocked     = "blocked"
	reasonRateLimited = "rate_limited"
	reasonQuota       = "quota_exceeded"
	reasonBodyLarge   = "body_too_large"
	reasonMediaType   = "unsupported_media_type"
)

// New returns an Edge.
func New(opts Options) (*Edge, error) {
	if opts.Config.IPv6Prefix == 0 {
		opts.Config.IPv6Prefix = netrules.DefaultIPv6PrefixBits
	}
	if opts.Config.TrackedKeys == 0 {
		opts.Config.TrackedKeys = DefaultTrackedKeys
	}
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	clientIP, _ := netrules.NewClientIP(opts.Config.TrustedProxies, opts.Config.ForwardedHeader) // validated
	e := &Edge{
		cfg: opts.Config, file: opts.File, limiter: opts.Limiter, quotas: opts.Quotas, countries: opts.Countries, logger: opts.Logger,
		clientIP: clientIP,
	}
	if opts.Config.HSTSMaxAge > 0 {
		e.hsts = "max-age=" + strconv.FormatInt(int64(opts.Config.HSTSMaxAge.Seconds()), 10) + "; includeSubDomains"
	}
	e.metrics = metrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_edge_refusals_total",
			Help: "Requests the edge refused, by reason (address_denied, country_denied, blocked, rate_limited, quota_exceeded, body_too_large, unsupported_media_type).",
		}, []string{"reason"}),
		blocks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_edge_blocks_total",
			Help: "Addresses (kind ip) and clients (kind client) blocked for too many violations.",
		}, []string{"kind"}),
	}
	for _, r := range []string{reasonAddress, reasonCountry, reasonBlocked, reasonRateLimited, reasonQuota, reasonBodyLarge, reasonMediaType} {
		e.metrics.refused.WithLabelValues(r)
	}
	e.metrics.blocks.WithLabelValues("ip")
	e.metrics.blocks.WithLabelValues("client")
	e.ipSpent = newSpentSet(opts.Config.TrackedKeys)
	e.blocker = NewBlocker(opts.Config.BlockThreshold, opts.Config.BlockWindow, opts.Config.BlockCooldown, opts.Config.TrackedKeys, func(b Block) {
		kind, _, _ := strings.Cut(b.Key, ":")
		e.metrics.blocks.WithLabelValues(kind).Inc()
		e.logger.Warn("blocked for too many violations", "key", b.Key, "violations", b.Violations, "reason", b.Reason, "until", b.Until)
		if opts.OnBlock != nil {
			opts.OnBlock(b)
		}
	})
	if opts.Registerer != nil {
		blocked := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchyard_edge_blocked",
			Help: "Addresses and clients blocked now.",
		}, func() float64 { return float64(e.blocker.BlockedCount()) })
		opts.Registerer.MustRegister(e.metrics.refused, e.metrics.blocks, blocked)
	}
	if opts.File.PerIP != nil {
		e.filePerIP = []ratelimit.Check{{Name: "ip", Limit: *opts.File.PerIP}}
	}
	if e.limiter == nil && opts.File.PerIP != nil {
		return nil, fmt.Errorf("rate limits need a limiter")
	}
	if (opts.Config.CountryHeader == "" && opts.Countries == nil) && !opts.File.Countries.Empty() {
		return nil, fmt.Errorf("country rules need a country database (SWITCHYARD_EDGE_COUNTRY_DB) or a CDN's header (SWITCHYARD_EDGE_COUNTRY_HEADER)")
	}
	return e, nil
}

// Blocker is the edge's block list (for tests and the ops listener).
func (e *Edge) Blocker() *Blocker { return e.blocker }

// request is what Pre learned about a request.
type request struct {
	client   netip.Addr
	ipKey    string
	viaProxy bool
	country  string // "" until looked up
	// ipCounted: the per-address bucket was charged (with the client's).
	ipCounted bool
}

const requestKey = "switchyard.edge"

func (e *Edge) requestOf(c echo.Context) *request {
	if r, ok := c.Get(requestKey).(*request); ok {
		return r
	}
	// Not through Pre (a test mounting routes alone): resolve now.
	client, via := e.clientIP.Resolve(c.Request())
	r := &request{client: client, viaProxy: via, ipKey: e.addrKey(client)}
	c.Set(requestKey, r)
	return r
}

// addrKey names an address's buckets and blocks: "ip:" and the address,
// or for IPv6 its prefix of IPv6Prefix bits.
func (e *Edge) addrKey(a netip.Addr) string {
	return "ip:" + netrules.AddrKey(a, e.cfg.IPv6Prefix)
}

// ClientIP is the client address of r behind trusted proxies, for Echo's
// IPExtractor (and so c.RealIP()).
func (e *Edge) ClientIP(r *http.Request) string { return e.clientIP.Extract(r) }

// TrustedProxies are the proxies whose forwarding header the edge
// believes.
func (e *Edge) TrustedProxies() netrules.PrefixList { return e.clientIP.Trusted }

// Scheme is the scheme the client used: https over TLS; behind a trusted
// proxy, its X-Forwarded-Proto (http or https); otherwise http. Echo's
// own c.Scheme() believes X-Forwarded-Proto from anyone.
func (e *Edge) Scheme(c echo.Context) string {
	req := c.Request()
	if req.TLS != nil {
		return "https"
	}
	if e.requestOf(c).viaProxy {
		if p := strings.ToLower(req.Header.Get("X-Forwarded-Proto")); p == "https" || p == "http" {
			return p
		}
	}
	return "http"
}

func (e *Edge) country(c echo.Context, r *request) string {
	if r.country != "" {
		return r.country
	}
	r.country = geoip.Unknown
	if h := e.cfg.CountryHeader; h != "" && r.viaProxy {
		if v := c.Request().Header.Get(h); geoip.ValidCode(v) {
			r.country = strings.ToUpper(v)
			return r.country
		}
	}
	if e.countries != nil {
		r.country = e.countries.Country(r.client)
	}
	return r.country
}

// The values of the security headers every response carries.
var (
	nosniff    = []string{"nosniff"}
	frameDeny  = []string{"DENY"}
	noReferrer = []string{"no-referrer"}
	apiCSP     = []string{"default-src 'none'; frame-ancestors 'none'"}
)

// Pre runs before routing, for every request.
func (e *Edge) Pre(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		h := c.Response().Header()
		// Canonical keys and shared, never modified value slices: four
		// headers on every response without an allocation each.
		h["X-Content-Type-Options"] = nosniff
		h["X-Frame-Options"] = frameDeny
		h["Referrer-Policy"] = noReferrer
		h["Content-Security-Policy"] = apiCSP
		client, via := e.clientIP.Resolve(req)
		ipKey := e.addrKey(client)
		r := &request{client: client, viaProxy: via, ipKey: ipKey}
		c.Set(requestKey, r)
		if e.hsts != "" && e.Scheme(c) == "https" {
			h.Set("Strict-Transport-Security", e.hsts)
		}
		if e.blocker.Enabled() {
			if left, blocked := e.blocker.Blocked(ipKey); blocked {
				return e.refuseBlocked(left)
			}
		}
		if err := e.rules(c, r, e.file.IP, e.file.Countries, "the gateway"); err != nil {
			e.blocker.Violation(ipKey, "rules")
			return err
		}
		if req.ContentLength > e.cfg.MaxBodyBytes {
			e.metrics.refused.WithLabelValues(reasonBodyLarge).Inc()
			// The body stays unread: close the connection after answering
			// rather than drain it.
			h.Set("Connection", "close")
			return problem.PayloadTooLarge.Newf("the body is %d bytes; this gateway takes at most %d", req.ContentLength, e.cfg.MaxBodyBytes)
		}
		if req.Body != nil && req.Body != http.NoBody {
			req.Body = http.MaxBytesReader(c.Response(), req.Body, e.cfg.MaxBodyBytes)
		}
		// The file's per-address bucket is charged once per request: with
		// the client's buckets in the same limiter call when the request
		// authenticates (Inner), else after the handler. An address found
		// spent is refused here, without a call, until it has a token again.
		if len(e.filePerIP) > 0 {
			if left, spent := e.ipSpent.spent(ipKey); spent {
				e.metrics.refused.WithLabelValues(reasonRateLimited).Inc()
				h["Ratelimit-Policy"] = append(h["Ratelimit-Policy"], policy("ip", e.filePerIP[0].Limit))
				return problem.RateLimited.Newf("the ip rate limit is spent; retry in %s", left.Round(time.Millisecond)).
					WithHeader("Retry-After", seconds(left))
			}
		}
		err := next(c)
		if len(e.filePerIP) > 0 && !r.ipCounted {
			checks := [1]ratelimit.Check{e.filePerIP[0]}
			checks[0].Key = ipKey
			if d, lerr := e.limiter.Allow(context.WithoutCancel(req.Context()), checks[:]); lerr == nil && !d.Allowed {
				e.ipSpent.mark(ipKey, d.RetryAfter)
			}
		}
		if e.blocker.Enabled() {
			e.countViolation(c, ipKey, err)
		}
		return err
	}
}

// countViolation counts a refused authentication (401) or authorization
// (403) against the address, and the client when known.
func (e *Edge) countViolation(c echo.Context, ipKey string, err error) {
	status := c.Response().Status
	if err != nil {
		status = problem.From(err).Status
	}
	if status != http.StatusUnauthorized && status != http.StatusForbidden {
		return
	}
	reason := "auth_failure"
	if status == http.StatusForbidden {
		reason = "forbidden"
		if p := problem.From(err); err != nil && p.Type == problem.Blocked.Type() {
			return // refused because already blocked: no new violation
		}
	}
	e.blocker.Violation(ipKey, reason)
	if id, ok := authn.FromContext(c.Request().Context()); ok {
		e.blocker.Violation("client:"+id.ClientID, reason)
	}
}

func (e *Edge) refuseBlocked(left time.Duration) error {
	e.metrics.refused.WithLabelValues(reasonBlocked).Inc()
	return problem.Blocked.Newf("too many failed or refused requests; blocked for another %s", left.Round(time.Second)).
		WithHeader("Retry-After", seconds(left))
}

// rules applies address and country rules; where names whose they are.
func (e *Edge) rules(c echo.Context, r *request, ip netrules.Rules, countries routes.CountryRules, where string) error {
	if !ip.Empty() && !ip.Permits(r.client) {
		e.metrics.refused.WithLabelValues(reasonAddress).Inc()
		return problem.AddressDenied.Newf("%s does not accept requests from this address", where)
	}
	if !countries.Empty() {
		if code := e.country(c, r); !countries.Permits(code) {
			e.metrics.refused.WithLabelValues(reasonCountry).Inc()
			return problem.CountryDenied.Newf("%s does not accept requests from this country (%s)", where, code)
		}
	}
	return nil
}

// limit takes a token from each bucket of checks or answers 429.
func (e *Edge) limit(c echo.Context, checks []ratelimit.Check) error {
	return e.limitNoting(c, checks, -1)
}

// limitNoting is limit; when the check at ipAt is the one that refused,
// the address is remembered as spent.
func (e *Edge) limitNoting(c echo.Context, checks []ratelimit.Check, ipAt int) error {
	d, err := e.limiter.Allow(c.Request().Context(), checks)
	if err != nil {
		// Only a cancelled request gets here (Failover falls back).
		return fmt.Errorf("rate limit: %w", err)
	}
	lc := checks[d.Limiting]
	h := c.Response().Header()
	h["Ratelimit-Policy"] = append(h["Ratelimit-Policy"], policy(lc.Name, lc.Limit))
	h["Ratelimit"] = append(h["Ratelimit"], `"`+lc.Name+`";r=`+strconv.Itoa(d.Remaining)+";t="+seconds(d.Reset))
	if !d.Allowed {
		if d.Limiting == ipAt {
			e.ipSpent.mark(checks[ipAt].Key, d.RetryAfter)
		}
		e.metrics.refused.WithLabelValues(reasonRateLimited).Inc()
		return problem.RateLimited.Newf("the %s rate limit (%s per %s, burst %d) is spent; retry in %s",
			lc.Name, strconv.FormatFloat(lc.Limit.Rate, 'f', -1, 64), lc.Limit.Period, lc.Limit.Burst, d.RetryAfter.Round(time.Millisecond)).
			WithHeader("Retry-After", seconds(d.RetryAfter))
	}
	return nil
}

// policy is one RateLimit-Policy item: the bucket as a quota of Burst
// requests over the time it takes to refill.
func policy(name string, l ratelimit.Limit) string {
	window := time.Duration(float64(l.Period) * float64(l.Burst) / l.Rate)
	return `"` + name + `";q=` + strconv.Itoa(l.Burst) + ";w=" + seconds(window)
}

// seconds rounds d up to whole seconds, at least 1 when d > 0.
func seconds(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	return strconv.FormatInt(int64(math.Ceil(d.Seconds())), 10)
}

// Route is what the edge adds around one route.
type Route struct {
	// Outer runs before authentication, Inner after it.
	Outer, Inner echo.MiddlewareFunc
	// CORS answers the route's preflights and decorates its responses
	// (nil: no CORS).
	CORS echo.MiddlewareFunc
}

// ForRoute builds the route's middleware.
func (e *Edge) ForRoute(rt routes.Route) (Route, error) {
	out := Route{}
	label := rt.Label()
	re := rt.Edge
	if (re.PerIP != nil || re.PerClient != nil || e.file.PerClient != nil || len(e.file.Clients) > 0) && e.limiter == nil {
		return out, fmt.Errorf("route %s: rate limits need a limiter", label)
	}
	if !re.Countries.Empty() && e.cfg.CountryHeader == "" && e.countries == nil {
		return out, fmt.Errorf("route %s: country rules need a country database (SWITCHYARD_EDGE_COUNTRY_DB) or a CDN's header (SWITCHYARD_EDGE_COUNTRY_HEADER)", label)
	}
	where := "route " + label
	var routeIP *ratelimit.Check
	if re.PerIP != nil {
		routeIP = &ratelimit.Check{Name: "route-ip", Limit: *re.PerIP}
	}
	types := slices.Clone(re.ContentTypes)
	if !re.IP.Empty() || !re.Countries.Empty() || routeIP != nil || len(types) > 0 {
		out.Outer = func(next echo.HandlerFunc) echo.HandlerFunc {
			return func(c echo.Context) error {
				r := e.requestOf(c)
				if err := e.rules(c, r, re.IP, re.Countries, where); err != nil {
					e.blocker.Violation(r.ipKey, "rules")
					return err
				}
				if len(types) > 0 {
					if err := e.contentType(c.Request(), types); err != nil {
						return err
					}
				}
				if routeIP != nil {
					checks := [1]ratelimit.Check{*routeIP}
					checks[0].Key = r.ipKey + "|r:" + label
					if err := e.limit(c, checks[:]); err != nil {
						return err
					}
				}
				return next(c)
			}
		}
	}
	perClient, routeClient := e.file.PerClient, re.PerClient
	hasQuota := e.file.Quota != (routes.Quota{})
	for _, p := range e.file.Clients {
		if p.Quota != nil {
			hasQuota = true
		}
	}
	if hasQuota && e.quotas == nil {
		return out, fmt.Errorf("quotas need a quota counter")
	}
	// A route that accepts API keys enforces their usage plans.
	keyPlans := slices.Contains(rt.Auth, authn.CredentialAPIKey) && e.limiter != nil && e.quotas != nil
	if perClient != nil || routeClient != nil || len(e.file.Clients) > 0 || hasQuota || e.blocker.Enabled() || len(e.filePerIP) > 0 || keyPlans {
		out.Inner = func(next echo.HandlerFunc) echo.HandlerFunc {
			return func(c echo.Context) error {
				id, ok := authn.FromContext(c.Request().Context())
				if !ok {
					return next(c)
				}
				clientKey := "client:" + id.ClientID
				if left, blocked := e.blocker.Blocked(clientKey); blocked {
					return e.refuseBlocked(left)
				}
				limit, q := perClient, e.file.Quota
				if plan, ok := e.file.Clients[id.ClientID]; ok {
					if plan.PerClient != nil {
						limit = plan.PerClient
					}
					if plan.Quota != nil {
						q = *plan.Quota
					}
				}
				var buf [4]ratelimit.Check
				checks := buf[:0]
				r := e.requestOf(c)
				ipAt := -1
				if len(e.filePerIP) > 0 && !r.ipCounted {
					ipAt = len(checks)
					checks = append(checks, ratelimit.Check{Key: r.ipKey, Name: "ip", Limit: e.filePerIP[0].Limit})
					r.ipCounted = true
				}
				if limit != nil {
					checks = append(checks, ratelimit.Check{Key: clientKey, Name: "client", Limit: *limit})
				}
				if routeClient != nil {
					checks = append(checks, ratelimit.Check{Key: clientKey + "|r:" + label, Name: "route-client", Limit: *routeClient})
				}
				plan := id.Plan
				if !keyPlans {
					plan = nil
				}
				if plan != nil && plan.RatePerSecond > 0 {
					checks = append(checks, ratelimit.Check{Key: "key:" + id.KeyID, Name: "api-key",
						Limit: ratelimit.Limit{Rate: plan.RatePerSecond, Period: time.Second, Burst: plan.Burst}})
				}
				if len(checks) > 0 {
					if err := e.limitNoting(c, checks, ipAt); err != nil {
						return err
					}
				}
				if q != (routes.Quota{}) {
					if err := e.quota(c, id.ClientID, q); err != nil {
						return err
					}
				}
				if plan != nil && (plan.Daily > 0 || plan.Monthly > 0) {
					// The key's own quota, counted apart from its client's.
					if err := e.quota(c, "key:"+id.KeyID, routes.Quota{Daily: plan.Daily, Monthly: plan.Monthly}); err != nil {
						return err
					}
				}
				return next(c)
			}
		}
	}
	if re.CORS != nil {
		methods := []string{rt.Method}
		if rt.Method == http.MethodGet {
			methods = append(methods, http.MethodHead)
		}
		out.CORS = corsMiddleware(*re.CORS, methods)
	}
	return out, nil
}

func (e *Edge) quota(c echo.Context, client string, q routes.Quota) error {
	d := e.quotas.Take(c.Request().Context(), client, quota.Limits{Daily: q.Daily, Monthly: q.Monthly})
	if d.Period == "" {
		return nil
	}
	name := "daily"
	window := 24 * time.Hour
	if d.Period == quota.Month {
		name, window = "monthly", 30*24*time.Hour
	}
	h := c.Response().Header()
	h["Ratelimit-Policy"] = append(h["Ratelimit-Policy"], `"`+name+`";q=`+strconv.FormatInt(d.Limit, 10)+";w="+seconds(window))
	h["Ratelimit"] = append(h["Ratelimit"], `"`+name+`";r=`+strconv.FormatInt(d.Remaining, 10)+";t="+seconds(d.Reset))
	if !d.Allowed {
		e.metrics.refused.WithLabelValues(reasonQuota).Inc()
		return problem.QuotaExceeded.Newf("the %s quota of %d requests is used up; it renews in %s (UTC periods)", name, d.Limit, d.Reset.Round(time.Second)).
			WithHeader("Retry-After", seconds(d.Reset))
	}
	return nil
}

// contentType insists that a request with a body has one of types.
func (e *Edge) contentType(req *http.Request, types []string) error {
	if req.ContentLength == 0 || req.Body == nil || req.Body == http.NoBody {
		return nil
	}
	ct := req.Header.Get("Content-Type")
	// A type without parameters is compared as it is; with parameters it
	// is parsed in full (mime.ParseMediaType allocates a map per call).
	if !strings.Contains(ct, ";") {
		ct = strings.TrimSpace(ct)
		if slices.ContainsFunc(types, func(t string) bool { return strings.EqualFold(t, ct) }) {
			return nil
		}
	} else if mt, _, err := mime.ParseMediaType(ct); err == nil && slices.Contains(types, strings.ToLower(mt)) {
		return nil
	}
	e.metrics.refused.WithLabelValues(reasonMediaType).Inc()
	return problem.UnsupportedMedia.Newf("this route takes bodies of type %s", strings.Join(types, ", "))
}
