package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard/switchyard/libs/devstack"
	"github.com/switchyard/switchyard/libs/oauthclients"
	"github.com/switchyard/switchyard/libs/signingkeys"
	"github.com/switchyard/switchyard/libs/sqsqueue"
	"github.com/switchyard/switchyard/migrations"
)

const (
	jobsFile = `
job_types:
  bench:
    handler: text-stats
    consumers: 8
    timeout: 10s
    schema: {type: object, required: [text], properties: {text: {type: string}}}
`
	routesFile = `
routes:
  - {method: POST, path: /v1/jobs/bench, mode: async, job_type: bench, scopes: [jobs:submit]}
  - {method: GET, path: "/v1/jobs/{id}", mode: job-status, scopes: [jobs:read]}
  - {method: POST, path: /v1/text-stats, mode: sync, handler: text-stats, max_concurrent: 1000, scopes: [jobs:submit]}
  - {method: GET, path: /v1/hello, mode: sync, handler: hello, max_concurrent: 1000, scopes: [jobs:submit]}
`
	benchClient = "bench"
)

// platform is the infrastructure and the service processes of one run.
type platform struct {
	logger  *slog.Logger
	dir     string
	bin     string
	stack   *devstack.Stack
	dbName  string
	dbURL   string
	pool    *pgxpool.Pool
	sqs     *sqs.Client
	env     []string
	secret  string
	gateway string // base URL
	tokens  string
	procs   map[string]*devstack.Process
	ops     map[string]int
	// pins, when set, keeps Postgres, the gateway and the token service
	// on CPUs of their own.
	pins *pinning
	// shedSink is the URL of the overload section's control server (see
	// serveShedSink), once started.
	shedSink string
}

// startPlatform finds (or starts) Postgres and SQS, creates a fresh
// database, builds the services and starts the token service and the
// gateway; the relay and the worker start per measurement.
func startPlatform(ctx context.Context, logger *slog.Logger, pins *pinning) (*platform, error) {
	root, err := devstack.ModuleRoot(".")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "switchyard-bench-")
	if err != nil {
		return nil, err
	}
	if pins != nil {
		// The bench's own Postgres runs as the postgres user when the
		// bench runs as root: it must reach its data directory below dir.
		if err := os.Chmod(dir, 0o755); err != nil { //nolint:gosec // a directory to traverse; its files keep their own modes
			return nil, err
		}
	}
	p := &platform{logger: logger, dir: dir, bin: filepath.Join(dir, "bin"), procs: map[string]*devstack.Process{}, ops: map[string]int{}, pins: pins}
	logger.Info("building the services")
	if err := devstack.Build(ctx, root, p.bin, false, "./services/tokens", "./services/gateway", "./services/relay", "./services/worker"); err != nil {
		return nil, err
	}
	p.stack, err = devstack.Start(ctx, devstack.Config{Dir: dir, Components: []devstack.Component{devstack.Postgres, devstack.SQS}, Logger: logger,
		NewPostgres: pins != nil}) // a server of its own, to pin
	if err != nil {
		return nil, err
	}
	if pins != nil {
		pid, err := p.stack.Pid("postgres")
		if err != nil {
			return nil, fmt.Errorf("pinning the bench's own Postgres: %w", err)
		}
		if err := pins.pinServer(pid); err != nil {
			return nil, err
		}
	}
	p.dbName = "switchyard_bench_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if p.dbURL, err = devstack.EnsureDatabase(ctx, p.stack.DatabaseURL, p.dbName); err != nil {
		return nil, err
	}
	if _, err := migrations.Up(ctx, p.dbURL, slog.New(slog.DiscardHandler)); err != nil {
		return nil, err
	}
	if p.pool, err = pgxpool.New(ctx, p.dbURL); err != nil {
		return nil, fmt.Errorf("opening the bench database: %w", err)
	}
	store, err := oauthclients.New(p.pool)
	if err != nil {
		return nil, err
	}
	if _, p.secret, err = store.Create(ctx, oauthclients.NewClient{ID: benchClient, Scopes: []string{"jobs:submit", "jobs:read"}}); err != nil {
		return nil, err
	}
	ring, _, err := signingkeys.Ring{}.Rotate(signingkeys.ES256, time.Now(), 0, time.Hour)
	if err != nil {
		return nil, err
	}
	keys := filepath.Join(dir, "signing-keys.json")
	if err := signingkeys.WriteFile(keys, ring); err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, body string }{{"jobs.yaml", jobsFile}, {"routes.yaml", routesFile}} {
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(f.body), 0o600); err != nil {
			return nil, err
		}
	}
	queues, _, err := sqsqueue.Connect(ctx, sqsqueue.Config{Prefix: "bench-"}, nil, nil)
	if err != nil {
		return nil, err
	}
	p.sqs = queues.Client()
	ports := map[string]int{}
	for _, k := range []string{"gateway", "tokens", "gateway-ops", "tokens-ops", "relay-ops", "worker-ops"} {
		if ports[k], err = devstack.FreePort(); err != nil {
			return nil, err
		}
	}
	p.gateway = "http://127.0.0.1:" + strconv.Itoa(ports["gateway"])
	p.tokens = "http://127.0.0.1:" + strconv.Itoa(ports["tokens"])
	for _, svc := range []string{"gateway", "tokens", "relay", "worker"} {
		p.ops[svc] = ports[svc+"-ops"]
	}
	p.env = append(append(os.Environ(), p.stack.Env()...),
		"DATABASE_URL="+p.dbURL,
		"SWITCHYARD_JOBS_FILE="+filepath.Join(dir, "jobs.yaml"),
		"SWITCHYARD_ROUTES_FILE="+filepath.Join(dir, "routes.yaml"),
		"SWITCHYARD_GATEWAY_ADDR=127.0.0.1:"+strconv.Itoa(ports["gateway"]),
		"SWITCHYARD_GATEWAY_OPS_ADDR=127.0.0.1:"+strconv.Itoa(ports["gateway-ops"]),
		"SWITCHYARD_TOKENS_ADDR=127.0.0.1:"+strconv.Itoa(ports["tokens"]),
		"SWITCHYARD_TOKENS_OPS_ADDR=127.0.0.1:"+strconv.Itoa(ports["tokens-ops"]),
		"SWITCHYARD_RELAY_OPS_ADDR=127.0.0.1:"+strconv.Itoa(ports["relay-ops"]),
		"SWITCHYARD_WORKER_OPS_ADDR=127.0.0.1:"+strconv.Itoa(ports["worker-ops"]),
		"SWITCHYARD_WORKER_RECEIVE_WAIT=1s",
		"SWITCHYARD_TOKENS_ISSUER="+p.tokens,
		"SWITCHYARD_TOKENS_KEYS_FILE="+keys,
		"SWITCHYARD_AUTH_ISSUER="+p.tokens,
		"SWITCHYARD_EDGE_BLOCK_THRESHOLD=0",
		// The generator stands in for many clients from one address: the
		// overload section opens up to 2,048 connections.
		"SWITCHYARD_GATEWAY_MAX_CONNS_PER_ADDR=0",
		"SWITCHYARD_TOKENS_RATE_PER_CLIENT=1000", "SWITCHYARD_TOKENS_BURST_PER_CLIENT=1000",
	)
	for _, svc := range []string{"tokens", "gateway"} {
		if err := p.start(ctx, svc); err != nil {
			return nil, errors.Join(err, p.stop())
		}
	}
	return p, nil
}

