package tokenapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/accesstoken"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/oauthclients"
	"github.com/switchyard/switchyard/libs/signingkeys"
	"github.com/switchyard/switchyard/services/tokens/internal/tokenapi"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

type staticKeys struct{ ring signingkeys.Ring }

func (s staticKeys) Ring() signingkeys.Ring { return s.ring }

type env struct {
	srv    *httptest.Server
	store  *oauthclients.Store
	logs   *stacktest.Buffer
	keys   signingkeys.Ring
	id     string
	secret string
}

func newEnv(t *testing.T, limits tokenapi.Limits) *env {
	t.Helper()
	store, err := oauthclients.New(stacktest.NewPool(t))
	require.NoError(t, err)
	ring, _, err := signingkeys.Ring{}.Rotate(signingkeys.ES256, time.Now(), 0, time.Hour)
	require.NoError(t, err)
	logs := &stacktest.Buffer{}
	// Debug, the most a deployment can log: secrets stay out even then.
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := httpserver.NewEcho(logger)
	srv := httptest.NewUnstartedServer(e)
	srv.Start()
	t.Cleanup(srv.Close)
	api, err := tokenapi.New(tokenapi.Config{Issuer: srv.URL, Audience: "switchyard", TokenTTL: 15 * time.Minute,
		ClockSkew: time.Minute, JWKSMaxAge: time.Minute, Limits: limits}, store, staticKeys{ring}, logger, nil)
	require.NoError(t, err)
	api.Register(e.Echo)
	c, secret, err := store.Create(context.Background(), oauthclients.NewClient{ID: "billing", Scopes: []string{"jobs:read", "jobs:submit"}})
	require.NoError(t, err)
	return &env{srv: srv, store: store, logs: logs, keys: ring, id: c.ID, secret: secret}
}

var noLimits = tokenapi.Limits{Tracked: 100}

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

func (e *env) post(t *testing.T, form url.Values, basic string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/oauth2/token", strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic != "" {
		req.Header.Set("Authorization", basic)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var body map[string]any
	require.NoError(t, json.Unmarshal(raw, &body), string(raw))
	return answer{resp.StatusCode, resp.Header, body}
}

func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

func TestClientCredentialsGrant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, noLimits)
	grant := url.Values{"grant_type": {"client_credentials"}}

	a := e.post(t, grant, basic(e.id, e.secret))
	require.Equal(t, http.StatusOK, a.status, a.body)
	require.Equal(t, "no-store", a.header.Get("Cache-Control"))
	require.Equal(t, "Bearer", a.body["token_type"])
	require.EqualValues(t, 900, a.body["expires_in"])
	require.Equal(t, "jobs:read jobs:submit", a.body["scope"])
	token := a.body["access_token"].(string)

	// The token is an RFC 9068 JWT, verifiable through this service's own
	// discovery and JWKS.
	v, err := accesstoken.New(accesstoken.DefaultConfig(e.srv.URL, "switchyard"))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go v.Run(ctx)
	require.NoError(t, v.WaitReady(ctx))
	id, err := v.Verify(ctx, token)
	require.NoError(t, err)
	require.Equal(t, "billing", id.ClientID)
	require.Equal(t, []string{"jobs:read", "jobs:submit"}, id.Scopes)

	parsed, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	require.NoError(t, err)
	active, _ := e.keys.Active(time.Now())
	require.Equal(t, "at+jwt", parsed.Header["typ"])
	require.Equal(t, active.ID, parsed.Header["kid"])
	require.Equal(t, "ES256", parsed.Header["alg"])
	claims := parsed.Claims.(jwt.MapClaims)
	for _, c := range []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope"} {
		require.Contains(t, claims, c)
	}
	require.InDelta(t, 900, claims["exp"].(float64)-claims["iat"].(float64), 1)

	// client_secret_post, with scope narrowing.
	a = e.post(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {e.id}, "client_secret": {e.secret}, "scope": {"jobs:read"}}, "")
	require.Equal(t, http.StatusOK, a.status, a.body)
	require.Equal(t, "jobs:read", a.body["scope"])

	// Discovery and JWKS.
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/.well-known/openid-configuration", nil)
	d := do(t, req)
	require.Equal(t, e.srv.URL, d.body["issuer"])
	require.Equal(t, e.srv.URL+"/oauth2/token", d.body["token_endpoint"])
	req, _ = http.NewRequest(http.MethodGet, e.srv.URL+"/.well-known/jwks.json", nil)
	j := do(t, req)
	require.Equal(t, "public, max-age=60", j.header.Get("Cache-Control"))
	keys := j.body["keys"].([]any)
	require.Len(t, keys, 1)
	require.Equal(t, active.ID, keys[0].(map[string]any)["kid"])
	require.NotContains(t, keys[0], "d", "no private material in the JWKS")

	logs := e.logs.String()
	require.Contains(t, logs, `"event":"token.issued"`)
	requireNoSecrets(t, logs, e.secret, token, basic(e.id, e.secret))
}

