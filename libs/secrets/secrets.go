// Package secrets reads Switchyard's secrets from HashiCorp Vault through
// github.com/hashicorp/vault/api.
//
// A Client logs in with a token (development) or AppRole or Kubernetes
// auth (production), keeps its token alive with Vault's LifetimeWatcher
// and logs in again when renewal fails or the token is revoked, reads KV
// v2 secrets with their version, and watches secrets: a subscriber is
// called with each new version, so that services reload without a
// restart. A read that fails at start-up fails start-up with a message
// naming the secret; once running, a failing Vault never takes a secret
// away: the last good value is kept, Ready reports the client degraded,
// and reads are retried with backoff until Vault answers again.
package secrets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// Auth methods.
const (
	// AuthToken uses Token as it is (development: a dev server's root
	// token). It is renewed when renewable; it cannot be replaced.
	AuthToken = "token"
	// AuthAppRole logs in with RoleID and SecretID (production).
	AuthAppRole = "approle"
	// AuthKubernetes logs in with the pod's service-account token
	// (production on Kubernetes).
	AuthKubernetes = "kubernetes"
)

// Config configures a Client. The conf tags let services embed it under
// the standard Vault variable names.
type Config struct {
	// Addr is Vault's address; empty means Vault is not used.
	Addr string `conf:"env:VAULT_ADDR,help:Vault address (empty: no Vault; secrets from SWITCHYARD_SECRETS_FILE or the environment: development only)"`
	// File, when Addr is empty, is a FileStore's JSON file: vault:
	// references resolve from it (development only: the local stack
	// before a Vault server is built).
	File string `conf:"env:SWITCHYARD_SECRETS_FILE,help:JSON file of KV secrets that vault: references resolve from when VAULT_ADDR is empty (development only)"`
	// Auth is the login method: token, approle or kubernetes.
	Auth string `conf:"default:token,env:VAULT_AUTH_METHOD,help:Vault login: token (development) / approle / kubernetes"`
	// Token is the token for AuthToken.
	Token string `conf:"mask,env:VAULT_TOKEN,help:Vault token (auth method token)"`
	// RoleID and SecretID (or SecretIDFile) are AppRole's credentials.
	RoleID       string `conf:"env:VAULT_ROLE_ID,help:AppRole role id (auth method approle); or VAULT_ROLE_ID_FILE"`
	RoleIDFile   string `conf:"env:VAULT_ROLE_ID_FILE,help:file holding the AppRole role id"`
	SecretID     string `conf:"mask,env:VAULT_SECRET_ID,help:AppRole secret id (auth method approle); or VAULT_SECRET_ID_FILE"`
	SecretIDFile string `conf:"env:VAULT_SECRET_ID_FILE,help:file holding the AppRole secret id"`
	// KubernetesRole is the Vault role for AuthKubernetes; the JWT is read
	// from KubernetesTokenFile.
	KubernetesRole      string `conf:"env:VAULT_KUBERNETES_ROLE,help:Vault role (auth method kubernetes)"`
	KubernetesTokenFile string `conf:"default:/var/run/secrets/kubernetes.io/serviceaccount/token,env:VAULT_KUBERNETES_TOKEN_FILE,help:service-account token file (auth method kubernetes)"`
	// AuthMount is where the auth method is mounted (default: its name).
	AuthMount string `conf:"env:VAULT_AUTH_MOUNT,help:mount path of the auth method (default: approle or kubernetes)"`
	// Namespace is the Vault Enterprise namespace, if any.
	Namespace string `conf:"env:VAULT_NAMESPACE,help:Vault namespace (Enterprise)"`
	// WatchInterval is how often watched secrets are checked for a new
	// version (default 30 s).
	WatchInterval time.Duration `conf:"default:30s,env:SWITCHYARD_VAULT_WATCH_INTERVAL,help:how often watched Vault secrets are checked for a new version"`
	// RetryMax caps the backoff between retries of a failing login or
	// read (default 30 s; it starts at 1 s and doubles).
	RetryMax time.Duration `conf:"default:30s,env:SWITCHYARD_VAULT_RETRY_MAX,help:longest wait between retries when Vault fails"`
	// BreakerOpenFor is how long the process's Vault circuit breaker,
	// once open (5 requests in a row failed), answers every call at once
	// with ErrUnavailable before one probe may test Vault again.
	BreakerOpenFor time.Duration `conf:"default:5s,env:SWITCHYARD_VAULT_BREAKER_OPEN_FOR,help:how long calls to Vault are answered at once (unsent) after 5 requests in a row failed"`

	// DatabaseRole, when set, gives the service short-lived database users
	// of this role of Vault's database secrets engine at DatabaseMount, in
	// place of DATABASE_URL's user and password.
	DatabaseRole  string `conf:"env:SWITCHYARD_VAULT_DATABASE_ROLE,help:role of Vault's database secrets engine whose short-lived users replace DATABASE_URL's user and password (empty: DATABASE_URL's)"`
	DatabaseMount string `conf:"default:database,env:SWITCHYARD_VAULT_DATABASE_MOUNT,help:mount of Vault's database secrets engine"`

	// client is the Client Connect made from this configuration.
	client *Client
}

