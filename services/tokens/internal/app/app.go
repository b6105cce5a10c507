// Package app wires the token service: configuration, the client store,
// the signing keys, the token API and the ops listener.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/netrules"
	"github.com/switchyard/switchyard/libs/oauthclients"
	"github.com/switchyard/switchyard/libs/ops"
	"github.com/switchyard/switchyard/libs/secrets"
	"github.com/switchyard/switchyard/libs/signingkeys"
	"github.com/switchyard/switchyard/services/tokens/internal/tokenapi"
)

// Config is the token service's configuration; every setting names its
// environment variable.
type Config struct {
	Addr             string        `conf:"default::8070,env:SWITCHYARD_TOKENS_ADDR,help:public listener address"`
	OpsAddr          string        `conf:"default::9070,env:SWITCHYARD_TOKENS_OPS_ADDR,help:ops listener (/healthz /readyz /metrics)"`
	Issuer           string        `conf:"required,env:SWITCHYARD_TOKENS_ISSUER,help:issuer URL as callers and gateways reach it (iss claim; discovery base)"`
	Audience         string        `conf:"default:switchyard,env:SWITCHYARD_TOKENS_AUDIENCE,help:aud claim of issued tokens"`
	TokenTTL         time.Duration `conf:"default:15m,env:SWITCHYARD_TOKENS_TTL,help:access token lifetime (1m to 24h)"`
	ClockSkew        time.Duration `conf:"default:1m,env:SWITCHYARD_TOKENS_CLOCK_SKEW,help:added to the token lifetime to keep replaced keys published"`
	KeysFile         string        `conf:"env:SWITCHYARD_TOKENS_KEYS_FILE,help:signing keys file (written by 'switchyard keys rotate'); or SWITCHYARD_TOKENS_KEYS_TRANSIT"`
	KeysTransit      string        `conf:"env:SWITCHYARD_TOKENS_KEYS_TRANSIT,help:<mount>/<key> of Vault's transit engine that signs the tokens (the private keys stay in Vault)"`
	KeyLead          time.Duration `conf:"default:6m,env:SWITCHYARD_TOKENS_KEY_LEAD,help:how long a new transit key version is published before it signs (above the gateways' JWKS refresh)"`
	KeysReload       time.Duration `conf:"default:10s,env:SWITCHYARD_TOKENS_KEYS_RELOAD,help:how often the signing keys are re-read"`
	JWKSMaxAge       time.Duration `conf:"default:60s,env:SWITCHYARD_TOKENS_JWKS_MAX_AGE,help:Cache-Control max-age of the JWKS"`
	DatabaseURL      config.Secret `conf:"required,mask,env:DATABASE_URL,help:Postgres URL or vault:<mount>/<path>#<key>"`
	SecretPepper     config.Secret `conf:"mask,env:SWITCHYARD_CLIENT_SECRET_PEPPER,help:pepper of the client-secret hashes (16+ bytes; a vault: reference) kept out of the database; empty: none"`
	DBMaxConns       int32         `conf:"default:8,env:SWITCHYARD_TOKENS_DB_MAX_CONNS,help:Postgres pool size"`
	RatePerIP        float64       `conf:"default:20,env:SWITCHYARD_TOKENS_RATE_PER_IP,help:token requests per second per client address (IPv6: per prefix; 0: off)"`
	BurstPerIP       int           `conf:"default:40,env:SWITCHYARD_TOKENS_BURST_PER_IP,help:burst per client address"`
	RatePerClient    float64       `conf:"default:5,env:SWITCHYARD_TOKENS_RATE_PER_CLIENT,help:tokens issued per second per client (charged by successes only; 0: off)"`
	BurstPerClient   int           `conf:"default:20,env:SWITCHYARD_TOKENS_BURST_PER_CLIENT,help:burst of tokens issued per client"`
	RateFailures     float64       `conf:"default:0.1,env:SWITCHYARD_TOKENS_RATE_FAILURES,help:failed authentications per second per client id and address (charged by failures only: an attacker cannot lock the real client out; 0: off)"`
	BurstFailures    int           `conf:"default:10,env:SWITCHYARD_TOKENS_BURST_FAILURES,help:burst of failed authentications per client id and address"`
	TrustedProxies   string        `conf:"env:SWITCHYARD_TOKENS_TRUSTED_PROXIES,help:CIDRs of the proxies and load balancers whose forwarding header is believed (empty: none; the TCP peer is the client)"`
	ForwardedHeader  string        `conf:"default:X-Forwarded-For,env:SWITCHYARD_TOKENS_FORWARDED_HEADER,help:the one forwarding header the trusted proxies maintain: X-Forwarded-For or Forwarded"`
	IPv6Prefix       int           `conf:"default:64,env:SWITCHYARD_TOKENS_IPV6_PREFIX,help:IPv6 addresses in one prefix of this length are limited as one address (128: each address)"`
	MaxConns         int           `conf:"default:1024,env:SWITCHYARD_TOKENS_MAX_CONNS,help:open connections at most (each holds ~20 KiB while open and idle ones too); more wait to be accepted (0: no limit)"`
	MaxConnsPerAddr  int           `conf:"default:256,env:SWITCHYARD_TOKENS_MAX_CONNS_PER_ADDR,help:open connections at most from one TCP peer (IPv6: per prefix); one more is closed at once; trusted proxies are exempt (0: no limit)"`
	HashMemory       int           `conf:"default:64,env:SWITCHYARD_TOKENS_HASH_MEMORY_MIB,help:MiB that secret checks (argon2id: 19 MiB each) may use at once; the rest wait; keep it well under GOMEMLIMIT"`
	HashWait         time.Duration `conf:"default:1s,env:SWITCHYARD_TOKENS_HASH_WAIT,help:how long a token request waits for secret-check memory before 503 temporarily_unavailable"`
	AcceptUnpeppered bool          `conf:"default:false,env:SWITCHYARD_TOKENS_ACCEPT_UNPEPPERED,help:with a pepper set: still accept secrets hashed without it and re-hash them on success (migration; off: refused)"`
	ShutdownTimeout  time.Duration `conf:"default:20s,env:SWITCHYARD_SHUTDOWN_TIMEOUT,help:grace period for in-flight requests"`
	OpsToken         config.Secret `conf:"mask,env:SWITCHYARD_OPS_TOKEN,help:bearer token that lets a non-loopback peer change settings on the ops listener (PUT /loglevel) or profile the process (/debug/pprof/); a vault: reference; empty: loopback only"`
	// Vault is where secrets come from (VAULT_ADDR and login); empty:
	// none, secrets from the environment (development).
	Vault secrets.Config
}

