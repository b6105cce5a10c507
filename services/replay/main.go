// Command replay drains Switchyard's dead-letter queues into Postgres and
// serves the admin API to inspect, replay, archive and purge dead letters,
// with every call audited. Run with --help for settings.
package main

import (
	"context"
	"log/slog"

	"github.com/switchyard/switchyard/libs/buildinfo"
	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/lifecycle"
	"github.com/switchyard/switchyard/services/replay/internal/app"
)

func main() { lifecycle.Main("replay", run) }

func run(ctx context.Context, logger *slog.Logger) error {
	var cfg app.Config
	if err := config.Load(ctx, &cfg, config.WithLogger(logger)); err != nil {
		return err
	}
	logger.Info("starting replay service", "version", buildinfo.String(), "config", config.String(&cfg))
	return app.Run(ctx, cfg, logger)
}
