package outbox

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Row is one claimed outbox row.
type Row struct {
	Offset  int64
	Message Message
}

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

// ClaimBatch starts a transaction and locks up to limit unforwarded rows in
// offset order.
func ClaimBatch(ctx context.Context, pool *pgxpool.Pool, limit int) (*Claim, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("beginning outbox claim: %w", err)
	}
	rows, err := tx.Query(ctx, `
		SELECT "offset", payload::text FROM watermill_outbox
		WHERE NOT acked
		ORDER BY "offset"
		LIMIT $1
		FOR UPDATE SKIP LOCKED`, limit)
	if err != nil {
		_ = tx.Rollback(ctx)
		return nil, fmt.Errorf("claiming outbox rows: %w", err)
	}
	c := &Claim{tx: tx}
	for rows.Next() {
		var offset int64
		var payload []byte
		if err := rows.Scan(&offset, &payload); err != nil {
			rows.Close()
			_ = tx.Rollback(ctx)
			return nil, fmt.Errorf("reading outbox row: %w", err)
		}
		msg, err := decodeEnvelope(payload)
		if err != nil {
			c.Parked = append(c.Parked, offset)
			continue
		}
		c.Rows = append(c.Rows, Row{Offset: offset, Message: msg})
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
