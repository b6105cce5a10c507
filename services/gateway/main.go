// Command gateway is Switchyard's public ingress: it authenticates callers,
// accepts asynchronous jobs into the Postgres outbox and reports their
// status. Configuration comes from the environment; run with --help.
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
	"github.com/switchyard/switchyard/services/gateway/internal/app"
)

func main() {
	logger, _ := logging.New("gateway")
	if err := run(context.Background(), logger); err != nil {
		if errors.Is(err, config.ErrHelp) {
			fmt.Println(err)
			return
		}
		logger.Error("gateway stopped", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, logger *slog.Logger) error {
	var cfg app.Config
	if err := config.Load(ctx, &cfg, config.WithLogger(logger)); err != nil {
		return err
	}
	logger.Info("starting gateway", "version", buildinfo.String(), "config", config.String(&cfg))
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return app.Run(ctx, cfg, logger)
}
