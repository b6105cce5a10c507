package secrets_test

import (
	"context"
	"crypto"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/golang-jwt/jwt/v5"
	vault "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/secrets"
	"github.com/switchyard/switchyard/libs/signingkeys"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// root returns a client with the dev server's root token, and the
// server's address.
func root(t *testing.T) (*vault.Client, string) {
	t.Helper()
	addr, _ := stacktest.Vault(t)
	return stacktest.VaultRoot(t), addr
}

func appRole(t *testing.T, _ *vault.Client, ttl string) (mount, roleID, secretID string) {
	t.Helper()
	return stacktest.AppRole(t, ttl, stacktest.ReadSecretsPolicy)
}

func putKV(t *testing.T, rc *vault.Client, path string, data map[string]any) {
	t.Helper()
	_, err := rc.KVv2("secret").Put(context.Background(), path, data)
	require.NoError(t, err)
}

func run(t *testing.T, c *secrets.Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func TestDisabled(t *testing.T) {
	t.Parallel()
	c, err := secrets.New(context.Background(), secrets.Config{}, nil)
	require.NoError(t, err)
	require.Nil(t, c, "no VAULT_ADDR, no client")
	_, err = c.ReadKV(context.Background(), "secret", "x")
	require.ErrorIs(t, err, secrets.ErrDisabled)
	require.NoError(t, c.Ready(context.Background()))
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for cfg, want := range map[secrets.Config]string{
		{Addr: "http://x", Auth: "token"}:            "VAULT_TOKEN is required",
		{Addr: "http://x", Auth: "approle"}:          "VAULT_ROLE_ID and VAULT_SECRET_ID",
		{Addr: "http://x", Auth: "kubernetes"}:       "VAULT_KUBERNETES_ROLE is required",
		{Addr: "http://x", Auth: "ldap", Token: "t"}: `"ldap" must be token, approle or kubernetes`,
	} {
		_, err := secrets.New(context.Background(), cfg, nil)
		require.ErrorContains(t, err, want)
	}
}

func TestTokenAuthAndKV(t *testing.T) {
	t.Parallel()
	rc, addr := root(t)
	_, token := stacktest.Vault(t)
	path := "switchyard/test/" + stacktest.RandomSuffix(t, 4)
	putKV(t, rc, path, map[string]any{"password": "hunter2", "n": 7})
	putKV(t, rc, path, map[string]any{"password": "hunter3", "n": 7})

	c, err := secrets.New(context.Background(), secrets.Config{Addr: addr, Token: token}, nil)
	require.NoError(t, err)
	s, err := c.ReadKV(context.Background(), "secret", path)
	require.NoError(t, err)
	require.Equal(t, 2, s.Version)
	v, err := c.Read(context.Background(), "secret/"+path+"#password")
	require.NoError(t, err)
	require.Equal(t, "hunter3", v)
	for ref, want := range map[string]string{
		"secret/" + path + "#missing": `no key "missing"`,
		"secret/" + path + "#n":       "not a string",
		"secret/no/such/secret#k":     "reading KV secret secret/no/such/secret",
		"nonsense":                    "must look like",
	} {
		_, err := c.Read(context.Background(), ref)
		require.ErrorContains(t, err, want, ref)
	}

	_, err = secrets.New(context.Background(), secrets.Config{Addr: addr, Token: "not-a-token"}, nil)
	require.ErrorContains(t, err, "looking up VAULT_TOKEN")
}

func TestAppRoleLoginAndRenewalPastTheTTL(t *testing.T) {
	t.Parallel()
	rc, addr := root(t)
	mount, roleID, secretID := appRole(t, rc, "3s")
	path := "switchyard/test/" + stacktest.RandomSuffix(t, 4)
	putKV(t, rc, path, map[string]any{"k": "v"})

	_, err := secrets.New(context.Background(), secrets.Config{Addr: addr, Auth: secrets.AuthAppRole, AuthMount: mount,
		RoleID: roleID, SecretID: "wrong"}, nil)
	require.ErrorContains(t, err, "approle login", "bad credentials fail start-up")

	c, err := secrets.New(context.Background(), secrets.Config{Addr: addr, Auth: secrets.AuthAppRole, AuthMount: mount,
		RoleID: roleID, SecretID: secretID}, nil)
	require.NoError(t, err)
	loggedIn := time.Now()
	first := c.Stats()
	require.Equal(t, 1, first.Logins)
	require.Equal(t, 3*time.Second, first.TokenTTL)
	run(t, c)

	// The token outlives its 3 s TTL by renewals, not new logins.
	require.Eventually(t, func() bool { return c.Stats().Renewals >= 3 }, 30*time.Second, 50*time.Millisecond)
	require.Greater(t, time.Since(loggedIn), 3*time.Second)
	now := c.Stats()
	require.Equal(t, 1, now.Logins)
	require.Equal(t, first.Accessor, now.Accessor)
	_, err = c.ReadKV(context.Background(), "secret", path)
	require.NoError(t, err, "the first token still works past its initial TTL")
	require.NoError(t, c.Ready(context.Background()))
}

func TestLoginAgainAfterRevocation(t *testing.T) {
	t.Parallel()
	rc, addr := root(t)
	mount, roleID, secretID := appRole(t, rc, "30s")
	path := "switchyard/test/" + stacktest.RandomSuffix(t, 4)
	putKV(t, rc, path, map[string]any{"k": "v"})
	c, err := secrets.New(context.Background(), secrets.Config{Addr: addr, Auth: secrets.AuthAppRole, AuthMount: mount,
		RoleID: roleID, SecretID: secretID}, nil)
	require.NoError(t, err)
	run(t, c)
	before := c.Stats().Accessor

	// Revoked under a running client: the next read is refused, logs in
	// again and succeeds.
	_, err = rc.Logical().Write("auth/token/revoke-accessor", map[string]any{"accessor": before})
	require.NoError(t, err)
	s, err := c.ReadKV(context.Background(), "secret", path)
	require.NoError(t, err)
	require.Equal(t, "v", s.Data["k"])
	after := c.Stats()
	require.Equal(t, 2, after.Logins)
	require.NotEqual(t, before, after.Accessor)
}

func TestRenewalFailureLogsInAgain(t *testing.T) {
	t.Parallel()
	rc, addr := root(t)
	mount, roleID, secretID := appRole(t, rc, "2s")
	c, err := secrets.New(context.Background(), secrets.Config{Addr: addr, Auth: secrets.AuthAppRole, AuthMount: mount,
		RoleID: roleID, SecretID: secretID}, nil)
	require.NoError(t, err)
	before := c.Stats().Accessor
	_, err = rc.Logical().Write("auth/token/revoke-accessor", map[string]any{"accessor": before})
	require.NoError(t, err)
	run(t, c)
	require.Eventually(t, func() bool { return c.Stats().Logins == 2 }, 30*time.Second, 50*time.Millisecond,
		"the renewal of the revoked token fails and the client logs in again without any read")
	require.NotEqual(t, before, c.Stats().Accessor)
	require.Eventually(t, func() bool { return c.Ready(context.Background()) == nil }, 10*time.Second, 20*time.Millisecond)
}

func TestWatchFiresOnNewVersion(t *testing.T) {
	t.Parallel()
	rc, addr := root(t)
	_, token := stacktest.Vault(t)
	path := "switchyard/test/" + stacktest.RandomSuffix(t, 4)
	putKV(t, rc, path, map[string]any{"key": "one"})
	c, err := secrets.New(context.Background(), secrets.Config{Addr: addr, Token: token, WatchInterval: 100 * time.Millisecond}, nil)
	require.NoError(t, err)
	var mu sync.Mutex
	var seen []string
	require.NoError(t, c.Watch(context.Background(), "secret", path, func(s secrets.KVSecret) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, s.Data["key"].(string))
	}))
	require.Equal(t, []string{"one"}, seen, "the current version at once")
	run(t, c)
	putKV(t, rc, path, map[string]any{"key": "two"})
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 2 && seen[1] == "two"
	}, 10*time.Second, 20*time.Millisecond)

	require.Error(t, c.Watch(context.Background(), "secret", "no/such/"+path, func(secrets.KVSecret) {}),
		"an unreadable secret fails at once")
}

