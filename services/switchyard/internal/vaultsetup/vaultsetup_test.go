package vaultsetup_test

import (
	"context"
	"crypto"
	"errors"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/secrets"
	"github.com/switchyard/switchyard/services/switchyard/internal/vaultsetup"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// removeMountsAtEnd removes the test's own engines and auth methods from
// the shared Vault when the test ends.
func removeMountsAtEnd(t *testing.T, rc *vault.Client, plan vaultsetup.Plan) {
	t.Cleanup(func() {
		for _, m := range []string{plan.DatabaseMount, plan.TransitMount} {
			_ = rc.Sys().Unmount(m)
		}
		_ = rc.Sys().DisableAuth(plan.AppRoleMount)
		if plan.Kubernetes != nil {
			_ = rc.Sys().DisableAuth(plan.Kubernetes.Mount)
		}
	})
}

// TestProvision provisions a real Vault for a real database twice (the
// second run changes nothing and keeps the credential files), then logs
// in as each service: each may do what it needs and nothing of another
// service's.
func TestProvision(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rc := stacktest.VaultRoot(t)
	addr, _ := stacktest.Vault(t)
	suffix := stacktest.RandomSuffix(t, 4)
	plan := vaultsetup.Plan{
		Prefix: "t" + suffix, DatabaseURL: stacktest.NewDatabase(t),
		DatabaseMount: "database-" + suffix, TransitMount: "transit-" + suffix, AppRoleMount: "approle-" + suffix,
		CredentialsDir: t.TempDir(), ClientSecretPepper: true, SQSAccessKeyID: "AKID", SQSSecretAccessKey: "sqs-secret",
		Secrets:       map[string]map[string]any{"shared/oauth": {"pepper": "pepper-" + suffix}, "admin/bootstrap": {"secret": "s"}},
		SharedReaders: map[string][]string{"sqs": {"relay", "worker", "replay"}, "oauth": vaultsetup.Services},
	}
	removeMountsAtEnd(t, rc, plan)
	res, err := vaultsetup.Provision(ctx, rc, plan)
	require.NoError(t, err)
	require.Len(t, res.Created, 8, "the database and transit engines (KV is there), the auth method, the transit key, four secrets: %v", res.Created)
	require.Len(t, res.Pepper, 43, "32 random bytes, base64")
	firstSecret, err := os.ReadFile(res.Roles["gateway"].SecretIDFile)
	require.NoError(t, err)

	again, err := vaultsetup.Provision(ctx, rc, plan)
	require.NoError(t, err)
	require.Empty(t, again.Created, "the second run creates nothing")
	secret, err := os.ReadFile(again.Roles["gateway"].SecretIDFile)
	require.NoError(t, err)
	require.Equal(t, firstSecret, secret, "a secret id that still works is kept")
	require.Equal(t, res.Pepper, again.Pepper, "the pepper is written once")

	login := func(svc string) *secrets.Client {
		t.Helper()
		r := res.Roles[svc]
		c, err := secrets.New(ctx, secrets.Config{Addr: addr, Auth: secrets.AuthAppRole, AuthMount: plan.AppRoleMount,
			RoleIDFile: r.RoleIDFile, SecretIDFile: r.SecretIDFile}, nil)
		require.NoError(t, err, svc)
		return c
	}
	denied := func(err error) bool {
		var re *vault.ResponseError
		return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
	}
	for _, svc := range vaultsetup.Services {
		c := login(svc)
		creds, err := c.DatabaseCredentials(ctx, plan.DatabaseMount, res.Roles[svc].DatabaseRole)
		require.NoError(t, err, "%s gets database users", svc)
		require.NotEmpty(t, creds.User())
		other := "gateway"
		if svc == "gateway" {
			other = "worker"
		}
		_, err = c.DatabaseCredentials(ctx, plan.DatabaseMount, res.Roles[other].DatabaseRole)
		require.True(t, denied(err), "%s may not get %s's database users: %v", svc, other, err)
		v, err := c.Read(ctx, "secret/"+plan.Prefix+"/shared/oauth#pepper")
		require.NoError(t, err)
		require.Equal(t, "pepper-"+suffix, v)
		_, err = c.ReadKV(ctx, "secret", plan.Prefix+"/admin/bootstrap")
		require.True(t, denied(err), "%s may not read the operators' secrets: %v", svc, err)
		// Security item 13: only the services that call SQS read its
		// credentials.
		sqsKey, err := c.Read(ctx, "secret/"+plan.Prefix+"/shared/sqs#access_key_id")
		if slices.Contains([]string{"relay", "worker", "replay"}, svc) {
			require.NoError(t, err)
			require.Equal(t, "AKID", sqsKey)
		} else {
			require.True(t, denied(err), "%s never calls SQS and may not read its credentials: %v", svc, err)
		}
		pepper, err := c.Read(ctx, strings.TrimPrefix(res.PepperRef, "vault:"))
		if svc == "tokens" {
			require.NoError(t, err)
			require.Equal(t, res.Pepper, pepper)
		} else {
			require.True(t, denied(err), "%s may not read the pepper: %v", svc, err)
		}
		ring, err := c.TransitKeys(plan.TransitMount, plan.Prefix+"-jwt", 0).Load(ctx)
		if svc == "tokens" {
			require.NoError(t, err)
			key, ok := ring.Active(ring.Keys[0].ActivatesAt)
			require.True(t, ok)
			_, err = key.Signer.Sign(nil, make([]byte, 32), crypto.SHA256)
			require.NoError(t, err, "the token service signs with the transit key")
		} else {
			require.True(t, denied(err), "%s may not use the signing key: %v", svc, err)
		}
	}
	leastPrivilegeInPostgres(t, plan, res, login)
	require.Contains(t, res.Env("tokens", addr), "SWITCHYARD_TOKENS_KEYS_TRANSIT="+plan.TransitMount+"/"+plan.Prefix+"-jwt")
	require.Contains(t, res.Env("tokens", addr), "SWITCHYARD_CLIENT_SECRET_PEPPER="+res.PepperRef)
	require.Contains(t, res.Env("worker", addr), "SWITCHYARD_SQS_ACCESS_KEY_ID=vault:secret/"+plan.Prefix+"/shared/sqs#access_key_id")
}

// TestProvisionKubernetes provisions the Kubernetes auth method of a real
// Vault, pointed at a stand-in API server, and logs in as the pods of
// deployments/k8s would: each service's account gets its own policy, a
// service account of another namespace or name gets nothing, and the
// init Job reads the schema owner's URL and nothing else.
func TestProvisionKubernetes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rc := stacktest.VaultRoot(t)
	addr, _ := stacktest.Vault(t)
	suffix := stacktest.RandomSuffix(t, 4)
	api := stacktest.NewKubernetesAPI(t)
	apiURL := api.URL()
	plan := vaultsetup.Plan{
		Prefix: "k" + suffix, DatabaseURL: stacktest.NewDatabase(t),
		DatabaseMount: "database-" + suffix, TransitMount: "transit-" + suffix, AppRoleMount: "approle-" + suffix,
		Secrets:    map[string]map[string]any{"admin/database": {"url": "postgres://owner@db/switchyard"}},
		Kubernetes: &vaultsetup.KubernetesAuth{Mount: "kubernetes-" + suffix, Namespace: "switchyard", Host: apiURL, VaultOutsideCluster: true, Audience: "vault"},
	}
	removeMountsAtEnd(t, rc, plan)
	res, err := vaultsetup.Provision(ctx, rc, plan)
	require.NoError(t, err)
	require.Contains(t, res.Created, "auth method kubernetes at "+plan.Kubernetes.Mount)
	require.Equal(t, plan.Prefix+"-init", res.InitRole)
	again, err := vaultsetup.Provision(ctx, rc, plan)
	require.NoError(t, err)
	require.Empty(t, again.Created, "the second run creates nothing")

	login := func(namespace, account, role string) (*secrets.Client, error) {
		return secrets.New(ctx, secrets.Config{Addr: addr, Auth: secrets.AuthKubernetes, AuthMount: plan.Kubernetes.Mount,
			KubernetesRole: role, KubernetesTokenFile: api.ServiceAccountToken(t, namespace, account)}, nil)
	}
	denied := func(err error) bool {
		var re *vault.ResponseError
		return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
	}
	for _, svc := range vaultsetup.Services {
		role := res.Roles[svc].KubernetesRole
		require.Equal(t, plan.Prefix+"-"+svc, role)
		c, err := login("switchyard", role, role)
		require.NoError(t, err, "%s logs in with its service account", svc)
		creds, err := c.DatabaseCredentials(ctx, plan.DatabaseMount, res.Roles[svc].DatabaseRole)
		require.NoError(t, err, "%s gets database users", svc)
		require.NotEmpty(t, creds.User())
		_, err = c.Read(ctx, "secret/"+plan.Prefix+"/admin/database#url")
		require.True(t, denied(err), "%s may not read the schema owner's URL: %v", svc, err)
	}
	_, err = login("elsewhere", plan.Prefix+"-gateway", plan.Prefix+"-gateway")
	require.True(t, denied(err), "the gateway's account in another namespace: %v", err)
	_, err = login("switchyard", plan.Prefix+"-worker", plan.Prefix+"-gateway")
	require.True(t, denied(err), "the worker's account for the gateway's role: %v", err)

	initClient, err := login("switchyard", res.InitRole, res.InitRole)
	require.NoError(t, err, "the init Job logs in")
	url, err := initClient.Read(ctx, "secret/"+plan.Prefix+"/admin/database#url")
	require.NoError(t, err)
	require.Equal(t, "postgres://owner@db/switchyard", url)
	_, err = initClient.DatabaseCredentials(ctx, plan.DatabaseMount, res.Roles["gateway"].DatabaseRole)
	require.True(t, denied(err), "the init Job gets no service's database users: %v", err)
}