// start runs svc with the platform's environment and extra, and waits
// until it is ready.
func (p *platform) start(ctx context.Context, svc string, extra ...string) error {
	log, err := os.OpenFile(filepath.Join(p.dir, svc+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600) //nolint:gosec // our own temporary directory
	if err != nil {
		return err
	}
	// Not cancelled with ctx: the process is stopped gracefully (SIGTERM).
	cmd := exec.CommandContext(context.WithoutCancel(ctx), filepath.Join(p.bin, svc)) //nolint:gosec // the binaries built above
	cmd.Env = append(slices.Clone(p.env), extra...)
	proc, err := devstack.StartProcess(svc, cmd, log, "", syscall.SIGTERM)
	if err != nil {
		return err
	}
	p.procs[svc] = proc
	if p.pins != nil && (svc == "gateway" || svc == "tokens") {
		if err := p.pins.pinServer(proc.Pid()); err != nil {
			return err
		}
	}
	if err := proc.WaitReady(ctx, time.Minute, devstack.HTTPReady(fmt.Sprintf("http://127.0.0.1:%d/readyz", p.ops[svc]))); err != nil {
		return fmt.Errorf("%s did not get ready (log: %s): %w", svc, log.Name(), err)
	}
	return nil
}

// stopService stops svc gracefully.
func (p *platform) stopService(svc string) error {
	proc, ok := p.procs[svc]
	if !ok {
		return nil
	}
	delete(p.procs, svc)
	return proc.Stop(30 * time.Second)
}

// stop ends every service, drops the database, and stops the servers
// started here.
func (p *platform) stop() error {
	var errs []error
	for svc := range p.procs {
		errs = append(errs, p.stopService(svc))
	}
	if p.pool != nil {
		p.pool.Close()
	}
	if p.dbURL != "" {
		errs = append(errs, dropDatabase(p.stack.DatabaseURL, p.dbName))
	}
	if p.stack != nil {
		errs = append(errs, p.stack.Stop())
	}
	errs = append(errs, os.RemoveAll(p.dir))
	return errors.Join(errs...)
}

// dropDatabase removes the run's database from the server.
func dropDatabase(serverURL, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return fmt.Errorf("dropping %s: %w", name, err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("dropping %s: %w", name, err)
	}
	return nil
}
