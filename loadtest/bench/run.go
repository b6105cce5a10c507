package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

type config struct {
	rounds, concurrency, messages int
	acceptConcurrency             int
	scaleRows                     int
	// backlog is how many jobs wait in the outbox when the backlog
	// section's relay starts; backlogWindow how long its rate is taken.
	backlog       int
	backlogWindow time.Duration
	// backlogReference is how many jobs wait in the outbox when the
	// backlog section's reference relay starts.
	backlogReference int
	duration         time.Duration
	out              string
	// profileDir, when set, receives the gateway's CPU and allocation
	// profiles of each gateway measurement.
	profileDir string
	// only lists the sections to run (http, accept, overload, sqs); empty:
	// all.
	only []string
	// pin, when above 0, gives the servers under test (Postgres, gateway,
	// token service) the first pin CPUs and this process the rest.
	pin int
}

// sections are the parts of a round, in order.
var sections = []string{"http", "accept", "overload", "sqs", "backlog", "scale"}

// runs reports whether section is measured.
func (c config) runs(section string) bool {
	return len(c.only) == 0 || slices.Contains(c.only, section)
}

// lowLoad is one call's latency at 10 per second.
type lowLoad struct {
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
}

// round is what one round measured.
type round struct {
	// HelloRPS is a bare Echo server's hello world, GatewayHelloRPS the
	// gateway's authenticated route to a handler that answers the same.
	HelloRPS, GatewayHelloRPS float64
	// BareTextStatsRPS is a bare Echo server running the demo text-stats
	// handler, SyncRPS the gateway's authenticated route to it.
	BareTextStatsRPS, SyncRPS float64
	// AcceptAt10 is the accept route's latency at 10 req/s, and the
	// others its references' at the same rate in the same window (see
	// lowLoadLatencies): a single-row insert, the accept's statement
	// alone, the same through a group-commit batcher, a bare Echo hello
	// and the gateway's authenticated hello.
	AcceptAt10, InsertAt10, StatementAt10, BatchedAt10, BareHelloAt10, GatewayHelloAt10 lowLoad
	// SaturatedP99Ms and SaturatedServerP99Ms are the accept route's p99
	// at saturation (acceptConcurrency closed-loop clients), as the client
	// and as the gateway's access log timed it: what admitted requests
	// under overload are compared with.
	SaturatedP99Ms, SaturatedServerP99Ms float64
	Overload2x, Overload5x               overload
	// Beside2x and Beside5x are the overloads' controls: the accept route
	// at saturation while the excess of 2x and 5x went to the shed sink.
	Beside2x, Beside5x    besideExcess
	InsertRPS, PgbenchTPS float64
	AcceptRPS             float64
	GatewayRSSBytes       float64
	// AcceptShed counts the accepts answered 503 with Retry-After during
	// the saturation measurement (their clients waited as told).
	AcceptShed int64
	// BareSendMPS is the SQS server's send ceiling as measured: the better
	// of a bare SendMessageBatch(10) loop from 20 and from 40 goroutines
	// (BareSend20MPS, BareSend40MPS; the relay's 8 loops make up to 40
	// calls at once).
	BareSendMPS, BareSend20MPS, BareSend40MPS float64
	RelayMPS                                  float64
	// BacklogRelayMPS is the relay's rate with a backlog of cfg.backlog
	// rows in the outbox, BacklogReferenceMPS with cfg.backlogReference,
	// over the same window in the same SQS regime.
	BacklogRelayMPS, BacklogReferenceMPS float64
	// ArrivingRelayMPS is the relay's rate timed from the first of the
	// jobs' submissions, RelayMPS from when they all wait in the outbox.
	ArrivingRelayMPS          float64
	BareReceiveMPS, WorkerMPS float64
	SQSRoundTripP99Ms         float64
	EndToEndP99Ms             float64
	EndToEndRate              float64
	// The accept and status routes on an empty database and with the
	// scale section's rows in jobs and job_events.
	EmptyAcceptRPS, FullAcceptRPS float64
	EmptyStatusRPS, FullStatusRPS float64
}

