package e2e_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

// oidcProvider is an external identity provider on a real listener, as
// Azure AD (a tenant) and Keycloak (a realm) serve themselves: discovery
// under the issuer's path and a JWKS.
type oidcProvider struct {
	srv  *httptest.Server
	key  *rsa.PrivateKey
	kid  string
	path string
}

func newOIDCProvider(t *testing.T, path string) *oidcProvider {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	p := &oidcProvider{key: key, kid: rand.Text()[:12], path: path}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+path+"/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": p.issuer(), "jwks_uri": p.srv.URL + path + "/keys"})
	})
	mux.HandleFunc("GET "+path+"/keys", func(w http.ResponseWriter, _ *http.Request) {
		jwk, err := jwkset.NewJWKFromKey(&key.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
			ALG: jwkset.AlgRS256, KID: p.kid, USE: jwkset.UseSig}})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_ = json.NewEncoder(w).Encode(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}})
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *oidcProvider) issuer() string { return p.srv.URL + p.path }

// mint signs claims as the provider does (typ JWT, RS256, its kid).
func (p *oidcProvider) mint(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = p.kid
	tok.Header["typ"] = "JWT"
	s, err := tok.SignedString(p.key)
	require.NoError(t, err)
	return s
}

const (
	e2eTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	e2eApp    = "5e4e9a5d-7c3b-4a51-9d8e-2f1c0b6a7d10"
)

// externalIdentityProviders: a gateway trusting its own token service,
// an Azure AD tenant and a Keycloak realm (the issuers file) accepts a job
// from each, with the provider's application mapped to a Switchyard
// client; a token of an issuer not in the file is refused; disabling the
// mapped client refuses its provider's tokens.
func externalIdentityProviders(t *testing.T) {
	azure := newOIDCProvider(t, "/"+e2eTenant+"/v2.0")
	keycloak := newOIDCProvider(t, "/realms/shop")
	rogue := newOIDCProvider(t, "/realms/rogue")
	file := filepath.Join(t.TempDir(), "issuers.yaml")
	require.NoError(t, os.WriteFile(file, []byte(`
issuers:
  - name: contoso
    issuer: `+azure.issuer()+`
    audiences: [api://switchyard]
    client_claims: [azp, appid]
    scope_claims: [roles]
    required_claims: {tid: `+e2eTenant+`}
    clients:
      `+e2eApp+`: {client_id: contoso-app}
    role_scopes: {Jobs.Submit: [jobs:submit], Jobs.Read: [jobs:read]}
  - name: contoso-v1
    issuer: https://sts.windows.net/`+e2eTenant+`/
    jwks_url: `+azure.srv.URL+azure.path+`/keys
    audiences: [api://switchyard]
    client_claims: [appid]
    required_claims: {tid: `+e2eTenant+`, ver: "1.0"}
    clients:
      `+e2eApp+`: {client_id: contoso-app, scopes: [jobs:submit, jobs:read]}
  - name: shop-realm
    issuer: `+keycloak.issuer()+`
    audiences: [switchyard]
    client_claims: [azp]
    scope_claims: [realm_access.roles]
    role_scopes: {switchyard-submit: [jobs:submit, jobs:read]}
`), 0o600))
	p := startPlatformWith(t, platformOptions{
		services: []string{"tokens", "relay", "worker", "gateway"},
		env:      []string{"SWITCHYARD_AUTH_ISSUERS_FILE=" + file},
	})
	p.client("contoso-app", "jobs:submit", "jobs:read") // the mapped client, so an operator can disable it

	now := time.Now()
	azureToken := azure.mint(t, jwt.MapClaims{"iss": azure.issuer(), "aud": "api://switchyard", "iat": now.Unix(), "nbf": now.Unix(),
		"exp": now.Add(time.Hour).Unix(), "azp": e2eApp, "appid": e2eApp, "tid": e2eTenant, "ver": "2.0",
		"roles": []string{"Jobs.Submit", "Jobs.Read"}, "sub": "sp-object-id", "oid": "sp-object-id"})
	keycloakToken := keycloak.mint(t, jwt.MapClaims{"iss": keycloak.issuer(), "aud": []string{"switchyard", "account"},
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "azp": "shop-backend", "typ": "Bearer",
		"realm_access": map[string]any{"roles": []string{"switchyard-submit", "offline_access"}}, "scope": "profile email"})
	// Azure AD v1: another issuer host, with a trailing slash; appid.
	azureV1Token := azure.mint(t, jwt.MapClaims{"iss": "https://sts.windows.net/" + e2eTenant + "/", "aud": "api://switchyard",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(), "appid": e2eApp, "appidacr": "1",
		"tid": e2eTenant, "ver": "1.0", "roles": []string{"Jobs.Submit"}, "sub": "sp-object-id"})
	ownToken := "Bearer " + p.bearer("own")

	for name, c := range map[string]struct{ auth, client string }{
		"own token service": {ownToken, "own"},
		"Azure AD v2":       {"Bearer " + azureToken, "contoso-app"},
		"Azure AD v1":       {"Bearer " + azureV1Token, "contoso-app"},
		"Keycloak":          {"Bearer " + keycloakToken, "shop-backend"},
	} {
		r := p.call("POST", "/v1/jobs/text-stats", c.auth, `{"text":"from `+name+`"}`)
		require.Equal(t, http.StatusAccepted, r.status, "%s: %v", name, r.body)
		id := r.body["id"].(string)
		require.Equal(t, 1, p.count(`SELECT count(*) FROM jobs WHERE id = '`+id+`' AND client_id = '`+c.client+`'`), name)
		require.Eventually(t, func() bool {
			return p.call("GET", "/v1/jobs/"+id, c.auth, "").body["status"] == "succeeded"
		}, 30*time.Second, 50*time.Millisecond, name)
	}

	rogueToken := rogue.mint(t, jwt.MapClaims{"iss": rogue.issuer(), "aud": "switchyard", "iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(), "azp": "shop-backend", "realm_access": map[string]any{"roles": []string{"switchyard-submit"}}})
	r := p.call("POST", "/v1/jobs/text-stats", "Bearer "+rogueToken, `{"text":"x"}`)
	require.Equal(t, http.StatusUnauthorized, r.status, "an issuer not in the file: %v", r.body)
	forged := keycloak.mint(t, jwt.MapClaims{"iss": azure.issuer(), "aud": "api://switchyard", "iat": now.Unix(), "nbf": now.Unix(),
		"exp": now.Add(time.Hour).Unix(), "azp": e2eApp, "tid": e2eTenant, "roles": []string{"Jobs.Submit"}})
	r = p.call("POST", "/v1/jobs/text-stats", "Bearer "+forged, `{"text":"x"}`)
	require.Equal(t, http.StatusUnauthorized, r.status, "Azure's iss signed with Keycloak's key: %v", r.body)

	p.cli("clients", "disable", "contoso-app")
	require.Eventually(t, func() bool {
		return p.call("POST", "/v1/jobs/text-stats", "Bearer "+azureToken, `{"text":"x"}`).status == http.StatusUnauthorized
	}, 5*time.Second, 10*time.Millisecond, "the mapped client is disabled")
	r = p.call("POST", "/v1/jobs/text-stats", "Bearer "+keycloakToken, `{"text":"still"}`)
	require.Equal(t, http.StatusAccepted, r.status, "the other providers' callers are not affected: %v", r.body)
}
