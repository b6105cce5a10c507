package deadletterstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard/switchyard/libs/auditlog"
)

// AuditEntry is one admin call as the audit log records it.
type AuditEntry = auditlog.Entry

// writeAudit records e inside tx, the transaction of its effect.
func writeAudit(ctx context.Context, tx pgx.Tx, e AuditEntry) error {
	return auditlog.Write(ctx, tx, e)
}

// Audit records an admin call that changes nothing (a read, a refusal) in
// its own transaction.
func (s *Store) Audit(ctx context.Context, e AuditEntry) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return writeAudit(ctx, tx, e) })
}

// AuditFilter selects audit entries.
type AuditFilter struct {
	Actor string
	// Action matches one action, or every action with its prefix when it
	// ends in "*" ("replays.*").
	Action string
	Target string
	Since  *time.Time
	Until  *time.Time
	// SkipReads leaves out reads (ReadActions): lists, shows, stats.
	SkipReads bool
}

// ReadActions are the audited calls that only read. (A dry run is not one:
// it records a decision, with the counts the operator saw.)
var ReadActions = []string{"dead_letters.list", "dead_letters.stats", "dead_letters.get", "replays.list",
	"replays.get", "replays.items", "audit.list"}

// ListAudit returns up to limit audit entries matching f, newest first,
// older than the entry with id before (0 for the first page), and whether
// more follow.
func (s *Store) ListAudit(ctx context.Context, f AuditFilter, limit int, before int64) ([]AuditEntry, bool, error) {
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
	if f.SkipReads {
		add("NOT action = ANY(", ReadActions)
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
	rows, err := s.pool.Query(ctx, `
		SELECT id, at, actor, action, target, filter, counts, request_id, source_ip, before, after, outcome
		FROM admin_audit WHERE `+where+` ORDER BY id DESC LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, false, fmt.Errorf("listing audit entries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEntry, error) {
		var e AuditEntry
		var filter, counts, before, after []byte
		err := r.Scan(&e.ID, &e.At, &e.Actor, &e.Action, &e.Target, &filter, &counts, &e.RequestID, &e.SourceIP, &before, &after, &e.Outcome)
		e.Filter, e.Counts, e.Before, e.After = raw(filter), raw(counts), raw(before), raw(after)
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

func raw(b []byte) any {
	if b == nil {
		return nil
	}
	return json.RawMessage(b)
}
