package accesstoken

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Settings are the access-token settings every service with an API reads
// from its environment (the gateway, the replay service's admin API). The
// conf tags name the variables.
type Settings struct {
	Issuer             string        `conf:"required,env:SWITCHYARD_AUTH_ISSUER,help:OIDC issuer URL (this platform's token service / Azure AD / Keycloak...)"`
	Audience           string        `conf:"default:switchyard,env:SWITCHYARD_AUTH_AUDIENCE,help:required aud of access tokens"`
	JWKSURL            string        `conf:"env:SWITCHYARD_AUTH_JWKS_URL,help:JWKS URL (default: from the issuer's discovery document)"`
	Algorithms         []string      `conf:"default:ES256;EdDSA;RS256,env:SWITCHYARD_AUTH_ALGORITHMS,help:accepted signing algorithms (;-separated)"`
	TokenTypes         []string      `conf:"default:at+jwt;application/at+jwt,env:SWITCHYARD_AUTH_TOKEN_TYPES,help:accepted JWS typ values (;-separated; Azure AD needs JWT)"`
	RequireNotBefore   bool          `conf:"default:true,env:SWITCHYARD_AUTH_REQUIRE_NBF,help:refuse tokens without nbf (Keycloak omits it: set false)"`
	Leeway             time.Duration `conf:"default:30s,env:SWITCHYARD_AUTH_LEEWAY,help:clock skew allowed on exp/nbf/iat"`
	JWKSRefresh        time.Duration `conf:"default:5m,env:SWITCHYARD_AUTH_JWKS_REFRESH,help:how often the JWKS is re-fetched"`
	UnknownKIDInterval time.Duration `conf:"default:30s,env:SWITCHYARD_AUTH_UNKNOWN_KID_INTERVAL,help:least time between JWKS refreshes caused by unknown kids"`
	CacheSize          int           `conf:"default:10000,env:SWITCHYARD_AUTH_CACHE_SIZE,help:verified tokens remembered (-1: no cache)"`
	CacheTTL           time.Duration `conf:"default:1m,env:SWITCHYARD_AUTH_CACHE_TTL,help:longest a verified token is trusted before it is verified again"`
	DisabledPoll       time.Duration `conf:"default:10s,env:SWITCHYARD_AUTH_DISABLED_CLIENTS_POLL,help:poll interval for disabled clients (NOTIFY makes it immediate)"`
	IssuersFile        string        `conf:"env:SWITCHYARD_AUTH_ISSUERS_FILE,help:YAML file of external OIDC issuers trusted besides SWITCHYARD_AUTH_ISSUER (Azure AD / Keycloak...: audiences / claim mapping / clients; empty: none)"`
}

// VerifierConfig returns the verifier configuration of s; revoked reports
// disabled clients (oauthclients.DisabledSet.Revoked).
func (s Settings) VerifierConfig(revoked func(clientID string) (bool, error), reg prometheus.Registerer, logger *slog.Logger) Config {
	return Config{
		Name: PrimaryName, Issuer: s.Issuer, Audience: s.Audience, JWKSURL: s.JWKSURL,
		Algorithms: s.Algorithms, Types: s.TokenTypes, RequireNotBefore: s.RequireNotBefore,
		Leeway: s.Leeway, RefreshInterval: s.JWKSRefresh, UnknownKIDInterval: s.UnknownKIDInterval,
		CacheSize: s.CacheSize, CacheTTL: s.CacheTTL, Revoked: revoked,
		Registerer: reg, Logger: logger,
	}
}

// PrimaryName is the issuer label of the platform's own token service in
// logs and metrics.
const PrimaryName = "switchyard"

// NewIssuers returns the verifier of s's issuer and of every issuer in
// its issuers file, as one authenticator; revoked reports disabled
// clients for all of them.
func (s Settings) NewIssuers(revoked func(clientID string) (bool, error), reg prometheus.Registerer, logger *slog.Logger) (*Issuers, error) {
	primary, err := New(s.VerifierConfig(revoked, reg, logger))
	if err != nil {
		return nil, err
	}
	externals, err := LoadIssuersFile(s.IssuersFile)
	if err != nil {
		return nil, err
	}
	others := make([]*Verifier, 0, len(externals))
	for _, cfg := range externals {
		if cfg.Name == PrimaryName {
			return nil, fmt.Errorf("issuer name %q is the platform's own: choose another", PrimaryName)
		}
		cfg.Revoked, cfg.Registerer, cfg.Logger = revoked, reg, logger.With("issuer", cfg.Name)
		cfg.Leeway, cfg.RefreshInterval, cfg.CacheSize, cfg.CacheTTL = s.Leeway, s.JWKSRefresh, s.CacheSize, s.CacheTTL
		v, err := New(cfg)
		if err != nil {
			return nil, fmt.Errorf("issuer %s: %w", cfg.Name, err)
		}
		others = append(others, v)
	}
	return NewIssuers(primary, others...)
}