// requireNoSecrets asserts that logs hold none of secrets, as they are
// or base64-encoded (an Authorization: Basic header carries the secret
// that way).
func requireNoSecrets(t *testing.T, logs string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		for _, form := range []string{s, base64.StdEncoding.EncodeToString([]byte(s)), base64.RawURLEncoding.EncodeToString([]byte(s))} {
			require.NotContains(t, logs, form, "a secret reached the logs")
		}
		if h, ok := strings.CutPrefix(s, "Basic "); ok {
			require.NotContains(t, logs, h, "an Authorization header reached the logs")
		}
	}
}

func TestTokenEndpointErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, noLimits)
	disabled, disabledSecret, err := e.store.Create(context.Background(), oauthclients.NewClient{ID: "gone"})
	require.NoError(t, err)
	_, err = e.store.SetDisabled(context.Background(), disabled.ID, true)
	require.NoError(t, err)
	cc := func(extra ...string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}}
		for i := 0; i+1 < len(extra); i += 2 {
			v.Set(extra[i], extra[i+1])
		}
		return v
	}
	tests := []struct {
		name   string
		form   url.Values
		basic  string
		status int
		code   string
	}{
		{"wrong secret", cc(), basic(e.id, e.secret+"x"), 401, "invalid_client"},
		{"unknown client", cc(), basic("nobody", e.secret), 401, "invalid_client"},
		{"id no client can have", cc(), basic(strings.Repeat("x", 65), e.secret), 401, "invalid_client"},
		{"id with a space", cc("client_id", "no body", "client_secret", "x"), "", 401, "invalid_client"},
		{"disabled client", cc(), basic(disabled.ID, disabledSecret), 401, "invalid_client"},
		{"no credentials", cc(), "", 401, "invalid_client"},
		{"secret only in the form", cc("client_secret", e.secret), "", 401, "invalid_client"},
		{"bearer instead of basic", cc(), "Bearer x", 401, "invalid_client"},
		{"malformed basic", cc(), "Basic !!!", 401, "invalid_client"},
		{"two methods", cc("client_id", e.id, "client_secret", e.secret), basic(e.id, e.secret), 400, "invalid_request"},
		{"no grant type", url.Values{}, basic(e.id, e.secret), 400, "invalid_request"},
		{"other grant", url.Values{"grant_type": {"password"}}, basic(e.id, e.secret), 400, "unsupported_grant_type"},
		{"scope not allowed", cc("scope", "jobs:read switchyard:admin"), basic(e.id, e.secret), 400, "invalid_scope"},
	}
	for _, tt := range tests {
		a := e.post(t, tt.form, tt.basic)
		require.Equal(t, tt.status, a.status, tt.name)
		require.Equal(t, tt.code, a.body["error"], tt.name)
		require.NotEmpty(t, a.body["error_description"], tt.name)
		require.NotContains(t, a.body, "access_token", tt.name)
		if tt.status == 401 {
			require.Contains(t, a.header.Get("WWW-Authenticate"), "Basic", tt.name)
		}
	}

	// Not a form, repeated parameters, oversized body.
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/oauth2/token", strings.NewReader(`{"grant_type":"client_credentials"}`))
	req.Header.Set("Content-Type", "application/json")
	require.Equal(t, "invalid_request", do(t, req).body["error"])
	req, _ = http.NewRequest(http.MethodPost, e.srv.URL+"/oauth2/token", strings.NewReader("grant_type=client_credentials&grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", basic(e.id, e.secret))
	require.Equal(t, "invalid_request", do(t, req).body["error"])
	req, _ = http.NewRequest(http.MethodPost, e.srv.URL+"/oauth2/token", strings.NewReader("grant_type=client_credentials&pad="+strings.Repeat("a", 64<<10)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	require.Equal(t, "invalid_request", do(t, req).body["error"])

	logs := e.logs.String()
	require.Contains(t, logs, `"event":"token.refused"`)
	require.Contains(t, logs, `"reason":"client_disabled"`)
	require.Contains(t, logs, `"reason":"malformed_client_id"`)
	requireNoSecrets(t, logs, e.secret, disabledSecret, basic(e.id, e.secret), basic(e.id, e.secret+"x"), basic(disabled.ID, disabledSecret))
}

func TestTokenEndpointRateLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tokenapi.Limits{PerIP: 0.001, PerIPBurst: 6, PerClient: 0.001, PerClientBurst: 3, Tracked: 100})
	grant := url.Values{"grant_type": {"client_credentials"}}
	for range 3 {
		require.Equal(t, http.StatusOK, e.post(t, grant, basic(e.id, e.secret)).status)
	}
	a := e.post(t, grant, basic(e.id, e.secret))
	require.Equal(t, http.StatusTooManyRequests, a.status, "per client")
	require.NotEmpty(t, a.header.Get("Retry-After"))
	// Another client from the same address still has the IP's budget...
	for range 2 {
		require.Equal(t, http.StatusUnauthorized, e.post(t, grant, basic("other", "wrong")).status)
	}
	// ...until it is spent.
	a = e.post(t, grant, basic("third", "wrong"))
	require.Equal(t, http.StatusTooManyRequests, a.status, "per IP")
	require.Contains(t, e.logs.String(), `"reason":"rate_limited_ip"`)
}

