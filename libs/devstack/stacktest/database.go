package stacktest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard/switchyard/libs/devstack"
	"github.com/switchyard/switchyard/migrations"
)

// EnvKeepDatabases keeps per-test databases after the test, for debugging.
const EnvKeepDatabases = "SWITCHYARD_KEEP_TEST_DB"

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// NewDatabase returns the URL of a database of the test's own, created from
// a template that has every migration applied, and dropped when the test
// ends. Creating one costs a file copy, not a migration run.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	server := ServerURL(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	templateOnce.Do(func() { templateName, templateErr = ensureTemplate(ctx, server) })
	if templateErr != nil {
		tb.Fatalf("stacktest: preparing the migrated template database: %v", templateErr)
	}
	name := "t_" + RandomSuffix(tb, 8)
	if err := adminExec(ctx, server, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s",
		pgx.Identifier{name}.Sanitize(), pgx.Identifier{templateName}.Sanitize())); err != nil {
		tb.Fatalf("stacktest: creating test database: %v", err)
	}
	tb.Cleanup(func() {
		if os.Getenv(EnvKeepDatabases) != "" {
			tb.Logf("stacktest: kept database %s", name)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := adminExec(ctx, server, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", pgx.Identifier{name}.Sanitize())); err != nil {
			tb.Errorf("stacktest: dropping test database %s: %v", name, err)
		}
	})
	url, err := devstack.WithDatabase(server, name)
	if err != nil {
		tb.Fatalf("stacktest: %v", err)
	}
	return url
}

// ensureTemplate builds, once per server and migration set, a database with
// every migration applied. Test binaries run in parallel, so the build is
// serialised with an advisory lock and published by renaming a finished
// database, never half-built.
func ensureTemplate(ctx context.Context, server string) (string, error) {
	digest, err := migrationsDigest()
	if err != nil {
		return "", err
	}
	name := "switchyard_tmpl_" + digest
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		return "", fmt.Errorf("connecting to postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	const lockKey = 0x5357_5954 // "SWYT"
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		return "", fmt.Errorf("locking template creation: %w", err)
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockKey) }()

	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", fmt.Errorf("looking up template: %w", err)
	}
	if exists {
		return name, nil
	}
	building := name + "_building"
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{building}.Sanitize()+" WITH (FORCE)"); err != nil {
		return "", fmt.Errorf("dropping a half-built template: %w", err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{building}.Sanitize()); err != nil {
		return "", fmt.Errorf("creating template: %w", err)
	}
	buildingURL, err := devstack.WithDatabase(server, building)
	if err != nil {
		return "", err
	}
	if _, err := migrations.Up(ctx, buildingURL, nil); err != nil {
		return "", fmt.Errorf("migrating template: %w", err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s",
		pgx.Identifier{building}.Sanitize(), pgx.Identifier{name}.Sanitize())); err != nil {
		return "", fmt.Errorf("publishing template: %w", err)
	}
	// Templates of older migration sets are of little further use, but
	// another checkout (a CI run beside a working tree) may still be using
	// one: keep the newest few, drop the rest.
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'switchyard_tmpl_%' AND datname <> $1
		AND datname NOT LIKE '%_building' ORDER BY oid DESC OFFSET 3`, name)
	if err == nil {
		stale, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, s := range stale {
			_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{s}.Sanitize()+" WITH (FORCE)")
		}
	}
	return name, nil
}

func migrationsDigest() (string, error) {
	h := sha256.New()
	var names []string
	err := fs.WalkDir(migrations.Files(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".sql") {
			names = append(names, path)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("listing migrations: %w", err)
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := fs.ReadFile(migrations.Files(), n)
		if err != nil {
			return "", fmt.Errorf("reading migration %s: %w", n, err)
		}
		h.Write([]byte(n))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

func adminExec(ctx context.Context, server, sql string) error {
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		return fmt.Errorf("connecting to postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// NewPool returns a pool (20 connections) on a new database of the test's
// own (see NewDatabase), closed when the test ends.
func NewPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	return NewPoolURL(tb, NewDatabase(tb))
}

// NewPoolURL returns a pool (20 connections) on the database at url,
// closed when the test ends.
func NewPoolURL(tb testing.TB, url string) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		tb.Fatalf("stacktest: %v", err)
	}
	cfg.MaxConns = 20
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("stacktest: opening pool: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}
