// Package stacktest gives tests real infrastructure through devstack: the
// servers named by the environment (as `go tool task test` sets it), or
// throwaway ones started on first use and stopped when the test binary
// ends. Nothing is faked and nothing skips: a test that needs Postgres,
// SQS or Vault gets one or fails saying why.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { stacktest.Main(m) }
//
// then ask for what a test needs: NewDatabase, SQSEndpoint, QueuePrefix,
// VaultAddr.
package stacktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/libs/devstack"
)

var (
	mu      sync.Mutex
	stacks  = map[devstack.Component]*devstack.Stack{}
	tempDir string
)

// Main runs the package's tests and stops any server started for them.
func Main(m *testing.M) {
	code := m.Run()
	mu.Lock()
	for _, s := range stacks {
		if err := s.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stacktest: stopping servers:", err)
		}
	}
	if tempDir != "" {
		_ = os.RemoveAll(tempDir)
	}
	mu.Unlock()
	os.Exit(code)
}

// component finds or starts c once per test binary.
func component(tb testing.TB, c devstack.Component) *devstack.Stack {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if s, ok := stacks[c]; ok {
		return s
	}
	if tempDir == "" {
		dir, err := os.MkdirTemp("", "switchyard-stacktest-")
		if err != nil {
			tb.Fatalf("stacktest: creating a directory for test servers: %v", err)
		}
		tempDir = dir
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := devstack.Start(ctx, devstack.Config{
		Dir:        tempDir,
		Components: []devstack.Component{c},
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		tb.Fatalf("stacktest: %v", err)
	}
	stacks[c] = s
	return s
}

// ServerURL returns the URL of a Postgres server on which tests may create
// databases.
func ServerURL(tb testing.TB) string {
	tb.Helper()
	return component(tb, devstack.Postgres).DatabaseURL
}

// SQSEndpoint returns the base URL of a real SQS-compatible server and
// points this process's AWS SDK at it (AWS_ENDPOINT_URL_SQS, with harmless
// credentials and region when none are set), as `go tool task test` does
// for the whole run.
func SQSEndpoint(tb testing.TB) string {
	tb.Helper()
	s := component(tb, devstack.SQS)
	setAWSDefaults(s.SQSEndpoint)
	return s.SQSEndpoint
}

// Vault returns the address and token of a real Vault server.
func Vault(tb testing.TB) (addr, token string) {
	tb.Helper()
	s := component(tb, devstack.Vault)
	return s.VaultAddr, s.VaultToken
}

// Env returns the environment a child process needs to reach the
// components this test binary has used so far.
func Env(tb testing.TB, comps ...devstack.Component) []string {
	tb.Helper()
	var env []string
	for _, c := range comps {
		env = append(env, component(tb, c).Env()...)
	}
	return env
}

// QueuePrefix returns a queue-name prefix unique to this test, so that
// tests sharing one SQS server never see each other's queues.
func QueuePrefix(tb testing.TB) string {
	tb.Helper()
	return "t" + RandomSuffix(tb, 5) + "-"
}

// RandomSuffix returns n random bytes as lower-case hex.
func RandomSuffix(tb testing.TB, n int) string {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatalf("stacktest: random: %v", err)
	}
	return hex.EncodeToString(b)
}

var awsOnce sync.Once

func setAWSDefaults(endpoint string) {
	awsOnce.Do(func() {
		for k, v := range map[string]string{
			devstack.EnvSQSEndpoint: endpoint,
			"AWS_ACCESS_KEY_ID":     "test",
			"AWS_SECRET_ACCESS_KEY": "test",
			"AWS_REGION":            "us-east-1",
		} {
			if os.Getenv(k) == "" {
				_ = os.Setenv(k, v)
			}
		}
	})
}

// NewSQSServer starts an SQS server of the test's own, stopped when the
// test ends, and returns its base URL: for tests that change how the
// server behaves (IAM enforcement), which the shared one must not.
func NewSQSServer(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := devstack.Start(ctx, devstack.Config{
		Dir:        tb.TempDir(),
		Components: []devstack.Component{devstack.SQS},
		NewSQS:     true,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		tb.Fatalf("stacktest: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("stacktest: stopping the SQS server: %v", err)
		}
	})
	return s.SQSEndpoint
}
