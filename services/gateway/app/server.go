// Package app runs the gateway (every service's composition root is its
// package app): configuration, the job store, the access
// token verifier, the routes and their policies, the sync routes'
// protections and cache, and the ops listener. It is public so that a team
// can build its own gateway binary with its own sync handlers, as the
// worker's package app does for job handlers:
//
//	handlers := synchandler.NewRegistry()
//	_ = handlers.Register("quote", quoteHandler)
//	err := app.Run(ctx, cfg, handlers, logger)
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/switchyard/switchyard/libs/accesstoken"
	"github.com/switchyard/switchyard/libs/auditlog"
	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/callbacks"
	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/geoip"
	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/jobcatalog"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/lifecycle"
	"github.com/switchyard/switchyard/libs/oauthclients"
	"github.com/switchyard/switchyard/libs/ops"
	"github.com/switchyard/switchyard/libs/problem"
	"github.com/switchyard/switchyard/libs/ratelimit"
	"github.com/switchyard/switchyard/libs/secrets"
	"github.com/switchyard/switchyard/libs/synchandler"
	"github.com/switchyard/switchyard/libs/tlsreload"
	"github.com/switchyard/switchyard/libs/usage"
	"github.com/switchyard/switchyard/services/gateway/internal/edge"
	"github.com/switchyard/switchyard/services/gateway/internal/jobsapi"
	"github.com/switchyard/switchyard/services/gateway/internal/quota"
	"github.com/switchyard/switchyard/services/gateway/internal/respcache"
	"github.com/switchyard/switchyard/services/gateway/internal/routes"
	"github.com/switchyard/switchyard/services/gateway/internal/syncroute"
)

// Config is the gateway's configuration; every setting names its
// environment variable.
type Config struct {
	Addr          string        `conf:"default::8080,env:SWITCHYARD_GATEWAY_ADDR,help:public listener address"`
	OpsAddr       string        `conf:"default::9090,env:SWITCHYARD_GATEWAY_OPS_ADDR,help:ops listener (/healthz /readyz /metrics)"`
	PublicURL     string        `conf:"env:SWITCHYARD_GATEWAY_PUBLIC_URL,help:external base URL for status links (default: relative links)"`
	DatabaseURL   config.Secret `conf:"required,mask,env:DATABASE_URL,help:Postgres URL or vault:<mount>/<path>#<key>"`
	DBMaxConns    int32         `conf:"default:32,env:SWITCHYARD_GATEWAY_DB_MAX_CONNS,help:Postgres pool size"`
	JobsFile      string        `conf:"default:deployments/config/jobs.yaml,env:SWITCHYARD_JOBS_FILE,help:job types file"`
	RoutesFile    string        `conf:"default:deployments/config/routes.yaml,env:SWITCHYARD_ROUTES_FILE,help:routes and access policies file"`
	CacheMaxBytes int64         `conf:"default:67108864,env:SWITCHYARD_GATEWAY_CACHE_MAX_BYTES,help:memory the sync routes' response cache may hold (bytes; 0 turns caching off)"`
	Auth          AuthConfig
	APIKeyPepper  config.Secret `conf:"mask,env:SWITCHYARD_API_KEY_PEPPER,help:secret API keys are hashed with (a vault: reference; at least 16 bytes; shared with 'switchyard api-keys'); required when a route accepts api_key"`
	// Accept sizes the accept routes' shared commits.
	Accept AcceptConfig
	// Edge is what stands in front of the routes (internal/edge).
	Edge edge.Config
	// HTTP is the public listener's TLS, limits and timeouts.
	HTTP            HTTPConfig
	RedisURL        config.Secret `conf:"mask,env:SWITCHYARD_REDIS_URL,help:Redis for rate limits shared by all gateways (redis://[:password@]host:port/db or vault:…; empty: each gateway limits on its own)"`
	DrainDelay      time.Duration `conf:"default:0s,env:SWITCHYARD_DRAIN_DELAY,help:time between failing /readyz and closing the listener"`
	ShutdownTimeout time.Duration `conf:"default:20s,env:SWITCHYARD_SHUTDOWN_TIMEOUT,help:grace period for in-flight requests"`
	UsageFlush      time.Duration `conf:"default:10s,env:SWITCHYARD_USAGE_FLUSH,help:how often request counts per client and route are added to Postgres (GET /admin/v1/usage)"`
	UsageRetention  time.Duration `conf:"default:720h,env:SWITCHYARD_USAGE_RETENTION,help:how long request counts per client / route / minute are kept"`
	OpsToken        config.Secret `conf:"mask,env:SWITCHYARD_OPS_TOKEN,help:bearer token that lets a non-loopback peer change settings on the ops listener (PUT /loglevel) or profile the process (/debug/pprof/); a vault: reference; empty: loopback only"`
	// Vault is where secrets come from (VAULT_ADDR and login); empty:
	// none, secrets from the environment (development).
	Vault secrets.Config
}

