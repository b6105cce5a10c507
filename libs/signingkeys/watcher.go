package signingkeys

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Watcher keeps the current ring from a Source, reloading it every
// interval so that a rotation written to the source is picked up without a
// restart. A failed reload keeps the last good ring and is reported by Err.
type Watcher struct {
	source   Source
	interval time.Duration
	logger   *slog.Logger

	mu   sync.RWMutex
	ring Ring
	err  error
}

// NewWatcher loads the ring once (failing if it cannot) and returns a
// Watcher; call Run to keep it current.
func NewWatcher(ctx context.Context, source Source, interval time.Duration, logger *slog.Logger) (*Watcher, error) {
	ring, err := source.Load(ctx)
	if err != nil {
		return nil, err
	}
	if len(ring.Keys) == 0 {
		return nil, errors.New("the signing key source holds no keys; create one with `switchyard keys rotate`")
	}
	return &Watcher{source: source, interval: interval, logger: logger, ring: ring}, nil
}

// Run reloads the ring every interval until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.Reload(ctx)
		}
	}
}

// Reload reads the source now.
func (w *Watcher) Reload(ctx context.Context) {
	ring, err := w.source.Load(ctx)
	if err == nil && len(ring.Keys) == 0 {
		err = errors.New("the signing key source holds no keys")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.err = err
	if err != nil {
		w.logger.Error("reloading signing keys failed; keeping the last good set", "error", err)
		return
	}
	if !sameKeys(w.ring, ring) {
		ids := make([]string, len(ring.Keys))
		for i, k := range ring.Keys {
			ids[i] = k.ID
		}
		w.logger.Info("signing keys changed", "kids", ids)
	}
	w.ring = ring
}

// Ring returns the current ring.
func (w *Watcher) Ring() Ring {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.ring
}

// Err is the error of the last reload, nil when it succeeded.
func (w *Watcher) Err(context.Context) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.err
}

func sameKeys(a, b Ring) bool {
	return slices.EqualFunc(a.Keys, b.Keys, func(x, y Key) bool { return x.ID == y.ID && x.ActivatesAt.Equal(y.ActivatesAt) })
}
