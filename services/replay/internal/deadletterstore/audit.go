package deadletterstore

import (
	"context"
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
// more follow (auditlog.List, the table's owner, reads them).
func (s *Store) ListAudit(ctx context.Context, f AuditFilter, limit int, before int64) ([]AuditEntry, bool, error) {
	af := auditlog.Filter{Actor: f.Actor, Action: f.Action, Target: f.Target, Since: f.Since, Until: f.Until}
	if f.SkipReads {
		af.Exclude = ReadActions
	}
	return auditlog.List(ctx, s.pool, af, limit, before)
}
