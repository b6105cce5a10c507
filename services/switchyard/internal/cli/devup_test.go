package cli_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/services/switchyard/internal/cli"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := devstack.FreePort()
	require.NoError(t, err)
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
}

// TestDevUpOnTheSecretsFile runs `switchyard dev up --vault=off` (what a
// first `go tool task dev` does while Vault is not built yet): every
// service reads its secrets through the same vault: references from the
// secrets file, the token service signs with a key file, and a submitted
// job succeeds.
func TestDevUpOnTheSecretsFile(t *testing.T) {
	t.Setenv("DATABASE_URL", stacktest.NewDatabase(t))
	t.Setenv("SWITCHYARD_QUEUE_PREFIX", stacktest.QueuePrefix(t))
	dir := t.TempDir()
	var out stacktest.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- cli.Execute(ctx, []string{"dev", "--dir", dir, "up", "--vault=off",
			"--gateway-addr", freeAddr(t), "--tokens-addr", freeAddr(t), "--replay-addr", freeAddr(t), "--upstream-addr", freeAddr(t)}, &out, &out)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			assert.Equal(t, 0, code, "dev up stops cleanly")
		case <-time.After(2 * time.Minute):
			t.Error("dev up did not stop")
		}
	})

	// dev up writes stack.env once every service is ready.
	envFile := filepath.Join(dir, cli.DevEnvFile)
	require.Eventually(t, func() bool {
		select {
		case code := <-done:
			done <- code
			return true
		default:
		}
		_, err := os.Stat(envFile)
		return err == nil
	}, 5*time.Minute, 100*time.Millisecond)
	select {
	case code := <-done:
		t.Fatalf("dev up exited with %d:\n%s", code, out.String())
	default:
	}
	env := readEnvFile(t, envFile)

	for _, svc := range []string{"tokens", "relay", "worker", "replay", "gateway"} {
		assert.True(t, logged(out.String(), svc, "secrets source: file"), "%s logs that it reads the secrets file", svc)
		assert.False(t, logged(out.String(), svc, "secrets source: Vault"), svc)
	}
	assert.FileExists(t, filepath.Join(dir, "secrets.json"))
	assert.FileExists(t, filepath.Join(dir, "signing-keys.json"))

	token := clientCredentialsToken(t, env["SWITCHYARD_TOKEN_URL"], env["SWITCHYARD_CLIENT_ID"], env["SWITCHYARD_CLIENT_SECRET"])
	req, err := http.NewRequest(http.MethodPost, env["SWITCHYARD_GATEWAY_URL"]+"/v1/jobs/text-stats", strings.NewReader(`{"text":"hello from a machine without Vault"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var job struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&job))
	_ = resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)

	require.Eventually(t, func() bool {
		req, err := http.NewRequest(http.MethodGet, env["SWITCHYARD_GATEWAY_URL"]+"/v1/jobs/"+job.ID, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&job))
		return job.Status == "succeeded"
	}, time.Minute, 50*time.Millisecond, "job %s never succeeded", job.ID)
}

// logged reports whether one of svc's lines in dev up's output holds text.
func logged(out, svc, text string) bool {
	for line := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(line, fmt.Sprintf("%-13s| ", svc)) && strings.Contains(line, text) {
			return true
		}
	}
	return false
}

func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path) //nolint:gosec // the test's own file
	require.NoError(t, err)
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	require.NoError(t, sc.Err())
	return env
}

func clientCredentialsToken(t *testing.T, tokenURL, id, secret string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	require.NoError(t, err)
	req.SetBasicAuth(id, secret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return out.AccessToken
}

// TestDoctorWithoutMotoOrInitdb runs `switchyard doctor` with a PATH that
// has go and nothing else: SQS is missing, with the commands that
// install moto, and the doctor exits 1.
func TestDoctorWithoutMotoOrInitdb(t *testing.T) {
	goBin, err := exec.LookPath("go")
	require.NoError(t, err)
	bin := t.TempDir()
	require.NoError(t, os.Symlink(goBin, filepath.Join(bin, "go")))
	t.Setenv("PATH", bin)
	t.Setenv("AWS_ENDPOINT_URL_SQS", "")
	t.Setenv("VAULT_ADDR", "")
	code, stdout, _ := run("doctor", "--for", "test", "--dir", t.TempDir())
	require.Equal(t, 1, code, stdout)
	assert.Regexp(t, `MISSING\s+SQS\s+no AWS_ENDPOINT_URL_SQS and no moto_server on PATH`, stdout)
	assert.Contains(t, stdout, "Debian/Ubuntu:    sudo apt-get install -y pipx && pipx install 'moto[server]'")
	assert.Contains(t, stdout, "macOS (Homebrew): brew install pipx && pipx install 'moto[server]'")
	assert.Contains(t, stdout, "1 missing (SQS)")

	code, _, stderr := run("doctor", "--for", "production")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "use dev or test")
}

// TestDoctorChecksDevUpsAddresses: `go tool task dev -- --gateway-addr
// ...` passes dev up's flags to the doctor too, which checks those ports.
func TestDoctorChecksDevUpsAddresses(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	free := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	code, stdout, _ := run("doctor", "--for", "dev", "--dir", t.TempDir(), "--vault=off",
		"--gateway-addr", taken.Addr().String(), "--tokens-addr", free[0], "--replay-addr", free[1], "--upstream-addr", free[2])
	require.Equal(t, 1, code, stdout)
	assert.Regexp(t, `MISSING\s+ports\s+`+regexp.QuoteMeta(taken.Addr().String())+` already in use`, stdout)

	code, stdout, _ = run("doctor", "--for", "dev", "--dir", t.TempDir(),
		"--gateway-addr", freeAddr(t), "--tokens-addr", free[0], "--replay-addr", free[1], "--upstream-addr", free[2])
	require.Equal(t, 0, code, stdout)
	assert.Regexp(t, `ok\s+ports\s+`, stdout)
}
