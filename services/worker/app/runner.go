// Package app runs Switchyard's worker (every service's composition root
// is its package app): a Watermill router with, per job type in the
// catalog, SQS subscriptions (sqsqueue.Subscriber) that receive up to ten
// messages per call and keep at most the type's consumers in flight, each
// message applied by the processor with the job type's
// handler. It is public so that a team can build its own worker binary
// with its own handlers:
//
//	reg := jobhandler.NewRegistry()
//	_ = reg.Register("resize-image", myHandler)
//	err := app.Run(ctx, cfg, reg, logger)
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/libs/callbacks"
	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/jobcatalog"
	"github.com/switchyard/switchyard/libs/jobhandler"
	"github.com/switchyard/switchyard/libs/jobpause"
	"github.com/switchyard/switchyard/libs/ops"
	"github.com/switchyard/switchyard/libs/secrets"
	"github.com/switchyard/switchyard/libs/sqsqueue"
	"github.com/switchyard/switchyard/services/worker/callback"
	"github.com/switchyard/switchyard/services/worker/httptarget"
	"github.com/switchyard/switchyard/services/worker/internal/processor"
)

// Config is the worker's configuration.
type Config struct {
	OpsAddr      string        `conf:"default::9092,env:SWITCHYARD_WORKER_OPS_ADDR,help:ops listener (/healthz /readyz /metrics)"`
	DatabaseURL  config.Secret `conf:"required,mask,env:DATABASE_URL,help:Postgres URL or vault:<mount>/<path>#<key>"`
	JobsFile     string        `conf:"default:deployments/config/jobs.yaml,env:SWITCHYARD_JOBS_FILE,help:job types file"`
	CloseTimeout time.Duration `conf:"default:30s,env:SWITCHYARD_SHUTDOWN_TIMEOUT,help:how long in-flight messages may take to finish on shutdown"`
	// ReceiveWait is the long-poll wait of each receive. On shutdown the
	// polls in flight run to their end (so that SQS hands nothing to a
	// consumer that left), so it also bounds how long stopping takes.
	ReceiveWait time.Duration `conf:"default:10s,env:SWITCHYARD_WORKER_RECEIVE_WAIT,help:SQS long-poll wait per receive (1s-20s); stopping waits for the polls in flight"`
	// PausePoll is how often the paused job types are read besides on
	// NOTIFY (a lost notification delays a pause at most this long).
	PausePoll time.Duration `conf:"default:10s,env:SWITCHYARD_WORKER_PAUSE_POLL,help:how often the paused job types are read besides on NOTIFY (a pause reaches the worker at once through NOTIFY)"`
	Queues    sqsqueue.Config
	// Registry receives the worker's metrics and serves /metrics; nil
	// means Prometheus's default registry. (Not configurable from the
	// environment: it lets tests run several workers in one process.)
	Registry *prometheus.Registry `conf:"-"`
	OpsToken config.Secret        `conf:"mask,env:SWITCHYARD_OPS_TOKEN,help:bearer token that lets a non-loopback peer change settings on the ops listener (PUT /loglevel) or profile the process (/debug/pprof/); a vault: reference; empty: loopback only"`
	// Vault is where secrets come from (VAULT_ADDR and login); empty:
	// none, secrets from the environment (development).
	Vault secrets.Config
}

// Validate reports settings the worker cannot run with, naming their
// variables. A zero ReceiveWait (set in code, not from the environment)
// stands for its default.
func (c Config) Validate() error {
	var errs []error
	catalog, err := jobcatalog.Load(c.JobsFile)
	if err != nil {
		errs = append(errs, fmt.Errorf("SWITCHYARD_JOBS_FILE: %w", err))
	}
	if err := c.Queues.Validate(); err != nil {
		errs = append(errs, err)
	} else if catalog != nil {
		if err := checkReceiveBudget(catalog, c.Queues); err != nil {
			errs = append(errs, err)
		}
	}
	if c.PausePoll != 0 && (c.PausePoll < 100*time.Millisecond || c.PausePoll > 10*time.Minute) {
		errs = append(errs, fmt.Errorf("SWITCHYARD_WORKER_PAUSE_POLL %s must be from 100ms to 10m", c.PausePoll))
	}
	if w := c.receiveWait(); w < time.Second || w > 20*time.Second || w >= c.CloseTimeout {
		errs = append(errs, fmt.Errorf("SWITCHYARD_WORKER_RECEIVE_WAIT %s must be from 1s to 20s and below SWITCHYARD_SHUTDOWN_TIMEOUT (%s)", w, c.CloseTimeout))
	}
	return errors.Join(errs...)
}

