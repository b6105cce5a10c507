package vaultsetup_test

import (
	"context"
	"crypto"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/secrets"
	"github.com/switchyard/switchyard/services/switchyard/internal/vaultsetup"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

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
		Secrets: map[string]map[string]any{"shared/oauth": {"pepper": "pepper-" + suffix}, "admin/bootstrap": {"secret": "s"}},
	}
	t.Cleanup(func() {
		for _, m := range []string{plan.DatabaseMount, plan.TransitMount} {
			_ = rc.Sys().Unmount(m)
		}
		_ = rc.Sys().DisableAuth(plan.AppRoleMount)
	})
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
		sqsKey, err := c.Read(ctx, "secret/"+plan.Prefix+"/shared/sqs#access_key_id")
		require.NoError(t, err)
		require.Equal(t, "AKID", sqsKey)
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
	require.Contains(t, res.Env("tokens", addr), "SWITCHYARD_TOKENS_KEYS_TRANSIT="+plan.TransitMount+"/"+plan.Prefix+"-jwt")
	require.Contains(t, res.Env("tokens", addr), "SWITCHYARD_CLIENT_SECRET_PEPPER="+res.PepperRef)
	require.Contains(t, res.Env("worker", addr), "SWITCHYARD_SQS_ACCESS_KEY_ID=vault:secret/"+plan.Prefix+"/shared/sqs#access_key_id")
}
