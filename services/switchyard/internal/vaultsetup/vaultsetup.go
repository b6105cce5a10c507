// Package vaultsetup provisions a Vault for Switchyard, idempotently: per
// service an AppRole with a policy of least privilege, a role of the
// database secrets engine (short-lived Postgres users in their service's
// group role switchyard_<service>),
// the token service's signing key in the transit engine, shared KV secrets
// written once, each service's AppRole credentials in files, and
// optionally Kubernetes auth roles for the service accounts. It is
// what `switchyard vault provision` runs for the compose init step and
// `switchyard dev up`; production runs it (or its Terraform twin) with an
// operator's token.
package vaultsetup

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/switchyard/switchyard/libs/secrets"
)

// Services are the services that get an identity in Vault.
var Services = []string{"gateway", "tokens", "relay", "worker", "replay"}

// Plan says what to provision. Zero values take the defaults noted.
type Plan struct {
	// Services to provision (default Services).
	Services []string
	// Prefix names every role, policy and KV path (default "switchyard").
	Prefix string
	// DatabaseURL is the admin connection the database engine creates
	// users with (a role with CREATEROLE that owns the tables' grants).
	DatabaseURL string
	// DatabaseTTL and DatabaseMaxTTL bound the users' leases (default 1h
	// and 24h).
	DatabaseTTL, DatabaseMaxTTL time.Duration
	// Mounts (defaults: secret, database, transit, approle).
	KVMount, DatabaseMount, TransitMount, AppRoleMount string
	// TransitKey is the token service's signing key (default
	// "<prefix>-jwt", ecdsa-p256).
	TransitKey string
	// TokenTTL and TokenMaxTTL bound the services' Vault tokens (default
	// 1h and 24h; they renew them).
	TokenTTL, TokenMaxTTL time.Duration
	// Secrets are KV secrets written only when absent (a pepper must not
	// change on a second run), keyed by their path under <prefix>/:
	// "shared/<name>" is readable by the services SharedReaders lists for
	// it, "<service>/<name>" by that service, anything else by none
	// (operators only).
	Secrets map[string]map[string]any
	// SharedReaders names, for each shared secret, the services that may
	// read it (default DefaultSharedReaders): least privilege, so that a
	// compromised gateway cannot read the SQS credentials it never uses.
	SharedReaders map[string][]string
	// ClientSecretPepper creates the token service's client-secret pepper
	// (<kv>/<prefix>/tokens/oauth, written once): PepperValue, or 32 random
	// bytes.
	ClientSecretPepper bool
	PepperValue        string
	// APIKeyPepper creates the gateways' API key pepper
	// (<kv>/<prefix>/shared/api-keys, written once): APIKeyPepperValue,
	// or 32 random bytes.
	APIKeyPepper      bool
	APIKeyPepperValue string
	// SQSCredentials, when both are set, are stored as the shared secret
	// shared/sqs (written once), and the services read their SQS
	// credentials from there.
	SQSAccessKeyID, SQSSecretAccessKey string
	// CredentialsDir, when set, receives <service>/role-id and
	// <service>/secret-id (mode 0600). An existing secret id that still
	// logs in is kept; otherwise a new one is issued.
	CredentialsDir string
	// Kubernetes, when set, also lets the services log in with their
	// Kubernetes service accounts (deployments/k8s).
	Kubernetes *KubernetesAuth
}

// KubernetesAuth sets up Vault's Kubernetes auth method for a deployment
// like deployments/k8s: a role <prefix>-<service> per service, bound to
// the service account of the same name in Namespace, with the service's
// policy; and a role <prefix>-init for the init Job, whose policy reads
// only the schema owner's URL (<kv>/<prefix>/admin/database).
type KubernetesAuth struct {
	// Mount is the auth method's path (default "kubernetes").
	Mount string
	// Namespace is where the service accounts are (required).
	Namespace string
	// Host is the Kubernetes API server Vault asks to review the service
	// accounts' tokens; CACert (PEM) verifies it. With Host empty the
	// method's existing configuration is kept (for example one written
	// by Vault's own Helm chart).
	Host, CACert string
	// VaultOutsideCluster says Vault does not run in the cluster, so it
	// must not look for a pod's CA file and service-account token (Vault's
	// disable_local_ca_jwt); each login's own token then reviews itself.
	VaultOutsideCluster bool
	// Audience, when set, is the audience the service accounts' tokens
	// must carry.
	Audience string
}

