// Command bench is Switchyard's benchmark harness (go tool task bench): in
// one invocation it measures references and the platform side by side on
// the same machine, several rounds, and prints the medians as ratios:
//
//   - a bare Echo server vs the gateway's authenticated sync route, each
//     answering with the same trivial handler, and each running the demo
//     text-stats handler (requests per second at saturation);
//   - single-row pgx inserts (and pgbench when installed) vs the async
//     accept route, which writes a job and its outbox message, at
//     saturation and in latency at 10 requests per second;
//   - the accept route under 2x and 5x its saturation rate: what it
//     admits, at what p99, and what it sheds (503 with Retry-After);
//   - a bare SendMessageBatch loop vs the relay;
//   - a bare ReceiveMessage(10) + DeleteMessageBatch loop vs the worker;
//   - SQS's send -> receive -> delete round trip p99 vs the end-to-end p99
//     (accepted -> succeeded) at half the pipeline's saturation rate;
//   - the gateway's resident memory at saturation.
//
// Results go to stdout as a table and to a JSON file. It uses the
// Postgres and SQS servers the environment names (go tool task bench runs
// it under `switchyard dev exec`) and runs the services as processes.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	var cfg config
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds; the table shows each figure's median")
	flag.DurationVar(&cfg.duration, "duration", 8*time.Second, "length of each HTTP and insert measurement")
	flag.IntVar(&cfg.concurrency, "concurrency", 32, "concurrent HTTP clients for the sync routes")
	flag.IntVar(&cfg.acceptConcurrency, "accept-concurrency", 128, "concurrent clients of the accept route and of its insert references (pgbench at most 48: each client is a server connection)")
	flag.IntVar(&cfg.messages, "messages", 300, "messages per SQS measurement (moto slows down with queue depth: keep it small)")
	flag.StringVar(&cfg.out, "json", "", "JSON results file (default loadtest/results/bench-<time>.json)")
	flag.IntVar(&cfg.backlog, "backlog", 100_000, "jobs waiting in the outbox when the backlog section's relay starts")
	flag.IntVar(&cfg.backlogReference, "backlog-reference", 20_000, "jobs waiting in the outbox when the backlog section's reference relay starts (more than it forwards in the window)")
	flag.DurationVar(&cfg.backlogWindow, "backlog-window", 30*time.Second, "how long the backlog section takes the relay's rate")
	flag.IntVar(&cfg.scaleRows, "scale-rows", 5_000_000, "rows written to jobs and to job_events before the scale section's second measurement")
	flag.StringVar(&cfg.profileDir, "profile", "", "directory for the gateway's CPU and allocation profiles of each gateway measurement (go tool pprof)")
	flag.IntVar(&cfg.pin, "pin", 0, "give Postgres, the gateway and the token service the first N CPUs and the load generator the rest (0: share them all); for the overload section, whose generator must not take the servers' CPU")
	sink := flag.String("shed-sink", "", "serve as the overload section's shed sink on this address (the harness starts it)")
	only := flag.String("only", "", "comma-separated sections to measure ("+strings.Join(sections, ", ")+"; default: all)")
	flag.Parse()
	if *sink != "" {
		if err := serveShedSink(*sink); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *only != "" {
		for _, s := range strings.Split(*only, ",") {
			if !slices.Contains(sections, s) {
				fmt.Fprintf(os.Stderr, "bench: -only: unknown section %q (sections: %s)\n", s, strings.Join(sections, ", "))
				os.Exit(2)
			}
			cfg.only = append(cfg.only, s)
		}
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, cfg, logger)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
