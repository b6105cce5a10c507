package config_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/secrets"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

type settings struct {
	Addr     string        `conf:"default::8080,env:CONFIG_TEST_ADDR"`
	Password config.Secret `conf:"mask,env:CONFIG_TEST_PASSWORD"`
	Nested   struct {
		Token config.Secret `conf:"mask,env:CONFIG_TEST_TOKEN"`
	}
}

// These tests set environment variables, so they do not run in parallel.

func TestEnvironmentFallback(t *testing.T) {
	t.Setenv("CONFIG_TEST_PASSWORD", "hunter2")
	var logs bytes.Buffer
	var s settings
	require.NoError(t, config.Load(context.Background(), &s, config.WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))))
	require.Equal(t, ":8080", s.Addr)
	require.Equal(t, "hunter2", s.Password.Value())
	require.Equal(t, "environment", s.Password.Source())
	require.Contains(t, logs.String(), "development fallback")
	require.Contains(t, logs.String(), "setting=Password")
	require.NotContains(t, logs.String(), "hunter2")
	require.NotContains(t, config.String(&s), "hunter2", "printed configuration masks secrets")
	require.Empty(t, s.Nested.Token.Value())
}

func TestVaultReference(t *testing.T) {
	addr, token := stacktest.Vault(t)
	ctx := context.Background()
	cfg := vault.DefaultConfig()
	cfg.Address = addr
	client, err := vault.NewClient(cfg)
	require.NoError(t, err)
	client.SetToken(token)
	path := "switchyard/config-test-" + stacktest.RandomSuffix(t, 4)
	_, err = client.KVv2("secret").Put(ctx, path, map[string]any{"password": "from-vault", "n": 7})
	require.NoError(t, err)

	t.Setenv("VAULT_ADDR", addr)
	t.Setenv("VAULT_TOKEN", token)
	t.Setenv("CONFIG_TEST_PASSWORD", "vault:secret/"+path+"#password")
	var s settings
	require.NoError(t, config.Load(ctx, &s))
	require.Equal(t, "from-vault", s.Password.Value())
	require.Equal(t, "vault:secret/"+path+"#password", s.Password.Source())

	for ref, want := range map[string]string{
		"vault:secret/" + path + "#missing": `no key "missing"`,
		"vault:secret/" + path + "#n":       "not a string",
		"vault:secret/no/such/secret#k":     "reading KV secret",
		"vault:nonsense":                    "must look like",
	} {
		t.Setenv("CONFIG_TEST_TOKEN", ref)
		var s settings
		err := config.Load(ctx, &s)
		require.ErrorContains(t, err, want, ref)
		require.ErrorContains(t, err, "setting Nested.Token", "the error names the setting")
	}
}

// TestVaultReferenceWithAppRole: a configuration that embeds
// secrets.Config logs in with AppRole once, resolves its references with
// that client, and keeps it for the service (Config.Client).
func TestVaultReferenceWithAppRole(t *testing.T) {
	addr, _ := stacktest.Vault(t)
	mount, roleID, secretID := stacktest.AppRole(t, "1m", stacktest.ReadSecretsPolicy)
	path := "switchyard/config-test-" + stacktest.RandomSuffix(t, 4)
	_, err := stacktest.VaultRoot(t).KVv2("secret").Put(context.Background(), path, map[string]any{"a": "one", "b": "two"})
	require.NoError(t, err)
	t.Setenv("VAULT_ADDR", addr)
	t.Setenv("VAULT_TOKEN", "")
	t.Setenv("VAULT_AUTH_METHOD", "approle")
	t.Setenv("VAULT_AUTH_MOUNT", mount)
	t.Setenv("VAULT_ROLE_ID", roleID)
	t.Setenv("VAULT_SECRET_ID", secretID)
	t.Setenv("CONFIG_TEST_PASSWORD", "vault:secret/"+path+"#a")
	t.Setenv("CONFIG_TEST_TOKEN", "vault:secret/"+path+"#b")
	var s struct {
		App   settings
		Vault secrets.Config
	}
	var logs bytes.Buffer
	require.NoError(t, config.Load(context.Background(), &s, config.WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))))
	require.Equal(t, "one", s.App.Password.Value())
	require.Equal(t, "two", s.App.Nested.Token.Value())
	client := s.Vault.Client()
	require.NotNil(t, client, "the service gets the client the references were resolved with")
	require.Equal(t, 1, client.Stats().Logins, "one login for both references")
	require.NotContains(t, logs.String(), secretID)
	require.NotContains(t, config.String(&s), secretID, "the secret id is masked")

	t.Setenv("VAULT_SECRET_ID", "wrong")
	var bad struct {
		App   settings
		Vault secrets.Config
	}
	require.ErrorContains(t, config.Load(context.Background(), &bad), "approle login")
}

func TestVaultReferenceWithoutVault(t *testing.T) {
	t.Setenv("VAULT_ADDR", "")
	t.Setenv("CONFIG_TEST_PASSWORD", "vault:secret/x#y")
	var s settings
	err := config.Load(context.Background(), &s)
	require.ErrorContains(t, err, "needs VAULT_ADDR")
}