// HTTPConfig is the public listener's TLS, limits and timeouts.
type HTTPConfig struct {
	TLSCertFile       string        `conf:"env:SWITCHYARD_GATEWAY_TLS_CERT_FILE,help:PEM certificate chain for HTTPS (with the key file; reloaded when replaced; empty: plain HTTP)"`
	TLSKeyFile        string        `conf:"env:SWITCHYARD_GATEWAY_TLS_KEY_FILE,help:PEM private key of the certificate"`
	TLSReload         time.Duration `conf:"default:5s,env:SWITCHYARD_GATEWAY_TLS_RELOAD,help:how often the certificate files are checked for a replacement"`
	RedirectAddr      string        `conf:"env:SWITCHYARD_GATEWAY_REDIRECT_ADDR,help:plain-HTTP listener that redirects every request to SWITCHYARD_GATEWAY_PUBLIC_URL (https; 308; empty: none)"`
	ReadHeaderTimeout time.Duration `conf:"default:5s,env:SWITCHYARD_GATEWAY_READ_HEADER_TIMEOUT,help:time a client has to send the request line and headers (slow-header attacks)"`
	ReadTimeout       time.Duration `conf:"default:30s,env:SWITCHYARD_GATEWAY_READ_TIMEOUT,help:time a client has to send the whole request"`
	WriteTimeout      time.Duration `conf:"default:60s,env:SWITCHYARD_GATEWAY_WRITE_TIMEOUT,help:time to answer from the end of the headers"`
	IdleTimeout       time.Duration `conf:"default:120s,env:SWITCHYARD_GATEWAY_IDLE_TIMEOUT,help:how long an idle keep-alive connection stays open"`
	MaxHeaderBytes    int           `conf:"default:65536,env:SWITCHYARD_GATEWAY_MAX_HEADER_BYTES,help:largest request line plus headers (431 above)"`
	MaxConns          int           `conf:"default:10000,env:SWITCHYARD_GATEWAY_MAX_CONNS,help:open connections at most; more wait to be accepted"`
	MaxConnsPerAddr   int           `conf:"default:1024,env:SWITCHYARD_GATEWAY_MAX_CONNS_PER_ADDR,help:open connections at most from one TCP peer (IPv6: per SWITCHYARD_EDGE_IPV6_PREFIX); one more is closed at once; trusted proxies are exempt (0: no limit)"`
	MaxInFlight       int           `conf:"default:256,env:SWITCHYARD_GATEWAY_MAX_IN_FLIGHT,help:requests served at once at most; more are answered 503 busy with Retry-After before any other work (0: no limit)"`
	ShedDelay         time.Duration `conf:"default:250ms,env:SWITCHYARD_GATEWAY_SHED_DELAY,help:how long the answer to a request beyond the in-flight limit is held back: a connection sending again at once gets at most one answer per delay (below 1s: the Retry-After; 0: at once)"`
}

