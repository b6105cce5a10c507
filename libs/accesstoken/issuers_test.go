package accesstoken_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/accesstoken"
	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/signingkeys"
)

// provider is an external OIDC provider on a real listener: discovery
// at <issuer path>/.well-known/openid-configuration and a JWKS, as Azure
// AD (per tenant) and Keycloak (per realm) serve them.
type provider struct {
	srv  *httptest.Server
	key  signingkeys.Key
	hang atomic.Bool // the JWKS endpoint never answers
}

func newProvider(t *testing.T, kid string, issuerPaths ...string) *provider {
	t.Helper()
	p := &provider{}
	k, err := signingkeys.Generate(signingkeys.RS256, time.Now(), time.Now())
	require.NoError(t, err)
	k.ID = kid
	p.key = k
	mux := http.NewServeMux()
	for _, path := range issuerPaths {
		mux.HandleFunc("GET "+path+"/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": p.srv.URL + path, "jwks_uri": p.srv.URL + "/keys"})
		})
	}
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		if p.hang.Load() {
			<-r.Context().Done()
			return
		}
		jwk, err := jwkset.NewJWKFromKey(p.key.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
			ALG: jwkset.ALG(p.key.Algorithm), KID: p.key.ID, USE: jwkset.UseSig}})
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

// mint signs claims with k as a provider does: typ JWT unless typ says.
func mint(t *testing.T, k signingkeys.Key, claims jwt.MapClaims, typ string) string {
	t.Helper()
	if typ == "" {
		typ = "JWT"
	}
	return sign(t, k, claims, map[string]any{"typ": typ})
}

func verifierFor(t *testing.T, cfg accesstoken.Config) *accesstoken.Verifier {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	v, err := accesstoken.New(cfg)
	require.NoError(t, err)
	return v
}

const (
	tenant      = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	otherTenant = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
	appV2       = "5e4e9a5d-7c3b-4a51-9d8e-2f1c0b6a7d10"
	appV1       = "0c1f2e3d-4b5a-6978-8a9b-0c1d2e3f4a5b"
)

