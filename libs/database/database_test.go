package database_test

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/pgnotify"
	"github.com/switchyard/switchyard/libs/secrets"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// TestPoolFollowsRotatingCredentials runs queries through a pool whose
// users come from Vault's database secrets engine with a 6 s lease, for
// long enough that the user rotates at least twice: no query fails, new
// connections use the new user, a LISTEN connection moves to it too, and
// Vault drops the old users when their leases end.
func TestPoolFollowsRotatingCredentials(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := stacktest.NewDatabase(t)
	mount := stacktest.DatabaseEngine(t, dbURL, "6s")
	addr, token := stacktest.Vault(t)
	vc, err := secrets.New(ctx, secrets.Config{Addr: addr, Token: token}, nil)
	require.NoError(t, err)
	creds, err := vc.DatabaseCredentials(ctx, mount, "app")
	require.NoError(t, err)
	first := creds.User()
	require.NotEmpty(t, first)

	runCtx, stop := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Go(func() { _ = vc.Run(runCtx) })
	defer func() { stop(); bg.Wait() }()

	cfg := database.Config{URL: dbURL, ApplicationName: "rotation-test", MaxConns: 4, Credentials: creds}
	pool, err := database.Open(ctx, cfg)
	require.NoError(t, err)
	defer pool.Close()

	// A LISTEN connection through the dialer follows the rotation too.
	listenCfg := cfg
	listenCfg.ApplicationName = "rotation-listen"
	listener := pgnotify.New(database.NewDialer(listenCfg), "rotation_test", func() {}, slog.New(slog.DiscardHandler))
	bg.Go(func() { listener.Run(runCtx) })
	admin := stacktest.NewPoolURL(t, dbURL)
	listenerUser := func() string {
		var u string
		_ = admin.QueryRow(ctx, `SELECT usename FROM pg_stat_activity WHERE application_name = 'rotation-listen' AND state IS NOT NULL`).Scan(&u)
		return u
	}
	require.Eventually(t, func() bool { return listenerUser() == first }, 10*time.Second, 20*time.Millisecond)

	// Traffic: 4 workers insert and read, as the services do.
	var ok, failed atomic.Int64
	var users sync.Map
	var lastErr atomic.Value
	trafficCtx, stopTraffic := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for trafficCtx.Err() == nil {
				err := pgx.BeginFunc(trafficCtx, pool, func(tx pgx.Tx) error {
					var u string
					if err := tx.QueryRow(trafficCtx, `SELECT current_user`).Scan(&u); err != nil {
						return err
					}
					users.Store(u, true)
					_, err := tx.Exec(trafficCtx, `INSERT INTO inbox (message_id, job_id, handler) VALUES (gen_random_uuid()::text, gen_random_uuid(), 'rotation-test')`)
					return err
				})
				switch {
				case err == nil:
					ok.Add(1)
				case trafficCtx.Err() != nil:
				default:
					failed.Add(1)
					lastErr.Store(err)
				}
			}
		})
	}
	require.Eventually(t, func() bool { return creds.Rotations() >= 2 }, time.Minute, 50*time.Millisecond)
	latest := creds.User()
	require.Eventually(t, func() bool { _, seen := users.Load(latest); return seen }, 10*time.Second, 20*time.Millisecond,
		"traffic runs on the newest user")
	require.Eventually(t, func() bool { return listenerUser() == creds.User() }, 10*time.Second, 20*time.Millisecond,
		"the LISTEN connection runs on the newest user")
	stopTraffic()
	wg.Wait()
	if err, _ := lastErr.Load().(error); err != nil {
		t.Logf("last error: %v", err)
	}
	require.Zero(t, failed.Load(), "no query failed across the rotations")
	t.Logf("%d transactions, %d rotations, users seen: %v", ok.Load(), creds.Rotations(), keys(&users))
	require.GreaterOrEqual(t, len(keys(&users)), 3, "the traffic moved to each new user")

	// Vault drops the first user once its lease has ended.
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, admin.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE rolname = $1`, first).Scan(&n))
		return n == 0
	}, 30*time.Second, 100*time.Millisecond, "the first user is dropped")
	var current int
	require.NoError(t, admin.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE rolname = $1`, creds.User()).Scan(&current))
	require.Equal(t, 1, current, "the current user exists")
}

func keys(m *sync.Map) []string {
	var out []string
	m.Range(func(k, _ any) bool { out = append(out, k.(string)); return true })
	return out
}

// TestDeadlocksAreContended: two transactions that lock two rows in
// opposite orders deadlock on a real Postgres; the one it fails is
// Contended (run it again) and not Unavailable (no outage), and a
// statement's own error is neither.
func TestDeadlocksAreContended(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	_, err := pool.Exec(ctx, `CREATE TABLE pair (id int PRIMARY KEY); INSERT INTO pair VALUES (1), (2)`)
	require.NoError(t, err)

	errs := make([]error, 2)
	var wg sync.WaitGroup
	var locked sync.WaitGroup
	locked.Add(2)
	for i, order := range [][2]int{{1, 2}, {2, 1}} {
		wg.Go(func() {
			errs[i] = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SELECT * FROM pair WHERE id = $1 FOR UPDATE`, order[0]); err != nil {
					locked.Done()
					return err
				}
				locked.Done()
				locked.Wait() // both hold their first row
				_, err := tx.Exec(ctx, `SELECT * FROM pair WHERE id = $1 FOR UPDATE`, order[1])
				return err
			})
		})
	}
	wg.Wait()
	failed := errs[0]
	if failed == nil {
		failed = errs[1]
	}
	require.Error(t, failed, "one of the two is failed")
	require.True(t, errs[0] == nil || errs[1] == nil, "the other commits")
	require.True(t, database.Contended(failed), "%v", failed)
	require.False(t, database.Unavailable(failed))

	_, err = pool.Exec(ctx, `INSERT INTO pair VALUES (1)`)
	require.Error(t, err)
	require.False(t, database.Contended(err), "a duplicate key is the statement's own error")
}
