package e2e_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	vault "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/oauthclients"
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

// vaultOutage runs every service with AppRole logins (tokens of a 5 s
// TTL) and DATABASE_URL read from Vault, a Vault server of the test's own
// (server mode, file storage), then stops that server for 30 s while
// clients submit jobs and read their status, and starts it again (it comes
// back sealed; the test unseals it, as an operator would): every request
// succeeds on the secrets read at start, every service's /readyz says
// "degraded" meanwhile (still 200, so no replica leaves service), and all
// of them recover by themselves. No secret value (the database URL, the
// AppRole secret id, Vault tokens, OAuth client secrets) appears in any
// log, written at debug level, nor does the private key material of the
// signing keys file (transit keys never leave Vault).
func vaultOutage(t *testing.T) {
	vs := stacktest.NewVaultServer(t)
	mount, roleID, secretID := stacktest.AppRoleOn(t, vs.Root(), "5s", stacktest.ReadSecretsPolicy)
	dbURL := stacktest.NewDatabase(t)
	// A password in the URL Vault holds (this Postgres trusts local
	// connections and ignores it), so that the log scan below has one to
	// look for.
	withPassword, err := url.Parse(dbURL)
	require.NoError(t, err)
	withPassword.User = url.UserPassword(withPassword.User.Username(), "pg-password-"+stacktest.RandomSuffix(t, 6))
	path := "switchyard/e2e/" + stacktest.RandomSuffix(t, 4)
	_, err = vs.Root().KVv2("secret").Put(context.Background(), path, map[string]any{"database_url": withPassword.String()})
	require.NoError(t, err)
	services := []string{"tokens", "relay", "worker", "gateway"}
	// The services reach Vault through a proxy that keeps every token
	// Vault issues them: the secrets they hold, which their logs must not.
	issued := newTokenRecorder(t, vs.URL())
	p := startPlatformWith(t, platformOptions{services: services, databaseURL: dbURL, env: []string{
		"DATABASE_URL=vault:secret/" + path + "#database_url",
		"VAULT_ADDR=" + issued.URL,
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
	clientSecrets := map[string]string{}
	for c := range 4 {
		clientID := fmt.Sprintf("vault-client-%d", c)
		secret := p.client(clientID, "jobs:submit", "jobs:read")
		clientSecrets[clientID] = secret
		tok, err := p.token(clientID, secret)
		require.NoError(t, err)
		p.mu.Lock()
		p.bearers[clientID] = tok
		p.mu.Unlock()
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
	vs.Stop()
	cutAt := time.Now()
	before := ok.Load()
	t.Logf("Vault stopped after %d jobs", before)
	for _, svc := range services {
		require.Eventually(t, func() bool {
			code, body := p.readiness(svc)
			return code == http.StatusOK && body["status"] == "degraded"
		}, 20*time.Second, 100*time.Millisecond, "%s reports degraded, and stays in service", svc)
		healthy, exported := value(p.scrape(svc), "switchyard_vault_healthy")
		require.True(t, exported && healthy == 0, "%s's switchyard_vault_healthy says 0 while Vault is down", svc)
	}
	for time.Since(cutAt) < 30*time.Second {
		if !sleepOr(stop, 100*time.Millisecond) {
			break
		}
	}
	during := ok.Load() - before
	vs.Start()
	t.Logf("Vault started and unsealed again after %s; %d jobs succeeded meanwhile", time.Since(cutAt).Round(time.Second), during)
	require.Positive(t, during, "traffic went on while Vault was stopped")
	for _, svc := range services {
		require.Eventually(t, func() bool {
			code, body := p.readiness(svc)
			return code == http.StatusOK && body["status"] == "ready"
		}, 30*time.Second, 100*time.Millisecond, "%s recovers by itself", svc)
		healthy, _ := value(p.scrape(svc), "switchyard_vault_healthy")
		require.EqualValues(t, 1, healthy, svc)
	}
	after := ok.Load()
	require.Eventually(t, func() bool { return ok.Load() >= after+10 }, time.Minute, 20*time.Millisecond)
	close(stop)
	wg.Wait()
	failures.Range(func(k, _ any) bool { t.Logf("failure: %s", k); return true })
	require.Zero(t, failed.Load(), "no request failed")
	t.Logf("%d jobs submitted and succeeded, 0 failed; %d while Vault was stopped", ok.Load(), during)

	// No secret value the services held in any log: their Vault tokens,
	// the AppRole secret id, the database password, the OAuth client
	// secrets and the signing keys' private bytes in every usual encoding.
	password, _ := withPassword.User.Password()
	secretValues := map[string]string{"AppRole secret id": secretID, "database password": password}
	tokens := issued.tokens()
	require.NotEmpty(t, tokens, "the services logged in to Vault through the proxy")
	for i, tok := range tokens {
		secretValues[fmt.Sprintf("Vault token %d", i)] = tok
	}
	for id, secret := range clientSecrets {
		secretValues["client secret of "+id] = secret
	}
	keysJSON, err := os.ReadFile(p.keysFile)
	require.NoError(t, err)
	var keyFile struct {
		Keys []struct {
			PrivateKey string `json:"private_key"`
		} `json:"keys"`
	}
	require.NoError(t, json.Unmarshal(keysJSON, &keyFile))
	require.NotEmpty(t, keyFile.Keys)
	for i, k := range keyFile.Keys {
		block, _ := pem.Decode([]byte(k.PrivateKey))
		require.NotNil(t, block, "signing key %d is PEM", i)
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		require.NoError(t, err)
		ec, ok := key.(*ecdsa.PrivateKey)
		require.True(t, ok, "signing key %d is ECDSA", i)
		d, err := ec.Bytes()
		require.NoError(t, err)
		for enc, v := range map[string]string{
			"PEM body": base64.StdEncoding.EncodeToString(block.Bytes)[40:], // past the header every P-256 key shares
			"hex":      hex.EncodeToString(d), "base64": base64.StdEncoding.EncodeToString(d),
			"base64url (a JWK's d)": base64.RawURLEncoding.EncodeToString(d),
		} {
			secretValues[fmt.Sprintf("signing key %d (%s)", i, enc)] = v
		}
	}
	for _, svc := range services {
		logs, err := os.ReadFile(filepath.Join(p.logDir, svc+".log"))
		require.NoError(t, err)
		require.Contains(t, string(logs), `"level":"INFO"`, "%s logged below warnings", svc)
		for what, v := range secretValues {
			require.NotContains(t, string(logs), v, "%s's log holds the %s", svc, what)
		}
		require.NotContains(t, string(logs), withPassword.String(), "%s's log holds the database URL", svc)
		require.NotContains(t, strings.ToLower(string(logs)), `"client_token"`)
	}
}

// tokenRecorder is a reverse proxy to Vault that keeps the client tokens
// of every login it passes on.
type tokenRecorder struct {
	*httptest.Server
	mu     sync.Mutex
	issued []string
}

func newTokenRecorder(t *testing.T, vaultURL string) *tokenRecorder {
	target, err := url.Parse(vaultURL)
	require.NoError(t, err)
	r := &tokenRecorder{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		var login struct {
			Auth *struct {
				ClientToken string `json:"client_token"`
			} `json:"auth"`
		}
		if json.Unmarshal(body, &login) == nil && login.Auth != nil && login.Auth.ClientToken != "" {
			r.mu.Lock()
			r.issued = append(r.issued, login.Auth.ClientToken)
			r.mu.Unlock()
		}
		return nil
	}
	proxy.ErrorLog = log.New(io.Discard, "", 0) // Vault is stopped on purpose
	r.Server = httptest.NewServer(proxy)
	t.Cleanup(r.Close)
	return r
}

func (r *tokenRecorder) tokens() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.issued)
}

func sleepOr(stop <-chan struct{}, d time.Duration) bool {
	select {
	case <-stop:
		return false
	case <-time.After(d):
		return true
	}
}

// dynamicDatabaseCredentials runs every service on short-lived
// database users from Vault's database secrets engine (30 s leases) under
// two minutes of traffic: each service's user rolls at least twice, no
// request fails, and Vault drops the users it replaced.
func dynamicDatabaseCredentials(t *testing.T) {
	dbURL := stacktest.NewDatabase(t)
	mount := stacktest.DatabaseEngine(t, dbURL, "30s")
	services := []string{"tokens", "relay", "worker", "gateway"}
	// DATABASE_URL keeps the host and database; the user and password come
	// from Vault.
	p := startPlatformWith(t, platformOptions{services: services, databaseURL: dbURL, env: []string{
		"SWITCHYARD_VAULT_DATABASE_ROLE=app",
		"SWITCHYARD_VAULT_DATABASE_MOUNT=" + mount,
		"SWITCHYARD_LOG_LEVEL=info",
	}})

	// Which user each service's connections log in as, sampled.
	users := map[string]map[string]bool{}
	var usersMu sync.Mutex
	sample := func() {
		rows, err := p.pool.Query(context.Background(), `
			SELECT application_name, usename FROM pg_stat_activity
			WHERE datname = current_database() AND application_name LIKE 'switchyard-%' AND usename LIKE 'v-%'`)
		require.NoError(t, err)
		defer rows.Close()
		usersMu.Lock()
		defer usersMu.Unlock()
		for rows.Next() {
			var app, user string
			require.NoError(t, rows.Scan(&app, &user))
			if users[app] == nil {
				users[app] = map[string]bool{}
			}
			users[app][user] = true
		}
	}

	stop := make(chan struct{})
	var ok, failed atomic.Int64
	var failures sync.Map
	var wg sync.WaitGroup
	client := http.Client{Timeout: 10 * time.Second}
	for c := range 4 {
		clientID := fmt.Sprintf("dyn-client-%d", c)
		p.bearer(clientID)
		wg.Go(func() {
			for n := 0; sleepOr(stop, 0); n++ {
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
	start := time.Now()
	for time.Since(start) < 2*time.Minute {
		sample()
		sleepOr(stop, 500*time.Millisecond)
	}
	close(stop)
	wg.Wait()
	failures.Range(func(k, _ any) bool { t.Logf("failure: %s", k); return true })
	require.Zero(t, failed.Load(), "no request failed")
	require.Positive(t, ok.Load())

	sample()
	current := map[string]bool{}
	var replaced []string
	for _, svc := range services {
		logs, err := os.ReadFile(filepath.Join(p.logDir, svc+".log"))
		require.NoError(t, err)
		rotations := strings.Count(string(logs), `"msg":"database credentials rotated"`)
		seen := users["switchyard-"+svc]
		t.Logf("%s: %d rotations; its connections were seen logged in as %d users", svc, rotations, len(seen))
		require.GreaterOrEqual(t, rotations, 2, "%s's credentials rolled at least twice", svc)
		metrics := p.scrape(svc)
		rolled, okRolled := value(metrics, "switchyard_vault_lease_rotations_total")
		require.True(t, okRolled, "%s exports its lease rotations", svc)
		require.InDelta(t, rotations, rolled, 1, "%s: the metric counts the rotations the log shows", svc)
		expiry, _ := value(metrics, "switchyard_vault_lease_expiry_timestamp_seconds")
		require.Greater(t, expiry, float64(time.Now().Unix()), "%s's current lease has not ended", svc)
		healthy, _ := value(metrics, "switchyard_vault_healthy")
		require.EqualValues(t, 1, healthy, svc)
		if svc != "tokens" { // the token service is idle once the clients have their tokens
			require.GreaterOrEqual(t, len(seen), 3, "%s's connections moved to each new user", svc)
		}
		for u := range seen {
			replaced = append(replaced, u)
		}
	}
	// The users in use now are current; every other one must be dropped
	// once its lease has ended (at most 30 s after it was replaced).
	rows, err := p.pool.Query(context.Background(), `SELECT DISTINCT usename FROM pg_stat_activity WHERE usename LIKE 'v-%'`)
	require.NoError(t, err)
	for rows.Next() {
		var u string
		require.NoError(t, rows.Scan(&u))
		current[u] = true
	}
	rows.Close()
	require.Eventually(t, func() bool {
		for _, u := range replaced {
			if current[u] {
				continue
			}
			var n int
			require.NoError(t, p.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_roles WHERE rolname = $1`, u).Scan(&n))
			if n > 0 {
				return false
			}
		}
		return true
	}, 45*time.Second, 500*time.Millisecond, "Vault drops the replaced users")
	t.Logf("%d jobs submitted and succeeded, 0 failed; %d users seen, all replaced ones dropped", ok.Load(), len(replaced))
}

// transitKeyRotationUnderTraffic runs the token service with its
// signing key in Vault's transit engine (tokens are signed by Vault) and
// rotates the key twice while clients keep fetching tokens and calling the
// gateway: every new key is in the JWKS before a token carries its kid,
// and no valid token is ever refused (zero 401s), without a restart.
func transitKeyRotationUnderTraffic(t *testing.T) {
	rc := stacktest.VaultRoot(t)
	mount := "transit-" + stacktest.RandomSuffix(t, 4)
	require.NoError(t, rc.Sys().Mount(mount, &vault.MountInput{Type: "transit"}))
	t.Cleanup(func() { _ = rc.Sys().Unmount(mount) })
	_, err := rc.Logical().Write(mount+"/keys/jwt", map[string]any{"type": "ecdsa-p256"})
	require.NoError(t, err)
	p := startPlatformWith(t, platformOptions{services: []string{"tokens", "gateway"}, env: []string{
		"SWITCHYARD_TOKENS_KEYS_FILE=",
		"SWITCHYARD_TOKENS_KEYS_TRANSIT=" + mount + "/jwt",
		"SWITCHYARD_TOKENS_KEY_LEAD=3s",
		"SWITCHYARD_AUTH_JWKS_REFRESH=1s",
	}})
	pids := map[string]int{"tokens": p.procs["tokens"].Pid(), "gateway": p.procs["gateway"].Pid()}

	kidOf := func(tok string) string {
		parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
		require.NoError(t, err)
		return parsed.Header["kid"].(string)
	}
	var mu sync.Mutex
	firstToken := map[string]time.Time{} // kid -> first token carrying it
	firstJWKS := map[string]time.Time{}  // kid -> first JWKS showing it
	stop := make(chan struct{})
	var calls, unauthorized, other, busy atomic.Int64
	var wg sync.WaitGroup
	for c := range 4 {
		id := fmt.Sprintf("rot-%d", c)
		secret := p.client(id, "jobs:read")
		wg.Go(func() {
			for sleepOr(stop, 150*time.Millisecond) {
				tok, err := p.token(id, secret)
				if errors.Is(err, errTokensBusy) {
					busy.Add(1) // asked again on the next turn, as a client would
					continue
				}
				if err != nil {
					other.Add(1)
					continue
				}
				kid := kidOf(tok)
				mu.Lock()
				if _, ok := firstToken[kid]; !ok {
					firstToken[kid] = time.Now()
				}
				mu.Unlock()
				r := p.call("GET", "/v1/jobs/"+uuid.NewString(), "Bearer "+tok, "")
				calls.Add(1)
				switch r.status {
				case http.StatusNotFound:
				case http.StatusUnauthorized:
					unauthorized.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	wg.Go(func() {
		for sleepOr(stop, 50*time.Millisecond) {
			resp, err := http.Get(p.tokens + "/.well-known/jwks.json")
			if err != nil {
				continue
			}
			var set struct {
				Keys []struct {
					Kid string `json:"kid"`
				} `json:"keys"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&set)
			_ = resp.Body.Close()
			mu.Lock()
			for _, k := range set.Keys {
				if _, ok := firstJWKS[k.Kid]; !ok {
					firstJWKS[k.Kid] = time.Now()
				}
			}
			mu.Unlock()
		}
	})

	kids := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(firstToken)
	}
	require.Eventually(t, func() bool { return kids() == 1 && calls.Load() >= 10 }, 30*time.Second, 20*time.Millisecond)
	mu.Lock()
	var initial string
	for kid := range firstToken {
		initial = kid
	}
	mu.Unlock()
	for want := 2; want <= 3; want++ {
		_, err := rc.Logical().Write(mount+"/keys/jwt/rotate", nil)
		require.NoError(t, err)
		require.Eventually(t, func() bool { return kids() == want }, 30*time.Second, 20*time.Millisecond,
			"tokens signed by version %d", want)
		// Keep traffic on the new key for a while.
		n := calls.Load()
		require.Eventually(t, func() bool { return calls.Load() >= n+10 }, 30*time.Second, 20*time.Millisecond)
	}
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	require.Zero(t, unauthorized.Load(), "no valid token was refused")
	for kid, signed := range firstToken {
		if kid == initial {
			continue // published since start-up
		}
		published, ok := firstJWKS[kid]
		require.True(t, ok, "kid %s was published", kid)
		require.True(t, published.Before(signed), "kid %s was in the JWKS (%s) before a token carried it (%s)", kid,
			published.Format(time.RFC3339Nano), signed.Format(time.RFC3339Nano))
	}
	require.Zero(t, unauthorized.Load(), "no valid token was refused")
	require.Zero(t, other.Load(), "every token request and call answered as expected")
	t.Logf("%d calls with tokens of %d keys signed by Vault transit, 0 refused; %d token requests shed as busy and asked again",
		calls.Load(), len(firstToken), busy.Load())
	for svc, pid := range pids {
		require.Equal(t, pid, p.procs[svc].Pid(), "%s was not restarted", svc)
	}
}

// provisionedPlatform provisions the test Vault with `switchyard vault
// provision`, as the compose init step does, and runs every service with
// what it set up: its own AppRole (credentials from files), its own
// database role's short-lived users, SQS credentials read from Vault (none
// in the environment), and the token service signing with the transit
// key. A job goes through, and the admin API answers.
func provisionedPlatform(t *testing.T) {
	bin := binaries(t)
	dbURL := stacktest.NewDatabase(t)
	suffix := stacktest.RandomSuffix(t, 4)
	prefix := "t" + suffix
	creds := t.TempDir()
	rc := stacktest.VaultRoot(t)
	t.Cleanup(func() {
		_ = rc.Sys().Unmount("database-" + suffix)
		_ = rc.Sys().Unmount("transit-" + suffix)
		_ = rc.Sys().DisableAuth("approle-" + suffix)
	})
	cmd := exec.Command(filepath.Join(bin, "switchyard"), "vault", "provision", "--prefix", prefix, "--credentials-dir", creds,
		"--database-mount", "database-"+suffix, "--transit-mount", "transit-"+suffix, "--approle-mount", "approle-"+suffix,
		"--database-url", dbURL, "--db-ttl", "5m", "--sqs-credentials-from-env")
	cmd.Env = append(os.Environ(), stacktest.Env(t, devstack.Vault)...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	t.Logf("switchyard vault provision:\n%s", out)
	require.Contains(t, string(out), "SWITCHYARD_TOKENS_KEYS_TRANSIT=transit-"+suffix+"/"+prefix+"-jwt")

	services := []string{"tokens", "relay", "worker", "replay", "gateway"}
	perService := map[string][]string{}
	for _, svc := range services {
		perService[svc] = []string{
			"VAULT_TOKEN=", "VAULT_AUTH_METHOD=approle", "VAULT_AUTH_MOUNT=approle-" + suffix,
			"VAULT_ROLE_ID_FILE=" + filepath.Join(creds, svc, "role-id"), "VAULT_SECRET_ID_FILE=" + filepath.Join(creds, svc, "secret-id"),
			"SWITCHYARD_VAULT_DATABASE_ROLE=" + prefix + "-" + svc, "SWITCHYARD_VAULT_DATABASE_MOUNT=database-" + suffix,
		}
	}
	for _, svc := range []string{"relay", "worker", "replay"} {
		// No AWS credentials in the environment: only Vault's.
		perService[svc] = append(perService[svc], "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=",
			"SWITCHYARD_SQS_ACCESS_KEY_ID=vault:secret/"+prefix+"/shared/sqs#access_key_id",
			"SWITCHYARD_SQS_SECRET_ACCESS_KEY=vault:secret/"+prefix+"/shared/sqs#secret_access_key")
	}
	pepperRef := "vault:secret/" + prefix + "/tokens/oauth#pepper"
	perService["tokens"] = append(perService["tokens"], "SWITCHYARD_CLIENT_SECRET_PEPPER="+pepperRef, "SWITCHYARD_TOKENS_KEYS_FILE=",
		"SWITCHYARD_TOKENS_KEYS_TRANSIT=transit-"+suffix+"/"+prefix+"-jwt", "SWITCHYARD_TOKENS_KEY_LEAD=0s")
	p := startPlatformWith(t, platformOptions{services: services, databaseURL: dbURL, serviceEnv: perService})
	// Clients this test registers directly are hashed with the same pepper
	// (the token service refuses un-peppered hashes once it has one).
	pepperSecret, err := rc.KVv2("secret").Get(context.Background(), prefix+"/tokens/oauth")
	require.NoError(t, err)
	pepper, _ := pepperSecret.Data["pepper"].(string)
	require.NotEmpty(t, pepper)
	p.storeOpts = []oauthclients.Option{oauthclients.WithPepper([]byte(pepper))}

	// A client made by the operator's CLI has its secret hashed with the
	// pepper from Vault; the token service, reading the same pepper with
	// its own AppRole, accepts it.
	cli := exec.Command(filepath.Join(bin, "switchyard"), "clients", "create", "--id", "peppered", "--scope", "jobs:read", "-o", "json")
	cli.Env = append(slices.Clone(p.env), stacktest.Env(t, devstack.Vault)...)
	cli.Env = append(cli.Env, "SWITCHYARD_CLIENT_SECRET_PEPPER="+pepperRef)
	created, err := cli.Output()
	require.NoError(t, err)
	var peppered struct {
		ClientSecret string `json:"client_secret"`
	}
	require.NoError(t, json.Unmarshal(created, &peppered))
	var hash string
	require.NoError(t, p.pool.QueryRow(context.Background(), `SELECT secret_hash FROM oauth_clients WHERE client_id = 'peppered'`).Scan(&hash))
	require.True(t, strings.HasPrefix(hash, "pepper:"), "stored peppered")
	_, err = p.token("peppered", peppered.ClientSecret)
	require.NoError(t, err, "the token service checks it with the pepper from Vault")
	_, err = p.token("peppered", peppered.ClientSecret+"x")
	require.ErrorContains(t, err, "401")

	id, err := p.submit(http.Client{Timeout: 10 * time.Second}, "prov-client", 1)
	require.NoError(t, err)
	require.NoError(t, p.awaitSucceeded(http.Client{Timeout: 10 * time.Second}, "prov-client", id, time.Minute))
	adminSecret := p.client("prov-admin", "switchyard:admin")
	adminToken, err := p.token("prov-admin", adminSecret)
	require.NoError(t, err)
	r := p.admin("GET", "/admin/v1/dead-letters/stats", "", "Bearer "+adminToken)
	require.Equal(t, http.StatusOK, r.status, r.body)

	// Each service on users of its own database role.
	rows, err := p.pool.Query(context.Background(), `
		SELECT application_name, count(DISTINCT usename) FILTER (WHERE usename LIKE 'v-%'), count(DISTINCT usename)
		FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'switchyard-%' GROUP BY 1`)
	require.NoError(t, err)
	seen := 0
	for rows.Next() {
		var app string
		var vaultUsers, allUsers int
		require.NoError(t, rows.Scan(&app, &vaultUsers, &allUsers))
		require.Equal(t, allUsers, vaultUsers, "%s connects only as Vault's users", app)
		seen++
	}
	rows.Close()
	require.Equal(t, len(services), seen)
}
