// Package inbox records which messages have had their effects applied, so
// that a redelivered message (SQS is at-least-once) applies nothing twice.
// The record is written in the same transaction as the effects.
package inbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Record notes, inside tx, that messageID is being applied. It returns
// false when the message was applied before: the caller must then roll back
// and apply nothing. A concurrent transaction recording the same message
// makes Record wait until that one commits or rolls back.
func Record(ctx context.Context, tx pgx.Tx, messageID, jobID, handler string) (bool, error) {
	tag, err := tx.Exec(ctx, `
		INSERT INTO inbox (message_id, job_id, handler) VALUES ($1, $2, $3)
		ON CONFLICT (message_id) DO NOTHING`, messageID, jobID, handler)
	if err != nil {
		return false, fmt.Errorf("recording message %s in inbox: %w", messageID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Seen reports whether messageID has been applied. It is a cheap early
// check; Record inside the effects' transaction is the guarantee.
func Seen(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, messageID string) (bool, error) {
	var one int
	err := q.QueryRow(ctx, `SELECT 1 FROM inbox WHERE message_id = $1`, messageID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("looking up message %s in inbox: %w", messageID, err)
	}
	return true, nil
}
