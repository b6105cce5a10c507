package edge

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard/switchyard/libs/auditlog"
)

// AuditLog writes each block to the admin audit log (admin_audit, the
// table the admin API's /admin/v1/audit reads) as action "edge.block" by
// actor "gateway", off the request path: a full queue drops the entry
// (the block itself is logged and counted either way).
type AuditLog struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	queue  chan Block
}

// NewAuditLog returns an AuditLog writing through pool.
func NewAuditLog(pool *pgxpool.Pool, logger *slog.Logger) *AuditLog {
	return &AuditLog{pool: pool, logger: logger, queue: make(chan Block, 256)}
}

// Record queues b; it is the Edge's OnBlock.
func (a *AuditLog) Record(b Block) {
	select {
	case a.queue <- b:
	default:
		a.logger.Warn("audit queue full; block not recorded in the audit log", "key", b.Key)
	}
}

// Run writes queued blocks until ctx ends, then what is still queued.
func (a *AuditLog) Run(ctx context.Context) {
	for {
		select {
		case b := <-a.queue:
			a.write(ctx, b)
		case <-ctx.Done():
			for {
				select {
				case b := <-a.queue:
					a.write(context.WithoutCancel(ctx), b)
				default:
					return
				}
			}
		}
	}
}

func (a *AuditLog) write(ctx context.Context, b Block) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sourceIP := ""
	if ip, ok := strings.CutPrefix(b.Key, "ip:"); ok {
		sourceIP = ip
	}
	err := auditlog.Write(ctx, a.pool, auditlog.Entry{
		Actor: "gateway", Action: "edge.block", Target: b.Key, SourceIP: sourceIP, Outcome: "blocked",
		Counts: map[string]any{"violations": b.Violations},
		After:  map[string]any{"blocked_until": b.Until.UTC().Format(time.RFC3339), "reason": b.Reason},
	})
	if err != nil {
		a.logger.Warn("recording a block in the audit log", "key", b.Key, "error", err)
	}
}
