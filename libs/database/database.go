// Package database opens the pgx connection pools, and the single
// connections for LISTEN, that Switchyard's services use, with the user
// and password of the URL or, with Vault's dynamic credentials, of the
// current lease: new connections use the current user, connections of a
// replaced user are closed as soon as they are idle, and in-flight work
// finishes on the connection it started on.
package database

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/IBM/pgxpoolprometheus"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/libs/secrets"
)

// Credentials supplies the user and password of new connections in place
// of the URL's (secrets.DatabaseCredentials does, from Vault).
type Credentials interface {
	// Current returns the user and password to connect with now.
	Current() (user, password string)
	// OnRotate registers fn to run after the user changed.
	OnRotate(fn func())
}

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
	// Credentials, when set, replace the URL's user and password.
	Credentials Credentials
	// Registerer, when set, receives the pool's statistics
	// (switchyard_pgxpool_*: connections acquired, idle, total and max,
	// acquire count and wait time, connections opened and destroyed).
	Registerer prometheus.Registerer
}

func (cfg Config) connConfig() (*pgxpool.Config, error) {
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
	return pc, nil
}

// OpenWithVault is how every service opens its pool: cfg with vault's
// short-lived users of its database role applied (UseVault; none when
// vault names no role), then Open. It returns cfg as applied, for dialers
// that need the same credentials (LISTEN connections).
func OpenWithVault(ctx context.Context, cfg Config, vault secrets.Config) (*pgxpool.Pool, Config, error) {
	if err := cfg.UseVault(ctx, vault); err != nil {
		return nil, cfg, err
	}
	pool, err := Open(ctx, cfg)
	return pool, cfg, err
}

// Open creates a pool and checks that the database answers.
func Open(ctx context.Context, cfg Config) (*pgxpool.Pool, error) {
	pc, err := cfg.connConfig()
	if err != nil {
		return nil, err
	}
	if creds := cfg.Credentials; creds != nil {
		pc.BeforeConnect = func(_ context.Context, cc *pgx.ConnConfig) error {
			cc.User, cc.Password = creds.Current()
			return nil
		}
		current := func(c *pgx.Conn) bool {
			user, _ := creds.Current()
			return c.Config().User == user
		}
		// A connection of a replaced user is not handed out again (the
		// caller gets another) and is closed when returned.
		pc.PrepareConn = func(_ context.Context, c *pgx.Conn) (bool, error) { return current(c), nil }
		pc.AfterRelease = current
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("creating database pool: %w", err)
	}
	if cfg.Registerer != nil {
		reg := prometheus.WrapRegistererWithPrefix("switchyard_", cfg.Registerer)
		// Another pool of this process already reports (tests, a CLI
		// command opening two): keep the first.
		if err := reg.Register(pgxpoolprometheus.NewCollector(pool, nil)); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			pool.Close()
			return nil, fmt.Errorf("registering the pool's metrics: %w", err)
		}
	}
	if cfg.Credentials != nil {
		// Idle connections of the old user close at once; checked-out ones
		// when they are returned.
		cfg.Credentials.OnRotate(pool.Reset)
	}
	pingCtx, cancel := context.WithTimeout(ctx, pc.ConnConfig.ConnectTimeout)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		user := pc.ConnConfig.User
		if cfg.Credentials != nil {
			user, _ = cfg.Credentials.Current()
		}
		return nil, fmt.Errorf("connecting to database %s@%s/%s: %w", user, pc.ConnConfig.Host, pc.ConnConfig.Database, err)
	}
	return pool, nil
}

// UseVault makes cfg connect as short-lived users of vault's database
// role (secrets.Config.DatabaseRole), when it names one.
func (cfg *Config) UseVault(ctx context.Context, vault secrets.Config) error {
	creds, err := vault.DatabaseCredentials(ctx)
	if err != nil {
		return err
	}
	if creds != nil {
		cfg.Credentials = creds
	}
	return nil
}

// Dialer opens single connections (for LISTEN) the way Open's pool does.
type Dialer struct {
	cfg Config
}

// NewDialer returns a Dialer for cfg (MaxConns is ignored).
func NewDialer(cfg Config) Dialer { return Dialer{cfg: cfg} }

// Connect opens one connection with the current credentials.
func (d Dialer) Connect(ctx context.Context) (*pgx.Conn, error) {
	pc, err := d.cfg.connConfig()
	if err != nil {
		return nil, err
	}
	cc := pc.ConnConfig
	if d.cfg.Credentials != nil {
		cc.User, cc.Password = d.cfg.Credentials.Current()
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connecting to database %s@%s/%s: %w", cc.User, cc.Host, cc.Database, err)
	}
	return conn, nil
}

// OnRotate registers fn to run when the credentials change (never without
// Credentials), so that a long-lived connection can be replaced.
func (d Dialer) OnRotate(fn func()) {
	if d.cfg.Credentials != nil {
		d.cfg.Credentials.OnRotate(fn)
	}
}

// Unavailable reports whether err means the database could not be reached
// or could not serve the statement for now (a refused or broken
// connection, a server shutting down or starting up, too many
// connections, a closed pool): an outage to answer with 503 and retry
// later, not a fault of the statement. A cancelled or expired context is
// the caller's own outcome, not an outage.
func Unavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03", // shutdown, crash, cannot connect now
			pgErr.Code == "53300", // too many connections
			pgErr.Code == "25006": // read-only transaction: a standby during failover
			return true
		}
		return false
	}
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	return errors.As(err, &netErr) || errors.As(err, &connectErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, puddle.ErrClosedPool) || pgconn.SafeToRetry(err)
}

// Contended reports whether err means the transaction lost a race with
// another one (a serialization failure or a deadlock Postgres broke by
// failing it): nothing it did was kept, and running it again may succeed.
func Contended(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}