// keySource is where the signing keys come from: a transit key in Vault,
// or the keys file.
func keySource(cfg Config) (signingkeys.Source, error) {
	switch {
	case cfg.KeysTransit != "" && cfg.KeysFile != "":
		return nil, config.Invalid(errors.New("set SWITCHYARD_TOKENS_KEYS_TRANSIT or SWITCHYARD_TOKENS_KEYS_FILE, not both"))
	case cfg.KeysTransit != "":
		mount, name, ok := strings.Cut(cfg.KeysTransit, "/")
		if !ok || mount == "" || name == "" || strings.Contains(name, "/") {
			return nil, config.Invalid(fmt.Errorf("SWITCHYARD_TOKENS_KEYS_TRANSIT %q must be <mount>/<key>", cfg.KeysTransit))
		}
		vc := cfg.Vault.Client()
		if vc == nil {
			return nil, config.Invalid(errors.New("SWITCHYARD_TOKENS_KEYS_TRANSIT needs Vault (VAULT_ADDR and a login)"))
		}
		if cfg.KeyLead < 0 {
			return nil, config.Invalid(errors.New("SWITCHYARD_TOKENS_KEY_LEAD must not be negative"))
		}
		return vc.TransitKeys(mount, name, cfg.KeyLead), nil
	case cfg.KeysFile != "":
		return signingkeys.FileSource{Path: cfg.KeysFile}, nil
	}
	return nil, config.Invalid(errors.New("no signing keys: set SWITCHYARD_TOKENS_KEYS_TRANSIT (Vault) or SWITCHYARD_TOKENS_KEYS_FILE"))
}

// Validate reports settings the token service cannot run with (the
// signing keys themselves are checked when loaded): the token API's and
// the secret-check budget's own checks, and the client-address rules.
func (c Config) Validate() error {
	var errs []error
	if err := c.apiConfig(netrules.ClientIP{}).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("SWITCHYARD_TOKENS_ISSUER, _AUDIENCE, _TTL, _RATE_*, _BURST_*, _IPV6_PREFIX: %w", err))
	}
	if err := c.hashLimit().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("SWITCHYARD_TOKENS_HASH_MEMORY_MIB / _HASH_WAIT: %w", err))
	}
	if c.MaxConns < 0 || c.MaxConnsPerAddr < 0 {
		errs = append(errs, fmt.Errorf("SWITCHYARD_TOKENS_MAX_CONNS %d and _MAX_CONNS_PER_ADDR %d must not be negative (0: no limit)", c.MaxConns, c.MaxConnsPerAddr))
	}
	if c.DBMaxConns < 1 {
		errs = append(errs, fmt.Errorf("SWITCHYARD_TOKENS_DB_MAX_CONNS %d must be at least 1", c.DBMaxConns))
	}
	if _, err := netrules.NewClientIP(c.TrustedProxies, c.ForwardedHeader); err != nil {
		errs = append(errs, fmt.Errorf("SWITCHYARD_TOKENS_TRUSTED_PROXIES / _FORWARDED_HEADER: %w", err))
	}
	return errors.Join(errs...)
}

