package devstack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Process is a child process started by the harness: a server of the
// stack, or one of Switchyard's binaries under `dev up` or a test.
type Process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	stopSig syscall.Signal
	done    chan struct{}
	err     error
	outputs sync.WaitGroup
}

// StartProcess runs cmd in its own process group (so that a terminal's
// Ctrl-C reaches only the harness, which stops children in order), with
// stdout and stderr copied line by line to out, each line prefixed by
// prefix. The child is killed if the harness dies. stopSig is the signal
// that asks it to shut down cleanly.
func StartProcess(name string, cmd *exec.Cmd, out io.Writer, prefix string, stopSig syscall.Signal) (*Process, error) {
	p := &Process{name: name, cmd: cmd, stopSig: stopSig, done: make(chan struct{})}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("piping %s output: %w", name, err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("piping %s output: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	var mu sync.Mutex
	for _, r := range []io.Reader{stdout, stderr} {
		p.outputs.Add(1)
		go func() {
			defer p.outputs.Done()
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
			for sc.Scan() {
				mu.Lock()
				_, _ = fmt.Fprintf(out, "%s%s\n", prefix, sc.Bytes())
				mu.Unlock()
			}
		}()
	}
	go func() {
		p.outputs.Wait()
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Name returns the process's name.
func (p *Process) Name() string { return p.name }

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns how the process exited, once Done is closed.
func (p *Process) Err() error { return p.err }

// Exited reports whether the process has already ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process (SIGSTOP and SIGCONT pause and resume
// it, as a benchmark that times it from a given moment does).
func (p *Process) Signal(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signalling %s: %w", p.name, err)
	}
	return nil
}

// Stop asks the process to end with its stop signal and kills its whole
// process group if it has not within grace.
func (p *Process) Stop(grace time.Duration) error {
	if p.Exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(p.stopSig)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("%s did not stop within %s and was killed", p.name, grace)
}

// Kill ends the process group at once with SIGKILL, as a crash would, and
// waits for it to be gone.
func (p *Process) Kill() {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// WaitReady polls ready until it succeeds, the process exits or timeout
// passes.
func (p *Process) WaitReady(ctx context.Context, timeout time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	where := ""
	if p.logPath != "" {
		where = " (log: " + p.logPath + ")"
	}
	for {
		if p.Exited() {
			return fmt.Errorf("%s exited during start-up (%w)%s", p.name, p.err, where)
		}
		attemptCtx, attemptCancel := context.WithTimeout(ctx, time.Second)
		last := ready(attemptCtx)
		attemptCancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %w%s", p.name, timeout, errors.Join(last, ctx.Err()), where)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// HTTPReady returns a readiness check for WaitReady: url answers 200.
func HTTPReady(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answered %s", url, resp.Status)
		}
		return nil
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. It
// is picked below the kernel's ephemeral range (32768-60999 on Linux), so
// that the outgoing connections of a busy test, which take their local
// ports from that range, cannot take it before the server that is to
// listen on it starts. A port is never handed out twice in one process:
// two tests running in parallel asked at once could otherwise both get a
// port that was free for both (seen in CI: "bind: address already in use").
func FreePort() (int, error) {
	for range 200 {
		port := 20000 + rand.IntN(12000) //nolint:gosec // not a secret, a port
		if _, taken := handedOut.LoadOrStore(port, struct{}{}); taken {
			continue
		}
		l, err := net.Listen("tcp", hostPort(port))
		if err != nil {
			continue
		}
		_ = l.Close()
		return port, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// handedOut holds every port FreePort returned in this process.
var handedOut sync.Map

func hostPort(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}