// receiveWait is ReceiveWait, or its default when unset (tests and
// embedding programs that build a Config in code).
func (c Config) receiveWait() time.Duration {
	if c.ReceiveWait == 0 {
		return max(time.Second, min(10*time.Second, c.CloseTimeout/2))
	}
	return c.ReceiveWait
}

// Run processes messages of every job type in the catalog until ctx ends.
// Job types with a handler name use the handler registered under that name
// in registry; job types with an http target use the built-in HTTP handler.
// An invalid configuration, or a job type whose handler is not registered,
// is a config.ErrInvalid (exit status 2).
func Run(ctx context.Context, cfg Config, registry *jobhandler.Registry, logger *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return config.Invalid(err)
	}
	cfg.ReceiveWait = cfg.receiveWait()
	if cfg.PausePoll == 0 {
		cfg.PausePoll = 10 * time.Second
	}
	catalog, err := jobcatalog.Load(cfg.JobsFile)
	if err != nil {
		return config.Invalid(err)
	}
	bindings, err := Bindings(catalog, registry, nil)
	if err != nil {
		return config.Invalid(err)
	}
	maxConns := 2
	for _, jt := range catalog.Types() {
		maxConns += jt.Consumers
	}
	registerer, gatherer := prometheus.DefaultRegisterer, prometheus.DefaultGatherer
	if cfg.Registry != nil {
		registerer, gatherer = cfg.Registry, cfg.Registry
	}
	dbCfg := database.Config{URL: cfg.DatabaseURL.Value(), ApplicationName: "switchyard-worker", MaxConns: int32(maxConns), Registerer: registerer}
	pool, dbCfg, err := database.OpenWithVault(ctx, dbCfg, cfg.Vault)
	if err != nil {
		return err
	}
	defer pool.Close()
	queues, _, err := sqsqueue.Connect(ctx, cfg.Queues, logger, registerer)
	if err != nil {
		return err
	}

	wlogger := watermill.NewSlogLogger(logger)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.CloseTimeout}, wlogger)
	if err != nil {
		return fmt.Errorf("creating router: %w", err)
	}
	router.AddMiddleware(middleware.Recoverer)
	proc := processor.New(processor.Config{
		Pool: pool, Logger: logger, Metrics: processor.NewMetrics(registerer),
		Queue: queues, VisibilityTimeout: queues.Config().VisibilityTimeout,
	})
	// Paused job types receive nothing; the gate follows job_type_pauses.
	gate := jobpause.NewGate(pool, database.NewDialer(dbCfg), cfg.PausePoll, logger)
	for _, jt := range catalog.Types() {
		receivers, perReceiver := receiversFor(jt.Consumers)
		sub, err := NewSubscriber(queues, perReceiver, cfg.ReceiveWait, gate, logger.With("job_type", jt.Name))
		if err != nil {
			return err
		}
		for i := range receivers {
			router.AddConsumerHandler(fmt.Sprintf("%s-%d", jt.Name, i), jt.Name, sub, proc.HandlerFunc(bindings[jt.Name]))
		}
	}

	opsL, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.OpsAddr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.OpsAddr, err)
	}
	opsSrv := ops.New(logger, gatherer)
	// A new version of the token in Vault applies without a restart.
	if err := config.Follow(ctx, cfg.OpsToken, cfg.Vault.Client(), opsSrv.SetAdminToken); err != nil {
		return err
	}
	opsSrv.AddCheck("postgres", pool.Ping)
	opsSrv.AddCheck("router", func(context.Context) error {
		if !router.IsRunning() || router.IsClosed() {
			return errors.New("message router is not running")
		}
		return nil
	})
	opsSrv.AddCheck("sqs", queues.Ping)
	opsSrv.AddCheck("job_pauses", gate.Ready)
	logger.Info("worker running", "ops_addr", opsL.Addr().String(), "job_types", catalog.Names())
	opsSrv.AddVault(cfg.Vault.Client())
	return opsSrv.Serve(ctx, opsL, secrets.Alongside(cfg.Vault.Client(), func(ctx context.Context) error {
		go gate.Run(ctx)
		if err := router.Run(ctx); err != nil {
			return fmt.Errorf("running message router: %w", err)
		}
		return nil
	}))
}