func (p *Plan) setDefaults() {
	if len(p.Services) == 0 {
		p.Services = Services
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&p.Prefix, "switchyard")
	def(&p.KVMount, "secret")
	def(&p.DatabaseMount, "database")
	def(&p.TransitMount, "transit")
	def(&p.AppRoleMount, "approle")
	def(&p.TransitKey, p.Prefix+"-jwt")
	if p.Kubernetes != nil {
		k := *p.Kubernetes // the caller's value stays as it was
		def(&k.Mount, "kubernetes")
		p.Kubernetes = &k
	}
	durDef := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	durDef(&p.DatabaseTTL, time.Hour)
	durDef(&p.DatabaseMaxTTL, 24*time.Hour)
	durDef(&p.TokenTTL, time.Hour)
	durDef(&p.TokenMaxTTL, 24*time.Hour)
	if p.SharedReaders == nil {
		p.SharedReaders = DefaultSharedReaders
	}
}

// Role is what one service needs to log in and find its secrets.
type Role struct {
	Service string
	// AppRole is the role name; RoleID its role id.
	AppRole, RoleID string
	// RoleIDFile and SecretIDFile are the credential files, when written.
	RoleIDFile, SecretIDFile string
	// DatabaseRole is the service's role of the database engine.
	DatabaseRole string
	// Policy is the name of the service's policy.
	Policy string
	// KubernetesRole is the service's role of the Kubernetes auth method,
	// when Plan.Kubernetes is set.
	KubernetesRole string
}

// Result says what Provision set up.
type Result struct {
	Roles map[string]Role
	// TransitKey is "<mount>/<key>", for SWITCHYARD_TOKENS_KEYS_TRANSIT.
	TransitKey string
	// DatabaseMount and AppRoleMount are where the engines are.
	DatabaseMount, AppRoleMount string
	// SQSSecret is the KV reference base of the SQS credentials
	// ("<kv>/<prefix>/shared/sqs"), when they are stored.
	SQSSecret string
	// PepperRef is the reference of the client-secret pepper
	// ("vault:<kv>/<prefix>/tokens/oauth#pepper") and Pepper its value,
	// when it is provisioned.
	PepperRef, Pepper string
	// APIKeyPepperRef is the reference of the API key pepper
	// ("vault:<kv>/<prefix>/shared/api-keys#pepper") and APIKeyPepper its
	// value, when it is provisioned.
	APIKeyPepperRef, APIKeyPepper string
	// KubernetesMount is the Kubernetes auth method's path and InitRole
	// the init Job's role there, when Plan.Kubernetes is set.
	KubernetesMount, InitRole string
	// Created lists what did not exist before (for the operator's log).
	Created []string
}

