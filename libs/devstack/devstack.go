// Package devstack finds or starts the infrastructure Switchyard runs on
// locally: Postgres, an SQS-compatible server and a Vault dev server.
//
// For each component the environment wins: DATABASE_URL,
// AWS_ENDPOINT_URL_SQS and VAULT_ADDR (with VAULT_TOKEN) name servers that
// already run. Otherwise devstack starts a real, throwaway server on a free
// loopback port with its data and log under Config.Dir, and Stop ends it:
// Postgres with initdb/postgres (or the server already listening on
// 127.0.0.1:5432 when one answers), SQS with moto_server, Vault with a dev
// server built by `go tool task tools:vault`.
//
// The same harness serves `go tool task dev` and the tests (see stacktest).
package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Config says where throwaway servers live and which components are needed.
type Config struct {
	// Dir holds the data directories and logs of servers started here.
	// Required when any component may be started.
	Dir string
	// Components lists what to find or start; empty means all.
	Components []Component
	// Logger receives one line per component found or started. Optional.
	Logger *slog.Logger
	// NewSQS starts an SQS server of this stack's own even when
	// AWS_ENDPOINT_URL_SQS names a running one (a test that changes how
	// the server behaves, e.g. turns IAM enforcement on).
	NewSQS bool
	// NewPostgres starts a Postgres server of this stack's own even when
	// DATABASE_URL names one or one answers on 127.0.0.1:5432 (a fault
	// drill that restarts it).
	NewPostgres bool
}

// Component names one piece of infrastructure.
type Component string

// The components devstack knows.
const (
	Postgres Component = "postgres"
	SQS      Component = "sqs"
	Vault    Component = "vault"
)

// Environment variables that name running servers. When set, devstack uses
// them and starts nothing for that component.
const (
	EnvDatabaseURL = "DATABASE_URL"
	EnvSQSEndpoint = "AWS_ENDPOINT_URL_SQS"
	EnvVaultAddr   = "VAULT_ADDR"
	EnvVaultToken  = "VAULT_TOKEN"
)

// Stack is the set of servers found or started.
type Stack struct {
	// DatabaseURL reaches a Postgres server as a user that may create
	// databases. Empty when Postgres was not requested.
	DatabaseURL string
	// SQSEndpoint is the base URL of an SQS-compatible API.
	SQSEndpoint string
	// VaultAddr and VaultToken reach a Vault server.
	VaultAddr  string
	VaultToken string

	logger *slog.Logger
	mu     sync.Mutex
	procs  []*Process
	// runPostgres starts the stack's own Postgres again (RestartPostgres).
	runPostgres func(context.Context) error
}

// Start finds or starts every component cfg asks for. On error, whatever
// was started is stopped again.
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	comps := cfg.Components
	if len(comps) == 0 {
		comps = []Component{Postgres, SQS, Vault}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Dir != "" {
		abs, err := filepath.Abs(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("resolving stack directory: %w", err)
		}
		cfg.Dir = abs
		if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating stack directory: %w", err)
		}
	}
	s := &Stack{logger: logger}
	for _, c := range comps {
		var err error
		switch c {
		case Postgres:
			err = s.startPostgres(ctx, cfg.Dir, cfg.NewPostgres)
		case SQS:
			err = s.startSQS(ctx, cfg.Dir, cfg.NewSQS)
		case Vault:
			err = s.startVault(ctx, cfg.Dir)
		default:
			err = fmt.Errorf("unknown component %q", c)
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("starting %s: %w", c, err), s.Stop())
		}
	}
	return s, nil
}

// Env returns the environment a process needs to reach this stack, in
// os/exec's KEY=value form. AWS credentials and region get harmless
// defaults when unset, because local SQS servers accept any.
func (s *Stack) Env() []string {
	var env []string
	add := func(k, v string) {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	add(EnvDatabaseURL, s.DatabaseURL)
	add(EnvSQSEndpoint, s.SQSEndpoint)
	add(EnvVaultAddr, s.VaultAddr)
	add(EnvVaultToken, s.VaultToken)
	if s.SQSEndpoint != "" {
		for k, v := range map[string]string{
			"AWS_ACCESS_KEY_ID":     "test",
			"AWS_SECRET_ACCESS_KEY": "test",
			"AWS_REGION":            "us-east-1",
		} {
			if os.Getenv(k) == "" {
				add(k, v)
			}
		}
	}
	return env
}

// Stop ends every server this stack started, newest first. Servers that
// were found through the environment are left alone.
func (s *Stack) Stop() error {
	s.mu.Lock()
	procs := s.procs
	s.procs = nil
	s.mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].Stop(15 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Stack) track(p *Process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.procs = append(s.procs, p)
}

func needDir(dir string, c Component) error {
	if dir == "" {
		return fmt.Errorf("no %s server configured and no directory to start one in (set %s or Config.Dir)", c, envFor(c))
	}
	return nil
}

func envFor(c Component) string {
	switch c {
	case Postgres:
		return EnvDatabaseURL
	case SQS:
		return EnvSQSEndpoint
	default:
		return EnvVaultAddr
	}
}

// ErrNotStartedHere is Signal's answer for a server this stack did not
// start (one found through the environment is not its to stop).
var ErrNotStartedHere = errors.New("no server of that name was started by this stack")

// Signal sends sig to the process group of the server named name
// (moto_server, postgres, vault) that this stack started: SIGSTOP and
// SIGCONT pause and resume it, as an outage would, for fault drills.
func (s *Stack) Signal(name string, sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		if p.Name() == name && !p.Exited() {
			if err := syscall.Kill(-p.Pid(), sig); err != nil {
				return fmt.Errorf("signalling %s: %w", name, err)
			}
			return nil
		}
	}
	return fmt.Errorf("%s: %w", name, ErrNotStartedHere)
}

// Pid is the process id of the server named name (moto_server, postgres,
// vault) that this stack started; it leads its own process group (a
// Postgres server's backends are in it too).
func (s *Stack) Pid(name string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		if p.Name() == name && !p.Exited() {
			return p.Pid(), nil
		}
	}
	return 0, fmt.Errorf("%s: %w", name, ErrNotStartedHere)
}

// Started reports whether this stack started the server named name
// (moto_server, postgres, vault) rather than finding one configured.
func (s *Stack) Started(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		if p.Name() == name {
			return true
		}
	}
	return false
}
