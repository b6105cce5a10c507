package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/oauthclients"
	"github.com/switchyard/switchyard/libs/sqsqueue"
	"github.com/switchyard/switchyard/services/switchyard/internal/cli"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

func run(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = cli.Execute(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsageErrorsExitTwo(t *testing.T) {
	code, _, stderr := run("migrate", "--no-such-flag")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "unknown flag")

	code, _, stderr = run("migrate", "--database-url", "")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "no database")
}

// TestInit runs the deployment's init step against real Postgres and SQS,
// twice: it is idempotent.
func TestInit(t *testing.T) {
	dbURL := stacktest.NewDatabase(t)
	stacktest.SQSEndpoint(t)
	prefix := stacktest.QueuePrefix(t)
	jobs := filepath.Join(t.TempDir(), "jobs.yaml")
	require.NoError(t, os.WriteFile(jobs, []byte("job_types:\n  alpha:\n    handler: x\n"), 0o644))
	t.Setenv("DATABASE_URL", dbURL)
	t.Setenv("SWITCHYARD_JOBS_FILE", jobs)
	t.Setenv("SWITCHYARD_QUEUE_PREFIX", prefix)
	keys := filepath.Join(t.TempDir(), "signing-keys.json")
	t.Setenv("SWITCHYARD_TOKENS_KEYS_FILE", keys)
	t.Setenv("SWITCHYARD_BOOTSTRAP_CLIENT_ID", "bootstrap")
	t.Setenv("SWITCHYARD_BOOTSTRAP_CLIENT_SECRET", "0123456789abcdef0123456789abcdef-x")
	t.Setenv("SWITCHYARD_BOOTSTRAP_CLIENT_SCOPES", "switchyard:admin jobs:read")
	for i := range 2 {
		code, stdout, stderr := run("init")
		require.Equal(t, 0, code, stderr)
		require.Contains(t, stdout, "2 queue(s) ready")
		if i == 0 {
			require.Contains(t, stdout, "created signing key")
			require.Contains(t, stdout, "created bootstrap client bootstrap")
		} else {
			require.Contains(t, stdout, "signing keys present")
			require.Contains(t, stdout, "bootstrap client bootstrap present")
		}
	}
	conn, err := pgx.Connect(context.Background(), dbURL)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var exists bool
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT to_regclass('jobs') IS NOT NULL").Scan(&exists))
	require.True(t, exists)

	cfg, err := sqsqueue.LoadAWSConfig(context.Background())
	require.NoError(t, err)
	out, err := sqs.NewFromConfig(cfg).ListQueues(context.Background(), &sqs.ListQueuesInput{QueueNamePrefix: aws.String(prefix)})
	require.NoError(t, err)
	require.Len(t, out.QueueUrls, 2)
	require.True(t, strings.HasSuffix(out.QueueUrls[0], "alpha") || strings.HasSuffix(out.QueueUrls[1], "alpha"))
}

func TestProbe(t *testing.T) {
	t.Parallel()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer ok.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	defer bad.Close()
	code, _, _ := run("probe", ok.URL)
	require.Equal(t, 0, code)
	code, _, stderr := run("probe", bad.URL)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "503")
}

// TestDevExecPassesExitCode runs a command under `dev exec`: it sees the
// stack in its environment, and its exit code is the CLI's.
func TestDevExecPassesExitCode(t *testing.T) {
	t.Parallel()
	code, _, stderr := run("dev", "exec", "--dir", t.TempDir(), "--", "sh", "-c",
		`test -n "$DATABASE_URL" && test -n "$AWS_ENDPOINT_URL_SQS" && test -n "$VAULT_ADDR" && exit 7`)
	require.Equal(t, 7, code, stderr)
}