// Provision sets Vault up according to p with client (a token allowed to
// manage mounts, policies and auth methods).
func Provision(ctx context.Context, client *vault.Client, p Plan) (Result, error) {
	p.setDefaults()
	res := Result{Roles: map[string]Role{}, TransitKey: p.TransitMount + "/" + p.TransitKey,
		DatabaseMount: p.DatabaseMount, AppRoleMount: p.AppRoleMount}
	if p.DatabaseURL == "" {
		return res, errors.New("no database URL for the database secrets engine")
	}
	if p.Kubernetes != nil && p.Kubernetes.Namespace == "" {
		return res, errors.New("the Kubernetes auth method needs the namespace of the service accounts")
	}
	for _, m := range []struct{ path, typ string }{
		{p.KVMount, "kv-v2"}, {p.DatabaseMount, "database"}, {p.TransitMount, "transit"},
	} {
		created, err := ensureMount(ctx, client, m.path, m.typ)
		if err != nil {
			return res, err
		}
		if created {
			res.Created = append(res.Created, "secrets engine "+m.typ+" at "+m.path)
		}
	}
	created, err := ensureAuth(ctx, client, p.AppRoleMount, "approle")
	if err != nil {
		return res, err
	}
	if created {
		res.Created = append(res.Created, "auth method approle at "+p.AppRoleMount)
	}
	if created, err := ensureTransitKey(ctx, client, p.TransitMount, p.TransitKey); err != nil {
		return res, err
	} else if created {
		res.Created = append(res.Created, "transit key "+res.TransitKey)
	}
	if err := configureDatabase(ctx, client, p); err != nil {
		return res, err
	}
	if err := p.addGeneratedSecrets(&res); err != nil {
		return res, err
	}
	for name, data := range p.Secrets {
		path := p.Prefix + "/" + name
		written, err := writeIfAbsent(ctx, client, p.KVMount, path, data)
		if err != nil {
			return res, err
		}
		if written {
			res.Created = append(res.Created, "KV secret "+p.KVMount+"/"+path)
		}
	}
	if res.PepperRef != "" {
		// The stored pepper: written now or on an earlier run.
		s, err := client.KVv2(p.KVMount).Get(ctx, p.Prefix+"/tokens/oauth")
		if err != nil {
			return res, fmt.Errorf("reading the pepper: %w", err)
		}
		res.Pepper, _ = s.Data["pepper"].(string)
	}
	if res.APIKeyPepperRef != "" {
		s, err := client.KVv2(p.KVMount).Get(ctx, p.Prefix+"/"+apiKeyPepperPath)
		if err != nil {
			return res, fmt.Errorf("reading the API key pepper: %w", err)
		}
		res.APIKeyPepper, _ = s.Data["pepper"].(string)
	}
	if p.Kubernetes != nil {
		created, err := configureKubernetes(ctx, client, *p.Kubernetes)
		if err != nil {
			return res, err
		}
		if created {
			res.Created = append(res.Created, "auth method kubernetes at "+p.Kubernetes.Mount)
		}
		res.KubernetesMount, res.InitRole = p.Kubernetes.Mount, p.Prefix+"-init"
		if err := client.Sys().PutPolicyWithContext(ctx, res.InitRole, InitPolicy(p)); err != nil {
			return res, fmt.Errorf("writing policy %s: %w", res.InitRole, err)
		}
		if err := writeKubernetesRole(ctx, client, p, res.InitRole, res.InitRole); err != nil {
			return res, err
		}
	}
	for _, svc := range p.Services {
		role, err := provisionService(ctx, client, p, svc)
		if err != nil {
			return res, fmt.Errorf("provisioning %s: %w", svc, err)
		}
		res.Roles[svc] = role
	}
	return res, nil
}

// configureKubernetes enables the Kubernetes auth method and, with a
// host, points it at the cluster's API server.
func configureKubernetes(ctx context.Context, c *vault.Client, k KubernetesAuth) (bool, error) {
	created, err := ensureAuth(ctx, c, k.Mount, "kubernetes")
	if err != nil {
		return false, err
	}
	if k.Host == "" {
		return created, nil
	}
	cfg := map[string]any{"kubernetes_host": k.Host, "disable_local_ca_jwt": k.VaultOutsideCluster}
	if k.CACert != "" {
		cfg["kubernetes_ca_cert"] = k.CACert
	}
	if _, err := c.Logical().WriteWithContext(ctx, "auth/"+k.Mount+"/config", cfg); err != nil {
		return created, fmt.Errorf("configuring the Kubernetes auth method at %s: %w", k.Mount, err)
	}
	return created, nil
}

// writeKubernetesRole binds the service account named role in the plan's
// namespace to policy.
func writeKubernetesRole(ctx context.Context, c *vault.Client, p Plan, role, policy string) error {
	k := p.Kubernetes
	data := map[string]any{
		"bound_service_account_names": role, "bound_service_account_namespaces": k.Namespace,
		"token_policies": policy, "token_ttl": p.TokenTTL.String(), "token_max_ttl": p.TokenMaxTTL.String(),
	}
	if k.Audience != "" {
		data["audience"] = k.Audience
	}
	if _, err := c.Logical().WriteWithContext(ctx, "auth/"+k.Mount+"/role/"+role, data); err != nil {
		return fmt.Errorf("writing Kubernetes role %s: %w", role, err)
	}
	return nil
}

// InitPolicy returns the HCL of the init Job's policy: read the schema
// owner's database URL, nothing else.
func InitPolicy(p Plan) string {
	p.setDefaults()
	return fmt.Sprintf("path %q { capabilities = [\"read\"] }\n", p.KVMount+"/data/"+p.Prefix+"/admin/database")
}

