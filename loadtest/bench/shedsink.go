package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/libs/devstack"
	"github.com/switchyard/switchyard/libs/httpserver"
)

// The shed sink is the overload section's control: a process of its own
// (this binary, run with -shed-sink ADDR) that answers every request
// exactly as the gateway answers one beyond its in-flight limit, with the
// gateway's own code (httpserver.Admission in front of an
// httpserver.NewServer). While the accept route is measured at
// saturation, the excess of an overload (the offered rate above the
// saturation rate) is sent to the sink instead of the gateway. The accept
// route's latency there is what admitted requests could keep at best on
// this machine: the excess is received, parsed and answered as cheaply as
// the gateway answers it, by the same CPUs, but queues nowhere in the
// gateway. Overload latency beyond that control is the gateway's own
// doing (a limit too high, a queue it holds); within it, it is the cost of
// the excess traffic itself, which no admission control removes.

// shedSinkHold is the path of the one request the sink sends itself and
// never answers, so that its in-flight limit of one is always reached.
const shedSinkHold = "/hold"

// serveShedSink listens on addr and answers every request but its own
// held one 503 busy with Retry-After, until the process is signalled.
func serveShedSink(addr string) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	admission, err := httpserver.NewAdmission(1, time.Second, nil, logger)
	if err != nil {
		return err
	}
	stop := make(chan struct{})
	held := make(chan struct{})
	srv := httpserver.NewServer(admission.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != shedSinkHold {
			http.Error(w, "only the held request is served", http.StatusInternalServerError)
			return
		}
		close(held)
		<-stop
	})), logger)
	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stopSignals()
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("shed sink: %w", err)
	}
	go func() {
		// The request that holds the only slot; it ends with the process.
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+l.Addr().String()+shedSinkHold, nil)
		if err != nil {
			return
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
		}
	}()
	go func() {
		<-held
		logger.Info("shed sink answering every request 503", "addr", l.Addr().String())
	}()
	errs := make(chan error, 1)
	go func() { errs <- srv.Serve(l) }()
	select {
	case <-ctx.Done():
		close(stop)
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutdownCtx)
	case err := <-errs:
		return err
	}
}

// startShedSink runs the shed sink as a process of the platform (pinned
// with the servers, as the gateway is) and returns its URL once it sheds.
func (p *platform) startShedSink(ctx context.Context) (string, error) {
	if _, ok := p.procs["shed-sink"]; ok {
		return p.shedSink, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding the bench's own binary: %w", err)
	}
	port, err := devstack.FreePort()
	if err != nil {
		return "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	log, err := os.OpenFile(filepath.Join(p.dir, "shed-sink.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600) //nolint:gosec // our own temporary directory
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(context.WithoutCancel(ctx), self, "-shed-sink", addr) //nolint:gosec // this binary
	cmd.Env = slices.Clone(os.Environ())
	proc, err := devstack.StartProcess("shed-sink", cmd, log, "", syscall.SIGTERM)
	if err != nil {
		return "", err
	}
	p.procs["shed-sink"] = proc
	if p.pins != nil {
		if err := p.pins.pinServer(proc.Pid()); err != nil {
			return "", err
		}
	}
	u := "http://" + addr
	if err := proc.WaitReady(ctx, 30*time.Second, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			return errors.New("the shed sink does not shed yet")
		}
		return nil
	}); err != nil {
		return "", fmt.Errorf("the shed sink did not start (log: %s): %w", log.Name(), err)
	}
	p.shedSink = u
	return u, nil
}
