package stacktest

import (
	"net/url"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"
)

// VaultRoot returns a client of the test Vault with its root token.
func VaultRoot(tb testing.TB) *vault.Client {
	tb.Helper()
	addr, token := Vault(tb)
	cfg := vault.DefaultConfig()
	cfg.Address = addr
	c, err := vault.NewClient(cfg)
	if err != nil {
		tb.Fatalf("stacktest: Vault client: %v", err)
	}
	c.SetToken(token)
	return c
}

// AppRole enables AppRole auth at a mount of the test's own, with a role
// whose tokens live ttl (renewable up to a minute) under a policy of
// policyHCL, and returns the mount, the role id and a secret id. The
// mount is disabled when the test ends.
func AppRole(tb testing.TB, ttl, policyHCL string) (mount, roleID, secretID string) {
	tb.Helper()
	return AppRoleOn(tb, VaultRoot(tb), ttl, policyHCL)
}

// AppRoleOn is AppRole on the Vault of rc, a client with a root token.
func AppRoleOn(tb testing.TB, rc *vault.Client, ttl, policyHCL string) (mount, roleID, secretID string) {
	tb.Helper()
	mount = "approle-" + RandomSuffix(tb, 4)
	fail := func(what string, err error) {
		if err != nil {
			tb.Fatalf("stacktest: AppRole %s: %v", what, err)
		}
	}
	fail("enable", rc.Sys().EnableAuthWithOptions(mount, &vault.EnableAuthOptions{Type: "approle"}))
	tb.Cleanup(func() { _ = rc.Sys().DisableAuth(mount) })
	policy := "policy-" + mount
	fail("policy", rc.Sys().PutPolicy(policy, policyHCL))
	_, err := rc.Logical().Write("auth/"+mount+"/role/svc", map[string]any{
		"token_ttl": ttl, "token_max_ttl": "60s", "token_policies": policy, "secret_id_num_uses": 0,
	})
	fail("role", err)
	s, err := rc.Logical().Read("auth/" + mount + "/role/svc/role-id")
	fail("role id", err)
	roleID, _ = s.Data["role_id"].(string)
	s, err = rc.Logical().Write("auth/"+mount+"/role/svc/secret-id", nil)
	fail("secret id", err)
	secretID, _ = s.Data["secret_id"].(string)
	return mount, roleID, secretID
}

// ReadSecretsPolicy lets a token read every KV v2 secret under secret/.
const ReadSecretsPolicy = `path "secret/data/*" { capabilities = ["read"] }
path "secret/metadata/*" { capabilities = ["read"] }`

// DatabaseEngine enables Vault's database secrets engine at a mount of the
// test's own, connected to the database at dbURL (as its user, with the
// rights to create roles), with a role "app" whose users live ttl (and at
// most ttl: they are never renewed past it) as members of switchyard_app
// (migrations/00009). It returns the mount; the engine is disabled when the
// test ends, which revokes its leases.
func DatabaseEngine(tb testing.TB, dbURL, ttl string) (mount string) {
	tb.Helper()
	rc := VaultRoot(tb)
	mount = "database-" + RandomSuffix(tb, 4)
	if err := rc.Sys().Mount(mount, &vault.MountInput{Type: "database"}); err != nil {
		tb.Fatalf("stacktest: enabling the database engine: %v", err)
	}
	tb.Cleanup(func() { _ = rc.Sys().Unmount(mount) })
	u, err := url.Parse(dbURL)
	if err != nil {
		tb.Fatalf("stacktest: %v", err)
	}
	user := u.User.Username()
	password, _ := u.User.Password()
	if password == "" {
		password = "unused-with-trust-auth"
	}
	u.User = url.UserPassword("{{username}}", "{{password}}")
	connURL := strings.ReplaceAll(strings.ReplaceAll(u.String(), "%7B", "{"), "%7D", "}")
	if _, err := rc.Logical().Write(mount+"/config/switchyard", map[string]any{
		"plugin_name": "postgresql-database-plugin", "connection_url": connURL, "username": user, "password": password,
		"allowed_roles": "*", "verify_connection": true,
	}); err != nil {
		tb.Fatalf("stacktest: configuring the database engine: %v", err)
	}
	if _, err := rc.Logical().Write(mount+"/roles/app", map[string]any{
		"db_name": "switchyard", "default_ttl": ttl, "max_ttl": ttl,
		"creation_statements": []string{`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE switchyard_app;`},
	}); err != nil {
		tb.Fatalf("stacktest: creating the database role: %v", err)
	}
	return mount
}
