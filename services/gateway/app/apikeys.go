package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/libs/apikeys"
	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/services/gateway/internal/routes"
)

// newAPIKeys returns the set of API keys when a route accepts them (nil
// when none does), or an error when one does and no pepper is configured.
func newAPIKeys(cfg Config, f *routes.File, pool *pgxpool.Pool, dbCfg database.Config,
	revoked func(string) (bool, error), clientIP func(*http.Request) string, logger *slog.Logger,
) (*apikeys.Set, error) {
	hasher, err := apiKeyHasher(cfg, f)
	if hasher == nil || err != nil {
		return nil, err
	}
	return apikeys.NewSet(apikeys.NewStore(pool, hasher), database.NewDialer(dbCfg), apikeys.SetOptions{
		Revoked: revoked, ClientIP: clientIP, Registerer: prometheus.DefaultRegisterer, Logger: logger,
	})
}

// apiKeyHasher checks, before anything is dialled, that a routes file
// whose routes accept API keys comes with a pepper to check them with;
// nil when no route accepts keys.
func apiKeyHasher(cfg Config, f *routes.File) (*apikeys.Hasher, error) {
	if !slices.ContainsFunc(f.Routes, func(r routes.Route) bool { return slices.Contains(r.Auth, authn.CredentialAPIKey) }) {
		return nil, nil
	}
	pepper := cfg.APIKeyPepper.Value()
	if pepper == "" {
		return nil, config.Invalid(errors.New("a route accepts api_key: set SWITCHYARD_API_KEY_PEPPER (the pepper 'switchyard api-keys' hashes keys with)"))
	}
	hasher, err := apikeys.NewHasher([]byte(pepper))
	if err != nil {
		return nil, config.Invalid(fmt.Errorf("SWITCHYARD_API_KEY_PEPPER: %w", err))
	}
	return hasher, nil
}

// credentialsFor is the authenticator of a route that accepts the
// credentials in accepts.
func credentialsFor(accepts []string, bearer authn.Authenticator, keys *apikeys.Set) authn.Authenticator {
	c := authn.Credentials{}
	if slices.Contains(accepts, authn.CredentialBearer) {
		c.Bearer = bearer
	}
	if slices.Contains(accepts, authn.CredentialAPIKey) && keys != nil {
		c.APIKey = keys
	}
	return c
}