func ensureMount(ctx context.Context, c *vault.Client, path, typ string) (bool, error) {
	mounts, err := c.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return false, fmt.Errorf("listing secrets engines: %w", err)
	}
	if m, ok := mounts[strings.Trim(path, "/")+"/"]; ok {
		want := typ
		if typ == "kv-v2" {
			want = "kv"
			if m.Options["version"] != "2" {
				return false, fmt.Errorf("%s is a KV version %q engine; Switchyard needs version 2", path, m.Options["version"])
			}
		}
		if m.Type != want {
			return false, fmt.Errorf("%s is mounted as %s, not %s", path, m.Type, typ)
		}
		return false, nil
	}
	in := &vault.MountInput{Type: typ}
	if typ == "kv-v2" {
		in = &vault.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}
	}
	if err := c.Sys().MountWithContext(ctx, path, in); err != nil {
		return false, fmt.Errorf("enabling %s at %s: %w", typ, path, err)
	}
	return true, nil
}

func ensureAuth(ctx context.Context, c *vault.Client, path, typ string) (bool, error) {
	auths, err := c.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return false, fmt.Errorf("listing auth methods: %w", err)
	}
	if a, ok := auths[strings.Trim(path, "/")+"/"]; ok {
		if a.Type != typ {
			return false, fmt.Errorf("auth method at %s is %s, not %s", path, a.Type, typ)
		}
		return false, nil
	}
	if err := c.Sys().EnableAuthWithOptionsWithContext(ctx, path, &vault.EnableAuthOptions{Type: typ}); err != nil {
		return false, fmt.Errorf("enabling auth method %s at %s: %w", typ, path, err)
	}
	return true, nil
}

func ensureTransitKey(ctx context.Context, c *vault.Client, mount, name string) (bool, error) {
	s, err := c.Logical().ReadWithContext(ctx, mount+"/keys/"+name)
	if err != nil {
		return false, fmt.Errorf("reading transit key %s/%s: %w", mount, name, err)
	}
	if s != nil {
		if typ, _ := s.Data["type"].(string); typ != "ecdsa-p256" && typ != "ed25519" && !strings.HasPrefix(typ, "rsa-") {
			return false, fmt.Errorf("transit key %s/%s is of type %q, which cannot sign tokens", mount, name, typ)
		}
		return false, nil
	}
	if _, err := c.Logical().WriteWithContext(ctx, mount+"/keys/"+name, map[string]any{"type": "ecdsa-p256"}); err != nil {
		return false, fmt.Errorf("creating transit key %s/%s: %w", mount, name, err)
	}
	return true, nil
}

// creationStatement creates a user of svc that has exactly its service's
// grants (through the group role switchyard_<svc>, migrations/00014) and
// owns nothing, so that Vault can drop it.
func creationStatement(svc string) string {
	return `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE switchyard_` + svc + `;`
}

func configureDatabase(ctx context.Context, c *vault.Client, p Plan) error {
	u, err := url.Parse(p.DatabaseURL)
	if err != nil || u.User == nil || u.User.Username() == "" {
		return errors.New("the database URL must name the admin user the database engine connects as")
	}
	user := u.User.Username()
	password, _ := u.User.Password()
	if password == "" {
		password = "unused" // the engine insists on one; trust authentication ignores it
	}
	u.User = url.UserPassword("{{username}}", "{{password}}")
	connURL := strings.NewReplacer("%7B", "{", "%7D", "}").Replace(u.String())
	roles := make([]string, len(p.Services))
	for i, svc := range p.Services {
		roles[i] = p.Prefix + "-" + svc
	}
	// The init role reads only the schema owner's URL, never the database.
	if _, err := c.Logical().WriteWithContext(ctx, p.DatabaseMount+"/config/"+p.Prefix, map[string]any{
		"plugin_name": "postgresql-database-plugin", "connection_url": connURL, "username": user, "password": password,
		"allowed_roles": strings.Join(roles, ","), "verify_connection": true,
	}); err != nil {
		return fmt.Errorf("configuring the database engine: %w", err)
	}
	for i, role := range roles {
		if _, err := c.Logical().WriteWithContext(ctx, p.DatabaseMount+"/roles/"+role, map[string]any{
			"db_name": p.Prefix, "creation_statements": []string{creationStatement(p.Services[i])},
			"default_ttl": p.DatabaseTTL.String(), "max_ttl": p.DatabaseMaxTTL.String(),
		}); err != nil {
			return fmt.Errorf("creating database role %s: %w", role, err)
		}
	}
	return nil
}

