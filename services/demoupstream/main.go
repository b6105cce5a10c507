// Command demoupstream is a small HTTP service for demos, tests and load
// tests: it receives webhook deliveries, deduplicates them by
// Idempotency-Key, and can be made slow or flaky with knobs. See
// internal/upstream for the endpoints.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/logging"
	"github.com/switchyard/switchyard/services/demoupstream/internal/upstream"
)

func main() {
	logger, _ := logging.New("demoupstream")
	if err := run(context.Background(), logger); err != nil {
		if errors.Is(err, config.ErrHelp) {
			fmt.Println(err)
			return
		}
		logger.Error("demoupstream stopped", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, logger *slog.Logger) error {
	var cfg upstream.Config
	if err := config.Load(ctx, &cfg, config.WithLogger(logger)); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return upstream.Run(ctx, cfg, logger)
}
