// Package auditlog writes the platform's audit log, the admin_audit table
// that GET /admin/v1/audit reads: every admin call, every refused admin
// call, every change made with the CLI (clients, signing keys) and every
// address or client the gateway's edge blocks. It is the one writer of
// that table.
//
// Refusals come from anyone, so they are written through a Refusals
// recorder: rate-limited per source and in total, off the request path,
// with what it had to leave out counted on the next row it writes for
// that source, so that a flood of refused calls cannot fill the table or
// slow the service, and still leaves a trace.
package auditlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Entry is one audited event.
type Entry struct {
	ID        int64     `json:"id"`
	At        time.Time `json:"at"`
	Actor     string    `json:"actor"`
	Action    string    `json:"action"`
	Target    string    `json:"target,omitempty"`
	Filter    any       `json:"filter,omitempty"`
	Counts    any       `json:"counts,omitempty"`
	RequestID string    `json:"request_id,omitempty"`
	SourceIP  string    `json:"source_ip,omitempty"`
	// Before and After show what an edit changed.
	Before  any    `json:"before,omitempty"`
	After   any    `json:"after,omitempty"`
	Outcome string `json:"outcome"`
}

// Execer runs a statement: a transaction (to audit a change in the
// transaction of its effect) or a pool.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Write records e through db.
func Write(ctx context.Context, db Execer, e Entry) error {
	if e.Actor == "" || e.Action == "" {
		return errors.New("audit entry needs an actor and an action")
	}
	if e.Outcome == "" {
		e.Outcome = "ok"
	}
	var cols [4][]byte
	for i, v := range []any{e.Filter, e.Counts, e.Before, e.After} {
		if v == nil {
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encoding audit entry: %w", err)
		}
		cols[i] = b
	}
	_, err := db.Exec(ctx, `
		INSERT INTO admin_audit (actor, action, target, filter, counts, request_id, source_ip, before, after, outcome)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		e.Actor, e.Action, e.Target, cols[0], cols[1], e.RequestID, e.SourceIP, cols[2], cols[3], e.Outcome)
	if err != nil {
		return fmt.Errorf("writing audit entry: %w", err)
	}
	return nil
}
