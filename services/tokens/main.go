// Command tokens is Switchyard's OAuth2 token service: it issues
// short-lived JWT access tokens to registered clients (client-credentials
// grant) and publishes its signing keys as a JWKS. Configuration comes from
// the environment; run with --help.
package main

import (
	"context"
	"log/slog"

	"github.com/switchyard/switchyard/libs/buildinfo"
	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/lifecycle"
	"github.com/switchyard/switchyard/services/tokens/internal/app"
)

func main() { lifecycle.Main("tokens", run) }

func run(ctx context.Context, logger *slog.Logger) error {
	var cfg app.Config
	if err := config.Load(ctx, &cfg, config.WithLogger(logger)); err != nil {
		return err
	}
	logger.Info("starting token service", "version", buildinfo.String(), "config", config.String(&cfg))
	return app.Run(ctx, cfg, logger)
}
