// Package database opens the pgx connection pools Switchyard's services use.
package database

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Config tunes a pool. Zero values take the defaults noted.
type Config struct {
	// URL is a postgres:// connection URL.
	URL string
	// ApplicationName shows in pg_stat_activity.
	ApplicationName string
	// MaxConns caps the pool (default 16).
	MaxConns int32
	// ConnectTimeout bounds each connection attempt (default 5 s).
	ConnectTimeout time.Duration
}

// Open creates a pool and checks that the database answers.
func Open(ctx context.Context, cfg Config) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("parsing database URL: %w", err)
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	} else {
		pc.MaxConns = 16
	}
	timeout := cfg.ConnectTimeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	pc.ConnConfig.ConnectTimeout = timeout
	if cfg.ApplicationName != "" {
		pc.ConnConfig.RuntimeParams["application_name"] = cfg.ApplicationName
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("creating database pool: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to database %s@%s/%s: %w", pc.ConnConfig.User, pc.ConnConfig.Host, pc.ConnConfig.Database, err)
	}
	return pool, nil
}