func writeIfAbsent(ctx context.Context, c *vault.Client, mount, path string, data map[string]any) (bool, error) {
	_, err := c.KVv2(mount).Get(ctx, path)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, vault.ErrSecretNotFound) {
		return false, fmt.Errorf("reading %s/%s: %w", mount, path, err)
	}
	if _, err := c.KVv2(mount).Put(ctx, path, data); err != nil {
		return false, fmt.Errorf("writing %s/%s: %w", mount, path, err)
	}
	return true, nil
}

// DefaultSharedReaders lets the SQS credentials (shared/sqs) be read by the
// services that call SQS, and the API key pepper (shared/api-keys) by the
// gateways, which check keys, and the replay service, whose admin API
// makes them; by no other.
var DefaultSharedReaders = map[string][]string{"sqs": {"relay", "worker", "replay"}, "api-keys": {"gateway", "replay"}}

// Policy returns the HCL of svc's policy: its database role, its own KV
// secrets, the shared ones it is a reader of (each by its exact path), and
// for the token service signing with the transit key. (Token renewal and
// lease renewal come with Vault's default policy.)
func Policy(p Plan, svc string) string {
	p.setDefaults()
	var b strings.Builder
	fmt.Fprintf(&b, "path %q { capabilities = [\"read\"] }\n", p.DatabaseMount+"/creds/"+p.Prefix+"-"+svc)
	fmt.Fprintf(&b, "path %q { capabilities = [\"read\"] }\n", p.KVMount+"/data/"+p.Prefix+"/"+svc+"/*")
	names := make([]string, 0, len(p.SharedReaders))
	for name, readers := range p.SharedReaders {
		if slices.Contains(readers, svc) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Fprintf(&b, "path %q { capabilities = [\"read\"] }\n", p.KVMount+"/data/"+p.Prefix+"/shared/"+name)
	}
	if svc == "tokens" {
		fmt.Fprintf(&b, "path %q { capabilities = [\"read\"] }\n", p.TransitMount+"/keys/"+p.TransitKey)
		fmt.Fprintf(&b, "path %q { capabilities = [\"update\"] }\n", p.TransitMount+"/sign/"+p.TransitKey)
		fmt.Fprintf(&b, "path %q { capabilities = [\"update\"] }\n", p.TransitMount+"/sign/"+p.TransitKey+"/*")
	}
	return b.String()
}

func provisionService(ctx context.Context, c *vault.Client, p Plan, svc string) (Role, error) {
	role := Role{Service: svc, AppRole: p.Prefix + "-" + svc, DatabaseRole: p.Prefix + "-" + svc, Policy: p.Prefix + "-" + svc}
	if err := c.Sys().PutPolicyWithContext(ctx, role.Policy, Policy(p, svc)); err != nil {
		return role, fmt.Errorf("writing policy %s: %w", role.Policy, err)
	}
	if p.Kubernetes != nil {
		role.KubernetesRole = p.Prefix + "-" + svc
		if err := writeKubernetesRole(ctx, c, p, role.KubernetesRole, role.Policy); err != nil {
			return role, err
		}
	}
	base := "auth/" + p.AppRoleMount + "/role/" + role.AppRole
	if _, err := c.Logical().WriteWithContext(ctx, base, map[string]any{
		"token_policies": role.Policy, "token_ttl": p.TokenTTL.String(), "token_max_ttl": p.TokenMaxTTL.String(),
		"secret_id_num_uses": 0,
	}); err != nil {
		return role, fmt.Errorf("writing AppRole %s: %w", role.AppRole, err)
	}
	s, err := c.Logical().ReadWithContext(ctx, base+"/role-id")
	if err != nil || s == nil {
		return role, fmt.Errorf("reading the role id of %s: %w", role.AppRole, err)
	}
	role.RoleID, _ = s.Data["role_id"].(string)
	if p.CredentialsDir == "" {
		return role, nil
	}
	dir := filepath.Join(p.CredentialsDir, svc)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return role, fmt.Errorf("creating %s: %w", dir, err)
	}
	role.RoleIDFile, role.SecretIDFile = filepath.Join(dir, "role-id"), filepath.Join(dir, "secret-id")
	if err := os.WriteFile(role.RoleIDFile, []byte(role.RoleID+"\n"), 0o600); err != nil {
		return role, fmt.Errorf("writing %s: %w", role.RoleIDFile, err)
	}
	if existing, err := os.ReadFile(role.SecretIDFile); err == nil && logsIn(ctx, c, p.AppRoleMount, role.RoleID, strings.TrimSpace(string(existing))) {
		return role, nil
	}
	s, err = c.Logical().WriteWithContext(ctx, base+"/secret-id", nil)
	if err != nil || s == nil {
		return role, fmt.Errorf("issuing a secret id for %s: %w", role.AppRole, err)
	}
	secretID, _ := s.Data["secret_id"].(string)
	tmp := role.SecretIDFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(secretID+"\n"), 0o600); err != nil {
		return role, fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, role.SecretIDFile); err != nil {
		return role, fmt.Errorf("writing %s: %w", role.SecretIDFile, err)
	}
	return role, nil
}

