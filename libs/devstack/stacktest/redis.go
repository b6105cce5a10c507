package stacktest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/libs/devstack"
)

// RedisServer is a redis-server of the test's own on a free port, keeping
// nothing on disk, that the test may stop and start again (on the same
// address) to see what its code does without Redis.
type RedisServer struct {
	tb   testing.TB
	dir  string
	port int
	proc *devstack.Process
}

// NewRedisServer starts a RedisServer, stopped when the test ends. The
// redis-server binary must be on PATH (Debian's redis-server package).
func NewRedisServer(tb testing.TB) *RedisServer {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Fatalf("stacktest: redis-server is not installed (apt-get install redis-server): %v", err)
	}
	port, err := devstack.FreePort()
	if err != nil {
		tb.Fatalf("stacktest: %v", err)
	}
	r := &RedisServer{tb: tb, dir: tb.TempDir(), port: port}
	tb.Cleanup(func() {
		if r.proc != nil && !r.proc.Exited() {
			_ = r.proc.Stop(10 * time.Second)
		}
	})
	r.Start()
	return r
}

// Addr is host:port.
func (r *RedisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// URL is the server's redis:// URL.
func (r *RedisServer) URL() string { return "redis://" + r.Addr() + "/0" }

// Start runs the server (again) and waits until it accepts connections.
func (r *RedisServer) Start() {
	r.tb.Helper()
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(r.port),
		"--save", "", "--appendonly", "no", "--dir", r.dir)
	log, err := os.OpenFile(filepath.Join(r.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		r.tb.Fatalf("stacktest: %v", err)
	}
	r.tb.Cleanup(func() { _ = log.Close() })
	p, err := devstack.StartProcess("redis", cmd, log, "", syscall.SIGTERM)
	if err != nil {
		r.tb.Fatalf("stacktest: starting redis-server: %v", err)
	}
	r.proc = p
	err = p.WaitReady(context.Background(), 30*time.Second, func(ctx context.Context) error {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", r.Addr())
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			return err
		}
		buf := make([]byte, 7)
		if _, err := c.Read(buf); err != nil {
			return err
		}
		if string(buf) != "+PONG\r\n" {
			return fmt.Errorf("redis answered %q", buf)
		}
		return nil
	})
	if err != nil {
		r.tb.Fatalf("stacktest: redis-server did not start: %v", err)
	}
}

// Stop stops the server; what it held is gone.
func (r *RedisServer) Stop() {
	r.tb.Helper()
	if err := r.proc.Stop(10 * time.Second); err != nil {
		r.tb.Fatalf("stacktest: stopping redis-server: %v", err)
	}
}
