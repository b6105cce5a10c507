// Command faultworker is the worker the end-to-end tests run to exercise
// failure handling: the stock worker (services/worker/app) with the
// demo text-stats handler and handlers that fail on purpose, registered
// the way a team registers its own. It is a test fixture, never shipped.
//
//   - always-fails: every attempt fails with a retryable error whose text
//     varies (job id, timings), so retries run out and the fingerprint must
//     group them;
//   - crash: kills its own process (SIGKILL) mid-handler, every time: a
//     crash loop that only SQS's RedrivePolicy ends;
//   - breakable: payload {"text", "group"}; fails permanently with one of
//     two causes per group until the group is listed in
//     SWITCHYARD_E2E_FIXED_GROUPS (comma-separated): "the fix is deployed".
//     Fixed, it runs text-stats (an effect recorded once per job);
//   - slow: text-stats after a second's work, so that stopping a worker
//     finds handlers in flight.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/jobhandler"
	"github.com/switchyard/switchyard/libs/lifecycle"
	"github.com/switchyard/switchyard/services/worker/app"
	"github.com/switchyard/switchyard/services/worker/demo"
)

func main() { lifecycle.Main("faultworker", run) }

func run(ctx context.Context, logger *slog.Logger) error {
	var cfg app.Config
	if err := config.Load(ctx, &cfg, config.WithLogger(logger)); err != nil {
		return err
	}
	fixed := strings.Split(os.Getenv("SWITCHYARD_E2E_FIXED_GROUPS"), ",")
	textStats := demo.TextStats()
	handlers := map[string]jobhandler.Handler{
		"text-stats": textStats,
		"always-fails": jobhandler.Func(func(_ context.Context, t jobhandler.Task) (json.RawMessage, error) {
			return nil, fmt.Errorf("inventory service timed out after %dms for job %s", 1000+t.Attempt*137, t.JobID)
		}),
		"slow": jobhandler.Func(func(ctx context.Context, t jobhandler.Task) (json.RawMessage, error) {
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return textStats.Handle(ctx, t)
		}),
		"crash": jobhandler.Func(func(context.Context, jobhandler.Task) (json.RawMessage, error) {
			logger.Warn("crash handler: killing this worker")
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}),
		"breakable": jobhandler.Func(func(ctx context.Context, t jobhandler.Task) (json.RawMessage, error) {
			var in struct {
				Group string `json:"group"`
			}
			if err := json.Unmarshal(t.Payload, &in); err != nil {
				return nil, jobhandler.Permanent(fmt.Errorf("decoding payload: %w", err))
			}
			switch {
			case slices.Contains(fixed, in.Group):
				return textStats.Handle(ctx, t)
			case in.Group == "a":
				return nil, jobhandler.Permanent(fmt.Errorf("catalogue rejected sku %q: unknown sku (job %s)", "ABC-"+t.JobID[:6], t.JobID))
			default:
				return nil, jobhandler.Permanent(fmt.Errorf("pricing rule %d is missing for region eu-west-1", len(t.JobID)+int(t.JobID[0])))
			}
		}),
	}
	registry := jobhandler.NewRegistry()
	for name, h := range handlers {
		if err := registry.Register(name, h); err != nil {
			return err
		}
	}
	logger.Info("starting fault worker", "handlers", registry.Names(), "fixed_groups", fixed)
	return app.Run(ctx, cfg, registry, logger)
}
