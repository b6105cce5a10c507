package auditlog

import (
	"context"
	"log/slog"
	"time"
)

// Queue writes entries off the request path: Add never blocks (a full
// queue refuses the entry), Run writes them one by one and, when its
// context ends, what is still queued.
type Queue struct {
	db     Execer
	logger *slog.Logger
	queue  chan Entry
	// written is told of each entry written (nil: nothing).
	written func()
}

// NewQueue returns a Queue of at most size entries writing through db.
func NewQueue(db Execer, size int, logger *slog.Logger) *Queue {
	return &Queue{db: db, logger: logger, queue: make(chan Entry, max(1, size))}
}

// Add queues e and reports whether there was room.
func (q *Queue) Add(e Entry) bool {
	select {
	case q.queue <- e:
		return true
	default:
		return false
	}
}

// Run writes queued entries until ctx ends, then what is still queued.
func (q *Queue) Run(ctx context.Context) {
	for {
		select {
		case e := <-q.queue:
			q.write(ctx, e)
		case <-ctx.Done():
			for {
				select {
				case e := <-q.queue:
					q.write(context.WithoutCancel(ctx), e)
				default:
					return
				}
			}
		}
	}
}

func (q *Queue) write(ctx context.Context, e Entry) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := Write(ctx, q.db, e); err != nil {
		q.logger.Warn("writing an audit entry", "action", e.Action, "target", e.Target, "error", err)
		return
	}
	if q.written != nil {
		q.written()
	}
}