// shedRetryAfter is the Retry-After of a request shed at the in-flight
// limit.
const shedRetryAfter = time.Second

// AcceptConfig sizes the accept routes' group commits (jobstore.Batcher)
// and bounds what may wait for them.
type AcceptConfig struct {
	Writers  int           `conf:"default:8,env:SWITCHYARD_GATEWAY_ACCEPT_WRITERS,help:statements accepting jobs that may run at once (each holds a Postgres connection: fewer than the pool size)"`
	MaxBatch int           `conf:"default:64,env:SWITCHYARD_GATEWAY_ACCEPT_MAX_BATCH,help:most submissions one statement and commit carries"`
	MaxQueue int           `conf:"default:1024,env:SWITCHYARD_GATEWAY_ACCEPT_MAX_QUEUE,help:most submissions waiting for a writer; one more is answered 503 with Retry-After at once"`
	MaxWait  time.Duration `conf:"default:250ms,env:SWITCHYARD_GATEWAY_ACCEPT_MAX_WAIT,help:longest a submission waits for a writer; one that waited longer is answered 503 with Retry-After instead of being written late"`
	// KeyWindow is the replay service's janitor's setting too, which
	// releases expired keys in bulk.
	KeyWindow time.Duration `conf:"default:24h,env:SWITCHYARD_IDEMPOTENCY_KEY_TTL,help:how long an Idempotency-Key names its job; reused later it creates a new job"`
	MaxDelay  time.Duration `conf:"default:720h,env:SWITCHYARD_JOBS_MAX_DELAY,help:how far ahead a submission may schedule its job (Switchyard-Delay or Switchyard-Run-At)"`
	// CallbackHostsTTL is how long a client's callback allow-list is
	// cached.
	CallbackHostsTTL time.Duration `conf:"default:5s,env:SWITCHYARD_CALLBACK_HOSTS_CACHE,help:how long the gateway caches a client's callback host allow-list (a change reaches submissions within it)"`
}

// batchConfig is c as the job store's batcher takes it.
func (c AcceptConfig) batchConfig(reg prometheus.Registerer) jobstore.BatchConfig {
	return jobstore.BatchConfig{Writers: c.Writers, MaxBatch: c.MaxBatch, MaxQueue: c.MaxQueue, MaxWait: c.MaxWait, Registerer: reg}
}

