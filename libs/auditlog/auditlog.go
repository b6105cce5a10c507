// Package auditlog writes and reads the platform's audit log, the
// admin_audit table that GET /admin/v1/audit lists (List): every admin
// call, every refused admin call, every change made with the CLI (clients,
// signing keys) and every address or client the gateway's edge blocks.
//
// Refusals come from anyone, so they are written through a Refusals
// recorder: rate-limited per source and in total, off the request path,
// with what it had to leave out counted on the next row it writes for
// that source, so that a flood of refused calls cannot fill the table or
// slow the service, and still leaves a trace. It is the only code that
// names the table.
package auditlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
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

// Filter selects audit entries; empty fields select everything.
type Filter struct {
	Actor string
	// Action matches one action, or every action with its prefix when it
	// ends in "*" ("replays.*").
	Action string
	Target string
	Since  *time.Time
	Until  *time.Time
	// Exclude leaves these actions out (e.g. the reads).
	Exclude []string
}

// List returns up to limit entries matching f, newest first, older than
// the entry with id before (0 for the first page), and whether more
// follow.
func List(ctx context.Context, db *pgxpool.Pool, f Filter, limit int, before int64) ([]Entry, bool, error) {
	args := []any{}
	where := "TRUE"
	add := func(cond string, v any) {
		args = append(args, v)
		where += " AND " + cond + "$" + strconv.Itoa(len(args))
	}
	if f.Actor != "" {
		add("actor = ", f.Actor)
	}
	if prefix, ok := strings.CutSuffix(f.Action, "*"); ok {
		add("starts_with(action, ", prefix)
		where += ")"
	} else if f.Action != "" {
		add("action = ", f.Action)
	}
	if len(f.Exclude) > 0 {
		add("NOT action = ANY(", f.Exclude)
		where += ")"
	}
	if f.Target != "" {
		add("target = ", f.Target)
	}
	if f.Since != nil {
		add("at >= ", *f.Since)
	}
	if f.Until != nil {
		add("at < ", *f.Until)
	}
	if before > 0 {
		add("id < ", before)
	}
	args = append(args, limit+1)
	rows, err := db.Query(ctx, `
		SELECT id, at, actor, action, target, filter, counts, request_id, source_ip, before, after, outcome
		FROM admin_audit WHERE `+where+` ORDER BY id DESC LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, false, fmt.Errorf("listing audit entries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entry, error) {
		var e Entry
		var filter, counts, before, after []byte
		err := r.Scan(&e.ID, &e.At, &e.Actor, &e.Action, &e.Target, &filter, &counts, &e.RequestID, &e.SourceIP, &before, &after, &e.Outcome)
		e.Filter, e.Counts, e.Before, e.After = rawJSON(filter), rawJSON(counts), rawJSON(before), rawJSON(after)
		return e, err
	})
	if err != nil {
		return nil, false, fmt.Errorf("listing audit entries: %w", err)
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

func rawJSON(b []byte) any {
	if b == nil {
		return nil
	}
	return json.RawMessage(b)
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

// Querier is a pool, a connection or a transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Trim deletes up to limit audit rows written before before, oldest
// first, and returns how many; with dryRun it counts every row it would
// delete. The table is append-only for every service: rows go only
// through the database function switchyard_trim_audit, which refuses to
// delete a row younger than 30 days.
func Trim(ctx context.Context, db Querier, before time.Time, limit int, dryRun bool) (int64, error) {
	var n int64
	var err error
	if dryRun {
		err = db.QueryRow(ctx, `SELECT count(*) FROM admin_audit WHERE at < $1`, before).Scan(&n)
	} else {
		err = db.QueryRow(ctx, `SELECT switchyard_trim_audit($1, $2)`, before, limit).Scan(&n)
	}
	if err != nil {
		return 0, fmt.Errorf("trimming the audit log: %w", err)
	}
	return n, nil
}

// Oldest returns when the oldest audit row was written (zero: none).
func Oldest(ctx context.Context, db Querier) (time.Time, error) {
	var t time.Time
	err := db.QueryRow(ctx, `SELECT at FROM admin_audit ORDER BY id LIMIT 1`).Scan(&t)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("reading the oldest audit row: %w", err)
	}
	return t, nil
}
