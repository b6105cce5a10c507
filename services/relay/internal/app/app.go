// Package app wires the relay: configuration, the Postgres pool, SQS and
// the forwarder, and the ops listener.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/jobcatalog"
	"github.com/switchyard/switchyard/libs/ops"
	"github.com/switchyard/switchyard/libs/outbox"
	"github.com/switchyard/switchyard/libs/secrets"
	"github.com/switchyard/switchyard/libs/sqsqueue"
	"github.com/switchyard/switchyard/services/relay/internal/forwarder"
)

// Config is the relay's configuration.
type Config struct {
	OpsAddr      string        `conf:"default::9091,env:SWITCHYARD_RELAY_OPS_ADDR,help:ops listener (/healthz /readyz /metrics)"`
	DatabaseURL  config.Secret `conf:"required,mask,env:DATABASE_URL,help:Postgres URL or vault:<mount>/<path>#<key>"`
	JobsFile     string        `conf:"default:deployments/config/jobs.yaml,env:SWITCHYARD_JOBS_FILE,help:job types file (their queues are provisioned at start)"`
	Loops        int           `conf:"default:8,env:SWITCHYARD_RELAY_LOOPS,help:batches forwarded concurrently"`
	BatchSize    int           `conf:"default:50,env:SWITCHYARD_RELAY_BATCH_SIZE,help:outbox rows per claimed batch"`
	PollInterval time.Duration `conf:"default:5s,env:SWITCHYARD_RELAY_POLL_INTERVAL,help:longest sleep without a NOTIFY"`
	MaxRate      float64       `conf:"default:0,env:SWITCHYARD_RELAY_MAX_RATE,help:most messages per second this relay sends (0: as fast as SQS takes them); what waits stays in the outbox"`
	// MaxSQSDelay is how far ahead a scheduled job's message goes to SQS
	// with DelaySeconds; one due later waits in the outbox.
	MaxSQSDelay time.Duration `conf:"default:15m,env:SWITCHYARD_RELAY_MAX_SQS_DELAY,help:a scheduled job's message due within this goes to SQS with DelaySeconds; later ones wait in the outbox (at most 15m: SQS's limit)"`
	// SampleInterval paces the backlog metrics: the outbox (one query)
	// and every job type's queue and DLQ (one GetQueueAttributes each).
	SampleInterval time.Duration `conf:"default:15s,env:SWITCHYARD_RELAY_SAMPLE_INTERVAL,help:how often the outbox backlog and the SQS queue depths are read for the metrics"`
	Queues         sqsqueue.Config
	OpsToken       config.Secret `conf:"mask,env:SWITCHYARD_OPS_TOKEN,help:bearer token that lets a non-loopback peer change settings on the ops listener (PUT /loglevel) or profile the process (/debug/pprof/); a vault: reference; empty: loopback only"`
	// Vault is where secrets come from (VAULT_ADDR and login); empty:
	// none, secrets from the environment (development).
	Vault secrets.Config
}