// Validate reports settings the gateway cannot run with, naming their
// variables (the routes file, which names the sync handlers, is checked
// by Run).
func (c Config) Validate() error {
	var errs []error
	if _, err := jobcatalog.Load(c.JobsFile); err != nil {
		errs = append(errs, fmt.Errorf("SWITCHYARD_JOBS_FILE: %w", err))
	}
	if err := c.Accept.batchConfig(nil).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("SWITCHYARD_GATEWAY_ACCEPT_*: %w", err))
	} else if c.Accept.Writers >= int(c.DBMaxConns) {
		errs = append(errs, fmt.Errorf("SWITCHYARD_GATEWAY_ACCEPT_WRITERS %d must be fewer than SWITCHYARD_GATEWAY_DB_MAX_CONNS %d: status reads and the edge need connections too",
			c.Accept.Writers, c.DBMaxConns))
	}
	if c.Accept.MaxDelay < time.Second {
		errs = append(errs, fmt.Errorf("SWITCHYARD_JOBS_MAX_DELAY %s must be at least 1s", c.Accept.MaxDelay))
	}
	if c.Accept.KeyWindow < time.Minute {
		errs = append(errs, fmt.Errorf("SWITCHYARD_IDEMPOTENCY_KEY_TTL %s must be at least 1m", c.Accept.KeyWindow))
	}
	if c.CacheMaxBytes < 0 {
		errs = append(errs, fmt.Errorf("SWITCHYARD_GATEWAY_CACHE_MAX_BYTES %d must not be negative", c.CacheMaxBytes))
	}
	if err := c.Edge.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.UsageFlush < 100*time.Millisecond || c.UsageRetention < time.Hour {
		errs = append(errs, fmt.Errorf("SWITCHYARD_USAGE_FLUSH %s must be at least 100ms and SWITCHYARD_USAGE_RETENTION %s at least 1h", c.UsageFlush, c.UsageRetention))
	}
	if err := (tlsreload.Files{CertFile: c.HTTP.TLSCertFile, KeyFile: c.HTTP.TLSKeyFile}).Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.HTTP.MaxConns < 0 || c.HTTP.MaxConnsPerAddr < 0 {
		errs = append(errs, fmt.Errorf("SWITCHYARD_GATEWAY_MAX_CONNS %d and _MAX_CONNS_PER_ADDR %d must not be negative (0: no limit)", c.HTTP.MaxConns, c.HTTP.MaxConnsPerAddr))
	}
	if c.HTTP.MaxInFlight < 0 {
		errs = append(errs, fmt.Errorf("SWITCHYARD_GATEWAY_MAX_IN_FLIGHT %d must not be negative (0: no limit)", c.HTTP.MaxInFlight))
	}
	if c.HTTP.ShedDelay < 0 || c.HTTP.ShedDelay >= shedRetryAfter {
		errs = append(errs, fmt.Errorf("SWITCHYARD_GATEWAY_SHED_DELAY %s must be at least 0 and below the shed answer's Retry-After (%s)", c.HTTP.ShedDelay, shedRetryAfter))
	}
	if c.HTTP.RedirectAddr != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || u.Scheme != "https" || u.Host == "" {
			errs = append(errs, errors.New("SWITCHYARD_GATEWAY_REDIRECT_ADDR redirects to the public URL: set SWITCHYARD_GATEWAY_PUBLIC_URL to its https:// address"))
		}
	}
	return errors.Join(errs...)
}

// AuthConfig says which access tokens the gateway accepts.
type AuthConfig = accesstoken.Settings

