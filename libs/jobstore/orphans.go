package jobstore

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard/switchyard/libs/jobmessage"
	"github.com/switchyard/switchyard/libs/outbox"
)

// orphanBatch is how many orphans one transaction sends again.
const orphanBatch = 1000

// ResendInFlight writes a new message to the outbox for every job whose
// message was already handed to SQS (queued, processing, or waiting for a
// retry) and returns how many. It is for one situation only: a local SQS
// stand-in that keeps its queues in memory started empty, so those
// messages are gone with the previous one, and their jobs would otherwise
// wait for ever. Against a real queue it would deliver those jobs twice
// (harmless, as the worker skips a finished job and its inbox a seen
// message, but pointless). Each message gets a new id; the job's own
// state decides what the worker does with it.
func ResendInFlight(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	total := 0
	after := uuid.Nil.String()
	for {
		n, last, err := resendBatch(ctx, pool, after)
		if err != nil {
			return total, err
		}
		total += n
		if n < orphanBatch {
			return total, nil
		}
		after = last
	}
}

func resendBatch(ctx context.Context, pool *pgxpool.Pool, after string) (n int, last string, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT id::text, type, client_id, coalesce(request_id, ''), coalesce(traceparent, ''), payload
			FROM jobs WHERE status IN ('queued', 'processing') AND id > $1::uuid
			ORDER BY id LIMIT $2 FOR UPDATE`, after, orphanBatch)
		if err != nil {
			return fmt.Errorf("finding jobs whose messages were in SQS: %w", err)
		}
		var msgs []outbox.Message
		for rows.Next() {
			var j jobmessage.Job
			var payload []byte
			if err := rows.Scan(&j.ID, &j.Type, &j.ClientID, &j.RequestID, &j.TraceParent, &payload); err != nil {
				rows.Close()
				return fmt.Errorf("reading a job to send again: %w", err)
			}
			msgs = append(msgs, jobmessage.New(uuid.Must(uuid.NewV7()).String(), j, payload))
			last = j.ID
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("finding jobs whose messages were in SQS: %w", err)
		}
		n = len(msgs)
		return outbox.Write(ctx, tx, msgs...)
	})
	return n, last, err
}
