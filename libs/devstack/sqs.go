package devstack

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func (s *Stack) startSQS(ctx context.Context, dir string, own bool) error {
	if endpoint := os.Getenv(EnvSQSEndpoint); endpoint != "" && !own {
		s.SQSEndpoint = endpoint
		s.logger.Info("sqs from environment", "env", EnvSQSEndpoint, "endpoint", endpoint)
		return nil
	}
	if err := needDir(dir, SQS); err != nil {
		return err
	}
	return s.startMoto(ctx, dir)
}

// motoLauncher runs moto_server with its requests serialised; see the
// script's doc string for the race in moto it avoids.
//
//go:embed moto_serialised.py
var motoLauncher []byte

// startMoto runs moto_server, through motoLauncher, on a free port.
func (s *Stack) startMoto(ctx context.Context, dir string) error {
	if _, err := exec.LookPath("moto_server"); err != nil {
		return fmt.Errorf("no SQS endpoint configured (%s) and moto_server is not installed: %w", EnvSQSEndpoint, err)
	}
	python, err := motoPython(ctx)
	if err != nil {
		return err
	}
	port, err := FreePort()
	if err != nil {
		return err
	}
	sqsDir := filepath.Join(dir, "sqs")
	if err := os.MkdirAll(sqsDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", sqsDir, err)
	}
	launcher := filepath.Join(sqsDir, "moto_serialised.py")
	if err := os.WriteFile(launcher, motoLauncher, 0o644); err != nil {
		return fmt.Errorf("writing moto launcher: %w", err)
	}
	cmd := exec.Command(python, launcher, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Dir = sqsDir
	p, err := s.startServer("moto_server", cmd, filepath.Join(sqsDir, "moto.log"), syscall.SIGTERM)
	if err != nil {
		return err
	}
	endpoint := "http://" + hostPort(port)
	if err := p.WaitReady(ctx, 60*time.Second, func(ctx context.Context) error { return pingSQS(ctx, endpoint) }); err != nil {
		return err
	}
	s.SQSEndpoint = endpoint
	s.logger.Info("sqs started", "server", "moto_server", "endpoint", endpoint)
	return nil
}

// motoPython finds the Python interpreter that has moto installed.
func motoPython(ctx context.Context) (string, error) {
	for _, name := range []string{"python3", "python"} {
		path, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		if exec.CommandContext(ctx, path, "-c", "import moto.server, moto.sqs.models").Run() == nil {
			return path, nil
		}
	}
	// pipx installs moto_server with a Python of its own.
	if script, err := exec.LookPath("moto_server"); err == nil {
		if python, err := motoScriptPython(ctx, script); err == nil {
			return python, nil
		}
	}
	return "", errors.New("moto_server is installed but neither python3 on PATH nor its own interpreter can import moto")
}

// motoScriptPython returns the interpreter of moto_server's script (its
// #! line), when that interpreter imports moto.
func motoScriptPython(ctx context.Context, script string) (string, error) {
	raw, err := os.ReadFile(script) //nolint:gosec // found on PATH
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	python, ok := strings.CutPrefix(line, "#!")
	if !ok || strings.ContainsAny(python, " \t") {
		return "", errors.New("no interpreter line")
	}
	if err := exec.CommandContext(ctx, python, "-c", "import moto.server, moto.sqs.models").Run(); err != nil { //nolint:gosec // the script's own interpreter
		return "", err
	}
	return python, nil
}

// pingSQS sends an unsigned ListQueues in the JSON protocol; any SQS-shaped
// answer (moto accepts it, AWS would refuse the missing signature) proves the
// server is up.
func pingSQS(ctx context.Context, endpoint string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+"/", strings.NewReader("{}"))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	req.Header.Set("X-Amz-Target", "AmazonSQS.ListQueues")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("SQS endpoint answered %s", resp.Status)
	}
	return nil
}