// Run serves the gateway until ctx ends, then drains. Sync routes may name
// the Go handlers in handlers.
func Run(ctx context.Context, cfg Config, handlers *synchandler.Registry, logger *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return config.Invalid(err)
	}
	catalog, err := jobcatalog.Load(cfg.JobsFile)
	if err != nil {
		return config.Invalid(err)
	}
	routeFile, err := routes.Load(cfg.RoutesFile, routes.Known{JobTypes: catalog, Handlers: handlers})
	if err != nil {
		return config.Invalid(err)
	}
	if _, err := apiKeyHasher(cfg, routeFile); err != nil {
		return err
	}
	tlsFiles := tlsreload.Files{CertFile: cfg.HTTP.TLSCertFile, KeyFile: cfg.HTTP.TLSKeyFile}
	var cert *tlsreload.Certificate
	if tlsFiles.Enabled() {
		if cert, err = tlsreload.Load("public", tlsFiles, tlsreload.NewMetrics(prometheus.DefaultRegisterer), logger); err != nil {
			return config.Invalid(err)
		}
	}
	var countries *geoip.DB
	if cfg.Edge.CountryDB != "" {
		if countries, err = geoip.Open(cfg.Edge.CountryDB, logger); err != nil {
			return config.Invalid(err)
		}
	}
	dbCfg := database.Config{URL: cfg.DatabaseURL.Value(), ApplicationName: "switchyard-gateway", MaxConns: cfg.DBMaxConns, Registerer: prometheus.DefaultRegisterer}
	pool, dbCfg, err := database.OpenWithVault(ctx, dbCfg, cfg.Vault)
	if err != nil {
		return err
	}
	defer pool.Close()

	clients, err := oauthclients.New(pool)
	if err != nil {
		return err
	}
	disabled := oauthclients.NewDisabledSet(clients, database.NewDialer(dbCfg), cfg.Auth.DisabledPoll, logger)
	verifier, err := cfg.Auth.NewIssuers(disabled.Revoked, prometheus.DefaultRegisterer, logger)
	if err != nil {
		return config.Invalid(err)
	}
	limiter, shared, err := newLimiter(cfg.RedisURL.Value(), logger)
	if err != nil {
		return config.Invalid(err)
	}
	quotas := quota.New(pool, prometheus.DefaultRegisterer, logger)
	audit := auditlog.NewQueue(pool, 256, logger)
	protections, err := edge.New(edge.Options{
		Config: cfg.Edge, File: routeFile.Edge, Limiter: limiter, Quotas: quotas, Countries: countries,
		OnBlock: func(b edge.Block) {
			if !audit.Add(edge.AuditEntry(b)) {
				logger.Warn("audit queue full; block not recorded in the audit log", "key", b.Key)
			}
		},
		Logger: logger, Registerer: prometheus.DefaultRegisterer,
	})
	if err != nil {
		return config.Invalid(err)
	}

	apiKeys, err := newAPIKeys(cfg, routeFile, pool, dbCfg, disabled.Revoked, protections.ClientIP, logger)
	if err != nil {
		return err
	}

	usageRecorder := usage.NewRecorder(pool, cfg.UsageRetention, prometheus.DefaultRegisterer, logger)
	httpMetrics := httpserver.NewHTTPMetrics(prometheus.DefaultRegisterer)
	e := httpserver.NewEcho(logger, httpserver.WithMetrics(httpMetrics), httpserver.WithObserver(usageRecorder))
	e.IPExtractor = protections.ClientIP
	e.Pre(protections.Pre)
	accepts, err := jobstore.NewBatcher(jobstore.New(pool).ExpireKeysAfter(cfg.Accept.KeyWindow), cfg.Accept.batchConfig(prometheus.DefaultRegisterer))
	if err != nil {
		return err
	}
	api := jobsapi.New(accepts, catalog, cfg.PublicURL)
	api.MaxDelay = cfg.Accept.MaxDelay
	api.Callbacks = callbacks.NewHostPolicy(callbacks.NewStore(pool), cfg.Accept.CallbackHostsTTL)
	metrics := syncroute.NewMetrics(prometheus.DefaultRegisterer)
	var cache *respcache.Cache
	if cfg.CacheMaxBytes > 0 {
		cache = respcache.New(cfg.CacheMaxBytes)
		metrics.RegisterCache(cache)
	}
	refusals := auditlog.NewRefusals(pool, auditlog.DefaultRefusalLimits, prometheus.DefaultRegisterer, logger)
	if err := Mount(e.Echo, routeFile, Services{
		API: api, Catalog: catalog,
		Guard: func(p authn.Policy, accepts []string) echo.MiddlewareFunc {
			return authn.Guard(credentialsFor(accepts, verifier, apiKeys), logger, p)
		},
		AdminRefused: func(c echo.Context, id *authn.Identity, status int) {
			clientID := ""
			if id != nil {
				clientID = id.ClientID
			}
			refusals.Refused(c.Request(), httpserver.RequestID(c.Request().Context()), c.RealIP(), clientID, status)
		},
		Sync: syncroute.Options{Handlers: handlers, Cache: cache, Metrics: metrics, Logger: logger,
			PublicHost: publicHost(cfg.PublicURL), Scheme: protections.Scheme},
		Edge: protections,
	}); err != nil {
		return config.Invalid(err)
	}
	for _, r := range routeFile.Routes {
		if r.Denied {
			logger.Warn("route declares no scopes: denied to every caller", "method", r.Method, "path", r.Path, "line", r.Line)
		}
	}

	publicL, opsL, err := httpserver.ListenPublicAndOps(ctx, cfg.Addr, cfg.OpsAddr)
	if err != nil {
		return err
	}
	var redirectL net.Listener
	if cfg.HTTP.RedirectAddr != "" {
		if redirectL, err = (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.HTTP.RedirectAddr); err != nil {
			_ = publicL.Close()
			_ = opsL.Close()
			return fmt.Errorf("listening on %s: %w", cfg.HTTP.RedirectAddr, err)
		}
	}
	publicL = httpserver.LimitConnections(publicL, httpserver.ConnLimits{Total: cfg.HTTP.MaxConns, PerPeer: cfg.HTTP.MaxConnsPerAddr,
		IPv6PrefixBits: cfg.Edge.IPv6Prefix, Exempt: protections.TrustedProxies(), Refused: httpMetrics.ConnectionRefused})
	opsSrv := ops.New(logger, nil)
	// A new version of the token in Vault applies without a restart.
	if err := config.Follow(ctx, cfg.OpsToken, cfg.Vault.Client(), opsSrv.SetAdminToken); err != nil {
		return err
	}
	opsSrv.AddCheck("postgres", pool.Ping)
	opsSrv.AddCheck("issuer_keys", verifier.Ready)
	if verifier.Count() > 1 {
		// One external provider down degrades, it does not stop, the rest.
		opsSrv.AddDegradedCheck("external_issuers", verifier.External)
	}
	opsSrv.AddCheck("disabled_clients", disabled.Ready)
	if apiKeys != nil {
		opsSrv.AddCheck("api_keys", apiKeys.Ready)
	}
	if shared != nil {
		opsSrv.AddDegradedCheck("rate_limits_shared", shared.Ready)
	}
	logger.Info("gateway listening", "addr", publicL.Addr().String(), "ops_addr", opsL.Addr().String(),
		"tls", cert != nil, "routes", len(routeFile.Routes), "issuer", cfg.Auth.Issuer, "external_issuers", verifier.Count()-1, "shared_rate_limits", shared != nil)

	opsSrv.AddVault(cfg.Vault.Client())
	lifecycle.SettleHeap()
	var public http.Handler = e
	if cfg.HTTP.MaxInFlight > 0 {
		admission, err := httpserver.NewAdmission(cfg.HTTP.MaxInFlight, shedRetryAfter, prometheus.DefaultRegisterer, logger, httpserver.WithShedDelay(cfg.HTTP.ShedDelay))
		if err != nil {
			return err
		}
		public = admission.Wrap(e)
	}
	srv := httpserver.NewServer(public, logger)
	srv.ReadHeaderTimeout, srv.ReadTimeout = cfg.HTTP.ReadHeaderTimeout, cfg.HTTP.ReadTimeout
	srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes = cfg.HTTP.WriteTimeout, cfg.HTTP.IdleTimeout, cfg.HTTP.MaxHeaderBytes
	if cert != nil {
		srv.TLSConfig = cert.Config()
	}
	return opsSrv.Serve(ctx, opsL, secrets.Alongside(cfg.Vault.Client(), func(ctx context.Context) error {
		// Background loops: each Run blocks until ctx ends.
		go disabled.Run(ctx)
		go verifier.Run(ctx)
		if cert != nil {
			go cert.Run(ctx, cfg.HTTP.TLSReload)
		}
		if countries != nil {
			go countries.Run(ctx, 30*time.Second)
		}
		if redirectL != nil {
			go serveRedirect(ctx, redirectL, cfg.PublicURL, logger)
		}
		// Jobs are accepted, and quota and usage counts and audit entries
		// written, until the last in-flight request has finished.
		bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
		var background sync.WaitGroup
		background.Go(func() { accepts.Run(bgCtx) })
		background.Go(func() { quotas.Run(bgCtx, cfg.Edge.QuotaFlush) })
		background.Go(func() { audit.Run(bgCtx) })
		background.Go(func() { refusals.Run(bgCtx) })
		background.Go(func() { usageRecorder.Run(bgCtx, cfg.UsageFlush) })
		if apiKeys != nil {
			background.Go(func() { apiKeys.Run(bgCtx) })
		}
		defer func() {
			stopBackground()
			background.Wait()
		}()
		srvCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		stop := context.AfterFunc(ctx, func() {
			time.Sleep(cfg.DrainDelay)
			cancel()
		})
		defer stop()
		return httpserver.Serve(srvCtx, srv, publicL, cfg.ShutdownTimeout)
	}))
}

