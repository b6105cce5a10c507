package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/switchyard/switchyard/libs/clock"
)

// backlogRound measures the relay draining a backlog: cfg.backlog jobs
// are accepted while no relay runs, then a relay starts and its rate over
// cfg.backlogWindow (after its first forwarded message) is taken from
// the outbox's acknowledged rows.
//
// The SQS stand-in's calls slow down with its queue's depth (linear in
// it), which would measure the stand-in, not the relay: while the relay
// drains, the queue is purged every 250 ms (a drain-behind standing for
// the workers; real SQS neither slows with depth nor allows a purge more
// often than once a minute).
func (p *platform) backlogRound(ctx context.Context, cfg config, token string, r *round, logger *slog.Logger) error {
	client := newClient(cfg.acceptConcurrency)
	defer client.CloseIdleConnections()
	start := time.Now()
	if _, err := submitAll(ctx, client, p.gateway+"/v1/jobs/bench", token, cfg.backlog, cfg.acceptConcurrency); err != nil {
		return fmt.Errorf("building the backlog: %w", err)
	}
	logger.Info("backlog written", "rows", cfg.backlog, "seconds", int(time.Since(start).Seconds()))

	prefix := fmt.Sprintf("k%d-", time.Now().UnixNano()%1_000_000)
	url, err := p.queue(ctx, prefix+"bench")
	if err != nil {
		return err
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
		return err
	}
	// The relay deletes what it forwarded: the backlog is what is left.
	const left = `SELECT count(*) FROM watermill_outbox WHERE NOT acked`
	if err := waitFor(ctx, time.Minute, func() (bool, error) {
		n, err := p.count(ctx, left)
		return n < cfg.backlog, err
	}); err != nil {
		return fmt.Errorf("relay never forwarded: %w", err)
	}
	before, err := p.count(ctx, left)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if !clock.Sleep(ctx, cfg.backlogWindow) {
		return ctx.Err()
	}
	after, err := p.count(ctx, left)
	if err != nil {
		return err
	}
	r.BacklogRelayMPS = float64(before-after) / time.Since(t0).Seconds()
	logger.Info("backlog", "relay_mps", int(r.BacklogRelayMPS), "still_unsent", after)
	if err := p.stopService("relay"); err != nil {
		return err
	}
	if _, err := p.pool.Exec(ctx, `TRUNCATE jobs, watermill_outbox`); err != nil {
		return fmt.Errorf("emptying the tables: %w", err)
	}
	return nil
}
