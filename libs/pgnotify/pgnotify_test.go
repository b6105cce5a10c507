package pgnotify_test

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/pgnotify"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// connector dials url and keeps the rotation callback the listener
// registers, so that a test can rotate "credentials".
type connector struct {
	url    string
	mu     sync.Mutex
	rotate func()
}

func (c *connector) Connect(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, c.url) }

func (c *connector) OnRotate(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rotate = fn
}

// listenerPID is the backend that runs the listener's LISTEN, or 0.
func listenerPID(t *testing.T, db *pgx.Conn) int {
	t.Helper()
	var pid int
	err := db.QueryRow(context.Background(), `SELECT COALESCE(max(pid), 0) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'`).Scan(&pid)
	require.NoError(t, err)
	return pid
}

// TestListener: the callback runs once connected (to catch up) and on
// every NOTIFY; a lost connection is reported by Err and replaced, with a
// catch-up call; a credentials rotation replaces the connection at once.
func TestListener(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url := stacktest.NewDatabase(t)
	c := &connector{url: url}
	var calls atomic.Int64
	l := pgnotify.New(c, "switchyard_test", func() { calls.Add(1) }, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, l.Err(), "not listening on switchyard_test yet")
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()

	db, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer db.Close(context.Background())
	require.Eventually(t, func() bool { return l.Err() == nil && calls.Load() == 1 }, 10*time.Second, 10*time.Millisecond,
		"connected, and called once to catch up")
	for i := range 3 {
		_, err := db.Exec(ctx, "NOTIFY switchyard_test")
		require.NoError(t, err)
		require.Eventually(t, func() bool { return calls.Load() == int64(2+i) }, 10*time.Second, 10*time.Millisecond, "notification %d", i)
	}

	// The connection dies: reported, replaced, and caught up.
	pid := listenerPID(t, db)
	require.Positive(t, pid)
	before := calls.Load()
	_, err = db.Exec(ctx, "SELECT pg_terminate_backend($1)", pid)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		p := listenerPID(t, db)
		return p != 0 && p != pid && l.Err() == nil && calls.Load() > before
	}, 15*time.Second, 20*time.Millisecond, "a new connection listens and the callback catches up")
	after := calls.Load()
	_, err = db.Exec(ctx, "NOTIFY switchyard_test")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return calls.Load() > after }, 10*time.Second, 10*time.Millisecond, "notifications arrive again")

	// A rotation replaces the connection without waiting for a failure.
	pid = listenerPID(t, db)
	c.mu.Lock()
	rotate := c.rotate
	c.mu.Unlock()
	require.NotNil(t, rotate, "the listener registered for rotations")
	rotate()
	require.Eventually(t, func() bool {
		p := listenerPID(t, db)
		return p != 0 && p != pid && l.Err() == nil
	}, 10*time.Second, 20*time.Millisecond, "the rotation replaced the connection")

	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
