// Command worker processes Switchyard's jobs from SQS with the handlers
// registered here (the demo text-stats handler) and the built-in HTTP
// target. Run with --help for settings.
package main

import (
	"context"
	"log/slog"

	"github.com/switchyard/switchyard/libs/buildinfo"
	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/jobhandler"
	"github.com/switchyard/switchyard/libs/lifecycle"
	"github.com/switchyard/switchyard/services/worker/app"
	"github.com/switchyard/switchyard/services/worker/demo"
)

func main() { lifecycle.Main("worker", run) }

func run(ctx context.Context, logger *slog.Logger) error {
	var cfg app.Config
	if err := config.Load(ctx, &cfg, config.WithLogger(logger)); err != nil {
		return err
	}
	registry := jobhandler.NewRegistry()
	if err := registry.Register("text-stats", demo.TextStats()); err != nil {
		return err
	}
	logger.Info("starting worker", "version", buildinfo.String(), "config", config.String(&cfg), "handlers", registry.Names())
	return app.Run(ctx, cfg, registry, logger)
}
