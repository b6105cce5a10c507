package inbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/inbox"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

func TestRecordOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	job := uuid.NewString()

	seen, err := inbox.Seen(ctx, pool, "m1")
	require.NoError(t, err)
	require.False(t, seen)

	// A first transaction records m1 but has not committed: a second one
	// waits for it, then learns that m1 was applied.
	tx1, err := pool.Begin(ctx)
	require.NoError(t, err)
	first, err := inbox.Record(ctx, tx1, "m1", job, "h")
	require.NoError(t, err)
	require.True(t, first)

	result := make(chan bool, 1)
	go func() {
		tx2, err := pool.Begin(ctx)
		if err != nil {
			result <- true
			return
		}
		defer tx2.Rollback(ctx) //nolint:errcheck
		again, err := inbox.Record(ctx, tx2, "m1", job, "h")
		result <- err != nil || again
	}()
	// Wait until the second transaction is blocked on the first's row lock.
	require.Eventually(t, func() bool {
		var waiting int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		return err == nil && waiting == 1
	}, 10*time.Second, 10*time.Millisecond)
	select {
	case <-result:
		t.Fatal("second Record returned while the first transaction was open")
	default:
	}
	require.NoError(t, tx1.Commit(ctx))
	require.False(t, <-result, "the second delivery must see the first")

	seen, err = inbox.Seen(ctx, pool, "m1")
	require.NoError(t, err)
	require.True(t, seen)

	// A rolled-back record leaves no trace.
	tx3, err := pool.Begin(ctx)
	require.NoError(t, err)
	first, err = inbox.Record(ctx, tx3, "m2", job, "h")
	require.NoError(t, err)
	require.True(t, first)
	require.NoError(t, tx3.Rollback(ctx))
	seen, err = inbox.Seen(ctx, pool, "m2")
	require.NoError(t, err)
	require.False(t, seen)
}
