// Package app wires the replay service: the dead-letter store, the drain
// of every DLQ, the admin API behind access tokens with the admin scope,
// the operator console (/console/) on the same listener,
// the runner of bulk replay operations, the janitor that deletes archived
// dead letters past their retention, and the ops listener.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/switchyard/switchyard/libs/accesstoken"
	"github.com/switchyard/switchyard/libs/apikeys"
	"github.com/switchyard/switchyard/libs/auditlog"
	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/jobcatalog"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/netrules"
	"github.com/switchyard/switchyard/libs/oauthclients"
	"github.com/switchyard/switchyard/libs/ops"
	"github.com/switchyard/switchyard/libs/retention"
	"github.com/switchyard/switchyard/libs/secrets"
	"github.com/switchyard/switchyard/libs/sqsqueue"
	"github.com/switchyard/switchyard/libs/tlsreload"
	"github.com/switchyard/switchyard/libs/usage"
	"github.com/switchyard/switchyard/services/replay/internal/adminapi"
	"github.com/switchyard/switchyard/services/replay/internal/bulkreplay"
	"github.com/switchyard/switchyard/services/replay/internal/console"
	"github.com/switchyard/switchyard/services/replay/internal/deadletterstore"
	"github.com/switchyard/switchyard/services/replay/internal/drain"
)

// Config is the replay service's configuration.
type Config struct {
	Addr             string        `conf:"default::8083,env:SWITCHYARD_REPLAY_ADDR,help:admin API listener address"`
	OpsAddr          string        `conf:"default::9093,env:SWITCHYARD_REPLAY_OPS_ADDR,help:ops listener (/healthz /readyz /metrics)"`
	MaxConns         int           `conf:"default:1024,env:SWITCHYARD_REPLAY_MAX_CONNS,help:open connections at most (each holds ~20 KiB while open and idle ones too); more wait to be accepted (0: no limit)"`
	MaxConnsPerAddr  int           `conf:"default:256,env:SWITCHYARD_REPLAY_MAX_CONNS_PER_ADDR,help:open connections at most from one TCP peer; one more is closed at once; trusted proxies are exempt (0: no limit)"`
	TrustedProxies   string        `conf:"env:SWITCHYARD_REPLAY_TRUSTED_PROXIES,help:CIDRs of the proxies in front of the admin API and console whose forwarding header is believed (empty: none; the TCP peer is the client)"`
	ForwardedHeader  string        `conf:"default:X-Forwarded-For,env:SWITCHYARD_REPLAY_FORWARDED_HEADER,help:the one forwarding header the trusted proxies maintain: X-Forwarded-For or Forwarded"`
	DatabaseURL      config.Secret `conf:"required,mask,env:DATABASE_URL,help:Postgres URL or vault:<mount>/<path>#<key>"`
	JobsFile         string        `conf:"default:deployments/config/jobs.yaml,env:SWITCHYARD_JOBS_FILE,help:job types file (their DLQs are drained; edited payloads are validated against it)"`
	ArchiveRetention time.Duration `conf:"default:720h,env:SWITCHYARD_REPLAY_ARCHIVE_RETENTION,help:how long an archived dead letter is kept before it is deleted"`
	DrainWait        time.Duration `conf:"default:20s,env:SWITCHYARD_REPLAY_DRAIN_WAIT,help:long-poll wait of each DLQ receive (at most 20s)"`
	OperationsScan   time.Duration `conf:"default:2s,env:SWITCHYARD_REPLAY_OPERATIONS_SCAN,help:how often to look for bulk replays no replay service is running (a killed one's are resumed)"`
	MaxOperations    int           `conf:"default:4,env:SWITCHYARD_REPLAY_MAX_OPERATIONS,help:bulk replays one replay service runs at once"`
	StatsInterval    time.Duration `conf:"default:15s,env:SWITCHYARD_REPLAY_STATS_INTERVAL,help:how often the dead-letter counts by job type and fingerprint are read for the metrics"`
	ShutdownTimeout  time.Duration `conf:"default:20s,env:SWITCHYARD_SHUTDOWN_TIMEOUT,help:grace period for in-flight requests"`
	TLSCertFile      string        `conf:"env:SWITCHYARD_REPLAY_TLS_CERT_FILE,help:PEM certificate for HTTPS on the admin listener (reloaded when replaced; empty: plain HTTP)"`
	TLSKeyFile       string        `conf:"env:SWITCHYARD_REPLAY_TLS_KEY_FILE,help:PEM private key of the certificate"`
	TLSClientCAFile  string        `conf:"env:SWITCHYARD_REPLAY_TLS_CLIENT_CA_FILE,help:PEM CA bundle: callers must present a client certificate from it (mTLS) as well as a token"`
	Auth             accesstoken.Settings
	Console          console.Settings
	Queues           sqsqueue.Config
	Retention        retention.Settings
	APIKeyPepper     config.Secret `conf:"mask,env:SWITCHYARD_API_KEY_PEPPER,help:the gateways' API key pepper (a vault: reference) with which the admin API makes keys; empty: it lists and revokes them only"`
	OpsToken         config.Secret `conf:"mask,env:SWITCHYARD_OPS_TOKEN,help:bearer token that lets a non-loopback peer change settings on the ops listener (PUT /loglevel) or profile the process (/debug/pprof/); a vault: reference; empty: loopback only"`
	// Vault is where secrets come from (VAULT_ADDR and login); empty:
	// none, secrets from the environment (development).
	Vault secrets.Config
}