func run(ctx context.Context, cfg config, logger *slog.Logger) error {
	if cfg.rounds < 1 || cfg.concurrency < 1 || cfg.acceptConcurrency < 1 || cfg.messages < 10 || cfg.duration < time.Second {
		return errors.New("rounds and concurrency must be at least 1, messages at least 10, duration at least 1s")
	}
	var pins *pinning
	if cfg.pin > 0 {
		var err error
		if pins, err = newPinning(cfg.pin); err != nil {
			return err
		}
		if err := pins.pinSelf(); err != nil {
			return err
		}
		logger.Info("CPUs split", "servers", pins.servers.Count(), "generator", pins.generator.Count())
	}
	p, err := startPlatform(ctx, logger, pins)
	if err != nil {
		return err
	}
	defer func() {
		if err := p.stop(); err != nil {
			logger.Warn("stopping the platform", "error", err)
		}
	}()
	var rounds []round
	for i := range cfg.rounds {
		logger.Info("round", "n", i+1, "of", cfg.rounds)
		r, err := p.round(ctx, cfg, i, logger)
		if err != nil {
			return fmt.Errorf("round %d: %w", i+1, err)
		}
		rounds = append(rounds, r)
	}
	rep := newReport(cfg, rounds)
	rep.print(os.Stdout)
	out := cfg.out
	if out == "" {
		root, err := os.Getwd()
		if err != nil {
			return err
		}
		out = filepath.Join(root, "loadtest", "results", "bench-"+time.Now().UTC().Format("20060102T150405Z")+".json")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o750); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, raw, 0o600); err != nil {
		return err
	}
	fmt.Printf("\nresults: %s\n", out)
	return nil
}

func (p *platform) round(ctx context.Context, cfg config, n int, logger *slog.Logger) (round, error) {
	var r round
	if n > 0 {
		// Every round measures a gateway as it starts: what an earlier
		// round left (the overload's thousands of connections, the
		// backlog's jobs) is not this round's.
		if err := p.stopService("gateway"); err != nil {
			return r, err
		}
		if err := p.start(ctx, "gateway"); err != nil {
			return r, err
		}
	}
	token, err := p.token(ctx)
	if err != nil {
		return r, err
	}
	if cfg.runs("http") {
		if err := p.httpRound(ctx, cfg, token, &r, logger); err != nil {
			return r, err
		}
	}
	if cfg.runs("accept") || cfg.runs("overload") {
		if err := p.acceptRound(ctx, cfg, token, &r, logger); err != nil {
			return r, err
		}
	}
	if cfg.runs("overload") {
		for _, f := range []struct {
			factor float64
			into   *overload
			beside *besideExcess
		}{{2, &r.Overload2x, &r.Beside2x}, {5, &r.Overload5x, &r.Beside5x}} {
			// The control first, then the overload it is compared with.
			b, err := p.acceptBesideExcess(ctx, cfg, token, (f.factor-1)*r.AcceptRPS)
			if err != nil {
				return r, fmt.Errorf("control of the overload at %gx: %w", f.factor, err)
			}
			*f.beside = b
			logger.Info("accept beside the excess", "factor", f.factor, "excess_rps", int(b.ExcessRPS), "excess_shed", b.ExcessShed,
				"accept_rps", int(b.AcceptRPS), "p99_ms", b.P99Ms, "server_p99_ms", b.ServerP99Ms)
			if _, err := p.pool.Exec(ctx, `TRUNCATE jobs, watermill_outbox`); err != nil {
				return r, fmt.Errorf("emptying the tables: %w", err)
			}
			var o overload
			name := fmt.Sprintf("gateway-overload-%gx", f.factor)
			err = p.profiled(ctx, cfg, name, func() error {
				var err error
				o, err = p.overload(ctx, token, f.factor*r.AcceptRPS, cfg.duration)
				return err
			})
			if err == nil {
				err = p.saveMetrics(ctx, cfg, name)
			}
			if err != nil {
				return r, fmt.Errorf("overload at %gx: %w", f.factor, err)
			}
			*f.into = o
			logger.Info("overload", "factor", f.factor, "offered_rps", int(o.OfferedRPS), "admitted_rps", int(o.AdmittedRPS),
				"shed_share", o.ShedShare, "admitted_p99_ms", o.AdmittedP99Ms, "other", o.Other, "other_kinds", o.OtherKinds, "unsent", o.Unsent)
			if _, err := p.pool.Exec(ctx, `TRUNCATE jobs, watermill_outbox`); err != nil {
				return r, fmt.Errorf("emptying the tables: %w", err)
			}
		}
	}
	if cfg.runs("scale") {
		if err := p.scaleRound(ctx, cfg, token, &r, logger); err != nil {
			return r, fmt.Errorf("scale: %w", err)
		}
	}
	if cfg.runs("sqs") {
		if err := p.sqsRound(ctx, cfg, token, n, &r, logger); err != nil {
			return r, err
		}
	}
	if cfg.runs("backlog") {
		if err := p.backlogRound(ctx, cfg, token, &r, logger); err != nil {
			return r, fmt.Errorf("backlog: %w", err)
		}
	}
	return r, nil
}

