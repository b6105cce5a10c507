// Package app wires the gateway: configuration, the job store, the
// authentication slot, the public API and the ops listener.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/jobcatalog"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/ops"
	"github.com/switchyard/switchyard/services/gateway/internal/jobsapi"
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
	DevAuth         bool          `conf:"default:false,env:SWITCHYARD_DEV_AUTH,help:DEVELOPMENT ONLY: trust the X-Switchyard-Client header as the caller"`
	DrainDelay      time.Duration `conf:"default:0s,env:SWITCHYARD_DRAIN_DELAY,help:time between failing /readyz and closing the listener"`
	ShutdownTimeout time.Duration `conf:"default:20s,env:SWITCHYARD_SHUTDOWN_TIMEOUT,help:grace period for in-flight requests"`
}

// Run serves the gateway until ctx ends, then drains.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	catalog, err := jobcatalog.Load(cfg.JobsFile)
	if err != nil {
		return err
	}
	pool, err := database.Open(ctx, database.Config{URL: cfg.DatabaseURL.Value(), ApplicationName: "switchyard-gateway", MaxConns: cfg.DBMaxConns})
	if err != nil {
		return err
	}
	defer pool.Close()

	var authenticator authn.Authenticator = authn.DenyAll{}
	if cfg.DevAuth {
		logger.Warn("DEVELOPMENT authentication is on: the " + authn.HeaderDevClient + " header is trusted without proof; never enable this in production")
		authenticator = authn.DevHeader{}
	}

	e := httpserver.NewEcho(logger)
	api := jobsapi.New(jobstore.New(pool), catalog, cfg.PublicURL)
	api.Register(e, authn.Middleware(authenticator, logger))

	publicL, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Addr, err)
	}
	opsL, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.OpsAddr)
	if err != nil {
		_ = publicL.Close()
		return fmt.Errorf("listening on %s: %w", cfg.OpsAddr, err)
	}
	opsSrv := ops.New(logger, nil)
	opsSrv.AddCheck("postgres", pool.Ping)
	logger.Info("gateway listening", "addr", publicL.Addr().String(), "ops_addr", opsL.Addr().String(), "job_types", catalog.Names())

	return opsSrv.Serve(ctx, opsL, func(ctx context.Context) error {
		srvCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		stop := context.AfterFunc(ctx, func() {
			time.Sleep(cfg.DrainDelay)
			cancel()
		})
		defer stop()
		return httpserver.Serve(srvCtx, httpserver.NewServer(e, logger), publicL, cfg.ShutdownTimeout)
	})
}