// Validate reports settings the replay service cannot run with, naming
// their variables.
func (c Config) Validate() error {
	var errs []error
	if _, err := jobcatalog.Load(c.JobsFile); err != nil {
		errs = append(errs, fmt.Errorf("SWITCHYARD_JOBS_FILE: %w", err))
	}
	if c.ArchiveRetention < time.Hour {
		errs = append(errs, fmt.Errorf("SWITCHYARD_REPLAY_ARCHIVE_RETENTION %s must be at least 1h", c.ArchiveRetention))
	}
	if c.DrainWait < 0 || c.DrainWait > 20*time.Second {
		errs = append(errs, fmt.Errorf("SWITCHYARD_REPLAY_DRAIN_WAIT %s must be between 0s and 20s", c.DrainWait))
	}
	if c.StatsInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("SWITCHYARD_REPLAY_STATS_INTERVAL %s must be at least 100ms", c.StatsInterval))
	}
	if c.OperationsScan < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("SWITCHYARD_REPLAY_OPERATIONS_SCAN %s must be at least 100ms", c.OperationsScan))
	}
	if c.MaxOperations < 1 || c.MaxOperations > 16 {
		errs = append(errs, fmt.Errorf("SWITCHYARD_REPLAY_MAX_OPERATIONS %d must be from 1 to 16", c.MaxOperations))
	}
	if _, err := netrules.NewClientIP(c.TrustedProxies, c.ForwardedHeader); err != nil {
		errs = append(errs, fmt.Errorf("SWITCHYARD_REPLAY_TRUSTED_PROXIES / _FORWARDED_HEADER: %w", err))
	}
	if c.MaxConns < 0 || c.MaxConnsPerAddr < 0 {
		errs = append(errs, fmt.Errorf("SWITCHYARD_REPLAY_MAX_CONNS %d and _MAX_CONNS_PER_ADDR %d must not be negative (0: no limit)", c.MaxConns, c.MaxConnsPerAddr))
	}
	if err := c.Console.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Queues.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Retention.Validate(c.Queues.Retention); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Run serves the admin API and drains the DLQs until ctx ends. An invalid
