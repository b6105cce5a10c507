package e2e_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack"
)

// invalidSettingExitsWithStatus2: every service refuses a setting it
// cannot run with before it connects to anything, exits with status 2
// (the convention for a usage error, which an orchestrator tells from a
// crash), and names the setting. Before the configurations validated
// themselves (measured with the binaries of 5d7dbee), the relay's loops and
// queue prefix, the worker's queue prefix and jobs file, the replay
// service's queue prefix, and the token service's lifetime and hash memory
// exited 1.
func invalidSettingExitsWithStatus2(t *testing.T) {
	bin := binaries(t)
	root, err := devstack.ModuleRoot(".")
	require.NoError(t, err)
	base := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
		// Never dialled: validation comes first.
		"DATABASE_URL=postgres://127.0.0.1:1/none?connect_timeout=1",
		"SWITCHYARD_JOBS_FILE=" + filepath.Join(root, "deployments", "config", "jobs.yaml"),
		"SWITCHYARD_ROUTES_FILE=" + filepath.Join(root, "deployments", "config", "routes.yaml"),
		"SWITCHYARD_AUTH_ISSUER=http://127.0.0.1:1", "SWITCHYARD_TOKENS_ISSUER=http://127.0.0.1:1",
		"SWITCHYARD_TOKENS_KEYS_FILE=" + filepath.Join(t.TempDir(), "keys.json"),
		"AWS_ENDPOINT_URL_SQS=http://127.0.0.1:1", "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=x",
	}
	// names is what the message must say when not the variable itself
	// (SQS's own settings by what they mean; the token API's by its check).
	tests := []struct{ service, setting, value, names string }{
		{"gateway", "SWITCHYARD_GATEWAY_CACHE_MAX_BYTES", "-1", ""},
		{"gateway", "SWITCHYARD_USAGE_FLUSH", "1ms", ""},
		{"gateway", "SWITCHYARD_API_KEY_PEPPER", "too-short", ""},
		{"tokens", "SWITCHYARD_TOKENS_TTL", "5s", "token lifetime 5s must be between 1m and 24h"},
		{"tokens", "SWITCHYARD_TOKENS_TRUSTED_PROXIES", "not-a-cidr", ""},
		{"tokens", "SWITCHYARD_TOKENS_HASH_MEMORY_MIB", "1", ""},
		{"relay", "SWITCHYARD_RELAY_LOOPS", "0", ""},
		{"relay", "SWITCHYARD_QUEUE_PREFIX", "no spaces", "queue prefix"},
		{"worker", "SWITCHYARD_WORKER_RECEIVE_WAIT", "30s", ""},
		{"worker", "SWITCHYARD_SQS_MAX_RECEIVE_COUNT", "2", "max receive count"},
		{"worker", "SWITCHYARD_QUEUE_PREFIX", "no spaces", "queue prefix"},
		{"worker", "SWITCHYARD_JOBS_FILE", "/nonexistent/jobs.yaml", ""},
		{"replay", "SWITCHYARD_REPLAY_MAX_OPERATIONS", "99", ""},
		{"replay", "SWITCHYARD_JOBS_FILE", "/nonexistent/jobs.yaml", ""},
		{"replay", "SWITCHYARD_QUEUE_PREFIX", "no spaces", "queue prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.service+"/"+tt.setting, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, filepath.Join(bin, tt.service))
			cmd.Env = append(append([]string{}, base...), tt.setting+"="+tt.value)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit, "%s must not start with %s=%s: %s", tt.service, tt.setting, tt.value, out.String())
			require.Equal(t, 2, exit.ExitCode(), out.String())
			require.Contains(t, out.String(), "invalid configuration", out.String())
			name := tt.setting
			if tt.names != "" {
				name = tt.names
			}
			require.Contains(t, out.String(), name)
		})
	}
}
