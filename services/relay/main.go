// Command relay forwards Switchyard's transactional outbox from Postgres to
// SQS. Run as many replicas as you like; run with --help for settings.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/switchyard/switchyard/libs/buildinfo"
	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/logging"
	"github.com/switchyard/switchyard/services/relay/internal/app"
)

func main() {
	logger, _ := logging.New("relay")
	if err := run(context.Background(), logger); err != nil {
		if errors.Is(err, config.ErrHelp) {
			fmt.Println(err)
			return
		}
		logger.Error("relay stopped", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, logger *slog.Logger) error {
	var cfg app.Config
	if err := config.Load(ctx, &cfg, config.WithLogger(logger)); err != nil {
		return err
	}
	logger.Info("starting relay", "version", buildinfo.String(), "config", config.String(&cfg))
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return app.Run(ctx, cfg, logger)
}
