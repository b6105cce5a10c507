// Command demoupstream is a small HTTP service for demos, tests and load
// tests: it receives webhook deliveries, deduplicates them by
// Idempotency-Key, and can be made slow or flaky with knobs. See
// internal/upstream for the endpoints.
package main

import (
	"context"
	"log/slog"

	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/lifecycle"
	"github.com/switchyard/switchyard/services/demoupstream/internal/upstream"
)

func main() { lifecycle.Main("demoupstream", run) }

func run(ctx context.Context, logger *slog.Logger) error {
	var cfg upstream.Config
	if err := config.Load(ctx, &cfg, config.WithLogger(logger)); err != nil {
		return err
	}
	return upstream.Run(ctx, cfg, logger)
}
