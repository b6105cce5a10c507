package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/switchyard/switchyard/libs/clock"
)

// backlogRound measures the relay draining a deep backlog against the
// same relay draining a shallow one, in the same SQS regime: first
// cfg.backlogReference rows, then cfg.backlog, each accepted while no
// relay runs and settled (vacuumed, checkpointed), each drained by a
// fresh relay onto a fresh queue, each timed over cfg.backlogWindow
// from its first forwarded message (or to an empty outbox, if that
// comes first). The only difference between the two is how many rows
// wait in the outbox.
//
// The reference is not the sqs section's relay row: that one forwards
// 300 messages in about a second, while the SQS stand-in (moto, Python)
// is slower sustained than in a burst, and slower the more calls it
// serves at once (measured 2026-12-07: 840 msg/s from 4 concurrent
// senders, 250 from 40, in the regime below), so a 30 s window against
// a 1 s burst measured the stand-in, not the relay.
func (p *platform) backlogRound(ctx context.Context, cfg config, token string, r *round, logger *slog.Logger) error {
	client := newClient(cfg.acceptConcurrency)
	defer client.CloseIdleConnections()
	var err error
	if r.BacklogReferenceMPS, err = p.drainRate(ctx, cfg, client, token, cfg.backlogReference, logger); err != nil {
		return fmt.Errorf("with %d rows waiting: %w", cfg.backlogReference, err)
	}
	if r.BacklogRelayMPS, err = p.drainRate(ctx, cfg, client, token, cfg.backlog, logger); err != nil {
		return fmt.Errorf("with %d rows waiting: %w", cfg.backlog, err)
	}
	return nil
}

// drainRate accepts rows jobs while no relay runs, starts a relay on a
// fresh queue and returns its rate over cfg.backlogWindow from its first
// forwarded message (or until the outbox is empty), taken from the
// outbox's remaining rows. It leaves the relay stopped and the tables
// empty.
//
// The SQS stand-in's calls slow down with its queue's depth (linear in
// it), which would measure the stand-in, not the relay: while the relay
// drains, the queue is purged every 250 ms (a drain-behind standing for
// the workers; real SQS neither slows with depth nor allows a purge more
// often than once a minute).
func (p *platform) drainRate(ctx context.Context, cfg config, client *http.Client, token string, rows int, logger *slog.Logger) (float64, error) {
	start := time.Now()
	if _, err := submitAll(ctx, client, p.gateway+"/v1/jobs/bench", token, rows, cfg.acceptConcurrency); err != nil {
		return 0, fmt.Errorf("building the backlog: %w", err)
	}
	logger.Info("backlog written", "rows", rows, "seconds", int(time.Since(start).Seconds()))
	// Both measurements start from the same state of Postgres: the new
	// rows vacuumed and analysed (as autovacuum does to a backlog that
	// built up over minutes) and flushed by a checkpoint. Otherwise
	// whichever window an autovacuum or a checkpoint (each forced by the
	// rows just written, or still running after the scale section's
	// millions) falls into pays for it: rounds gave 0.75 and 1.22.
	if err := p.settle(ctx, "jobs, watermill_outbox, job_events"); err != nil {
		return 0, fmt.Errorf("settling the backlog: %w", err)
	}

	prefix := fmt.Sprintf("k%d-", time.Now().UnixNano()%1_000_000)
	url, err := p.queue(ctx, prefix+"bench")
	if err != nil {
		return 0, err
	}
	purgeCtx, stopPurging := context.WithCancel(ctx)
	var purging sync.WaitGroup
	purging.Go(func() {
		for clock.Sleep(purgeCtx, 250*time.Millisecond) {
			_, _ = p.sqs.PurgeQueue(purgeCtx, &sqs.PurgeQueueInput{QueueUrl: aws.String(url)})
		}
	})
	defer func() { stopPurging(); purging.Wait() }()

	if err := p.start(ctx, "relay", "SWITCHYARD_QUEUE_PREFIX="+prefix); err != nil {
		return 0, err
	}
	// The relay deletes what it forwarded: the backlog is what is left.
	const left = `SELECT count(*) FROM watermill_outbox WHERE NOT acked`
	if err := waitFor(ctx, time.Minute, func() (bool, error) {
		n, err := p.count(ctx, left)
		return n < rows, err
	}); err != nil {
		return 0, fmt.Errorf("relay never forwarded: %w", err)
	}
	before, err := p.count(ctx, left)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	// Polled each second (a count costs Postgres a scan of the outbox),
	// so that a backlog drained before the window ends is timed to
	// within a second of its last row, not to the window's end.
	after := before
	for time.Since(t0) < cfg.backlogWindow && after > 0 {
		if !clock.Sleep(ctx, min(time.Second, cfg.backlogWindow-time.Since(t0))) {
			return 0, ctx.Err()
		}
		if after, err = p.count(ctx, left); err != nil {
			return 0, err
		}
	}
	rate := float64(before-after) / time.Since(t0).Seconds()
	logger.Info("backlog", "rows", rows, "relay_mps", int(rate), "still_unsent", after)
	if err := p.stopService("relay"); err != nil {
		return 0, err
	}
	if _, err := p.pool.Exec(ctx, `TRUNCATE jobs, watermill_outbox`); err != nil {
		return 0, fmt.Errorf("emptying the tables: %w", err)
	}
	return rate, nil
}