// DatabaseCredentials fetches a user of DatabaseRole through the client
// Connect made; nil and no error when no role is configured.
func (c Config) DatabaseCredentials(ctx context.Context) (*DatabaseCredentials, error) {
	if c.DatabaseRole == "" {
		return nil, nil
	}
	if c.client == nil {
		return nil, errors.New("SWITCHYARD_VAULT_DATABASE_ROLE needs Vault (VAULT_ADDR and a login)")
	}
	mount := c.DatabaseMount
	if mount == "" {
		mount = "database"
	}
	return c.client.DatabaseCredentials(ctx, mount, c.DatabaseRole)
}

// Connect logs in (see New) once and keeps the Client in c, so that the
// code that loaded the configuration (libs/config, resolving vault:
// references) and the service that runs it share one client. It returns
// nil and no error when Vault is not configured.
func (c *Config) Connect(ctx context.Context, logger *slog.Logger) (*Client, error) {
	if c.client != nil || !c.Enabled() {
		return c.client, nil
	}
	cl, err := New(ctx, *c, logger)
	if err != nil {
		return nil, err
	}
	c.client = cl
	return cl, nil
}

// Client returns the Client Connect made, or nil.
func (c Config) Client() *Client { return c.client }

// Enabled reports whether Vault is configured.
func (c Config) Enabled() bool { return c.Addr != "" }

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	if c.File != "" {
		return errors.New("set VAULT_ADDR or SWITCHYARD_SECRETS_FILE, not both")
	}
	var errs []error
	switch c.Auth {
	case AuthToken:
		if c.Token == "" {
			errs = append(errs, errors.New("VAULT_TOKEN is required with VAULT_AUTH_METHOD=token"))
		}
	case AuthAppRole:
		if (c.RoleID == "" && c.RoleIDFile == "") || (c.SecretID == "" && c.SecretIDFile == "") {
			errs = append(errs, errors.New("VAULT_ROLE_ID and VAULT_SECRET_ID (or their _FILE variants) are required with VAULT_AUTH_METHOD=approle"))
		}
	case AuthKubernetes:
		if c.KubernetesRole == "" {
			errs = append(errs, errors.New("VAULT_KUBERNETES_ROLE is required with VAULT_AUTH_METHOD=kubernetes"))
		}
	default:
		errs = append(errs, fmt.Errorf("VAULT_AUTH_METHOD %q must be token, approle or kubernetes", c.Auth))
	}
	if c.WatchInterval < 0 || c.RetryMax < 0 || c.BreakerOpenFor < 0 {
		errs = append(errs, errors.New("SWITCHYARD_VAULT_WATCH_INTERVAL, SWITCHYARD_VAULT_RETRY_MAX and SWITCHYARD_VAULT_BREAKER_OPEN_FOR must not be negative"))
	}
	return errors.Join(errs...)
}