// apiConfig is the token API's configuration from c.
func (c Config) apiConfig(clientIP netrules.ClientIP) tokenapi.Config {
	return tokenapi.Config{
		Issuer: c.Issuer, Audience: c.Audience, TokenTTL: c.TokenTTL, ClockSkew: c.ClockSkew, JWKSMaxAge: c.JWKSMaxAge,
		Limits: tokenapi.Limits{PerIP: c.RatePerIP, PerIPBurst: c.BurstPerIP, PerClient: c.RatePerClient,
			PerClientBurst: c.BurstPerClient, PerClientFailure: c.RateFailures, PerClientFailureBurst: c.BurstFailures,
			Tracked: 100_000},
		ClientIP:       clientIP,
		IPv6PrefixBits: c.IPv6Prefix,
	}
}

// hashLimit is the secret checks' memory budget from c.
func (c Config) hashLimit() oauthclients.HashLimit {
	return oauthclients.HashLimit{MemoryBytes: int64(c.HashMemory) << 20, Wait: c.HashWait}
}

// Run serves the token service until ctx ends, then drains. An invalid
// configuration is a config.ErrInvalid (exit status 2).
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return config.Invalid(err)
	}
	dbCfg := database.Config{URL: cfg.DatabaseURL.Value(), ApplicationName: "switchyard-tokens", MaxConns: cfg.DBMaxConns, Registerer: prometheus.DefaultRegisterer}
	pool, _, err := database.OpenWithVault(ctx, dbCfg, cfg.Vault)
	if err != nil {
		return err
	}
	defer pool.Close()
	storeOpts := []oauthclients.Option{
		oauthclients.WithHashLimit(cfg.hashLimit()),
		oauthclients.WithUnpepperedAccepted(cfg.AcceptUnpeppered),
	}
	if p := cfg.SecretPepper.Value(); p != "" {
		storeOpts = append(storeOpts, oauthclients.WithPepper([]byte(p)))
	}
	clients, err := oauthclients.New(pool, storeOpts...)
	if err != nil {
		return config.Invalid(err)
	}
	clientIP, err := netrules.NewClientIP(cfg.TrustedProxies, cfg.ForwardedHeader)
	if err != nil {
		return config.Invalid(fmt.Errorf("SWITCHYARD_TOKENS_TRUSTED_PROXIES / _FORWARDED_HEADER: %w", err))
	}
	source, err := keySource(cfg)
	if err != nil {
		return err
	}
	keys, err := signingkeys.NewWatcher(ctx, source, cfg.KeysReload, logger)
	if err != nil {
		return err
	}
	api, err := tokenapi.New(cfg.apiConfig(clientIP), clients, keys, logger, tokenapi.NewMetrics(prometheus.DefaultRegisterer))
	if err != nil {
		return err
	}
	httpMetrics := httpserver.NewHTTPMetrics(prometheus.DefaultRegisterer)
	e := httpserver.NewEcho(logger, httpserver.WithMetrics(httpMetrics))
	api.Register(e.Echo)

	publicL, opsL, err := httpserver.ListenPublicAndOps(ctx, cfg.Addr, cfg.OpsAddr)
	if err != nil {
		return err
	}
	publicL = httpserver.LimitConnections(publicL, httpserver.ConnLimits{Total: cfg.MaxConns, PerPeer: cfg.MaxConnsPerAddr,
		IPv6PrefixBits: cfg.IPv6Prefix, Exempt: clientIP.Trusted, Refused: httpMetrics.ConnectionRefused})
	opsSrv := ops.New(logger, nil)
	// A new version of the token in Vault applies without a restart.
	if err := config.Follow(ctx, cfg.OpsToken, cfg.Vault.Client(), opsSrv.SetAdminToken); err != nil {
		return err
	}
	opsSrv.AddCheck("postgres", pool.Ping)
	opsSrv.AddCheck("signing_keys", keys.Err)
	logger.Info("token service listening", "addr", publicL.Addr().String(), "ops_addr", opsL.Addr().String(), "issuer", cfg.Issuer)

	opsSrv.AddVault(cfg.Vault.Client())
	return opsSrv.Serve(ctx, opsL, secrets.Alongside(cfg.Vault.Client(), func(ctx context.Context) error {
		go keys.Run(ctx)
		return httpserver.Serve(ctx, httpserver.NewServer(e, logger), publicL, cfg.ShutdownTimeout)
	}))
}
