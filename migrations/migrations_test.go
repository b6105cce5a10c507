package migrations_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/switchyard/switchyard/libs/devstack"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/migrations"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// TestUpConcurrentlyFromEmpty starts from an empty database (not the
// template) and runs four migrators at once, as replicas starting together
// would: every migration is applied exactly once.
func TestUpConcurrentlyFromEmpty(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	server := stacktest.ServerURL(t)
	name := "t_" + stacktest.RandomSuffix(t, 8)
	url, err := devstack.EnsureDatabase(ctx, server, name)
	require.NoError(t, err)
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), server)
		require.NoError(t, err)
		defer conn.Close(context.Background())
		_, err = conn.Exec(context.Background(), "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		require.NoError(t, err)
	})

	applied := make([][]int64, 4)
	var g errgroup.Group
	for i := range applied {
		g.Go(func() error {
			v, err := migrations.Up(ctx, url, nil)
			applied[i] = v
			return err
		})
	}
	require.NoError(t, g.Wait())

	latest, err := migrations.Latest()
	require.NoError(t, err)
	var total int
	for _, a := range applied {
		total += len(a)
	}
	require.EqualValues(t, latest, total, "each migration applied once across all runners")

	again, err := migrations.Up(ctx, url, nil)
	require.NoError(t, err)
	require.Empty(t, again)

	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	for _, table := range []string{"jobs", "watermill_outbox", "inbox", "demo_text_stats"} {
		var exists bool
		require.NoError(t, conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists))
		require.True(t, exists, table)
	}
}

// TestOutboxInsertNotifies checks the trigger the relay's wake-up relies on.
func TestOutboxInsertNotifies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := stacktest.NewDatabase(t)
	listener, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer listener.Close(ctx)
	_, err = listener.Exec(ctx, "LISTEN switchyard_outbox")
	require.NoError(t, err)

	writer, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer writer.Close(ctx)
	_, err = writer.Exec(ctx, `INSERT INTO watermill_outbox (uuid, payload, metadata) VALUES ('m1', '{}', '{}'), ('m2', '{}', '{}')`)
	require.NoError(t, err)

	// A missing trigger must fail here, not hang until the test binary's
	// timeout.
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := listener.WaitForNotification(waitCtx)
	require.NoError(t, err, "no NOTIFY within 10s of the insert")
	require.Equal(t, "switchyard_outbox", n.Channel)
}

// TestEveryTableHasAnOwnerService: every table the migrations create is
// granted to at least one service's role (migrations/00014), so that a new
// table without grants fails here rather than in production; and no
// service may change or erase the audit log.
func TestEveryTableHasAnOwnerService(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, stacktest.NewDatabase(t))
	require.NoError(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `
		SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'switchyard_schema_version'
		  AND NOT EXISTS (
			SELECT 1 FROM information_schema.role_table_grants g
			WHERE g.table_name = c.relname AND g.grantee LIKE 'switchyard\_%' AND g.grantee <> 'switchyard_app')
		  AND NOT EXISTS (
			SELECT 1 FROM information_schema.role_column_grants g
			WHERE g.table_name = c.relname AND g.grantee LIKE 'switchyard\_%' AND g.grantee <> 'switchyard_app')`)
	require.NoError(t, err)
	orphans, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Empty(t, orphans, "tables no service role has grants on: add them to a migration like 00014")

	var changers []string
	rows, err = conn.Query(ctx, `SELECT grantee || ':' || privilege_type FROM information_schema.role_table_grants
		WHERE table_name = 'admin_audit' AND grantee LIKE 'switchyard\_%' AND privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE')`)
	require.NoError(t, err)
	changers, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Empty(t, changers, "admin_audit is append-only for every service")
}

// TestEachTableHasOneOwnerInCode: every table the migrations create is
// named in SQL by one package's Go code only, its owner (tests aside), so
// that a change to a table's rules has one place to go. The owner offers
// named operations (jobstore.MarkReplayed, auditlog.List...) and, for other
// tables' queries, SQL fragments (jobstore.StatusSQL).
func TestEachTableHasOneOwnerInCode(t *testing.T) {
	owners := map[string]string{
		"jobs": "libs/jobstore", "job_events": "libs/jobstore", "job_attempts": "libs/jobstore",
		"watermill_outbox": "libs/outbox", "inbox": "libs/inbox", "admin_audit": "libs/auditlog",
		"oauth_clients": "libs/oauthclients", "usage_minutes": "libs/usage", "client_quota_usage": "services/gateway/internal/quota",
		"dead_letters": "services/replay/internal/deadletterstore", "replay_operations": "services/replay/internal/deadletterstore",
		"replay_operation_items": "services/replay/internal/deadletterstore", "demo_text_stats": "services/worker/demo",
		"client_callback_hosts": "libs/callbacks", "callback_secrets": "libs/callbacks", "api_keys": "libs/apikeys",
		"console_sessions": "services/replay/internal/console", "job_type_pauses": "libs/jobpause", "dead_letter_groups": "services/replay/internal/deadletterstore", "dead_letter_hours": "services/replay/internal/deadletterstore",
	}
	created := map[string]bool{}
	sqlFiles, err := filepath.Glob("*.sql")
	require.NoError(t, err)
	for _, f := range sqlFiles {
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range regexp.MustCompile(`CREATE TABLE (?:IF NOT EXISTS )?([a-z_]+)`).FindAllSubmatch(src, -1) {
			created[string(m[1])] = true
		}
	}
	for table := range created {
		require.Contains(t, owners, table, "table %s has no owner package in this test", table)
	}
	uses := map[string][]string{}
	for _, dir := range []string{"../libs", "../services"} {
		require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for table := range created {
				if regexp.MustCompile(`(?i)\b(FROM|INTO|UPDATE|JOIN|TABLE)\s+` + table + `\b`).Match(src) {
					uses[table] = append(uses[table], strings.TrimPrefix(filepath.ToSlash(path), "../"))
				}
			}
			return nil
		}))
	}
	for table, files := range uses {
		for _, f := range files {
			require.True(t, strings.HasPrefix(f, owners[table]+"/"), "%s names table %s, whose owner is %s", f, table, owners[table])
		}
	}
}
