// Package server runs the gateway: configuration, the job store, the access
// token verifier, the routes and their policies, the sync routes'
// protections and cache, and the ops listener. It is public so that a team
// can build its own gateway binary with its own sync handlers, as the
// worker's runner does for job handlers:
//
//	handlers := synchandler.NewRegistry()
//	_ = handlers.Register("quote", quoteHandler)
//	err := server.Run(ctx, cfg, handlers, logger)
package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/libs/accesstoken"
	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/jobcatalog"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/oauthclients"
	"github.com/switchyard/switchyard/libs/ops"
	"github.com/switchyard/switchyard/libs/secrets"
	"github.com/switchyard/switchyard/libs/synchandler"
	"github.com/switchyard/switchyard/services/gateway/internal/jobsapi"
	"github.com/switchyard/switchyard/services/gateway/internal/respcache"
	"github.com/switchyard/switchyard/services/gateway/internal/routes"
	"github.com/switchyard/switchyard/services/gateway/internal/syncroute"
)

// Config is the gateway's configuration; every setting names its
// environment variable.
type Config struct {
	Addr            string        `conf:"default::8080,env:SWITCHYARD_GATEWAY_ADDR,help:public listener address"`
	OpsAddr         string        `conf:"default::9090,env:SWITCHYARD_GATEWAY_OPS_ADDR,help:ops listener (/healthz /readyz /metrics)"`
	PublicURL       string        `conf:"env:SWITCHYARD_GATEWAY_PUBLIC_URL,help:external base URL for status links (default: relative links)"`
	DatabaseURL     config.Secret `conf:"required,mask,env:DATABASE_URL,help:Postgres URL or vault:<mount>/<path>#<key>"`
	DBMaxConns      int32         `conf:"default:32,env:SWITCHYARD_GATEWAY_DB_MAX_CONNS,help:Postgres pool size"`
	JobsFile        string        `conf:"default:deployments/config/jobs.yaml,env:SWITCHYARD_JOBS_FILE,help:job types file"`
	RoutesFile      string        `conf:"default:deployments/config/routes.yaml,env:SWITCHYARD_ROUTES_FILE,help:routes and access policies file"`
	CacheMaxBytes   int64         `conf:"default:67108864,env:SWITCHYARD_GATEWAY_CACHE_MAX_BYTES,help:memory the sync routes' response cache may hold (bytes; 0 turns caching off)"`
	Auth            AuthConfig
	DrainDelay      time.Duration `conf:"default:0s,env:SWITCHYARD_DRAIN_DELAY,help:time between failing /readyz and closing the listener"`
	ShutdownTimeout time.Duration `conf:"default:20s,env:SWITCHYARD_SHUTDOWN_TIMEOUT,help:grace period for in-flight requests"`
	// Vault is where secrets come from (VAULT_ADDR and login); empty:
	// none, secrets from the environment (development).
	Vault secrets.Config
}

// AuthConfig says which access tokens the gateway accepts.
type AuthConfig = accesstoken.Settings

// Run serves the gateway until ctx ends, then drains. Sync routes may name
// the Go handlers in handlers.
func Run(ctx context.Context, cfg Config, handlers *synchandler.Registry, logger *slog.Logger) error {
	catalog, err := jobcatalog.Load(cfg.JobsFile)
	if err != nil {
		return config.Invalid(err)
	}
	routeFile, err := routes.Load(cfg.RoutesFile, routes.Known{JobTypes: catalog, Handlers: handlers})
	if err != nil {
		return config.Invalid(err)
	}
	if cfg.CacheMaxBytes < 0 {
		return config.Invalid(fmt.Errorf("SWITCHYARD_GATEWAY_CACHE_MAX_BYTES %d must not be negative", cfg.CacheMaxBytes))
	}
	dbCfg := database.Config{URL: cfg.DatabaseURL.Value(), ApplicationName: "switchyard-gateway", MaxConns: cfg.DBMaxConns}
	if err := dbCfg.UseVault(ctx, cfg.Vault); err != nil {
		return err
	}
	pool, err := database.Open(ctx, dbCfg)
	if err != nil {
		return err
	}
	defer pool.Close()

	clients, err := oauthclients.New(pool)
	if err != nil {
		return err
	}
	disabled := oauthclients.NewDisabledSet(clients, database.NewDialer(dbCfg), cfg.Auth.DisabledPoll, logger)
	verifier, err := accesstoken.New(cfg.Auth.VerifierConfig(disabled.Disabled, prometheus.DefaultRegisterer, logger))
	if err != nil {
		return err
	}

	e := httpserver.NewEcho(logger)
	api := jobsapi.New(jobstore.New(pool), catalog, cfg.PublicURL)
	metrics := syncroute.NewMetrics(prometheus.DefaultRegisterer)
	var cache *respcache.Cache
	if cfg.CacheMaxBytes > 0 {
		cache = respcache.New(cfg.CacheMaxBytes)
		metrics.RegisterCache(cache)
	}
	if err := Mount(e, routeFile, Services{
		API: api, Catalog: catalog,
		Guard: func(p authn.Policy) echo.MiddlewareFunc { return authn.Guard(verifier, logger, p) },
		Sync:  syncroute.Options{Handlers: handlers, Cache: cache, Metrics: metrics, Logger: logger},
	}); err != nil {
		return err
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
	opsSrv := ops.New(logger, nil)
	opsSrv.AddCheck("postgres", pool.Ping)
	opsSrv.AddCheck("issuer_keys", verifier.Ready)
	opsSrv.AddCheck("disabled_clients", disabled.Ready)
	logger.Info("gateway listening", "addr", publicL.Addr().String(), "ops_addr", opsL.Addr().String(),
		"routes", len(routeFile.Routes), "issuer", cfg.Auth.Issuer)

	if vc := cfg.Vault.Client(); vc != nil {
		opsSrv.AddDegradedCheck("vault", vc.Ready)
	}
	return opsSrv.Serve(ctx, opsL, secrets.Alongside(cfg.Vault.Client(), func(ctx context.Context) error {
		go disabled.Run(ctx)
		verifier.Start(ctx)
		srvCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		stop := context.AfterFunc(ctx, func() {
			time.Sleep(cfg.DrainDelay)
			cancel()
		})
		defer stop()
		return httpserver.Serve(srvCtx, httpserver.NewServer(e, logger), publicL, cfg.ShutdownTimeout)
	}))
}

// Services are what the routes file's routes are served by.
type Services struct {
	// API accepts jobs and reports their status.
	API     *jobsapi.API
	Catalog *jobcatalog.Catalog
	// Sync is shared by sync routes; Mount fills Fallback when it is nil.
	Sync syncroute.Options
	// Guard authenticates the caller and applies the route's policy.
	Guard func(authn.Policy) echo.MiddlewareFunc
}

// Mount registers every route of f on e behind the guard with the route's
// policy: its scopes, or deny when it declares none.
func Mount(e *echo.Echo, f *routes.File, s Services) error {
	if s.Sync.Fallback == nil {
		s.Sync.Fallback = func(jobType string) (echo.HandlerFunc, error) {
			jt, ok := s.Catalog.Lookup(jobType)
			if !ok {
				return nil, fmt.Errorf("no job type %q", jobType)
			}
			return s.API.Submit(jt), nil
		}
	}
	declared := map[string]bool{}
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
		guarded := s.Guard(authn.Policy{Scopes: r.Scopes, Deny: r.Denied})(h)
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
