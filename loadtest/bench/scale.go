package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"
)

// scaleRound measures the accept and status routes on an empty database,
// then again with cfg.scaleRows rows already in jobs and in job_events
// (another client's, finished, spread over 30 days), and leaves the
// tables empty.
func (p *platform) scaleRound(ctx context.Context, cfg config, token string, r *round, logger *slog.Logger) error {
	measure := func() (accept, status float64, err error) {
		ids, err := submitAll(ctx, newClient(16), p.gateway+"/v1/jobs/bench", token, 1000, 16)
		if err != nil {
			return 0, 0, err
		}
		accept, err = saturate(ctx, cfg.acceptConcurrency, cfg.duration, func(ctx context.Context, c *http.Client) error {
			return call(ctx, c, http.MethodPost, p.gateway+"/v1/jobs/bench", token, benchText, http.StatusAccepted)
		})
		if err != nil {
			return 0, 0, fmt.Errorf("accept: %w", err)
		}
		status, err = saturate(ctx, cfg.concurrency, cfg.duration, func(ctx context.Context, c *http.Client) error {
			return call(ctx, c, http.MethodGet, p.gateway+"/v1/jobs/"+ids[rand.IntN(len(ids))], token, "", http.StatusOK) //nolint:gosec // picking a job, not a secret
		})
		if err != nil {
			return 0, 0, fmt.Errorf("status: %w", err)
		}
		return accept, status, nil
	}
	// Each measurement starts from a checkpoint, so that neither pays
	// for writing back what came before it (the fill's gigabytes above
	// all).
	empty := func() error {
		if _, err := p.pool.Exec(ctx, `TRUNCATE jobs, watermill_outbox, job_attempts, job_events, inbox, demo_text_stats`); err != nil {
			return err
		}
		return p.settle(ctx, "")
	}
	if err := empty(); err != nil {
		return err
	}
	var err error
	if r.EmptyAcceptRPS, r.EmptyStatusRPS, err = measure(); err != nil {
		return fmt.Errorf("on an empty database: %w", err)
	}
	if err := empty(); err != nil {
		return err
	}
	start := time.Now()
	if err := p.fill(ctx, cfg.scaleRows); err != nil {
		return err
	}
	logger.Info("scale: filled", "rows", cfg.scaleRows, "took", time.Since(start).Round(time.Second))
	if r.FullAcceptRPS, r.FullStatusRPS, err = measure(); err != nil {
		return fmt.Errorf("with %d rows: %w", cfg.scaleRows, err)
	}
	logger.Info("scale", "rows", cfg.scaleRows, "empty_accept_rps", int(r.EmptyAcceptRPS), "full_accept_rps", int(r.FullAcceptRPS),
		"empty_status_rps", int(r.EmptyStatusRPS), "full_status_rps", int(r.FullStatusRPS))
	return empty()
}

// fill writes n finished jobs of another client, each with one queued
// event, created over the last 30 days, in chunks (one statement each),
// then vacuums and analyses the tables and checkpoints: rows that built
// up over 30 days would have been vacuumed long since, and an
// autovacuum of millions of rows written a minute ago (due at once:
// every row is new) would run during the measurement and be measured
// with it.
func (p *platform) fill(ctx context.Context, n int) error {
	const chunk = 500_000
	for done := 0; done < n; done += chunk {
		size := min(chunk, n-done)
		_, err := p.pool.Exec(ctx, `
			WITH j AS (
				INSERT INTO jobs (id, type, client_id, status, payload, request_hash, created_at, updated_at, queued_at, started_at, finished_at, attempts, result)
				SELECT gen_random_uuid(), 'bench', 'filler-' || (g % 50), 'succeeded', '{"text":"lorem ipsum dolor sit amet"}', '\x00',
					t, t, t, t, t, 1, '{"words":5}'
				FROM generate_series(1, $1::int) g, LATERAL (SELECT now() - (random() * interval '30 days') AS t) ts
				RETURNING id, created_at)
			INSERT INTO job_events (job_id, type, at) SELECT id, 'queued', created_at FROM j`, size)
		if err != nil {
			return fmt.Errorf("filling the tables: %w", err)
		}
	}
	if err := p.settle(ctx, "jobs, job_events"); err != nil {
		return fmt.Errorf("settling the filled tables: %w", err)
	}
	return nil
}

// settle vacuums and analyses tables (a comma-separated list; none when
// empty), then checkpoints: a measurement that follows starts without
// an autovacuum or a write-back of what came before it still to run.
func (p *platform) settle(ctx context.Context, tables string) error {
	if tables != "" {
		if _, err := p.pool.Exec(ctx, `VACUUM (ANALYZE) `+tables); err != nil {
			return fmt.Errorf("vacuuming %s: %w", tables, err)
		}
	}
	if _, err := p.pool.Exec(ctx, `CHECKPOINT`); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}
