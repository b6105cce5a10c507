package pgnotify

import (
	"context"
	"log/slog"
	"time"
)

// Reloader keeps an in-memory copy of a table current: it calls load at
// start, at once after each notification on its channel (and after each
// reconnect, to catch up on what was missed), and every interval in case a
// notification was lost. Loads never overlap; a burst of notifications
// during a load causes one more load, not one each.
type Reloader struct {
	listener *Listener
	reload   chan struct{}
	interval time.Duration
	load     func(ctx context.Context)
}

// NewReloader returns a Reloader of channel on connections from connector.
func NewReloader(connector Connector, channel string, interval time.Duration, load func(ctx context.Context), logger *slog.Logger) *Reloader {
	r := &Reloader{reload: make(chan struct{}, 1), interval: interval, load: load}
	r.listener = New(connector, channel, r.request, logger)
	return r
}

func (r *Reloader) request() {
	select {
	case r.reload <- struct{}{}:
	default:
	}
}

// Run loads and reloads until ctx ends (it blocks).
func (r *Reloader) Run(ctx context.Context) {
	go r.listener.Run(ctx)
	t := time.NewTicker(r.interval)
	defer t.Stop()
	r.load(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.reload:
		}
		r.load(ctx)
	}
}