// configuration is a config.ErrInvalid (exit status 2).
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return config.Invalid(err)
	}
	catalog, err := jobcatalog.Load(cfg.JobsFile)
	if err != nil {
		return config.Invalid(err)
	}
	dbCfg := database.Config{URL: cfg.DatabaseURL.Value(), ApplicationName: "switchyard-replay", MaxConns: int32(8 + cfg.MaxOperations), Registerer: prometheus.DefaultRegisterer} //nolint:gosec // at most 24 (Validate)
	pool, dbCfg, err := database.OpenWithVault(ctx, dbCfg, cfg.Vault)
	if err != nil {
		return err
	}
	defer pool.Close()
	queues, _, err := sqsqueue.Connect(ctx, cfg.Queues, logger, prometheus.DefaultRegisterer)
	if err != nil {
		return err
	}
	jobTypes, err := dlqTypes(ctx, queues, catalog)
	if err != nil {
		return err
	}
	clients, err := oauthclients.New(pool)
	if err != nil {
		return err
	}
	disabled := oauthclients.NewDisabledSet(clients, database.NewDialer(dbCfg), cfg.Auth.DisabledPoll, logger)
	verifier, err := cfg.Auth.NewIssuers(disabled.Revoked, prometheus.DefaultRegisterer, logger)
	if err != nil {
		return config.Invalid(err)
	}

	store := deadletterstore.New(pool)
	dr := drain.New(queues, store, logger, prometheus.DefaultRegisterer)
	dr.WaitTime = cfg.DrainWait
	runner := bulkreplay.New(store, bulkreplay.Config{
		ScanInterval: cfg.OperationsScan, MaxConcurrent: cfg.MaxOperations, Logger: logger, Registerer: prometheus.DefaultRegisterer,
	})
	stats := deadletterstore.NewStatsSampler(store, cfg.StatsInterval, prometheus.DefaultRegisterer, logger)
	tlsFiles := tlsreload.Files{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile, ClientCAFile: cfg.TLSClientCAFile}
	var cert *tlsreload.Certificate
	if tlsFiles.Enabled() || tlsFiles.ClientCAFile != "" {
		if cert, err = tlsreload.Load("admin", tlsFiles, tlsreload.NewMetrics(prometheus.DefaultRegisterer), logger); err != nil {
			return config.Invalid(err)
		}
	}
	jan, err := retention.New(pool, cfg.Retention, retentionTables(pool, store, cfg, catalog), logger, prometheus.DefaultRegisterer)
	if err != nil {
		return err
	}
	httpMetrics := httpserver.NewHTTPMetrics(prometheus.DefaultRegisterer)
	e := httpserver.NewEcho(logger, httpserver.WithMetrics(httpMetrics))
	// Validate has parsed them: the client behind trusted proxies is who
	// sign-in limits, audit rows and the token service's limits see.
	clientIP, _ := netrules.NewClientIP(cfg.TrustedProxies, cfg.ForwardedHeader)
	e.IPExtractor = clientIP.Extract
	api := adminapi.New(store, catalog, cfg.ArchiveRetention)
	api.Retention = jan.Pass
	api.Kick = runner.Kick
	api.Jobs = jobstore.New(pool)
	api.JobTypes = &adminapi.JobTypes{Pool: pool, Depth: queues.Depth}
	api.Usage = func(ctx context.Context, q usage.Query) (usage.Report, error) { return usage.Read(ctx, pool, q) }
	api.UsageSeries = func(ctx context.Context, q usage.Query, step time.Duration) ([]usage.Point, error) {
		return usage.Series(ctx, pool, q, step)
	}
	if api.Keys, err = apiKeysAdmin(cfg, pool, clients); err != nil {
		return config.Invalid(err)
	}
	refusals := auditlog.NewRefusals(pool, auditlog.DefaultRefusalLimits, prometheus.DefaultRegisterer, logger)
	api.Mount(e.Echo, adminapi.GuardsFor(verifier, logger, refusals))
	if cfg.Console.Enabled {
		con, err := console.New(cfg.Console, console.Deps{
			Sessions: console.NewSessions(pool, cfg.Console.SessionIdle, cfg.Console.SessionMax),
			API:      e, Store: store, Authenticator: verifier, Issuer: cfg.Auth.Issuer, Refusals: refusals, Logger: logger,
		})
		if err != nil {
			return err
		}
		con.Mount(e.Echo)
	}
	e.RouteNotFound("/*", func(echo.Context) error { return echo.ErrNotFound })

	publicL, opsL, err := httpserver.ListenPublicAndOps(ctx, cfg.Addr, cfg.OpsAddr)
	if err != nil {
		return err
	}
	publicL = httpserver.LimitConnections(publicL, httpserver.ConnLimits{Total: cfg.MaxConns, PerPeer: cfg.MaxConnsPerAddr,
		IPv6PrefixBits: netrules.DefaultIPv6PrefixBits, Exempt: clientIP.Trusted, Refused: httpMetrics.ConnectionRefused})
	opsSrv := ops.New(logger, nil)
	// A new version of the token in Vault applies without a restart.
	if err := config.Follow(ctx, cfg.OpsToken, cfg.Vault.Client(), opsSrv.SetAdminToken); err != nil {
		return err
	}
	opsSrv.AddCheck("postgres", pool.Ping)
	opsSrv.AddCheck("sqs", queues.Ping)
	opsSrv.AddCheck("issuer_keys", verifier.Ready)
	opsSrv.AddCheck("disabled_clients", disabled.Ready)
	opsSrv.AddCheck("dlq_drain", dr.Ready)
	logger.Info("replay service running", "addr", publicL.Addr().String(), "ops_addr", opsL.Addr().String(), "dead_letter_queues", jobTypes)
	opsSrv.AddVault(cfg.Vault.Client())
	return opsSrv.Serve(ctx, opsL, secrets.Alongside(cfg.Vault.Client(), func(ctx context.Context) error {
		// Background loops: each Run blocks until ctx ends.
		go disabled.Run(ctx)
		go verifier.Run(ctx)
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return dr.Run(gctx, jobTypes) })
		g.Go(func() error { jan.Run(gctx); return nil })
		g.Go(func() error { stats.Run(gctx); return nil })
		g.Go(func() error { refusals.Run(gctx); return nil })
		g.Go(func() error { return runner.Run(gctx) })
		srv := httpserver.NewServer(e, logger)
		if cert != nil {
			srv.TLSConfig = cert.Config()
			g.Go(func() error { cert.Run(gctx, 5*time.Second); return nil })
		}
		g.Go(func() error {
			return httpserver.Serve(gctx, srv, publicL, cfg.ShutdownTimeout)
		})
		return g.Wait()
	}))
}

