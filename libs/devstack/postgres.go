package devstack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// SharedPostgresURL is the Postgres server devstack uses, when it answers,
// before starting one of its own (the project's machines run one there).
const SharedPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

func (s *Stack) startPostgres(ctx context.Context, dir string, own bool) error {
	if url := os.Getenv(EnvDatabaseURL); url != "" && !own {
		s.DatabaseURL = url
		s.logger.Info("postgres from environment", "env", EnvDatabaseURL)
		return nil
	}
	if !own && pingPostgres(ctx, SharedPostgresURL) == nil {
		s.DatabaseURL = SharedPostgresURL
		s.logger.Info("postgres already running", "addr", "127.0.0.1:5432")
		return nil
	}
	if err := needDir(dir, Postgres); err != nil {
		return err
	}
	return s.startThrowawayPostgres(ctx, filepath.Join(dir, "postgres"))
}

// startThrowawayPostgres initialises a cluster under dir (once) and runs
// postgres on a free port. initdb refuses to run as root, so as root the
// server runs as the "postgres" user.
func (s *Stack) startThrowawayPostgres(ctx context.Context, dir string) error {
	cred, err := postgresCredential()
	if err != nil {
		return err
	}
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("handing %s to the postgres user: %w", dir, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); err != nil {
		initdb := exec.CommandContext(ctx, "initdb", "-D", dataDir, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync")
		initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		if out, err := initdb.CombinedOutput(); err != nil {
			return fmt.Errorf("initdb: %w: %s", err, out)
		}
	}
	if err := ensureServerCertificate(dataDir, cred); err != nil {
		return err
	}
	port, err := FreePort()
	if err != nil {
		return err
	}
	url := fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", hostPort(port))
	run := func(ctx context.Context) error {
		cmd := exec.Command("postgres", "-D", dataDir, "-p", strconv.Itoa(port),
			"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+dir,
			"-c", "fsync=off", "-c", "max_connections=300", "-c", "ssl=on")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		// SIGINT is Postgres's "fast" shutdown: roll back and exit cleanly.
		p, err := s.startServer("postgres", cmd, filepath.Join(dir, "postgres.log"), syscall.SIGINT)
		if err != nil {
			return err
		}
		return p.WaitReady(ctx, 30*time.Second, func(ctx context.Context) error { return pingPostgres(ctx, url) })
	}
	if err := run(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	s.runPostgres = run
	s.mu.Unlock()
	s.DatabaseURL = url
	s.logger.Info("postgres started", "addr", hostPort(port), "dir", dir)
	return nil
}

// RestartPostgres stops the Postgres server this stack started with an
// immediate shutdown (SIGQUIT: no checkpoint, every connection cut, as a
// crash), leaves it down for down (connections are refused meanwhile),
// then starts it again on the same port and data, and waits until it
// answers.
func (s *Stack) RestartPostgres(ctx context.Context, down time.Duration) error {
	s.mu.Lock()
	run := s.runPostgres
	var old *Process
	for i, p := range s.procs {
		if p.Name() == "postgres" && !p.Exited() {
			old = p
			s.procs = append(s.procs[:i:i], s.procs[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
	if run == nil || old == nil {
		return fmt.Errorf("postgres: %w", ErrNotStartedHere)
	}
	if err := syscall.Kill(old.Pid(), syscall.SIGQUIT); err != nil {
		return fmt.Errorf("stopping postgres immediately: %w", err)
	}
	select {
	case <-old.Done():
	case <-time.After(30 * time.Second):
		old.Kill()
		<-old.Done()
	}
	t := time.NewTimer(down)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return fmt.Errorf("postgres left stopped: %w", ctx.Err())
	}
	return run(ctx)
}

// postgresCredential returns the credential to run Postgres tools with:
// nil (the current user) unless running as root.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root and no postgres user to run the server as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func pingPostgres(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return conn.Ping(ctx)
}
