package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
)

// readiness returns svc's /readyz status code and document.
func (p *platform) readiness(svc string) (int, map[string]any) {
	p.t.Helper()
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(p.opsPorts[svc]) + "/readyz")
	require.NoError(p.t, err)
	defer resp.Body.Close()
	var body map[string]any
	require.NoError(p.t, json.NewDecoder(resp.Body).Decode(&body))
	return resp.StatusCode, body
}

// TestVaultOutage runs every service with AppRole logins (tokens of a 5 s
// TTL) and DATABASE_URL read from Vault, then makes Vault unreachable for
// 30 s while clients submit jobs and read their status: every request
// succeeds on the secrets read at start, every service's /readyz says
// "degraded" (still 200, so no replica leaves service), and all of them
// recover by themselves once Vault is back. No secret value (the database
// URL, the AppRole secret id, Vault tokens) appears in any log, written at
// debug level.
func TestVaultOutage(t *testing.T) {
	addr, rootToken := stacktest.Vault(t)
	proxy := stacktest.NewProxy(t, addr)
	mount, roleID, secretID := stacktest.AppRole(t, "5s", stacktest.ReadSecretsPolicy)
	dbURL := stacktest.NewDatabase(t)
	path := "switchyard/e2e/" + stacktest.RandomSuffix(t, 4)
	_, err := stacktest.VaultRoot(t).KVv2("secret").Put(context.Background(), path, map[string]any{"database_url": dbURL})
	require.NoError(t, err)
	services := []string{"tokens", "relay", "worker", "gateway"}
	p := startPlatformWith(t, platformOptions{services: services, databaseURL: dbURL, env: []string{
		"DATABASE_URL=vault:secret/" + path + "#database_url",
		"VAULT_ADDR=" + proxy.URL(),
		"VAULT_TOKEN=",
		"VAULT_AUTH_METHOD=approle",
		"VAULT_AUTH_MOUNT=" + mount,
		"VAULT_ROLE_ID=" + roleID,
		"VAULT_SECRET_ID=" + secretID,
		"SWITCHYARD_VAULT_RETRY_MAX=1s",
		"SWITCHYARD_LOG_LEVEL=debug",
	}})
	for _, svc := range services {
		code, body := p.readiness(svc)
		require.Equal(t, http.StatusOK, code, "%s: %v", svc, body)
		require.Equal(t, "ready", body["status"], svc)
	}

	// Traffic: 4 clients submit a job and read its status, in turn.
	stop := make(chan struct{})
	var ok, failed atomic.Int64
	var failures sync.Map
	var wg sync.WaitGroup
	client := http.Client{Timeout: 10 * time.Second}
	for c := range 4 {
		clientID := fmt.Sprintf("vault-client-%d", c)
		p.bearer(clientID)
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id, err := p.submit(client, clientID, n)
				if err == nil {
					err = p.awaitSucceeded(client, clientID, id, time.Minute)
				}
				if err != nil {
					failed.Add(1)
					failures.Store(err.Error(), true)
					continue
				}
				ok.Add(1)
			}
		})
	}

	require.Eventually(t, func() bool { return ok.Load() >= 20 }, time.Minute, 20*time.Millisecond)
	proxy.Cut()
	cutAt := time.Now()
	before := ok.Load()
	t.Logf("Vault unreachable after %d jobs", before)
	for _, svc := range services {
		require.Eventually(t, func() bool {
			code, body := p.readiness(svc)
			return code == http.StatusOK && body["status"] == "degraded"
		}, 20*time.Second, 100*time.Millisecond, "%s reports degraded, and stays in service", svc)
	}
	for time.Since(cutAt) < 30*time.Second {
		if !sleepOr(stop, 100*time.Millisecond) {
			break
		}
	}
	during := ok.Load() - before
	proxy.Restore()
	t.Logf("Vault back after %s; %d jobs succeeded meanwhile", time.Since(cutAt).Round(time.Second), during)
	require.Positive(t, during, "traffic went on while Vault was away")
	for _, svc := range services {
		require.Eventually(t, func() bool {
			code, body := p.readiness(svc)
			return code == http.StatusOK && body["status"] == "ready"
		}, 30*time.Second, 100*time.Millisecond, "%s recovers by itself", svc)
	}
	after := ok.Load()
	require.Eventually(t, func() bool { return ok.Load() >= after+10 }, time.Minute, 20*time.Millisecond)
	close(stop)
	wg.Wait()
	failures.Range(func(k, _ any) bool { t.Logf("failure: %s", k); return true })
	require.Zero(t, failed.Load(), "no request failed")
	t.Logf("%d jobs submitted and succeeded, 0 failed; %d while Vault was unreachable", ok.Load(), during)

	// No secret value in any log.
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	password, _ := u.User.Password()
	secretValues := map[string]string{"AppRole secret id": secretID, "Vault root token": rootToken}
	if password != "" {
		secretValues["database password"] = password
	}
	for _, svc := range services {
		logs, err := os.ReadFile(filepath.Join(p.logDir, svc+".log"))
		require.NoError(t, err)
		require.Contains(t, string(logs), `"level":"INFO"`, "%s logged below warnings", svc)
		for what, v := range secretValues {
			require.NotContains(t, string(logs), v, "%s's log holds the %s", svc, what)
		}
		require.NotContains(t, string(logs), dbURL, "%s's log holds the database URL", svc)
		require.NotContains(t, strings.ToLower(string(logs)), `"client_token"`)
	}
}

func sleepOr(stop <-chan struct{}, d time.Duration) bool {
	select {
	case <-stop:
		return false
	case <-time.After(d):
		return true
	}
}
