// Command relay forwards Switchyard's transactional outbox from Postgres to
// SQS. Run as many replicas as you like; run with --help for settings.
package main

import (
	"context"
	"log/slog"

	"github.com/switchyard/switchyard/libs/buildinfo"
	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/lifecycle"
	"github.com/switchyard/switchyard/services/relay/internal/app"
)

func main() { lifecycle.Main("relay", run) }

func run(ctx context.Context, logger *slog.Logger) error {
	var cfg app.Config
	if err := config.Load(ctx, &cfg, config.WithLogger(logger)); err != nil {
		return err
	}
	logger.Info("starting relay", "version", buildinfo.String(), "config", config.String(&cfg))
	return app.Run(ctx, cfg, logger)
}
