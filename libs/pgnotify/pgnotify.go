// Package pgnotify keeps a Postgres LISTEN open on a dedicated connection
// and calls back on every notification, reconnecting with backoff when the
// connection is lost. The callback also runs after every (re)connect, since
// notifications sent while disconnected are gone: a listener uses it to
// catch up.
package pgnotify

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Listener listens on one channel.
type Listener struct {
	dbURL    string
	channel  string
	onNotify func()
	logger   *slog.Logger

	mu  sync.Mutex
	err error
}

// New returns a Listener for channel on the database at dbURL; onNotify
// runs on the listener's goroutine and should return quickly.
func New(dbURL, channel string, onNotify func(), logger *slog.Logger) *Listener {
	return &Listener{dbURL: dbURL, channel: channel, onNotify: onNotify, logger: logger,
		err: fmt.Errorf("not listening on %s yet", channel)}
}

// Run listens until ctx ends, reconnecting after failures (100 ms backoff
// doubling to 5 s).
func (l *Listener) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := l.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		l.setErr(err)
		l.logger.Warn("notifications lost; reconnecting", "channel", l.channel, "error", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
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

func (l *Listener) listenOnce(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, l.dbURL)
	if err != nil {
		return fmt.Errorf("connecting for LISTEN: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
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
