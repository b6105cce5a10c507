// Command gateway is Switchyard's public ingress: it authenticates callers,
// answers sync routes from Go handlers and HTTP upstreams, accepts
// asynchronous jobs into the Postgres outbox and reports their status. Configuration comes from the environment; run with --help.
package main

import (
	"context"
	"log/slog"

	"github.com/switchyard/switchyard/libs/buildinfo"
	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/lifecycle"
	"github.com/switchyard/switchyard/libs/synchandler"
	"github.com/switchyard/switchyard/services/gateway/app"
	"github.com/switchyard/switchyard/services/gateway/demo"
)

func main() { lifecycle.Main("gateway", run) }

func run(ctx context.Context, logger *slog.Logger) error {
	var cfg app.Config
	if err := config.Load(ctx, &cfg, config.WithLogger(logger)); err != nil {
		return err
	}
	handlers := synchandler.NewRegistry()
	if err := demo.Register(handlers); err != nil {
		return err
	}
	logger.Info("starting gateway", "version", buildinfo.String(), "config", config.String(&cfg), "sync_handlers", handlers.Names())
	return app.Run(ctx, cfg, handlers, logger)
}