func TestExternalIssuers(t *testing.T) {
	t.Parallel()
	own := newIssuer(t, signingkeys.ES256)
	// Azure AD and Keycloak publish a key with the same kid: a token must
	// still be verified only with its own issuer's key.
	azure := newProvider(t, "shared-kid", "/"+tenant+"/v2.0", "/"+otherTenant+"/v2.0")
	keycloak := newProvider(t, "shared-kid", "/realms/shop")
	down := newProvider(t, "down-kid", "/down")
	down.hang.Store(true)

	disabled := map[string]bool{}
	revoked := func(c string) (bool, error) { return disabled[c], nil }
	ownCfg := accesstoken.DefaultConfig(own.srv.URL, "switchyard")
	ownCfg.Revoked = revoked
	primary := verifierFor(t, ownCfg)

	azureV2 := accesstoken.Config{Issuer: azure.srv.URL + "/" + tenant + "/v2.0", Audiences: []string{"api://switchyard"},
		Algorithms: []string{"RS256"}, Types: []string{"JWT"}, RequireNotBefore: true, Revoked: revoked, Name: "azure-v2",
		Mapping: &accesstoken.Mapping{ClientClaims: []string{"azp", "appid"}, ScopeClaims: []string{"roles"},
			RequiredClaims: map[string]string{"tid": tenant, "ver": "2.0"},
			Clients:        map[string]accesstoken.ClientMapping{appV2: {ClientID: "partner-a"}},
			RoleScopes:     map[string][]string{"Jobs.Submit": {"jobs:submit"}, "Jobs.Read": {"jobs:read"}}}}
	// Azure AD v1's issuer is another host than its discovery document's,
	// with a trailing slash: configured with its JWKS URL.
	v1Issuer := "https://sts.windows.net/" + tenant + "/"
	azureV1 := accesstoken.Config{Issuer: v1Issuer, JWKSURL: azure.srv.URL + "/keys", Audiences: []string{"api://switchyard"},
		Algorithms: []string{"RS256"}, Types: []string{"JWT"}, RequireNotBefore: true, Revoked: revoked, Name: "azure-v1",
		Mapping: &accesstoken.Mapping{ClientClaims: []string{"appid"}, RequiredClaims: map[string]string{"tid": tenant, "ver": "1.0"},
			Clients: map[string]accesstoken.ClientMapping{appV1: {ClientID: "partner-b", Scopes: []string{"jobs:read"}}}}}
	kc := accesstoken.Config{Issuer: keycloak.srv.URL + "/realms/shop", Audience: "switchyard", Algorithms: []string{"RS256"},
		Types: []string{"JWT"}, Revoked: revoked, Name: "keycloak",
		Mapping: &accesstoken.Mapping{ClientClaims: []string{"azp"}, ScopeClaims: []string{"realm_access.roles", "scope"},
			RoleScopes: map[string][]string{"switchyard-submit": {"jobs:submit"}}}}
	downCfg := accesstoken.Config{Issuer: down.srv.URL + "/down", Audience: "switchyard", Algorithms: []string{"RS256"},
		Types: []string{"JWT"}, HTTPTimeout: 30 * time.Second, Name: "down"}

	verifiers := []*accesstoken.Verifier{verifierFor(t, azureV2), verifierFor(t, azureV1), verifierFor(t, kc), verifierFor(t, downCfg)}
	issuers, err := accesstoken.NewIssuers(primary, verifiers...)
	require.NoError(t, err)
	_, err = accesstoken.NewIssuers(primary, verifierFor(t, azureV2), verifierFor(t, azureV2))
	require.ErrorContains(t, err, "configured twice")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go issuers.Run(ctx)
	for _, v := range append([]*accesstoken.Verifier{primary}, verifiers[:3]...) {
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		require.NoError(t, v.WaitReady(wctx))
		wcancel()
	}
	require.NoError(t, issuers.Ready(ctx), "the primary issuer is ready")
	require.ErrorContains(t, issuers.External(ctx), "down", "a provider whose keys never came is reported")

	now := time.Now()
	azureClaims := func(iss, azp string, extra jwt.MapClaims) jwt.MapClaims {
		c := jwt.MapClaims{"iss": iss, "aud": "api://switchyard", "iat": now.Unix(), "nbf": now.Unix(),
			"exp": now.Add(time.Hour).Unix(), "azp": azp, "appid": azp, "tid": tenant, "ver": "2.0",
			"roles": []string{"Jobs.Submit", "Something.Else"}, "sub": "sub-" + azp, "oid": "oid-" + azp, "idp": iss}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	v2Issuer := azure.srv.URL + "/" + tenant + "/v2.0"
	kcClaims := jwt.MapClaims{"iss": keycloak.srv.URL + "/realms/shop", "aud": []string{"switchyard", "account"},
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "azp": "shop-backend", "typ": "Bearer",
		"realm_access": map[string]any{"roles": []string{"switchyard-submit", "offline_access"}},
		"scope":        "profile email", "clientId": "shop-backend", "preferred_username": "service-account-shop-backend"}

	auth := func(token string) (authn.Identity, error) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		return issuers.Authenticate(r)
	}
	for name, c := range map[string]struct {
		token  string
		client string
		scopes []string
	}{
		"own token": {sign(t, own.key(0), own.claims("shop", "jobs:read"), nil), "shop", []string{"jobs:read"}},
		"Azure AD v2 app token": {mint(t, azure.key, azureClaims(v2Issuer, appV2, nil), ""), "partner-a",
			[]string{"jobs:submit"}},
		"Azure AD v1 app token": {mint(t, azure.key, azureClaims(v1Issuer, appV1, jwt.MapClaims{"ver": "1.0", "azp": nil}), ""),
			"partner-b", []string{"jobs:read"}},
		"Keycloak client credentials": {mint(t, keycloak.key, kcClaims, ""), "shop-backend", []string{"jobs:submit"}},
	} {
		for range 2 { // verified, then from the cache
			id, err := auth(c.token)
			require.NoError(t, err, name)
			require.Equal(t, c.client, id.ClientID, name)
			require.Equal(t, c.scopes, id.Scopes, name)
		}
	}

	refused := func(name, token string, reason authn.Reason) {
		t.Helper()
		_, err := auth(token)
		require.ErrorIs(t, err, authn.ErrUnauthenticated, name)
		require.Equal(t, reason, authn.ReasonOf(err), "%s: %v", name, err)
	}
	// A token claiming Azure AD, signed with Keycloak's key of the same kid.
	refused("issuer A, key of issuer B with the same kid", mint(t, keycloak.key, azureClaims(v2Issuer, appV2, nil), ""), "bad_signature")
	refused("an iss no issuer has", mint(t, azure.key, azureClaims("https://evil.example.com/", appV2, nil), ""), "unknown_issuer")
	refused("the right provider, another tenant's issuer", mint(t, azure.key, azureClaims(azure.srv.URL+"/"+otherTenant+"/v2.0", appV2,
		jwt.MapClaims{"tid": otherTenant}), ""), "unknown_issuer")
	refused("the right issuer, another tenant's tid", mint(t, azure.key, azureClaims(v2Issuer, appV2, jwt.MapClaims{"tid": otherTenant}), ""),
		"claim_mismatch")
	refused("an application not mapped", mint(t, azure.key, azureClaims(v2Issuer, "00000000-0000-0000-0000-000000000000", nil), ""),
		"unmapped_client")
	refused("another audience", mint(t, azure.key, azureClaims(v2Issuer, appV2, jwt.MapClaims{"aud": "api://other"}), ""), "wrong_audience")
	refused("no iss at all", mint(t, azure.key, azureClaims("", appV2, nil), ""), "unknown_issuer")
	refused("at+jwt where JWT is configured", mint(t, azure.key, azureClaims(v2Issuer, appV2, nil), "at+jwt"), "wrong_type")

	disabled["partner-a"] = true
	refused("a valid token whose mapped client is disabled", mint(t, azure.key, azureClaims(v2Issuer, appV2, jwt.MapClaims{"jti": "x"}), ""),
		"client_disabled")

	// The provider that is down answers unavailable for its own tokens,
	// at once, and the others keep working.
	_, err = auth(mint(t, down.key, jwt.MapClaims{"iss": down.srv.URL + "/down", "aud": "switchyard", "iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(), "client_id": "x"}, ""))
	require.ErrorIs(t, err, authn.ErrUnavailable)
	_, err = auth(mint(t, keycloak.key, kcClaims, ""))
	require.NoError(t, err)
}

func TestParseIssuers(t *testing.T) {
	t.Parallel()
	cfgs, err := accesstoken.ParseIssuers([]byte(`
issuers:
  - name: contoso
    issuer: https://login.microsoftonline.com/` + tenant + `/v2.0
    audiences: [api://switchyard]
    client_claims: [azp, appid]
    scope_claims: [roles]
    required_claims: {tid: ` + tenant + `, ver: "2.0"}
    require_nbf: true
    clients:
      ` + appV2 + `: {client_id: partner-a, scopes: [jobs:submit]}
  - name: shop-realm
    issuer: https://sso.example.com/realms/shop
    audiences: [switchyard]
    client_claims: [azp]
    scope_claims: [realm_access.roles]
    role_scopes: {switchyard-submit: [jobs:submit]}
`))
	require.NoError(t, err)
	require.Len(t, cfgs, 2)
	require.Equal(t, []string{"RS256"}, cfgs[0].Algorithms)
	require.Equal(t, []string{"JWT"}, cfgs[0].Types)
	require.True(t, cfgs[0].RequireNotBefore)
	require.False(t, cfgs[1].RequireNotBefore)
	require.Equal(t, "partner-a", cfgs[0].Mapping.Clients[appV2].ClientID)
	require.Equal(t, []string{"realm_access.roles"}, cfgs[1].Mapping.ScopeClaims)

	for doc, want := range map[string]string{
		"issuers:\n  - {name: a, issuer: https://x, audiences: [s], scopes: [x]}\n":                                      "field scopes not found",
		"issuers:\n  - {name: a, issuer: https://x}\n":                                                                   "audiences: at least one is required",
		"issuers:\n  - {name: a, issuer: https://x, audiences: [s], algorithms: [HS256]}\n":                              `algorithm "HS256" is not allowed`,
		"issuers:\n  - {name: a, issuer: https://x, audiences: [s]}\n  - {name: a, issuer: https://y, audiences: [s]}\n": "used twice",
		"issuers:\n  - {issuer: https://x, audiences: [s]}\n":                                                            "name is required",
		"issuers:\n  - {name: a, issuer: ftp://x, audiences: [s]}\n":                                                     "is not an http(s) URL",
		"issuers:\n  - {name: a, issuer: https://x, audiences: [s], clients: {app: {}}}\n":                               "client_id are required",
	} {
		_, err := accesstoken.ParseIssuers([]byte(doc))
		require.ErrorContains(t, err, want, doc)
	}
}