// newLimiter returns the rate limiter: Redis with a local fallback when
// redisURL is set (shared is then the Failover, for readiness), or local.
func newLimiter(redisURL string, logger *slog.Logger) (limiter ratelimit.Limiter, shared *ratelimit.Failover, err error) {
	if redisURL == "" {
		return ratelimit.NewLocal(), nil, nil
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, nil, fmt.Errorf("SWITCHYARD_REDIS_URL: %w", err)
	}
	// Fail fast: a slow or dead Redis must cost a request little; the
	// limiter then decides locally until Redis answers again.
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = 250*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
	opts.MaxRetries = -1
	f := ratelimit.NewFailover(ratelimit.FailoverConfig{
		Primary: ratelimit.NewRedis(redis.NewClient(opts), "switchyard:rl:"), Fallback: ratelimit.NewLocal(),
		Logger: logger, Registerer: prometheus.DefaultRegisterer,
	})
	return f, f, nil
}

// serveRedirect answers every plain-HTTP request with a 308 to the same
// path and query under the public URL (https; never a host the request
// names, so the listener cannot be used as an open redirect).
func serveRedirect(ctx context.Context, l net.Listener, publicURL string, logger *slog.Logger) {
	base := strings.TrimSuffix(publicURL, "/")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", base+r.URL.RequestURI())
		w.WriteHeader(http.StatusPermanentRedirect)
	})
	srv := httpserver.NewServer(h, logger)
	if err := httpserver.Serve(ctx, srv, l, 5*time.Second); err != nil {
		logger.Error("redirect listener stopped", "error", err)
	}
}

