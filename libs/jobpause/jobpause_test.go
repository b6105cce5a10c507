package jobpause_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/jobpause"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestGateFollowsTheTable: until the table is read every type waits; a
// pause written by another connection reaches the gate through NOTIFY
// (the poll interval is an hour), cuts a running type's receive short
// and holds its loop, and a resume releases it; Set and Clear say
// whether they changed anything.
func TestGateFollowsTheTable(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dbURL := stacktest.NewDatabase(t)
	pool := stacktest.NewPoolURL(t, dbURL)
	gate := jobpause.NewGate(pool, database.NewDialer(database.Config{URL: dbURL}), time.Hour, slog.New(slog.DiscardHandler))

	require.Error(t, gate.Ready(ctx), "not ready before the first read")
	require.True(t, gate.IsPaused("orders"), "fail closed: nothing is received before the table is read")
	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	require.False(t, gate.Wait(short, "orders"), "Wait holds until ctx ends")
	stop()

	changed, err := jobpause.Set(ctx, pool, "billing", "ops-alice", "upstream down")
	require.NoError(t, err)
	require.True(t, changed)
	changed, err = jobpause.Set(ctx, pool, "billing", "ops-bob", "again")
	require.NoError(t, err)
	require.False(t, changed, "the first pause is kept")

	go gate.Run(ctx)
	require.Eventually(t, func() bool { return gate.Ready(ctx) == nil }, 10*time.Second, 10*time.Millisecond)
	require.False(t, gate.IsPaused("orders"))
	require.True(t, gate.Wait(ctx, "orders"))
	require.True(t, gate.IsPaused("billing"), "paused before the worker started: still paused")
	pauses, err := jobpause.List(ctx, pool)
	require.NoError(t, err)
	require.Len(t, pauses, 1)
	require.Equal(t, "ops-alice", pauses[0].PausedBy)

	// Pause a running type: its Paused channel closes, its loop waits.
	pausedCh := gate.Paused("orders")
	require.False(t, closed(pausedCh))
	_, err = jobpause.Set(ctx, pool, "orders", "ops-alice", "")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return closed(pausedCh) }, 5*time.Second, 5*time.Millisecond, "NOTIFY reaches the gate")
	released := make(chan bool, 1)
	go func() { released <- gate.Wait(ctx, "orders") }()
	select {
	case <-released:
		t.Fatal("a paused type's loop went on")
	case <-time.After(200 * time.Millisecond):
	}
	changed, err = jobpause.Clear(ctx, pool, "orders")
	require.NoError(t, err)
	require.True(t, changed)
	select {
	case ok := <-released:
		require.True(t, ok)
	case <-time.After(5 * time.Second):
		t.Fatal("resume did not release the loop")
	}
	require.False(t, closed(gate.Paused("orders")), "running again: a fresh, open channel")
	changed, err = jobpause.Clear(ctx, pool, "orders")
	require.NoError(t, err)
	require.False(t, changed)
}