// TestVaultOutageKeepsTheLastVersion cuts the network path to a real Vault
// (a TCP proxy the test closes) under a watching client: the last version
// stays, Ready reports the outage, and the client recovers by itself.
func TestVaultOutageKeepsTheLastVersion(t *testing.T) {
	t.Parallel()
	rc, addr := root(t)
	_, token := stacktest.Vault(t)
	proxy := stacktest.NewProxy(t, addr)
	path := "switchyard/test/" + stacktest.RandomSuffix(t, 4)
	putKV(t, rc, path, map[string]any{"key": "one"})
	c, err := secrets.New(context.Background(), secrets.Config{Addr: proxy.URL(), Token: token, WatchInterval: 100 * time.Millisecond,
		RetryMax: 200 * time.Millisecond}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	var last atomic.Value
	require.NoError(t, c.Watch(context.Background(), "secret", path, func(s secrets.KVSecret) { last.Store(s.Data["key"]) }))
	run(t, c)

	proxy.Cut()
	require.Eventually(t, func() bool { return c.Ready(context.Background()) != nil }, 10*time.Second, 20*time.Millisecond)
	require.ErrorContains(t, c.Ready(context.Background()), "secret/"+path)
	require.Equal(t, "one", last.Load(), "the last good version is kept")
	putKV(t, rc, path, map[string]any{"key": "two"}) // while the client cannot see Vault

	proxy.Restore()
	require.Eventually(t, func() bool { return c.Ready(context.Background()) == nil && last.Load() == "two" }, 10*time.Second, 20*time.Millisecond,
		"recovers and picks up the version written meanwhile")
}

// TestTransitKeys: the versions of a transit key are a signing key ring
// whose tokens verify with the published public keys; a rotation adds a
// version that is published at once and signs only after the lead.
func TestTransitKeys(t *testing.T) {
	t.Parallel()
	rc, addr := root(t)
	_, token := stacktest.Vault(t)
	mount := transitMount(t, rc)
	c, err := secrets.New(context.Background(), secrets.Config{Addr: addr, Token: token}, nil)
	require.NoError(t, err)

	for typ, alg := range map[string]string{"ecdsa-p256": signingkeys.ES256, "ed25519": signingkeys.EdDSA, "rsa-2048": signingkeys.RS256} {
		_, err := rc.Logical().Write(mount+"/keys/jwt-"+typ, map[string]any{"type": typ})
		require.NoError(t, err)
		src := c.TransitKeys(mount, "jwt-"+typ, time.Hour)
		ring, err := src.Load(context.Background())
		require.NoError(t, err)
		require.Len(t, ring.Keys, 1)
		key, ok := ring.Active(time.Now())
		require.True(t, ok, "the first version signs at once")
		require.Equal(t, alg, key.Algorithm)

		method, err := signingkeys.SigningMethod(alg)
		require.NoError(t, err)
		tok := jwt.NewWithClaims(method, jwt.MapClaims{"sub": "x"})
		tok.Header["kid"] = key.ID
		signed, err := tok.SignedString(key.Signer)
		require.NoError(t, err, typ)
		_, err = jwt.Parse(signed, func(*jwt.Token) (any, error) { return key.Public(), nil }, jwt.WithValidMethods([]string{alg}))
		require.NoError(t, err, "%s: Vault's signature verifies with the published key", typ)

		if typ != "ecdsa-p256" {
			continue
		}
		_, err = rc.Logical().Write(mount+"/keys/jwt-"+typ+"/rotate", nil)
		require.NoError(t, err)
		ring, err = src.Load(context.Background())
		require.NoError(t, err)
		require.Len(t, ring.Keys, 2)
		require.Len(t, ring.Published(time.Now(), time.Hour), 2, "the new version is published at once")
		active, _ := ring.Active(time.Now())
		require.Equal(t, key.ID, active.ID, "and signs only after the lead")
		later, _ := ring.Active(time.Now().Add(time.Hour + time.Minute))
		require.Equal(t, ring.Keys[1].ID, later.ID)
	}

	_, err = c.TransitKeys(mount, "no-such-key", time.Hour).Load(context.Background())
	require.ErrorContains(t, err, "no transit key")
	_, err = rc.Logical().Write(mount+"/keys/aes", map[string]any{"type": "aes256-gcm96"})
	require.NoError(t, err)
	_, err = c.TransitKeys(mount, "aes", time.Hour).Load(context.Background())
	require.ErrorContains(t, err, "tokens need ecdsa-p256")
}

// TestVaultBreakerAnswersAtOnceDuringAnOutage cuts the network path to a
// real Vault under a client that signs with a transit key: after five
// failed requests the process's breaker opens and a signature is refused
// at once with ErrUnavailable, unsent (a token request is answered 503 in
// microseconds instead of after a timeout, and Vault is not hammered when
// it comes back); once Vault is reachable again one probe closes the
// breaker and signing works.
func TestVaultBreakerAnswersAtOnceDuringAnOutage(t *testing.T) {
	t.Parallel()
	rc, addr := root(t)
	_, token := stacktest.Vault(t)
	mount := transitMount(t, rc)
	_, err := rc.Logical().Write(mount+"/keys/jwt", map[string]any{"type": "ed25519"})
	require.NoError(t, err)
	proxy := stacktest.NewProxy(t, addr)
	c, err := secrets.New(context.Background(), secrets.Config{Addr: proxy.URL(), Token: token, BreakerOpenFor: 500 * time.Millisecond}, nil)
	require.NoError(t, err)
	ring, err := c.TransitKeys(mount, "jwt", time.Hour).Load(context.Background())
	require.NoError(t, err)
	key, ok := ring.Active(time.Now())
	require.True(t, ok)
	sign := func() error {
		_, err := key.Signer.Sign(nil, []byte("payload"), crypto.Hash(0))
		return err
	}
	require.NoError(t, sign())

	proxy.Cut()
	for range 5 {
		err := sign()
		require.Error(t, err)
		require.NotErrorIs(t, err, secrets.ErrUnavailable, "the first failures reach the network")
	}
	start := time.Now()
	err = sign()
	require.ErrorIs(t, err, secrets.ErrUnavailable, "then the breaker answers, unsent")
	t.Logf("refused in %s while open", time.Since(start))
	require.Equal(t, 1.0, metricValue(t, c, "switchyard_vault_breaker_open"))
	require.Equal(t, 5.0, metricValue(t, c, "switchyard_vault_requests_failed_total"))
	require.Equal(t, 1.0, metricValue(t, c, "switchyard_vault_requests_short_circuited_total"))

	proxy.Restore()
	require.Eventually(t, func() bool { return sign() == nil }, 10*time.Second, 50*time.Millisecond,
		"a probe after the open interval closes the breaker")
	require.Zero(t, metricValue(t, c, "switchyard_vault_breaker_open"))
}

// metricValue reads one of c's metrics (without labels).
func metricValue(t *testing.T, c *secrets.Client, name string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		m := f.GetMetric()[0]
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("%s not collected", name)
	return 0
}

// transitMount mounts a transit engine of the test's own, unmounted when
// the test ends.
func transitMount(t *testing.T, rc *vault.Client) string {
	t.Helper()
	mount := "transit-" + stacktest.RandomSuffix(t, 4)
	require.NoError(t, rc.Sys().Mount(mount, &vault.MountInput{Type: "transit"}))
	t.Cleanup(func() { _ = rc.Sys().Unmount(mount) })
	return mount
}
