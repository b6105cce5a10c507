package edge

import (
	"strings"
	"time"

	"github.com/switchyard/switchyard/libs/auditlog"
)

// AuditEntry is how a block goes to the admin audit log (admin_audit, the
// table the admin API's /admin/v1/audit reads): action "edge.block" by
// actor "gateway". The gateway writes it off the request path through an
// auditlog.Queue; a full queue drops the entry (the block itself is logged
// and counted either way).
func AuditEntry(b Block) auditlog.Entry {
	sourceIP := ""
	if ip, ok := strings.CutPrefix(b.Key, "ip:"); ok {
		sourceIP = ip
	}
	return auditlog.Entry{
		Actor: "gateway", Action: "edge.block", Target: b.Key, SourceIP: sourceIP, Outcome: "blocked",
		Counts: map[string]any{"violations": b.Violations},
		After:  map[string]any{"blocked_until": b.Until.UTC().Format(time.RFC3339), "reason": b.Reason},
	}
}