// leastPrivilegeInPostgres (security item 11) connects as each service's
// dynamic Vault user and runs what the service must be able to do, and
// what a compromised service would try: every forbidden statement is
// refused with insufficient_privilege (42501).
func leastPrivilegeInPostgres(t *testing.T, plan vaultsetup.Plan, res vaultsetup.Result, login func(string) *secrets.Client) {
	t.Helper()
	ctx := context.Background()
	const anyJob = `'00000000-0000-7000-8000-000000000000'`
	allowed := map[string][]string{
		"gateway": {`SELECT id FROM jobs LIMIT 1`, `SELECT client_id FROM oauth_clients WHERE disabled_at IS NOT NULL`,
			`SELECT count(*) FROM job_attempts`, `SELECT count(*) FROM job_events`, `DELETE FROM usage_minutes WHERE false`,
			`INSERT INTO admin_audit (actor, action) VALUES ('gateway', 'test')`,
			`SELECT * FROM switchyard_cancel_job(` + anyJob + `, 'nobody')`,
			`SELECT switchyard_release_idempotency_keys('{}', '{}', now() - interval '1 day')`,
			`SELECT host FROM client_callback_hosts LIMIT 1`},
		"tokens": {`SELECT secret_hash FROM oauth_clients LIMIT 1`, `UPDATE oauth_clients SET secret_hash = secret_hash WHERE false`},
		"relay":  {`SELECT "offset" FROM watermill_outbox FOR UPDATE SKIP LOCKED`, `DELETE FROM watermill_outbox WHERE false`, `UPDATE jobs SET status = status WHERE false`},
		"worker": {`UPDATE jobs SET status = status WHERE false`, `SELECT 1 FROM inbox LIMIT 1`, `UPDATE job_attempts SET outcome = outcome WHERE false`,
			`SELECT host FROM client_callback_hosts LIMIT 1`, `SELECT secret FROM callback_secrets LIMIT 1`},
		"replay": {`SELECT count(*) FROM dead_letters`, `DELETE FROM dead_letters WHERE false`, `SELECT count(*) FROM admin_audit`,
			`SELECT client_id FROM oauth_clients WHERE disabled_at IS NOT NULL`, `SELECT count(*) FROM usage_minutes`,
			`DELETE FROM jobs WHERE false`, `DELETE FROM inbox WHERE false`, `SELECT switchyard_trim_audit(now() - interval '40 days', 1)`,
			// The janitor's batches.
			`SELECT message_id FROM inbox LIMIT 1`, `SELECT id FROM jobs FOR UPDATE SKIP LOCKED LIMIT 1`,
			`DELETE FROM job_events WHERE false`, `DELETE FROM job_attempts WHERE false`},
	}
	forbidden := map[string][]string{
		"gateway": {
			`UPDATE oauth_clients SET scopes = array_append(scopes, 'switchyard:admin')`, // grant itself admin
			`SELECT secret_hash FROM oauth_clients`, `INSERT INTO oauth_clients (client_id, secret_hash) VALUES ('x', 'y')`,
			`UPDATE admin_audit SET outcome = 'ok'`, `DELETE FROM admin_audit`, `TRUNCATE admin_audit`,
			`DELETE FROM jobs`, `UPDATE jobs SET status = 'succeeded'`, `UPDATE jobs SET idempotency_key = NULL`,
			`SELECT count(*) FROM dead_letters`, `DELETE FROM watermill_outbox`, `SELECT switchyard_trim_audit(now() - interval '40 days', 1)`,
			`SELECT switchyard_release_idempotency_keys('{}', '{}', now())`,            // keys younger than a minute stay
			`SELECT secret FROM callback_secrets`, `DELETE FROM client_callback_hosts`, // only the worker signs; only the owner changes the list
		},
		"tokens": {
			`SELECT count(*) FROM jobs`, `INSERT INTO oauth_clients (client_id, secret_hash) VALUES ('x', 'y')`,
			`UPDATE oauth_clients SET scopes = '{switchyard:admin}'`, `DELETE FROM oauth_clients`, `INSERT INTO admin_audit (actor, action) VALUES ('x', 'y')`,
		},
		"relay": {
			`SELECT secret_hash FROM oauth_clients`, `SELECT client_id FROM oauth_clients`, `DELETE FROM admin_audit`,
			`SELECT count(*) FROM dead_letters`, `DELETE FROM jobs`, `INSERT INTO jobs (id, type, client_id, status, payload) VALUES (` + anyJob + `, 't', 'c', 'accepted', '{}')`,
		},
		"worker": {
			`SELECT client_id FROM oauth_clients`, `UPDATE admin_audit SET actor = 'x'`, `DELETE FROM dead_letters`,
			`DELETE FROM jobs`, `DELETE FROM inbox`, `SELECT count(*) FROM admin_audit`,
			`INSERT INTO client_callback_hosts (client_id, host) VALUES ('x', 'evil.example.com')`, `UPDATE callback_secrets SET expires_at = NULL`,
		},
		"replay": {
			`UPDATE admin_audit SET actor = 'x'`, `DELETE FROM admin_audit`, `TRUNCATE admin_audit`,
			`UPDATE oauth_clients SET scopes = '{switchyard:admin}'`, `SELECT secret_hash FROM oauth_clients`,
			`SELECT switchyard_trim_audit(now() - interval '1 day', 1)`, // the function keeps 30 days whoever asks
			`SELECT secret FROM callback_secrets`,
		},
	}
	// A running job with a callback URL: the worker finishing it must
	// write the callback job and its message, which its own grants do not
	// allow (the finish trigger runs as the owner).
	const callbackJob = `'00000000-0000-7000-8000-0000000000cb'`
	owner, err := pgx.Connect(ctx, plan.DatabaseURL)
	require.NoError(t, err)
	_, err = owner.Exec(ctx, `INSERT INTO jobs (id, type, client_id, status, payload, request_hash, callback_url)
		VALUES (`+callbackJob+`, 'text-stats', 'c', 'processing', '{}', '\x', 'https://hooks.example.com/')`)
	require.NoError(t, err)
	allowed["worker"] = append(allowed["worker"], `UPDATE jobs SET status = 'succeeded', finished_at = now() WHERE id = `+callbackJob)
	defer func() {
		var n int
		require.NoError(t, owner.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE type = 'switchyard-callback' AND payload->'event'->'data'->>'id' = `+callbackJob).Scan(&n))
		require.Equal(t, 1, n, "the worker's finish wrote the callback job")
		require.NoError(t, owner.Close(ctx))
	}()
	dbURL, err := url.Parse(plan.DatabaseURL)
	require.NoError(t, err)
	for _, svc := range vaultsetup.Services {
		creds, err := login(svc).DatabaseCredentials(ctx, plan.DatabaseMount, res.Roles[svc].DatabaseRole)
		require.NoError(t, err)
		user, password := creds.Current()
		u := *dbURL
		u.User = url.UserPassword(user, password)
		conn, err := pgx.Connect(ctx, u.String())
		require.NoError(t, err, svc)
		for _, stmt := range allowed[svc] {
			_, err := conn.Exec(ctx, stmt)
			require.NoError(t, err, "%s must be able to: %s", svc, stmt)
		}
		for _, stmt := range forbidden[svc] {
			_, err := conn.Exec(ctx, stmt)
			var pgErr *pgconn.PgError
			require.ErrorAs(t, err, &pgErr, "%s must not be able to: %s", svc, stmt)
			require.Equal(t, "42501", pgErr.Code, "%s: %s: %v", svc, stmt, err)
		}
		require.NoError(t, conn.Close(ctx))
	}
}

// TestProvisionFile: the secrets file holds what Provision would put in
// Vault, under the same names, so that the references FileEnv gives each
// service resolve; a second run keeps what the first wrote (the pepper
// must not change under existing clients).
func TestProvisionFile(t *testing.T) {
	ctx := context.Background()
	file := t.TempDir() + "/secrets.json"
	plan := vaultsetup.Plan{ClientSecretPepper: true, SQSAccessKeyID: "AKIA-dev", SQSSecretAccessKey: "dev-secret"}
	first, err := vaultsetup.ProvisionFile(file, plan)
	require.NoError(t, err)
	require.NotEmpty(t, first.Pepper)
	require.Len(t, first.Created, 2)
	info, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "readable by its owner only")

	store := secrets.FileStore{Path: file}
	resolve := func(env []string, name string) string {
		t.Helper()
		for _, kv := range env {
			if ref, ok := strings.CutPrefix(kv, name+"=vault:"); ok {
				v, err := store.Read(ctx, ref)
				require.NoError(t, err, kv)
				return v
			}
		}
		t.Fatalf("%s is not a vault: reference in %v", name, env)
		return ""
	}
	tokensEnv := first.FileEnv("tokens", file, "/keys.json")
	require.Equal(t, first.Pepper, resolve(tokensEnv, "SWITCHYARD_CLIENT_SECRET_PEPPER"))
	require.Contains(t, tokensEnv, "SWITCHYARD_TOKENS_KEYS_FILE=/keys.json")
	require.Contains(t, tokensEnv, "SWITCHYARD_SECRETS_FILE="+file)
	require.Contains(t, tokensEnv, "VAULT_ADDR=")
	workerEnv := first.FileEnv("worker", file, "/keys.json")
	require.Equal(t, "AKIA-dev", resolve(workerEnv, "SWITCHYARD_SQS_ACCESS_KEY_ID"))
	require.Equal(t, "dev-secret", resolve(workerEnv, "SWITCHYARD_SQS_SECRET_ACCESS_KEY"))
	for _, kv := range first.FileEnv("gateway", file, "/keys.json") {
		require.NotContains(t, kv, "SQS", "the gateway gets no SQS credentials")
	}

	plan.PepperValue = "another pepper"
	second, err := vaultsetup.ProvisionFile(file, plan)
	require.NoError(t, err)
	require.Equal(t, first.Pepper, second.Pepper, "an existing pepper is kept")
	require.Empty(t, second.Created)
}
