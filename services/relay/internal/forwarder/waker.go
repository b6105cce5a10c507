package forwarder

import (
	"context"
	"sync"
	"time"
)

// waker lets forwarding loops sleep until new outbox rows are announced.
// A generation counter closes the gap between "found nothing" and "start
// waiting": a loop that read generation g before its claim returns at once
// from Wait(g) if anything was announced since.
type waker struct {
	mu  sync.Mutex
	gen uint64
	ch  chan struct{}
}

func newWaker() *waker { return &waker{ch: make(chan struct{})} }

// generation returns the current generation.
func (w *waker) generation() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gen
}

// broadcast wakes every waiter.
func (w *waker) broadcast() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gen++
	close(w.ch)
	w.ch = make(chan struct{})
}

// wait returns when a broadcast happened after generation since, after
// timeout, or when ctx ends.
func (w *waker) wait(ctx context.Context, since uint64, timeout time.Duration) {
	w.mu.Lock()
	if w.gen != since {
		w.mu.Unlock()
		return
	}
	ch := w.ch
	w.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
	}
}
