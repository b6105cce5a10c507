// Package migrations holds Switchyard's numbered SQL migrations, embedded in
// every binary, and the one runner that services, the CLI and tests use to
// apply them. Concurrent runners (several replicas starting at once) are
// serialised with a Postgres advisory lock.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed *.sql
var files embed.FS

// VersionTable is the table in which goose records applied versions.
const VersionTable = "switchyard_schema_version"

// Up applies every pending migration to the database at databaseURL and
// returns the versions it applied.
func Up(ctx context.Context, databaseURL string, logger *slog.Logger) ([]int64, error) {
	connConfig, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parsing database URL: %w", err)
	}
	db := stdlib.OpenDB(*connConfig)
	defer db.Close()
	return up(ctx, db, logger)
}

func up(ctx context.Context, db *sql.DB, logger *slog.Logger) ([]int64, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("creating migration lock: %w", err)
	}
	opts := []goose.ProviderOption{
		goose.WithSessionLocker(locker),
		goose.WithTableName(VersionTable),
		goose.WithDisableGlobalRegistry(true),
	}
	if logger != nil {
		opts = append(opts, goose.WithSlog(logger))
	}
	provider, err := goose.NewProvider(goose.DialectPostgres, db, files, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading migrations: %w", err)
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("applying migrations: %w", err)
	}
	applied := make([]int64, 0, len(results))
	for _, r := range results {
		applied = append(applied, r.Source.Version)
	}
	return applied, nil
}

// Latest returns the highest migration version embedded in this binary.
func Latest() (int64, error) {
	entries, err := files.ReadDir(".")
	if err != nil {
		return 0, fmt.Errorf("reading embedded migrations: %w", err)
	}
	var latest int64
	for _, e := range entries {
		v, err := goose.NumericComponent(e.Name())
		if err != nil {
			return 0, fmt.Errorf("migration %s: %w", e.Name(), err)
		}
		latest = max(latest, v)
	}
	return latest, nil
}

// Files returns the embedded migration files.
func Files() fs.FS { return files }