// Services are what the routes file's routes are served by.
type Services struct {
	// API accepts jobs and reports their status.
	API     *jobsapi.API
	Catalog *jobcatalog.Catalog
	// Sync is shared by sync routes; Mount fills Fallback when it is nil.
	Sync syncroute.Options
	// Guard authenticates the caller with one of the credentials the
	// route accepts (authn.CredentialBearer, authn.CredentialAPIKey) and
	// applies the route's policy.
	Guard func(p authn.Policy, accepts []string) echo.MiddlewareFunc
	// Edge adds each route's own protections (nil: none).
	Edge *edge.Edge
	// AdminRefused, when set, is told of every refused call (401, 403) to
	// a route under /admin/, to audit it.
	AdminRefused func(c echo.Context, id *authn.Identity, status int)
}

// Mount registers every route of f on e behind the guard with the route's
// policy: its scopes, or deny when it declares none.
func Mount(e *echo.Echo, f *routes.File, s Services) error {
	if s.Sync.Fallback == nil {
		s.Sync.Fallback = fallbackSubmit(f, s)
	}
	declared := map[string]bool{}
	preflight := map[string]bool{}
	for _, r := range f.Routes {
		declared[r.Method+" "+r.EchoPath()] = true
	}
	for _, r := range f.Routes {
		methods := []string{r.Method}
		var h echo.HandlerFunc
		switch r.Mode {
		case routes.ModeAsync:
			jt, ok := s.Catalog.Lookup(r.JobType)
			if !ok {
				return fmt.Errorf("route %s %s: no job type %q", r.Method, r.Path, r.JobType)
			}
			h = s.API.Submit(jt)
		case routes.ModeJobStatus:
			h = s.API.Status(r.Params()[0])
		case routes.ModeJobList:
			h = s.API.List()
		case routes.ModeJobCancel:
			h = s.API.Cancel(r.Params()[0])
		case routes.ModeSync:
			sr, err := syncroute.New(r, s.Sync)
			if err != nil {
				return err
			}
			h = sr.Handle
			methods = nil
			for _, m := range sr.Methods() {
				// An implicit HEAD yields to a HEAD route the file declares.
				if m == r.Method || !declared[m+" "+r.EchoPath()] {
					methods = append(methods, m)
				}
			}
		default:
			return fmt.Errorf("route %s %s: mode %q cannot be served", r.Method, r.Path, r.Mode)
		}
		// Wrapped once here: Echo would apply route middleware anew on
		// every request.
		var protect edge.Route
		if s.Edge != nil {
			var err error
			if protect, err = s.Edge.ForRoute(r); err != nil {
				return err
			}
		}
		if protect.Inner != nil {
			h = protect.Inner(h)
		}
		policy := authn.Policy{Scopes: r.Scopes, Deny: r.Denied}
		if strings.HasPrefix(r.Path, "/admin/") {
			policy.OnRefused = s.AdminRefused
		}
		guarded := s.Guard(policy, r.Auth)(h)
		if protect.Outer != nil {
			guarded = protect.Outer(guarded)
		}
		if protect.CORS != nil {
			guarded = protect.CORS(guarded)
			// Preflights carry no credentials: answered by CORS alone. The
			// first route of a path with CORS answers them.
			if !preflight[r.EchoPath()] {
				preflight[r.EchoPath()] = true
				e.OPTIONS(r.EchoPath(), protect.CORS(func(c echo.Context) error { return c.NoContent(http.StatusNoContent) }))
			}
		}
		for _, m := range methods {
			e.Add(m, r.EchoPath(), guarded)
		}
	}
	// A submission to a job type no route offers is a 404 naming the
	// problem, rather than a 405 from the status route's GET /v1/jobs/{id}.
	// (Async routes take no path parameters, so this never shadows one.)
	e.POST("/v1/jobs/:type", jobsapi.UnknownJobType)
	return nil
}

