package oauthclients

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/libs/pgnotify"
)

// DisabledSet is a gateway's in-memory copy of the disabled client ids, so
// that checking a token's client costs a map lookup. It reloads at once
// when Postgres announces a change on NotifyChannel, and every
// PollInterval in case a notification was lost. If Postgres is
// unreachable it keeps the last set it read (and says so in Ready).
//
// Propagation delay: a disable reaches every gateway within milliseconds
// through NOTIFY; at worst within PollInterval.
type DisabledSet struct {
	store    *Store
	logger   *slog.Logger
	reloader *pgnotify.Reloader

	ids     atomic.Pointer[map[string]struct{}]
	loadErr atomic.Pointer[error]
}

// DefaultPollInterval bounds the propagation delay when notifications are lost.
const DefaultPollInterval = 10 * time.Second

// NewDisabledSet returns a DisabledSet reading from store, notified through
// a dedicated connection from listen. interval <= 0 means
// DefaultPollInterval.
func NewDisabledSet(store *Store, listen pgnotify.Connector, interval time.Duration, logger *slog.Logger) *DisabledSet {
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	d := &DisabledSet{store: store, logger: logger}
	d.reloader = pgnotify.NewReloader(listen, NotifyChannel, interval, d.load, logger)
	notLoaded := ErrNotLoaded
	d.loadErr.Store(&notLoaded)
	return d
}

// Run keeps the set current until ctx ends.
func (d *DisabledSet) Run(ctx context.Context) { d.reloader.Run(ctx) }

func (d *DisabledSet) load(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ids, err := d.store.DisabledIDs(lctx)
	if err != nil {
		if ctx.Err() == nil {
			d.logger.Warn("reloading disabled clients failed; keeping the last set", "error", err)
		}
		d.loadErr.Store(&err)
		return
	}
	d.ids.Store(&ids)
	var none error
	d.loadErr.Store(&none)
}

// ErrNotLoaded is returned while the set was never loaded, so that no
// client can be said not to be disabled.
var ErrNotLoaded = errors.New("the disabled clients were not loaded yet")

// Revoked reports whether clientID is disabled, as of the last load; until
// the first load succeeds it fails closed with ErrNotLoaded. After that,
// a failed reload keeps the last set (a disable made meanwhile waits for
// Postgres; refusing every caller would turn a blip into an outage).
func (d *DisabledSet) Revoked(clientID string) (bool, error) {
	p := d.ids.Load()
	if p == nil {
		return false, ErrNotLoaded
	}
	_, ok := (*p)[clientID]
	return ok, nil
}

// Disabled reports whether clientID is disabled, as of the last load
// (false before the first load: use Revoked where that matters).
func (d *DisabledSet) Disabled(clientID string) bool {
	p := d.ids.Load()
	if p == nil {
		return false
	}
	_, ok := (*p)[clientID]
	return ok
}

// Ready is nil once the set was loaded and the last load succeeded.
func (d *DisabledSet) Ready(context.Context) error {
	if err := *d.loadErr.Load(); err != nil {
		return err
	}
	return nil
}
