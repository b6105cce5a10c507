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
	"time"
)

type config struct {
	rounds, concurrency, messages int
	duration                      time.Duration
	out                           string
}

// round is what one round measured.
type round struct {
	HelloRPS, SyncRPS         float64
	InsertRPS, PgbenchTPS     float64
	AcceptRPS                 float64
	GatewayRSSBytes           float64
	BareSendMPS, RelayMPS     float64
	BareReceiveMPS, WorkerMPS float64
	SQSRoundTripP99Ms         float64
	EndToEndP99Ms             float64
	EndToEndRate              float64
}

func run(ctx context.Context, cfg config, logger *slog.Logger) error {
	if cfg.rounds < 1 || cfg.concurrency < 1 || cfg.messages < 10 || cfg.duration < time.Second {
		return errors.New("rounds and concurrency must be at least 1, messages at least 10, duration at least 1s")
	}
	p, err := startPlatform(ctx, logger)
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
	token, err := p.token(ctx)
	if err != nil {
		return r, err
	}

	// HTTP: a bare hello world vs the gateway's authenticated sync route
	// (a Go handler, no database).
	hello, stopHello, err := helloServer()
	if err != nil {
		return r, err
	}
	r.HelloRPS, err = saturate(ctx, cfg.concurrency, cfg.duration, func(ctx context.Context, c *http.Client) error {
		return call(ctx, c, http.MethodGet, hello, "", "", http.StatusOK)
	})
	stopHello()
	if err != nil {
		return r, fmt.Errorf("hello world: %w", err)
	}
	r.SyncRPS, err = saturate(ctx, cfg.concurrency, cfg.duration, func(ctx context.Context, c *http.Client) error {
		return call(ctx, c, http.MethodPost, p.gateway+"/v1/text-stats", token, benchText, http.StatusOK)
	})
	if err != nil {
		return r, fmt.Errorf("sync route: %w", err)
	}
	logger.Info("http", "hello_rps", int(r.HelloRPS), "sync_route_rps", int(r.SyncRPS))

	// Postgres: single-row inserts (and pgbench) vs the accept route, with
	// the gateway's memory sampled meanwhile.
	if r.InsertRPS, err = p.insertRate(ctx, cfg.concurrency, cfg.duration); err != nil {
		return r, err
	}
	if tps, ok, err := p.pgbenchRate(ctx, cfg.concurrency, cfg.duration); err != nil {
		return r, err
	} else if ok {
		r.PgbenchTPS = tps
	}
	stopSampling := make(chan struct{})
	peak := rss(p.procs["gateway"].Pid(), stopSampling)
	r.AcceptRPS, err = saturate(ctx, cfg.concurrency, cfg.duration, func(ctx context.Context, c *http.Client) error {
		return call(ctx, c, http.MethodPost, p.gateway+"/v1/jobs/bench", token, benchText, http.StatusAccepted)
	})
	close(stopSampling)
	r.GatewayRSSBytes = float64(peak())
	if err != nil {
		return r, fmt.Errorf("accept route: %w", err)
	}
	logger.Info("postgres", "insert_rps", int(r.InsertRPS), "pgbench_tps", int(r.PgbenchTPS), "accept_rps", int(r.AcceptRPS),
		"gateway_rss_mib", int(r.GatewayRSSBytes/(1<<20)))
	if _, err := p.pool.Exec(ctx, `TRUNCATE jobs, watermill_outbox, job_attempts, job_events, inbox, demo_text_stats, bench_rows`); err != nil {
		return r, fmt.Errorf("emptying the tables: %w", err)
	}

	// SQS: every measurement on fresh queues (moto slows as queues fill).
	prefix := fmt.Sprintf("b%d%d-", time.Now().Unix()%100000, n)
	sendURL, err := p.queue(ctx, prefix+"bare-send")
	if err != nil {
		return r, err
	}
	// The relay's concurrency: 4 loops, 5 batches of 10 each.
	if r.BareSendMPS, err = p.bareSend(ctx, sendURL, cfg.messages, 20); err != nil {
		return r, fmt.Errorf("bare send: %w", err)
	}
	// The relay runs first, idle; the jobs arrive through the gateway far
	// faster than SQS takes them, so from the first submission to an empty
	// outbox is the relay's forwarding time.
	queueEnv := "SWITCHYARD_QUEUE_PREFIX=" + prefix
	if err := p.start(ctx, "relay", queueEnv); err != nil {
		return r, err
	}
	client := newClient(cfg.concurrency)
	start := time.Now()
	if err := submitAll(ctx, client, p.gateway+"/v1/jobs/bench", token, cfg.messages, cfg.concurrency); err != nil {
		return r, err
	}
	if err := p.waitZero(ctx, `SELECT count(*) FROM watermill_outbox WHERE NOT acked`, 5*time.Minute); err != nil {
		return r, fmt.Errorf("relay: %w", err)
	}
	r.RelayMPS = float64(cfg.messages) / time.Since(start).Seconds()
	if r.BareReceiveMPS, err = p.bareReceive(ctx, sendURL, cfg.messages, 8); err != nil {
		return r, fmt.Errorf("bare receive: %w", err)
	}
	// The worker starts on a full queue; its rate is from its first
	// attempt's start to its last job's success, as the jobs record them
	// (its own start-up does not count).
	if err := p.start(ctx, "worker", queueEnv); err != nil {
		return r, err
	}
	if err := p.waitZero(ctx, `SELECT count(*) FROM jobs WHERE status <> 'succeeded'`, 5*time.Minute); err != nil {
		return r, fmt.Errorf("worker: %w", err)
	}
	var done int
	var seconds float64
	if err := p.pool.QueryRow(ctx, `SELECT count(*), EXTRACT(EPOCH FROM max(finished_at) - min(started_at))::float8 FROM jobs`).Scan(&done, &seconds); err != nil {
		return r, err
	}
	r.WorkerMPS = float64(done) / seconds
	logger.Info("sqs", "bare_send_mps", int(r.BareSendMPS), "relay_mps", int(r.RelayMPS),
		"bare_receive_mps", int(r.BareReceiveMPS), "worker_mps", int(r.WorkerMPS))

	// Latency: SQS's own round trip vs a job's, accepted to succeeded, at
	// half the pipeline's saturation rate.
	rttURL, err := p.queue(ctx, prefix+"rtt")
	if err != nil {
		return r, err
	}
	rtts, err := p.roundTrips(ctx, rttURL, 100)
	if err != nil {
		return r, fmt.Errorf("round trips: %w", err)
	}
	r.SQSRoundTripP99Ms = ms(percentile(rtts, 0.99))
	r.EndToEndRate = min(r.RelayMPS, r.WorkerMPS) / 2
	if _, err := p.pool.Exec(ctx, `TRUNCATE jobs, job_attempts, job_events, inbox, demo_text_stats`); err != nil {
		return r, err
	}
	err = paced(ctx, r.EndToEndRate, 10*time.Second, func(ctx context.Context) error {
		return call(ctx, client, http.MethodPost, p.gateway+"/v1/jobs/bench", token, benchText, http.StatusAccepted)
	})
	if err != nil {
		return r, fmt.Errorf("paced submissions: %w", err)
	}
	if err := p.waitZero(ctx, `SELECT count(*) FROM jobs WHERE status <> 'succeeded'`, 5*time.Minute); err != nil {
		return r, fmt.Errorf("end to end: %w", err)
	}
	var e2e []time.Duration
	rows, err := p.pool.Query(ctx, `SELECT EXTRACT(EPOCH FROM finished_at - created_at)::float8 FROM jobs`)
	if err != nil {
		return r, err
	}
	for rows.Next() {
		var seconds float64
		if err := rows.Scan(&seconds); err != nil {
			rows.Close()
			return r, err
		}
		e2e = append(e2e, time.Duration(seconds*float64(time.Second)))
	}
	rows.Close()
	r.EndToEndP99Ms = ms(percentile(e2e, 0.99))
	logger.Info("latency", "sqs_rtt_p99_ms", r.SQSRoundTripP99Ms, "e2e_p99_ms", r.EndToEndP99Ms, "at_rate", r.EndToEndRate, "jobs", len(e2e))
	for _, svc := range []string{"worker", "relay"} {
		if err := p.stopService(svc); err != nil {
			return r, err
		}
	}
	if _, err := p.pool.Exec(ctx, `TRUNCATE jobs, watermill_outbox, job_attempts, job_events, inbox, demo_text_stats`); err != nil {
		return r, err
	}
	return r, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
