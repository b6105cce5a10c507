package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Row is one claimed outbox row.
type Row struct {
	Offset  int64
	Message Message
	// Delay is how long SQS should keep the message hidden: the time
	// until the row's deliver_at (0 for a row due now).
	Delay time.Duration
}

// MaxSQSDelay is the longest delay SQS gives a message (DelaySeconds);
// a row due later stays in the outbox until it is due within this.
const MaxSQSDelay = 15 * time.Minute

// Claim is a batch of outbox rows locked by one transaction. Other relays
// skip locked rows, so concurrent claims never overlap and never wait for
// each other. Finish with Complete or Release.
type Claim struct {
	tx   pgx.Tx
	Rows []Row
	// Parked lists rows whose payload was not a forwarder envelope. They
	// are marked acked (kept for inspection, never claimed again) when the
	// claim completes.
	Parked []int64
}

// claimSQL locks up to $1 rows: first held rows that are due within $2
// (oldest due first, with the seconds until due), then rows due now in
// offset order. Each kind is read along its own partial index, so rows
// held for later cost a claim nothing.
const claimSQL = `
	WITH held AS (
		SELECT "offset", payload::text, GREATEST(0, ceil(extract(epoch FROM deliver_at - now())))::int AS delay
		FROM watermill_outbox
		WHERE deliver_at IS NOT NULL AND NOT acked AND deliver_at <= now() + $2::interval
		ORDER BY deliver_at LIMIT $1
		FOR UPDATE SKIP LOCKED
	), ready AS (
		SELECT "offset", payload::text, 0 AS delay FROM watermill_outbox
		WHERE deliver_at IS NULL AND NOT acked
		ORDER BY "offset" LIMIT $1 - (SELECT count(*) FROM held)
		FOR UPDATE SKIP LOCKED
	)
	SELECT * FROM held UNION ALL SELECT * FROM ready`

// ClaimBatch starts a transaction and locks up to limit unforwarded rows:
// held rows due within MaxSQSDelay, then the rest in offset order.
func ClaimBatch(ctx context.Context, pool *pgxpool.Pool, limit int) (*Claim, error) {
	return ClaimDue(ctx, pool, limit, MaxSQSDelay)
}

// ClaimDue is ClaimBatch with rows held until they are due within
// within (a test stands SQS's 15 minutes in with seconds).
func ClaimDue(ctx context.Context, pool *pgxpool.Pool, limit int, within time.Duration) (*Claim, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("beginning outbox claim: %w", err)
	}
	rows, err := tx.Query(ctx, claimSQL, limit, within)
	if err != nil {
		_ = tx.Rollback(ctx)
		return nil, fmt.Errorf("claiming outbox rows: %w", err)
	}
	c := &Claim{tx: tx}
	for rows.Next() {
		var offset int64
		var payload []byte
		var delay int
		if err := rows.Scan(&offset, &payload, &delay); err != nil {
			rows.Close()
			_ = tx.Rollback(ctx)
			return nil, fmt.Errorf("reading outbox row: %w", err)
		}
		msg, err := decodeEnvelope(payload)
		if err != nil {
			c.Parked = append(c.Parked, offset)
			continue
		}
		c.Rows = append(c.Rows, Row{Offset: offset, Message: msg, Delay: time.Duration(delay) * time.Second})
	}
	if err := rows.Err(); err != nil {
		_ = tx.Rollback(ctx)
		return nil, fmt.Errorf("reading outbox rows: %w", err)
	}
	return c, nil
}

// Tx is the claim's transaction, for changes that must commit together
// with the rows' removal (the relay marks jobs queued in it).
func (c *Claim) Tx() pgx.Tx { return c.tx }

// Complete deletes the forwarded rows, parks undecodable ones and commits.
// Claimed rows not listed in forwarded are released for a later claim.
func (c *Claim) Complete(ctx context.Context, forwarded []int64) error {
	if len(forwarded) > 0 {
		if _, err := c.tx.Exec(ctx, `DELETE FROM watermill_outbox WHERE "offset" = ANY($1)`, forwarded); err != nil {
			_ = c.tx.Rollback(ctx)
			return fmt.Errorf("deleting forwarded outbox rows: %w", err)
		}
	}
	if len(c.Parked) > 0 {
		if _, err := c.tx.Exec(ctx, `UPDATE watermill_outbox SET acked = true WHERE "offset" = ANY($1)`, c.Parked); err != nil {
			_ = c.tx.Rollback(ctx)
			return fmt.Errorf("parking undecodable outbox rows: %w", err)
		}
	}
	if err := c.tx.Commit(ctx); err != nil {
		return fmt.Errorf("committing outbox claim: %w", err)
	}
	return nil
}

// Release gives every claimed row back untouched.
func (c *Claim) Release(ctx context.Context) {
	_ = c.tx.Rollback(context.WithoutCancel(ctx))
}
