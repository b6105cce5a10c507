// Package pgnotify keeps a Postgres LISTEN open on a dedicated connection
// and calls back on every notification, reconnecting with backoff when the
// connection is lost, and at once when the database credentials rotate.
// The callback also runs after every (re)connect, since notifications sent
// while disconnected are gone: a listener uses it to catch up.
package pgnotify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard/switchyard/libs/clock"
)

// Connector opens the listener's connection (database.Dialer does).
type Connector interface {
	Connect(ctx context.Context) (*pgx.Conn, error)
	// OnRotate registers fn to run when new connections would use other
	// credentials: the listener then replaces its connection.
	OnRotate(fn func())
}

// Listener listens on one channel.
type Listener struct {
	connector Connector
	channel   string
	onNotify  func()
	logger    *slog.Logger

	mu     sync.Mutex
	err    error
	cancel context.CancelFunc // of the current connection
}

// New returns a Listener for channel on connections from connector;
// onNotify runs on the listener's goroutine and should return quickly.
func New(connector Connector, channel string, onNotify func(), logger *slog.Logger) *Listener {
	l := &Listener{connector: connector, channel: channel, onNotify: onNotify, logger: logger,
		err: fmt.Errorf("not listening on %s yet", channel)}
	connector.OnRotate(l.replace)
	return l
}

// replace closes the current connection; Run opens a new one at once.
func (l *Listener) replace() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancel != nil {
		l.cancel()
	}
}

// errReplaced ends a connection that replace closed.
var errReplaced = errors.New("connection replaced after a credentials rotation")

// Run listens until ctx ends, reconnecting after failures (a full-jitter
// pause below 100 ms doubling to 5 s, so that every process that lost its
// connection in one restart does not reconnect in the same instant).
func (l *Listener) Run(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		err := l.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errReplaced) {
			l.logger.Info("reconnecting for LISTEN with the new credentials", "channel", l.channel)
			continue
		}
		l.setErr(err)
		failures++
		backoff := clock.FullJitter(100*time.Millisecond, 5*time.Second, failures)
		l.logger.Warn("notifications lost; reconnecting", "channel", l.channel, "error", err, "backoff", backoff)
		if !clock.Sleep(ctx, backoff) {
			return
		}
	}
}

// Err is nil while the listener is connected, else why it is not.
func (l *Listener) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

func (l *Listener) setErr(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.err = err
}

func (l *Listener) listenOnce(parent context.Context) (err error) {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	l.mu.Lock()
	l.cancel = func() { cancel(errReplaced) }
	l.mu.Unlock()
	conn, err := l.connector.Connect(ctx)
	if err != nil {
		return fmt.Errorf("connecting for LISTEN: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	defer func() {
		if errors.Is(context.Cause(ctx), errReplaced) && parent.Err() == nil {
			err = errReplaced
		}
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.channel}.Sanitize()); err != nil {
		return fmt.Errorf("listening on %s: %w", l.channel, err)
	}
	l.setErr(nil)
	l.onNotify()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return fmt.Errorf("waiting for notification on %s: %w", l.channel, err)
		}
		l.onNotify()
	}
}