// logsIn reports whether the AppRole credentials still work (a Vault dev
// server forgets everything when it restarts).
func logsIn(ctx context.Context, c *vault.Client, mount, roleID, secretID string) bool {
	lc, err := c.Clone()
	if err != nil {
		return false
	}
	lc.ClearToken()
	s, err := lc.Logical().WriteWithContext(ctx, "auth/"+mount+"/login", map[string]any{"role_id": roleID, "secret_id": secretID})
	if err != nil || s == nil || s.Auth == nil {
		return false
	}
	lc.SetToken(s.Auth.ClientToken)
	_ = lc.Auth().Token().RevokeSelfWithContext(ctx, "")
	return true
}

// Ordered returns the roles sorted by service.
func (r Result) Ordered() []Role {
	out := make([]Role, 0, len(r.Roles))
	for _, role := range r.Roles {
		out = append(out, role)
	}
	slices.SortFunc(out, func(a, b Role) int { return strings.Compare(a.Service, b.Service) })
	return out
}

// addGeneratedSecrets adds the SQS credentials and the pepper the plan
// asks for to p.Secrets and records their references in res.
func (p *Plan) addGeneratedSecrets(res *Result) error {
	if p.Secrets == nil {
		p.Secrets = map[string]map[string]any{}
	}
	if p.SQSAccessKeyID != "" && p.SQSSecretAccessKey != "" {
		p.Secrets["shared/sqs"] = map[string]any{"access_key_id": p.SQSAccessKeyID, "secret_access_key": p.SQSSecretAccessKey}
		res.SQSSecret = p.KVMount + "/" + p.Prefix + "/shared/sqs"
	}
	if p.ClientSecretPepper {
		value, err := randomUnlessSet(p.PepperValue)
		if err != nil {
			return fmt.Errorf("generating the pepper: %w", err)
		}
		p.Secrets["tokens/oauth"] = map[string]any{"pepper": value}
		res.PepperRef = "vault:" + p.KVMount + "/" + p.Prefix + "/tokens/oauth#pepper"
	}
	if p.APIKeyPepper {
		value, err := randomUnlessSet(p.APIKeyPepperValue)
		if err != nil {
			return fmt.Errorf("generating the API key pepper: %w", err)
		}
		p.Secrets[apiKeyPepperPath] = map[string]any{"pepper": value}
		res.APIKeyPepperRef = "vault:" + p.KVMount + "/" + p.Prefix + "/" + apiKeyPepperPath + "#pepper"
	}
	return nil
}

// apiKeyPepperPath is the API key pepper's path under <prefix>/: a shared
// secret (DefaultSharedReaders says who reads it).
const apiKeyPepperPath = "shared/api-keys"

