// Package lifecycle is the shared skeleton of Switchyard's service
// binaries: a JSON logger named after the service, OpenTelemetry tracing
// as the OTEL_* environment says (off by default; spans flushed at exit), a
// context cancelled by SIGINT or SIGTERM (services drain when it ends),
// --help printed rather than treated as a failure, and a non-zero exit
// status on error (2 for invalid configuration).
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/logging"
	"github.com/switchyard/switchyard/libs/tracing"
)

// Main runs run for service and exits the process: 0 on success or after
// --help, 2 for invalid configuration (config.ErrInvalid), 1 on other
// errors (logged).
func Main(service string, run func(ctx context.Context, logger *slog.Logger) error) {
	logger, _ := logging.New(service)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	shutdownTracing, err := tracing.Setup(ctx, service, logger)
	if err == nil {
		err = run(ctx, logger)
		stop()
		flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if ferr := shutdownTracing(flushCtx); ferr != nil {
			logger.Warn("flushing spans at exit", "error", ferr)
		}
		cancel()
	} else {
		stop()
		err = config.Invalid(err)
	}
	// Lines still buffered are written before the process exits (errors
	// logged below are written at once).
	logging.Flush()
	switch {
	case err == nil:
	case errors.Is(err, config.ErrHelp):
		fmt.Println(err)
	case errors.Is(err, config.ErrInvalid):
		logger.Error(service+" cannot start: invalid configuration", "error", err)
		os.Exit(2)
	default:
		logger.Error(service+" stopped", "error", err)
		os.Exit(1)
	}
}

// SettleHeap collects what start-up left behind and returns it to the
// operating system. Call it once a service has loaded everything and is
// about to serve: the garbage collector sets its next goal from the heap
// it finds live (twice that, by default), and start-up's transient
// allocations (configuration, schemas, routes) would otherwise let the
// heap, and the resident memory, grow to twice start-up's peak before the
// first collection under load.
func SettleHeap() {
	runtime.GC()
	debug.FreeOSMemory()
}