// Bindings resolves every job type of catalog to its handler: the one named
// in registry, or an HTTP target. A job type whose handler is not
// registered is an error that lists what is.
func Bindings(catalog *jobcatalog.Catalog, registry *jobhandler.Registry, client *http.Client) (map[string]processor.Binding, error) {
	out := map[string]processor.Binding{}
	var errs []error
	for _, jt := range catalog.Types() {
		b := processor.Binding{JobType: jt.Name, Timeout: jt.Timeout, Retry: jt.Retry}
		if jt.HTTP != nil {
			b.HandlerName, b.Handler = "http", httptarget.New(*jt.HTTP, client)
		} else if jt.Name == callbacks.JobType {
			b.HandlerName, b.Handler = callbacks.JobType, callback.New(client)
		} else if h, ok := registry.Lookup(jt.Handler); ok {
			b.HandlerName, b.Handler = jt.Handler, h
		} else {
			errs = append(errs, fmt.Errorf("job type %q names handler %q, which is not registered (registered: %v)", jt.Name, jt.Handler, registry.Names()))
			continue
		}
		out[jt.Name] = b
	}
	return out, errors.Join(errs...)
}

// checkReceiveBudget refuses a configuration in which the RedrivePolicy
// would move a message to the DLQ before its job type's retries are done:
// every attempt is a receive, and a crashed worker's receive counts too.
func checkReceiveBudget(catalog *jobcatalog.Catalog, queues sqsqueue.Config) error {
	maxReceives := queues.MaxReceiveCount
	if maxReceives == 0 {
		maxReceives = 10
	}
	var errs []error
	for _, jt := range catalog.Types() {
		if jt.Retry.Attempts >= maxReceives {
			errs = append(errs, fmt.Errorf("job type %q: retry.attempts %d must be below the queues' max receive count %d (SWITCHYARD_SQS_MAX_RECEIVE_COUNT), or SQS dead-letters the message before its last attempt",
				jt.Name, jt.Retry.Attempts, maxReceives))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return config.Invalid(err)
	}
	return nil
}

// receiversFor splits a job type's consumers (messages handled at once)
// into long polls: one per ten consumers, each receiving as many messages
// per call as it has free (at most SQS's 10).
func receiversFor(consumers int) (receivers, perReceiver int) {
	receivers = (consumers + 9) / 10
	return receivers, (consumers + receivers - 1) / receivers
}

// NewSubscriber returns the SQS subscriber the worker uses for one job
// type (sqsqueue.Subscriber): long polls of wait (at most 20 s), up to ten
// messages per receive handled concurrently with at most concurrency in
// flight per poll, acks deleted in batches, queues resolved (and
// provisioned with their DLQ) through queues, messages read by
// Unmarshaler, and polls abandoned at shutdown run out with their
// messages handed back (sqsqueue.ReleaseAbandonedReceives). A failed
// message holds back no other: each is acked or left on its own. gate
// (nil: none) holds the receives of paused job types.
func NewSubscriber(queues *sqsqueue.Queues, concurrency int, wait time.Duration, gate sqsqueue.Gate, logger *slog.Logger) (*sqsqueue.Subscriber, error) {
	sub, err := sqsqueue.NewSubscriber(sqsqueue.SubscriberConfig{
		Queues: queues, Unmarshaler: Unmarshaler{}, Concurrency: concurrency, Wait: wait, Logger: logger, Gate: gate,
	})
	if err != nil {
		return nil, fmt.Errorf("creating SQS subscriber: %w", err)
	}
	return sub, nil
}
