package respcache

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrAbandoned is the cause a coalesced call's context is cancelled with
// when every caller waiting for it has gone.
var ErrAbandoned = errors.New("every caller waiting for the call has gone")

// Group coalesces concurrent calls for one key: the first caller starts
// fn, later callers wait for its result. Unlike x/sync/singleflight, each
// caller waits only as long as its own context allows, and the call itself
// is cancelled (with cause ErrAbandoned) once no caller waits any more, so
// one impatient client neither cancels the call for the others nor leaves
// it running for nobody.
type Group[T any] struct {
	mu    sync.Mutex
	calls map[string]*flight[T]
}

type flight[T any] struct {
	done    chan struct{}
	cancel  context.CancelCauseFunc
	waiters int
	val     T
	err     error
}

// Call is a call in flight that callers have joined.
type Call[T any] struct {
	g   *Group[T]
	key string
	f   *flight[T]
}

// Join starts fn for key unless a call for key is in flight, and joins
// the call; the caller must then Wait for it. fn runs in its own
// goroutine with a context that keeps ctx's values but not its
// cancellation. shared reports whether the call was started by another
// caller.
func (g *Group[T]) Join(ctx context.Context, key string, fn func(ctx context.Context) (T, error)) (c *Call[T], shared bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.calls == nil {
		g.calls = map[string]*flight[T]{}
	}
	f, shared := g.calls[key]
	if shared {
		f.waiters++
	} else {
		callCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
		f = &flight[T]{done: make(chan struct{}), cancel: cancel, waiters: 1}
		g.calls[key] = f
		go g.run(callCtx, key, f, fn)
	}
	return &Call[T]{g: g, key: key, f: f}, shared
}

// Wait returns the call's result, or ctx's cause if ctx ends first; the
// last caller to give up cancels the call.
func (c *Call[T]) Wait(ctx context.Context) (T, error) {
	select {
	case <-c.f.done:
		return c.f.val, c.f.err
	case <-ctx.Done():
		c.g.mu.Lock()
		c.f.waiters--
		if c.f.waiters == 0 {
			// Forgotten at once, so that a caller arriving now starts
			// afresh rather than joining a cancelled call.
			c.f.cancel(ErrAbandoned)
			c.g.forget(c.key, c.f)
		}
		c.g.mu.Unlock()
		var zero T
		return zero, context.Cause(ctx)
	}
}

// Do joins the call for key (see Join) and waits for it.
func (g *Group[T]) Do(ctx context.Context, key string, fn func(ctx context.Context) (T, error)) (val T, shared bool, err error) {
	c, shared := g.Join(ctx, key, fn)
	val, err = c.Wait(ctx)
	return val, shared, err
}

func (g *Group[T]) run(ctx context.Context, key string, f *flight[T], fn func(ctx context.Context) (T, error)) {
	defer func() {
		if p := recover(); p != nil {
			f.err = fmt.Errorf("coalesced call panicked: %v", p)
		}
		f.cancel(nil)
		g.mu.Lock()
		g.forget(key, f)
		g.mu.Unlock()
		close(f.done)
	}()
	f.val, f.err = fn(ctx)
}

// forget removes f from the calls in flight unless a newer call for key
// has replaced it. The caller holds g.mu.
func (g *Group[T]) forget(key string, f *flight[T]) {
	if g.calls[key] == f {
		delete(g.calls, key)
	}
}

// InFlight is the number of calls running.
func (g *Group[T]) InFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.calls)
}