// TestVaultReferenceFromSecretsFile: without Vault, the same references
// resolve from the development secrets file, with or without the
// service's secrets.Config, and the service says which source it uses.
func TestVaultReferenceFromSecretsFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "secrets.json")
	require.NoError(t, secrets.WriteSecretsFile(file, map[string]map[string]any{
		"secret/switchyard/app": {"password": "from-file", "n": 7},
	}))
	t.Setenv("VAULT_ADDR", "")
	t.Setenv("SWITCHYARD_SECRETS_FILE", file)
	t.Setenv("CONFIG_TEST_PASSWORD", "vault:secret/switchyard/app#password")

	var plain settings
	require.NoError(t, config.Load(context.Background(), &plain))
	require.Equal(t, "from-file", plain.Password.Value())

	var logs bytes.Buffer
	var s struct {
		App   settings
		Vault secrets.Config
	}
	require.NoError(t, config.Load(context.Background(), &s, config.WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))))
	require.Equal(t, "from-file", s.App.Password.Value())
	require.Equal(t, "vault:secret/switchyard/app#password", s.App.Password.Source())
	require.Contains(t, logs.String(), `msg="secrets source: file (development only`)
	require.Contains(t, logs.String(), "file="+file)
	require.NotContains(t, logs.String(), "from-file")

	for ref, want := range map[string]string{
		"vault:secret/switchyard/app#missing": `no key "missing"`,
		"vault:secret/switchyard/app#n":       "not a string",
		"vault:secret/no/such#k":              "is not in " + file,
	} {
		t.Setenv("CONFIG_TEST_TOKEN", ref)
		var s settings
		require.ErrorContains(t, config.Load(context.Background(), &s), want, ref)
	}

	t.Setenv("VAULT_ADDR", "http://127.0.0.1:1")
	t.Setenv("VAULT_TOKEN", "t")
	require.ErrorContains(t, config.Load(context.Background(), &s), "not both")
}

func TestURLIsNotAReference(t *testing.T) {
	t.Setenv("CONFIG_TEST_PASSWORD", "postgres://u:p@h/db")
	var s settings
	require.NoError(t, config.Load(context.Background(), &s))
	require.Equal(t, "postgres://u:p@h/db", s.Password.Value())
}

func TestHelp(t *testing.T) {
	old := os.Args
	os.Args = []string{"svc", "--help"}
	defer func() { os.Args = old }()
	var s settings
	err := config.Load(context.Background(), &s)
	require.True(t, errors.Is(err, config.ErrHelp))
	require.True(t, strings.Contains(err.Error(), "CONFIG_TEST_ADDR"), err.Error())
}

// TestResolve: a lone value (the CLI's DATABASE_URL) is returned as it is,
// or, as a vault: reference, read from Vault with the environment's login
// (item 1 of the production-path issue: the init Job's reference was never
// resolved).
func TestResolve(t *testing.T) {
	addr, token := stacktest.Vault(t)
	path := "switchyard/config-test-" + stacktest.RandomSuffix(t, 4)
	_, err := stacktest.VaultRoot(t).KVv2("secret").Put(context.Background(), path, map[string]any{"url": "postgres://owner@db/switchyard"})
	require.NoError(t, err)
	t.Setenv("VAULT_ADDR", addr)
	t.Setenv("VAULT_TOKEN", token)
	got, err := config.Resolve(context.Background(), "vault:secret/"+path+"#url")
	require.NoError(t, err)
	require.Equal(t, "postgres://owner@db/switchyard", got)
	got, err = config.Resolve(context.Background(), "postgres://u@h/db")
	require.NoError(t, err)
	require.Equal(t, "postgres://u@h/db", got, "a URL is not a reference")
	_, err = config.Resolve(context.Background(), "vault:secret/"+path+"#nope")
	require.ErrorContains(t, err, `no key "nope"`)
}

// TestFollow: a setting read through a vault: reference follows new
// versions of its secret while the Vault client runs (the ops token can be
// rotated without a restart, at SWITCHYARD_VAULT_WATCH_INTERVAL); a plain
// value is applied once.
func TestFollow(t *testing.T) {
	addr, token := stacktest.Vault(t)
	path := "switchyard/config-test-" + stacktest.RandomSuffix(t, 4)
	kv := stacktest.VaultRoot(t).KVv2("secret")
	_, err := kv.Put(context.Background(), path, map[string]any{"token": "first"})
	require.NoError(t, err)
	t.Setenv("VAULT_ADDR", addr)
	t.Setenv("VAULT_TOKEN", token)
	t.Setenv("SWITCHYARD_VAULT_WATCH_INTERVAL", "100ms")
	t.Setenv("CONFIG_TEST_OPS_TOKEN", "vault:secret/"+path+"#token")
	var cfg struct {
		OpsToken config.Secret `conf:"mask,env:CONFIG_TEST_OPS_TOKEN"`
		Vault    secrets.Config
	}
	require.NoError(t, config.Load(context.Background(), &cfg))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var applied []string
	require.NoError(t, config.Follow(ctx, cfg.OpsToken, cfg.Vault.Client(), func(v string) {
		mu.Lock()
		defer mu.Unlock()
		applied = append(applied, v)
	}))
	go func() { _ = cfg.Vault.Client().Run(ctx) }()
	_, err = kv.Put(context.Background(), path, map[string]any{"token": "second"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Equal(applied, []string{"first", "second"})
	}, 10*time.Second, 50*time.Millisecond, "the new version applies without a restart")

	var plain []string
	require.NoError(t, config.Follow(ctx, config.NewSecret("fixed"), nil, func(v string) { plain = append(plain, v) }))
	require.Equal(t, []string{"fixed"}, plain)
}