func (c *Config) setDefaults() {
	if c.Auth == "" {
		c.Auth = AuthToken
	}
	if c.AuthMount == "" {
		c.AuthMount = c.Auth
	}
	if c.WatchInterval == 0 {
		c.WatchInterval = 30 * time.Second
	}
	if c.RetryMax == 0 {
		c.RetryMax = 30 * time.Second
	}
	if c.BreakerOpenFor == 0 {
		c.BreakerOpenFor = guardOpenFor
	}
}

// ErrDisabled is returned by a Client's reads when Vault is not
// configured.
var ErrDisabled = errors.New("vault is not configured (VAULT_ADDR is empty)")

// Client is a logged-in Vault client. It is safe for concurrent use; Run
// keeps it logged in and its watches running.
type Client struct {
	cfg    Config
	api    *vault.Client
	guard  *guard
	logger *slog.Logger

	// loginMu serialises logins (the renewal loop's and a read's that
	// found its token refused).
	loginMu sync.Mutex

	mu      sync.Mutex
	login   *vault.Secret // the login's auth; nil for a token that cannot be renewed
	loginAt time.Time
	gen     int // counts logins
	stats   Stats
	lastErr map[string]error // by concern: "auth", "<mount>/<path>"
	// newLogin is signalled when a read logged in again, so that the
	// renewal loop watches the new token.
	newLogin  chan struct{}
	watches   []*watch
	databases []*DatabaseCredentials
	runCtx    context.Context //nolint:containedctx // the context Run was given, for watches added later
}

// Stats counts what the client did, for metrics and tests.
type Stats struct {
	Logins      int
	Renewals    int
	LoginErrors int
	ReadErrors  int
	// TokenTTL is the token's TTL at its last login or renewal.
	TokenTTL time.Duration
	// TokenExpires is when the token ends unless renewed (zero for a
	// token without a TTL).
	TokenExpires time.Time
	// Accessor identifies the current token without revealing it.
	Accessor string
}

// New returns a Client for cfg, logged in: an AppRole or Kubernetes login
// happens now, a token is looked up now, so that bad credentials fail
// start-up. It returns nil and no error when Vault is not configured.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Client, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	vcfg := vault.DefaultConfig()
	vcfg.Address = cfg.Addr
	vcfg.Timeout = 10 * time.Second
	vcfg.MaxRetries = 0 // this package retries, with its own backoff
	g := newGuard(vcfg.HttpClient.Transport, cfg.BreakerOpenFor, logger)
	vcfg.HttpClient.Transport = g
	api, err := vault.NewClient(vcfg)
	if err != nil {
		return nil, fmt.Errorf("creating Vault client for %s: %w", cfg.Addr, err)
	}
	if cfg.Namespace != "" {
		api.SetNamespace(cfg.Namespace)
	}
	c := &Client{cfg: cfg, api: api, guard: g, logger: logger.With("vault_addr", cfg.Addr), lastErr: map[string]error{}, newLogin: make(chan struct{}, 1)}
	if err := c.authenticate(ctx); err != nil {
		return nil, fmt.Errorf("logging in to Vault at %s (%s): %w", cfg.Addr, cfg.Auth, err)
	}
	st := c.Stats()
	c.logger.Info("logged in to Vault", "auth", cfg.Auth, "accessor", st.Accessor, "token_ttl", st.TokenTTL.String())
	return c, nil
}