// randomUnlessSet returns value, or 32 random bytes in base64 when empty.
func randomUnlessSet(value string) (string, error) {
	if value != "" {
		return value, nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawStdEncoding.EncodeToString(b), nil
}

// ProvisionFile writes the KV secrets of p (its Secrets, the SQS
// credentials and the pepper, each only when absent, as Provision writes
// them to Vault) into the secrets.FileStore file at path, under the same
// "<mount>/<path>" names, so that the services resolve the same vault:
// references from it. It is the local stack's stand-in while no Vault
// server is built: no AppRoles, no database engine (the services use
// DATABASE_URL's user), no transit key (the token service signs with a
// key file). The result carries the references (SQSSecret, PepperRef)
// and the pepper; FileEnv gives each service its environment.
func ProvisionFile(path string, p Plan) (Result, error) {
	p.setDefaults()
	res := Result{Roles: map[string]Role{}}
	if err := p.addGeneratedSecrets(&res); err != nil {
		return res, err
	}
	all, err := secrets.ReadSecretsFile(path)
	if err != nil {
		return res, err
	}
	for name, data := range p.Secrets {
		location := p.KVMount + "/" + p.Prefix + "/" + name
		if _, ok := all[location]; !ok {
			all[location] = data
			res.Created = append(res.Created, "secret "+location+" in "+path)
		}
	}
	if err := secrets.WriteSecretsFile(path, all); err != nil {
		return res, err
	}
	if res.PepperRef != "" {
		res.Pepper, _ = all[p.KVMount+"/"+p.Prefix+"/tokens/oauth"]["pepper"].(string)
	}
	if res.APIKeyPepperRef != "" {
		res.APIKeyPepper, _ = all[p.KVMount+"/"+p.Prefix+"/"+apiKeyPepperPath]["pepper"].(string)
	}
	return res, nil
}

// FileEnv is the environment that has svc read its secrets from the
// secrets file ProvisionFile wrote, and, for the token service, sign
// with the keys in keysFile.
func (r Result) FileEnv(svc, secretsFile, keysFile string) []string {
	env := []string{"VAULT_ADDR=", "VAULT_TOKEN=", "SWITCHYARD_SECRETS_FILE=" + secretsFile}
	if svc == "tokens" {
		env = append(env, "SWITCHYARD_TOKENS_KEYS_TRANSIT=", "SWITCHYARD_TOKENS_KEYS_FILE="+keysFile)
		if r.PepperRef != "" {
			env = append(env, "SWITCHYARD_CLIENT_SECRET_PEPPER="+r.PepperRef)
		}
	}
	return append(append(env, r.apiKeyEnv(svc)...), r.sqsEnv(svc)...)
}

// sqsEnv points svc's SQS credentials at the stored secret, for the
// services that use SQS.
func (r Result) sqsEnv(svc string) []string {
	if r.SQSSecret == "" || svc == "tokens" || svc == "gateway" {
		return nil
	}
	return []string{"SWITCHYARD_SQS_ACCESS_KEY_ID=vault:" + r.SQSSecret + "#access_key_id",
		"SWITCHYARD_SQS_SECRET_ACCESS_KEY=vault:" + r.SQSSecret + "#secret_access_key"}
}

// Env returns the environment svc needs to run against what Provision set
// up: AppRole login from the credential files, its database role, and for
// the token service the transit key.
func (r Result) Env(svc, vaultAddr string) []string {
	role := r.Roles[svc]
	env := []string{
		"VAULT_ADDR=" + vaultAddr, "VAULT_TOKEN=", "VAULT_AUTH_METHOD=approle", "VAULT_AUTH_MOUNT=" + r.AppRoleMount,
		"VAULT_ROLE_ID_FILE=" + role.RoleIDFile, "VAULT_SECRET_ID_FILE=" + role.SecretIDFile,
		"SWITCHYARD_VAULT_DATABASE_ROLE=" + role.DatabaseRole, "SWITCHYARD_VAULT_DATABASE_MOUNT=" + r.DatabaseMount,
	}
	if svc == "tokens" {
		env = append(env, "SWITCHYARD_TOKENS_KEYS_TRANSIT="+r.TransitKey, "SWITCHYARD_TOKENS_KEYS_FILE=")
		if r.PepperRef != "" {
			env = append(env, "SWITCHYARD_CLIENT_SECRET_PEPPER="+r.PepperRef)
		}
	}
	return append(append(slices.Clip(env), r.apiKeyEnv(svc)...), r.sqsEnv(svc)...)
}

// apiKeyEnv points the gateway and the replay service at the API key
// pepper, when it is stored.
func (r Result) apiKeyEnv(svc string) []string {
	if r.APIKeyPepperRef == "" || (svc != "gateway" && svc != "replay") {
		return nil
	}
	return []string{"SWITCHYARD_API_KEY_PEPPER=" + r.APIKeyPepperRef}
}
