package auditlog

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// RefusalLimits bound what refused calls write.
type RefusalLimits struct {
	// PerSource is the rows per second one source (address, or client
	// when authenticated) may cause, with burst PerSourceBurst.
	PerSource      float64
	PerSourceBurst int
	// Total is the rows per second all sources together may cause.
	Total      float64
	TotalBurst int
	// Queue bounds the rows waiting to be written.
	Queue int
	// Sources bounds how many sources are tracked (LRU).
	Sources int
}

// DefaultRefusalLimits lets a source cause a row a second (burst 10), all of
// sources together 50 a second (burst 200).
var DefaultRefusalLimits = RefusalLimits{PerSource: 1, PerSourceBurst: 10, Total: 50, TotalBurst: 200, Queue: 1024, Sources: 10_000}

// Refusals records refused calls in the audit log within limits.
type Refusals struct {
	limits  RefusalLimits
	total   *rate.Limiter
	sources *lru.Cache[string, *source]
	queue   *Queue

	recorded, suppressed prometheus.Counter
}

type source struct {
	mu         sync.Mutex
	limiter    *rate.Limiter
	suppressed int
}

// NewRefusals returns a recorder writing through db; reg receives its
// counters (nil: none). Run must run for anything to be written.
func NewRefusals(db Execer, limits RefusalLimits, reg prometheus.Registerer, logger *slog.Logger) *Refusals {
	if limits.Sources < 1 {
		limits.Sources = DefaultRefusalLimits.Sources
	}
	if limits.Queue < 1 {
		limits.Queue = DefaultRefusalLimits.Queue
	}
	sources, _ := lru.New[string, *source](limits.Sources) // size > 0
	r := &Refusals{
		limits: limits, sources: sources, queue: NewQueue(db, limits.Queue, logger),
		total: rate.NewLimiter(rate.Limit(limits.Total), max(1, limits.TotalBurst)),
		recorded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_audit_refusals_recorded_total", Help: "Refused admin calls written to the audit log.",
		}),
		suppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_audit_refusals_suppressed_total",
			Help: "Refused admin calls not written to the audit log because their source (or all sources) passed the rate limit; counted on the source's next row.",
		}),
	}
	r.queue.written = r.recorded.Inc
	if reg != nil {
		reg.MustRegister(r.recorded, r.suppressed)
	}
	return r
}

// Record queues e (a refusal) under sourceKey, unless the source or the
// total is over its limit; then it is counted, and the count goes on the
// source's next row (counts.suppressed_before).
func (r *Refusals) Record(sourceKey string, e Entry) {
	s, ok := r.sources.Get(sourceKey)
	if !ok {
		s = &source{limiter: rate.NewLimiter(rate.Limit(r.limits.PerSource), max(1, r.limits.PerSourceBurst))}
		if prev, found, _ := r.sources.PeekOrAdd(sourceKey, s); found {
			s = prev
		}
	}
	s.mu.Lock()
	if !s.limiter.Allow() || !r.total.Allow() {
		s.suppressed++
		s.mu.Unlock()
		r.suppressed.Inc()
		return
	}
	if s.suppressed > 0 {
		e.Counts = map[string]int{"suppressed_before": s.suppressed}
	}
	n := s.suppressed
	s.suppressed = 0
	s.mu.Unlock()
	if !r.queue.Add(e) {
		s.mu.Lock()
		s.suppressed += n + 1
		s.mu.Unlock()
		r.suppressed.Inc()
	}
}

// Refused records a refused call to an admin endpoint (action
// "admin.refused"): by clientID when the caller authenticated (a 403),
// else by "anonymous" (a 401), limited per client or per address.
func (r *Refusals) Refused(req *http.Request, requestID, sourceIP, clientID string, status int) {
	path := req.URL.Path
	if len(path) > 256 {
		path = path[:256]
	}
	e := Entry{Actor: "anonymous", Action: "admin.refused", Target: req.Method + " " + path,
		RequestID: requestID, SourceIP: sourceIP, Outcome: "refused: " + strconv.Itoa(status)}
	key := "ip:" + sourceIP
	if clientID != "" {
		e.Actor, key = clientID, "client:"+clientID
	}
	r.Record(key, e)
}

// Run writes queued rows until ctx ends, then what is still queued.
func (r *Refusals) Run(ctx context.Context) { r.queue.Run(ctx) }