// TestClientsAndKeysCommands drives the operator commands against a real
// database and a real key file.
func TestClientsAndKeysCommands(t *testing.T) {
	t.Setenv("DATABASE_URL", stacktest.NewDatabase(t))
	code, stdout, stderr := run("clients", "create", "--id", "billing", "--scope", "jobs:submit,jobs:read", "-o", "json")
	require.Equal(t, 0, code, stderr)
	var created struct {
		ClientID     string   `json:"client_id"`
		ClientSecret string   `json:"client_secret"`
		Scopes       []string `json:"scopes"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &created))
	require.Equal(t, "billing", created.ClientID)
	require.Len(t, created.ClientSecret, 43)
	require.Equal(t, []string{"jobs:read", "jobs:submit"}, created.Scopes)

	code, stdout, _ = run("clients", "list")
	require.Equal(t, 0, code)
	require.Contains(t, stdout, "billing")
	require.NotContains(t, stdout, created.ClientSecret)

	code, stdout, _ = run("clients", "rotate-secret", "billing", "--grace", "1h")
	require.Equal(t, 0, code)
	require.Contains(t, stdout, "shown only now")
	require.NotContains(t, stdout, created.ClientSecret)
	code, stdout, _ = run("clients", "set-scopes", "billing", "--scope", "demo:echo", "--scope", "jobs:read", "-o", "json")
	require.Equal(t, 0, code)
	require.Contains(t, stdout, `"scopes": [`)
	require.Contains(t, stdout, `"demo:echo"`)
	require.NotContains(t, stdout, `"jobs:submit"`, "replaced, not merged")
	code, stdout, _ = run("clients", "disable", "billing")
	require.Equal(t, 0, code)
	require.Contains(t, stdout, "disabled since")

	for _, args := range [][]string{
		{"clients", "create", "--scope", "bad scope"},
		{"clients", "create", "--id", "bad id"},
		{"clients", "disable"},
		{"clients", "set-scopes", "billing"},
		{"clients", "list", "-o", "yaml"},
		{"keys", "rotate", "--file", filepath.Join(t.TempDir(), "k.json"), "--alg", "HS256"},
	} {
		code, _, stderr := run(args...)
		require.Equal(t, 2, code, "%v: %s", args, stderr)
	}
	code, _, stderr = run("clients", "disable", "nobody")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "no such client")

	keys := filepath.Join(t.TempDir(), "signing-keys.json")
	code, stdout, stderr = run("keys", "rotate", "--file", keys)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "added ES256 key")
	code, _, stderr = run("keys", "rotate", "--file", keys, "--alg", "EdDSA", "--lead", "1h")
	require.Equal(t, 0, code, stderr)
	code, stdout, _ = run("keys", "list", "--file", keys)
	require.Equal(t, 0, code)
	require.Contains(t, stdout, "signing")
	require.Contains(t, stdout, "published, not yet signing")

	// Security item 16: every change made with the CLI is in the audit
	// log, by the operator who made it.
	conn, err := pgx.Connect(context.Background(), os.Getenv("DATABASE_URL"))
	require.NoError(t, err)
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), `SELECT action, target, actor FROM admin_audit ORDER BY id`)
	require.NoError(t, err)
	var audited []string
	for rows.Next() {
		var action, target, actor string
		require.NoError(t, rows.Scan(&action, &target, &actor))
		require.True(t, strings.HasPrefix(actor, "cli:"), actor)
		if target == keys {
			target = "keys.json"
		}
		audited = append(audited, action+" "+target)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"clients.create billing", "clients.rotate_secret billing", "clients.set_scopes billing",
		"clients.disable billing", "keys.rotate keys.json", "keys.rotate keys.json"}, audited)
}

// TestInitWithVault runs the init step with Vault, twice: it provisions
// Vault, generates the bootstrap client's secret and keeps it in Vault,
// hashed with the pepper it made, and the second run reuses both.
func TestInitWithVault(t *testing.T) {
	ctx := context.Background()
	dbURL := stacktest.NewDatabase(t)
	addr, token := stacktest.Vault(t)
	rc := stacktest.VaultRoot(t)
	t.Cleanup(func() {
		_ = rc.Sys().Unmount("database")
		_ = rc.Sys().Unmount("transit")
		_ = rc.Sys().DisableAuth("approle")
		_ = rc.KVv2("secret").DeleteMetadata(ctx, "switchyard/admin/bootstrap-client")
		_ = rc.KVv2("secret").DeleteMetadata(ctx, "switchyard/tokens/oauth")
		_ = rc.KVv2("secret").DeleteMetadata(ctx, "switchyard/shared/sqs")
	})
	stacktest.SQSEndpoint(t)
	jobs := filepath.Join(t.TempDir(), "jobs.yaml")
	require.NoError(t, os.WriteFile(jobs, []byte("job_types:\n  alpha:\n    handler: x\n"), 0o644))
	for k, v := range map[string]string{
		"DATABASE_URL": dbURL, "SWITCHYARD_JOBS_FILE": jobs, "SWITCHYARD_QUEUE_PREFIX": stacktest.QueuePrefix(t),
		"VAULT_ADDR": addr, "VAULT_TOKEN": token, "SWITCHYARD_INIT_VAULT_CREDENTIALS_DIR": t.TempDir(),
		"SWITCHYARD_BOOTSTRAP_CLIENT_ID": "admin", "SWITCHYARD_BOOTSTRAP_CLIENT_SECRET": "",
		"SWITCHYARD_BOOTSTRAP_CLIENT_SCOPES": "switchyard:admin",
		"SWITCHYARD_CLIENT_SECRET_PEPPER":    "vault:secret/switchyard/tokens/oauth#pepper",
		"SWITCHYARD_TOKENS_KEYS_FILE":        "",
	} {
		t.Setenv(k, v)
	}
	var secrets []string
	for i := range 2 {
		code, stdout, stderr := run("init")
		require.Equal(t, 0, code, stderr)
		require.Contains(t, stdout, "its secret is in Vault at secret/switchyard/admin/bootstrap-client")
		if i == 0 {
			require.Contains(t, stdout, "created bootstrap client admin")
			require.Contains(t, stdout, "created transit key transit/switchyard-jwt")
		} else {
			require.Contains(t, stdout, "bootstrap client admin present")
		}
		s, err := rc.KVv2("secret").Get(ctx, "switchyard/admin/bootstrap-client")
		require.NoError(t, err)
		secrets = append(secrets, s.Data["client_secret"].(string))
	}
	require.Equal(t, secrets[0], secrets[1], "the bootstrap secret is made once")
	require.Len(t, secrets[0], 43)

	pepper, err := rc.KVv2("secret").Get(ctx, "switchyard/tokens/oauth")
	require.NoError(t, err)
	pool := stacktest.NewPoolURL(t, dbURL)
	store, err := oauthclients.New(pool, oauthclients.WithPepper([]byte(pepper.Data["pepper"].(string))))
	require.NoError(t, err)
	_, err = store.Authenticate(ctx, "admin", secrets[0])
	require.NoError(t, err, "the bootstrap client authenticates with the secret from Vault and the pepper")
}
