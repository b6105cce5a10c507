package devstack

import (
	"context"
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

func (s *Stack) startSQS(ctx context.Context, dir string) error {
	if endpoint := os.Getenv(EnvSQSEndpoint); endpoint != "" {
		s.SQSEndpoint = endpoint
		s.logger.Info("sqs from environment", "env", EnvSQSEndpoint, "endpoint", endpoint)
		return nil
	}
	if err := needDir(dir, SQS); err != nil {
		return err
	}
	return s.startMoto(ctx, dir)
}

// startMoto runs moto_server on a free port.
func (s *Stack) startMoto(ctx context.Context, dir string) error {
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		return fmt.Errorf("no SQS endpoint configured (%s) and moto_server is not installed: %w", EnvSQSEndpoint, err)
	}
	port, err := FreePort()
	if err != nil {
		return err
	}
	sqsDir := filepath.Join(dir, "sqs")
	if err := os.MkdirAll(sqsDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", sqsDir, err)
	}
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
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