// TestNoSigningKeyIsA503WithRetryAfter: when no key can sign (the ring is
// empty, or Vault's transit engine, which holds it, is down) a token
// request is a 503 temporarily_unavailable that says when to come back,
// never a 500 and never a token.
func TestNoSigningKeyIsA503WithRetryAfter(t *testing.T) {
	t.Parallel()
	store, err := oauthclients.New(stacktest.NewPool(t))
	require.NoError(t, err)
	e := httpserver.NewEcho(slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	api, err := tokenapi.New(tokenapi.Config{Issuer: srv.URL, Audience: "switchyard", TokenTTL: 15 * time.Minute,
		ClockSkew: time.Minute, JWKSMaxAge: time.Minute, Limits: noLimits}, store, staticKeys{signingkeys.Ring{}}, slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	api.Register(e.Echo)
	c, secret, err := store.Create(context.Background(), oauthclients.NewClient{ID: "billing", Scopes: []string{"jobs:read"}})
	require.NoError(t, err)
	env := &env{srv: srv, store: store, id: c.ID, secret: secret}
	a := env.post(t, url.Values{"grant_type": {"client_credentials"}}, basic(c.ID, secret))
	require.Equal(t, http.StatusServiceUnavailable, a.status)
	require.Equal(t, "temporarily_unavailable", a.body["error"])
	require.NotEmpty(t, a.header.Get("Retry-After"))
	require.NotContains(t, a.body, "access_token")
}