// authenticate logs in (or, for a plain token, looks it up) and records
// the token's auth.
func (c *Client) authenticate(ctx context.Context) error {
	if c.cfg.Auth == AuthToken {
		c.api.SetToken(c.cfg.Token)
		s, err := c.api.Auth().Token().LookupSelfWithContext(ctx)
		if err != nil {
			return fmt.Errorf("looking up VAULT_TOKEN: %w", err)
		}
		ttl, _ := s.TokenTTL()
		renewable, _ := s.TokenIsRenewable()
		accessor, _ := s.TokenAccessor()
		c.mu.Lock()
		defer c.mu.Unlock()
		c.stats.Logins++
		c.stats.TokenTTL, c.stats.Accessor = ttl, accessor
		c.stats.TokenExpires = expiry(ttl)
		c.loginAt = time.Now()
		c.gen++
		c.login = nil
		if renewable && ttl > 0 {
			// A renewable token is watched like a login.
			c.login = &vault.Secret{Auth: &vault.SecretAuth{ClientToken: c.cfg.Token, Accessor: accessor, Renewable: true,
				LeaseDuration: int(ttl / time.Second)}}
		}
		return nil
	}
	body, err := c.loginBody()
	if err != nil {
		return err
	}
	// The login must not carry the old (perhaps revoked) token, and reads
	// running meanwhile keep theirs: log in on a copy of the client.
	lc, err := c.api.Clone()
	if err != nil {
		return fmt.Errorf("preparing the login: %w", err)
	}
	lc.ClearToken()
	s, err := lc.Logical().WriteWithContext(ctx, "auth/"+strings.Trim(c.cfg.AuthMount, "/")+"/login", body)
	if err != nil {
		c.mu.Lock()
		c.stats.LoginErrors++
		c.mu.Unlock()
		return fmt.Errorf("%s login: %w", c.cfg.Auth, err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return fmt.Errorf("%s login answered without a token", c.cfg.Auth)
	}
	c.api.SetToken(s.Auth.ClientToken)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.login, c.loginAt = s, time.Now()
	c.gen++
	c.stats.Logins++
	c.stats.TokenTTL = time.Duration(s.Auth.LeaseDuration) * time.Second
	c.stats.TokenExpires = expiry(c.stats.TokenTTL)
	c.stats.Accessor = s.Auth.Accessor
	return nil
}

func (c *Client) loginBody() (map[string]any, error) {
	switch c.cfg.Auth {
	case AuthAppRole:
		roleID, err := valueOrFile(c.cfg.RoleID, c.cfg.RoleIDFile, "VAULT_ROLE_ID_FILE")
		if err != nil {
			return nil, err
		}
		secretID, err := valueOrFile(c.cfg.SecretID, c.cfg.SecretIDFile, "VAULT_SECRET_ID_FILE")
		if err != nil {
			return nil, err
		}
		return map[string]any{"role_id": roleID, "secret_id": secretID}, nil
	case AuthKubernetes:
		b, err := os.ReadFile(c.cfg.KubernetesTokenFile)
		if err != nil {
			return nil, fmt.Errorf("reading the service-account token: %w", err)
		}
		return map[string]any{"role": c.cfg.KubernetesRole, "jwt": strings.TrimSpace(string(b))}, nil
	}
	return nil, fmt.Errorf("auth method %q has no login", c.cfg.Auth)
}

// expiry is when a TTL granted now ends; zero for no TTL.
func expiry(ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return time.Now().Add(ttl)
}

// valueOrFile returns the contents of file (trimmed) when it is set, else
// value. The file is read at every login, so a rotated secret id is used
// without a restart.
func valueOrFile(value, file, name string) (string, error) {
	if file == "" {
		return value, nil
	}
	b, err := os.ReadFile(file) //nolint:gosec // the operator configures which file holds the credential
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Stats returns what the client did so far.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// API returns the underlying Vault client (for the database secrets engine
// and transit, which have no wrapper here yet).
func (c *Client) API() *vault.Client { return c.api }

// Ready reports the client degraded when its last login, renewal or any
// watch failed (a readiness check). Cached secrets keep being served
// meanwhile.
func (c *Client) Ready(context.Context) error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for concern, err := range c.lastErr {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", concern, err))
		}
	}
	return errors.Join(errs...)
}

func (c *Client) setErr(concern string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.stats.ReadErrors++
	}
	c.lastErr[concern] = err
}