// dlqTypes returns the job types whose DLQs to drain: those of the catalog
// and any other queue under the prefix that has a DLQ (a type removed from
// the catalog may still hold dead letters).
//
// With SWITCHYARD_SQS_EXISTING_QUEUES (queues managed by Terraform) the
// catalog's types only: listing queues would need sqs:ListQueues, which
// the replay service's policy does not grant; a type removed from the
// catalog keeps its DLQ in Terraform until it is drained.
func dlqTypes(ctx context.Context, queues *sqsqueue.Queues, catalog *jobcatalog.Catalog) ([]string, error) {
	types := catalog.Names()
	prefix := queues.Config().Prefix
	var next *string
	for !queues.Config().ExistingQueues {
		out, err := queues.Client().ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: &prefix, NextToken: next})
		if err != nil {
			return nil, fmt.Errorf("listing dead-letter queues: %w", err)
		}
		for _, u := range out.QueueUrls {
			name := u[strings.LastIndex(u, "/")+1:]
			if jt, ok := strings.CutSuffix(strings.TrimPrefix(name, prefix), sqsqueue.DLQSuffix); ok && jt != "" && !slices.Contains(types, jt) {
				types = append(types, jt)
			}
		}
		if out.NextToken == nil {
			break
		}
		next = out.NextToken
	}
	if len(types) == 0 {
		return nil, errors.New("no job types, so no dead-letter queues to drain")
	}
	slices.Sort(types)
	return types, nil
}

// retentionTables are the tables the replay service's janitor trims: the
// job tables (a job named by a stored dead letter stays, and a
// dead-lettered one stays at least as long as its DLQ keeps messages) and
// archived dead letters past their retention.
func retentionTables(pool *pgxpool.Pool, store *deadletterstore.Store, cfg Config, catalog *jobcatalog.Catalog) []retention.Table {
	byType := map[string]time.Duration{}
	for _, name := range catalog.Names() {
		if jt, _ := catalog.Lookup(name); jt.Retention > 0 {
			byType[name] = jt.Retention
		}
	}
	tables := retention.JobTables(pool, cfg.Retention, jobstore.Retention{
		ByType: byType, DeadLetteredAtLeast: cfg.Queues.DLQRetention, KeepSQL: deadletterstore.NamesJobSQL("j.id"),
	})
	return append(tables, retention.Table{
		Name: "dead_letters", Retention: "archived: " + cfg.ArchiveRetention.String(),
		Trim:   store.PurgeExpired,
		Oldest: store.Oldest,
	})
}

// apiKeysAdmin is what the admin API manages API keys with: it makes keys
// only with the pepper.
func apiKeysAdmin(cfg Config, pool *pgxpool.Pool, clients *oauthclients.Store) (*adminapi.APIKeys, error) {
	var hasher *apikeys.Hasher
	if p := cfg.APIKeyPepper.Value(); p != "" {
		var err error
		if hasher, err = apikeys.NewHasher([]byte(p)); err != nil {
			return nil, fmt.Errorf("SWITCHYARD_API_KEY_PEPPER: %w", err)
		}
	}
	return &adminapi.APIKeys{Store: apikeys.NewStore(pool, hasher), ClientScopes: clients.Scopes, CanCreate: hasher != nil}, nil
}