// relayRun starts the relay on queues named with prefix, resolves its
// queue's URL with a first job (one SQS call per process and queue, as
// the bare loop's queue is resolved before its timing), and returns its
// rate forwarding n jobs submitted from concurrency clients: with paused,
// from the moment all n wait in the outbox; without, from the first
// submission. The relay keeps running.
func (p *platform) relayRun(ctx context.Context, client *http.Client, token string, n, concurrency int, prefix string, paused bool) (float64, error) {
	const unsent = `SELECT count(*) FROM watermill_outbox WHERE NOT acked`
	if err := p.start(ctx, "relay", "SWITCHYARD_QUEUE_PREFIX="+prefix); err != nil {
		return 0, err
	}
	relay := p.procs["relay"]
	if _, err := submitAll(ctx, client, p.gateway+"/v1/jobs/bench", token, 1, 1); err != nil {
		return 0, err
	}
	if err := p.waitZero(ctx, unsent, time.Minute); err != nil {
		return 0, fmt.Errorf("relay warm-up: %w", err)
	}
	if paused {
		if err := relay.Signal(syscall.SIGSTOP); err != nil {
			return 0, fmt.Errorf("pausing the relay: %w", err)
		}
	}
	start := time.Now()
	if _, err := submitAll(ctx, client, p.gateway+"/v1/jobs/bench", token, n, concurrency); err != nil {
		if paused {
			err = errors.Join(err, relay.Signal(syscall.SIGCONT))
		}
		return 0, err
	}
	if paused {
		start = time.Now()
		if err := relay.Signal(syscall.SIGCONT); err != nil {
			return 0, fmt.Errorf("resuming the relay: %w", err)
		}
	}
	if err := p.waitZero(ctx, unsent, 5*time.Minute); err != nil {
		return 0, fmt.Errorf("relay: %w", err)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// sqsRound measures the relay, the worker and the end-to-end latency
// against the bare SQS loops.
func (p *platform) sqsRound(ctx context.Context, cfg config, token string, n int, r *round, logger *slog.Logger) error {
	var err error
	client := newClient(cfg.concurrency)

	// SQS: every measurement on fresh queues (moto slows as queues fill).
	prefix := fmt.Sprintf("b%d%d-", time.Now().Unix()%100000, n)
	sendURL, err := p.queue(ctx, prefix+"bare-send")
	if err != nil {
		return err
	}
	if r.BareSend20MPS, err = p.bareSend(ctx, sendURL, cfg.messages, 20); err != nil {
		return fmt.Errorf("bare send: %w", err)
	}
	// Up to the relay's own concurrency (8 loops, 5 calls of 10 each), on
	// a queue of its own: the server's ceiling is the better of the two.
	send40URL, err := p.queue(ctx, prefix+"bare-send40")
	if err != nil {
		return err
	}
	if r.BareSend40MPS, err = p.bareSend(ctx, send40URL, cfg.messages, 40); err != nil {
		return fmt.Errorf("bare send: %w", err)
	}
	r.BareSendMPS = max(r.BareSend20MPS, r.BareSend40MPS)
	// The relay is timed twice, each time on a fresh queue. First with
	// the jobs arriving through the gateway during its timing: from the
	// first submission to an empty outbox (accept time, and the partial
	// batches of claims made while jobs still arrive, included).
	if r.ArrivingRelayMPS, err = p.relayRun(ctx, client, token, cfg.messages, cfg.concurrency, prefix+"a", false); err != nil {
		return err
	}
	if _, err := p.pool.Exec(ctx, `TRUNCATE jobs, job_attempts, job_events`); err != nil {
		return err
	}
	if err := p.stopService("relay"); err != nil {
		return err
	}
	// Then as the bare loop is timed: from the moment every message is
	// ready to be sent. The relay is paused (SIGSTOP) while the jobs are
	// accepted and timed from its SIGCONT to an empty outbox; their
	// NOTIFYs wait on its LISTEN connection, so it wakes as it would to a
	// burst that arrived at once. The worker then reads this queue.
	queueEnv := "SWITCHYARD_QUEUE_PREFIX=" + prefix
	if r.RelayMPS, err = p.relayRun(ctx, client, token, cfg.messages, cfg.concurrency, prefix, true); err != nil {
		return err
	}
	if r.BareReceiveMPS, err = p.bareReceive(ctx, sendURL, cfg.messages, 8); err != nil {
		return fmt.Errorf("bare receive: %w", err)
	}
	// The worker starts on a full queue; its rate is from its first
	// attempt's start to its last job's success, as the jobs record them
	// (its own start-up does not count).
	if err := p.start(ctx, "worker", queueEnv); err != nil {
		return err
	}
	if err := p.waitZero(ctx, `SELECT count(*) FROM jobs WHERE status <> 'succeeded'`, 5*time.Minute); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	var done int
	var seconds float64
	if err := p.pool.QueryRow(ctx, `SELECT count(*), EXTRACT(EPOCH FROM max(finished_at) - min(started_at))::float8 FROM jobs`).Scan(&done, &seconds); err != nil {
		return err
	}
	r.WorkerMPS = float64(done) / seconds
	logger.Info("sqs", "bare_send_20_mps", int(r.BareSend20MPS), "bare_send_40_mps", int(r.BareSend40MPS), "relay_mps", int(r.RelayMPS),
		"bare_receive_mps", int(r.BareReceiveMPS), "worker_mps", int(r.WorkerMPS))

	// Latency: SQS's own round trip vs a job's, accepted to succeeded, at
	// half the pipeline's saturation rate.
	rttURL, err := p.queue(ctx, prefix+"rtt")
	if err != nil {
		return err
	}
	rtts, err := p.roundTrips(ctx, rttURL, 100)
	if err != nil {
		return fmt.Errorf("round trips: %w", err)
	}
	r.SQSRoundTripP99Ms = ms(percentile(rtts, 0.99))
	r.EndToEndRate = min(r.RelayMPS, r.WorkerMPS) / 2
	if _, err := p.pool.Exec(ctx, `TRUNCATE jobs, job_attempts, job_events, inbox, demo_text_stats`); err != nil {
		return err
	}
	err = paced(ctx, r.EndToEndRate, 10*time.Second, func(ctx context.Context) error {
		return call(ctx, client, http.MethodPost, p.gateway+"/v1/jobs/bench", token, benchText, http.StatusAccepted)
	})
	if err != nil {
		return fmt.Errorf("paced submissions: %w", err)
	}
	if err := p.waitZero(ctx, `SELECT count(*) FROM jobs WHERE status <> 'succeeded'`, 5*time.Minute); err != nil {
		return fmt.Errorf("end to end: %w", err)
	}
	var e2e []time.Duration
	rows, err := p.pool.Query(ctx, `SELECT EXTRACT(EPOCH FROM finished_at - created_at)::float8 FROM jobs`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var seconds float64
		if err := rows.Scan(&seconds); err != nil {
			rows.Close()
			return err
		}
		e2e = append(e2e, time.Duration(seconds*float64(time.Second)))
	}
	rows.Close()
	r.EndToEndP99Ms = ms(percentile(e2e, 0.99))
	logger.Info("latency", "sqs_rtt_p99_ms", r.SQSRoundTripP99Ms, "e2e_p99_ms", r.EndToEndP99Ms, "at_rate", r.EndToEndRate, "jobs", len(e2e))
	for _, svc := range []string{"worker", "relay"} {
		if err := p.stopService(svc); err != nil {
			return err
		}
	}
	if _, err := p.pool.Exec(ctx, `TRUNCATE jobs, watermill_outbox, job_attempts, job_events, inbox, demo_text_stats`); err != nil {
		return err
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
