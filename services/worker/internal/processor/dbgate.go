package processor

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/switchyard/switchyard/libs/clock"
)

// databaseGate holds the consumers that met an unreachable Postgres until
// it answers again. One prober per process pings it with capped
// exponential backoff and full jitter (100 ms .. 5 s); every consumer
// waits on the prober's result instead of retrying on its own, so an
// outage costs one ping every few seconds per worker, not one failed
// message per consumer per poll.
//
// While its consumer waits, a message stays received and hidden (its
// heartbeat runs), so an outage of any length neither adds to its receive
// count nor moves it to the DLQ; and since a waiting consumer frees no
// slot, the subscriber receives nothing new for it until Postgres is back.
type databaseGate struct {
	ping    func(context.Context) error
	logger  *slog.Logger
	waiting func(delta float64)

	mu      sync.Mutex
	back    chan struct{} // non-nil during an outage; closed when a ping succeeds
	waiters int
}

// wait returns nil once Postgres answers a ping, or ctx's error if ctx
// ends first (the worker shuts down).
func (g *databaseGate) wait(ctx context.Context) error {
	g.mu.Lock()
	if g.back == nil {
		g.back = make(chan struct{})
		go g.probe(g.back) //nolint:gosec // the probe serves every waiter, not this one: it ends when Postgres answers or no one waits
	}
	back := g.back
	g.waiters++
	g.mu.Unlock()
	g.waiting(1)
	defer func() {
		g.waiting(-1)
		g.mu.Lock()
		g.waiters--
		g.mu.Unlock()
	}()
	select {
	case <-back:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// probe pings until Postgres answers, then releases every waiter; it
// gives up when no one waits any more (the worker shut down).
func (g *databaseGate) probe(back chan struct{}) {
	start := time.Now()
	g.logger.Warn("Postgres is unreachable; consumers wait for it instead of failing their messages")
	for n := 1; ; n++ {
		time.Sleep(clock.FullJitter(100*time.Millisecond, 5*time.Second, n))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := g.ping(ctx)
		cancel()
		if err == nil {
			break
		}
		g.logger.Debug("Postgres still unreachable", "error", err, "pings", n)
		g.mu.Lock()
		if g.waiters == 0 {
			g.back = nil
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
	}
	g.mu.Lock()
	g.back = nil
	close(back)
	g.mu.Unlock()
	g.logger.Info("Postgres answers again; waiting consumers resume", "waited", time.Since(start).Round(time.Millisecond))
}