// Validate reports settings the relay cannot run with, naming their
// variables.
func (c Config) Validate() error {
	var errs []error
	if _, err := jobcatalog.Load(c.JobsFile); err != nil {
		errs = append(errs, fmt.Errorf("SWITCHYARD_JOBS_FILE: %w", err))
	}
	if c.Loops < 1 || c.Loops > 256 {
		errs = append(errs, fmt.Errorf("SWITCHYARD_RELAY_LOOPS=%d must be between 1 and 256", c.Loops))
	}
	if c.BatchSize < 1 || c.BatchSize > 1000 {
		errs = append(errs, fmt.Errorf("SWITCHYARD_RELAY_BATCH_SIZE=%d must be between 1 and 1000", c.BatchSize))
	}
	if c.PollInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("SWITCHYARD_RELAY_POLL_INTERVAL=%s must be at least 10ms", c.PollInterval))
	}
	if c.SampleInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("SWITCHYARD_RELAY_SAMPLE_INTERVAL=%s must be at least 100ms", c.SampleInterval))
	}
	if err := c.forwarderConfig().Validate(); err != nil && c.MaxRate != 0 {
		errs = append(errs, fmt.Errorf("SWITCHYARD_RELAY_MAX_RATE: %w", err))
	}
	if c.MaxSQSDelay < time.Second || c.MaxSQSDelay > outbox.MaxSQSDelay {
		errs = append(errs, fmt.Errorf("SWITCHYARD_RELAY_MAX_SQS_DELAY=%s must be from 1s to %s", c.MaxSQSDelay, outbox.MaxSQSDelay))
	}
	if q := c.Queues.Retention; q > 0 && c.MaxSQSDelay >= q/2 {
		// A message's retention runs from its send, delay included: one
		// delayed nearly as long as the queue keeps it would expire
		// before a worker could receive it.
		errs = append(errs, fmt.Errorf("SWITCHYARD_RELAY_MAX_SQS_DELAY=%s must be under half the job queues' retention SWITCHYARD_SQS_RETENTION=%s: a delayed message would expire unreceived",
			c.MaxSQSDelay, q))
	}
	if err := c.Queues.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// forwarderConfig is c as the forwarder takes it, defaults applied.
func (c Config) forwarderConfig() forwarder.Config {
	fc := forwarder.Config{Loops: c.Loops, BatchSize: c.BatchSize, PollInterval: c.PollInterval, SampleInterval: c.SampleInterval, MaxRate: c.MaxRate,
		MaxSQSDelay: c.MaxSQSDelay}
	fc.SetDefaults()
	return fc
}

// Run forwards the outbox until ctx ends. An invalid configuration is a
// config.ErrInvalid (exit status 2).
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return config.Invalid(err)
	}
	catalog, err := jobcatalog.Load(cfg.JobsFile)
	if err != nil {
		return config.Invalid(err)
	}
	// One connection per loop, one spare for readiness checks.
	dbCfg := database.Config{URL: cfg.DatabaseURL.Value(), ApplicationName: "switchyard-relay", MaxConns: int32(cfg.Loops) + 1, Registerer: prometheus.DefaultRegisterer} //nolint:gosec // bounded above
	pool, dbCfg, err := database.OpenWithVault(ctx, dbCfg, cfg.Vault)
	if err != nil {
		return err
	}
	defer pool.Close()
	queues, _, err := sqsqueue.Connect(ctx, cfg.Queues, logger, prometheus.DefaultRegisterer)
	if err != nil {
		return err
	}
	for _, name := range catalog.Names() {
		if _, err := queues.Ensure(ctx, name); err != nil {
			return fmt.Errorf("provisioning queues: %w", err)
		}
	}
	fwd, err := forwarder.New(pool, database.NewDialer(dbCfg), queues,
		cfg.forwarderConfig(),
		logger, forwarder.NewMetrics(prometheus.DefaultRegisterer))
	if err != nil {
		return err
	}

	opsL, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.OpsAddr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.OpsAddr, err)
	}
	opsSrv := ops.New(logger, nil)
	// A new version of the token in Vault applies without a restart.
	if err := config.Follow(ctx, cfg.OpsToken, cfg.Vault.Client(), opsSrv.SetAdminToken); err != nil {
		return err
	}
	opsSrv.AddCheck("postgres", pool.Ping)
	opsSrv.AddCheck("outbox_notifications", fwd.Listening)
	opsSrv.AddCheck("sqs", queues.Ping)
	logger.Info("relay running", "ops_addr", opsL.Addr().String(), "loops", cfg.Loops, "batch_size", cfg.BatchSize, "max_rate", cfg.MaxRate)
	opsSrv.AddVault(cfg.Vault.Client())
	depths := sqsqueue.NewDepthSampler(queues, catalog.Names(), cfg.SampleInterval, prometheus.DefaultRegisterer, logger)
	return opsSrv.Serve(ctx, opsL, secrets.Alongside(cfg.Vault.Client(), func(ctx context.Context) error {
		go depths.Run(ctx)
		return fwd.Run(ctx)
	}))
}