// fallbackSubmit returns what accepts a sync route's request as a job
// while its breaker is open. The caller passed the sync route's scopes;
// the job is accepted only if it also holds the scopes of one of the job
// type's own submit routes, so that a fallback never lets anyone create a
// job they could not submit. A job type without a submit route cannot be
// a fallback.
func fallbackSubmit(f *routes.File, s Services) func(jobType string) (echo.HandlerFunc, error) {
	submitScopes := map[string][][]string{}
	for _, r := range f.Routes {
		if r.Mode == routes.ModeAsync && !r.Denied {
			submitScopes[r.JobType] = append(submitScopes[r.JobType], r.Scopes)
		}
	}
	return func(jobType string) (echo.HandlerFunc, error) {
		jt, ok := s.Catalog.Lookup(jobType)
		if !ok {
			return nil, fmt.Errorf("no job type %q", jobType)
		}
		options := submitScopes[jobType]
		if len(options) == 0 {
			return nil, fmt.Errorf("job type %q has no async route: a fallback needs the scopes of the job type's own submit route", jobType)
		}
		needed := make([]string, len(options))
		for i, o := range options {
			needed[i] = strings.Join(o, " ")
		}
		submit := s.API.Submit(jt)
		return func(c echo.Context) error {
			id, _ := authn.FromContext(c.Request().Context())
			for _, scopes := range options {
				if id.HasScopes(scopes) {
					return submit(c)
				}
			}
			return problem.InsufficientScope.Newf("accepting this request as a %s job requires the scopes of its submit route: %s",
				jobType, strings.Join(needed, " or ")).
				WithHeader("WWW-Authenticate", `Bearer realm="`+authn.Realm+`", error="insufficient_scope", scope="`+needed[0]+`"`)
		}, nil
	}
}

// publicHost is the host of the gateway's public URL ("" when none is
// configured).
func publicHost(publicURL string) string {
	u, err := url.Parse(publicURL)
	if err != nil {
		return ""
	}
	return u.Host
}
