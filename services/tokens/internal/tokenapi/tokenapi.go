// Package tokenapi serves the token service's HTTP API: the OAuth2
// client-credentials grant (RFC 6749 §4.4) at POST /oauth2/token, the
// public signing keys at GET /.well-known/jwks.json, and discovery
// documents (OpenID Connect Discovery and RFC 8414).
//
// Access tokens are JWTs in the RFC 9068 profile. Errors of the token
// endpoint use RFC 6749's JSON format (error, error_description), which
// OAuth clients expect, plus the request id.
package tokenapi

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/netrules"
	"github.com/switchyard/switchyard/libs/oauthclients"
	"github.com/switchyard/switchyard/libs/secrets"
	"github.com/switchyard/switchyard/libs/signingkeys"
)

// Clients is what the API needs from the client store.
type Clients interface {
	Authenticate(ctx context.Context, id, secret string) (oauthclients.Client, error)
}

// Keys supplies the current signing key ring.
type Keys interface {
	Ring() signingkeys.Ring
}

// Config configures the API.
type Config struct {
	// Issuer is the iss of every token and the base of the discovery URLs.
	Issuer string
	// Audience is the aud of every token.
	Audience string
	// TokenTTL is the lifetime of an access token.
	TokenTTL time.Duration
	// ClockSkew is added to TokenTTL to decide how long a replaced key stays
	// published.
	ClockSkew time.Duration
	// JWKSMaxAge is the Cache-Control max-age of the JWKS.
	JWKSMaxAge time.Duration
	// Limits rate-limits the token endpoint.
	Limits Limits
	// ClientIP finds the client's address behind trusted proxies (zero:
	// the TCP peer).
	ClientIP netrules.ClientIP
	// IPv6PrefixBits is the IPv6 prefix limited as one address (0: the
	// default /64; 128: each address).
	IPv6PrefixBits int
}

// Validate checks the configuration.
func (c Config) Validate() error {
	u, err := url.Parse(c.Issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("issuer %q must be an http(s) URL without query or fragment", c.Issuer)
	}
	if c.Audience == "" {
		return errors.New("audience is required")
	}
	if c.TokenTTL < time.Minute || c.TokenTTL > 24*time.Hour {
		return fmt.Errorf("token lifetime %s must be between 1m and 24h", c.TokenTTL)
	}
	if c.IPv6PrefixBits < 0 || c.IPv6PrefixBits > 128 {
		return fmt.Errorf("IPv6 prefix length %d must be between 0 and 128", c.IPv6PrefixBits)
	}
	return c.Limits.Validate()
}

// API is the token service's HTTP API.
type API struct {
	cfg     Config
	clients Clients
	keys    Keys
	logger  *slog.Logger
	metrics *Metrics
	limits  *limiters
	now     func() time.Time
}

// New returns the API. metrics may be nil.
func New(cfg Config, clients Clients, keys Keys, logger *slog.Logger, metrics *Metrics) (*API, error) {
	cfg.Issuer = strings.TrimRight(cfg.Issuer, "/")
	if cfg.IPv6PrefixBits == 0 {
		cfg.IPv6PrefixBits = netrules.DefaultIPv6PrefixBits
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid token API config: %w", err)
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	return &API{cfg: cfg, clients: clients, keys: keys, logger: logger, metrics: metrics,
		limits: newLimiters(cfg.Limits), now: time.Now}, nil
}

// Register adds the routes to e.
func (a *API) Register(e *echo.Echo) {
	e.POST("/oauth2/token", a.token)
	e.GET("/.well-known/jwks.json", a.jwks)
	e.GET("/.well-known/openid-configuration", a.discovery)
	e.GET("/.well-known/oauth-authorization-server", a.discovery)
}

// TokenResponse is a successful token endpoint answer (RFC 6749 §5.1).
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

// ErrorResponse is an RFC 6749 §5.2 error.
type ErrorResponse struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
	RequestID        string `json:"request_id,omitempty"`
}

// AccessClaims are the claims of an access token (RFC 9068 §2.2).
type AccessClaims struct {
	jwt.RegisteredClaims
	ClientID string `json:"client_id"`
	Scope    string `json:"scope,omitempty"`
}

// TokenType is the JWS typ of access tokens (RFC 9068 §2.1).
const TokenType = "at+jwt"

// maxFormBytes bounds the token request body.
const maxFormBytes = 8 << 10

type oauthError struct {
	status int
	code   string
	desc   string
	// reason is the audit/metrics label.
	reason     string
	retryAfter time.Duration
}

func fail(status int, code, desc, reason string, retryAfter ...time.Duration) *oauthError {
	e := &oauthError{status: status, code: code, desc: desc, reason: reason}
	if len(retryAfter) > 0 {
		e.retryAfter = retryAfter[0]
	}
	return e
}

func (e *oauthError) Error() string { return e.code + ": " + e.desc }

func (a *API) token(c echo.Context) error {
	req := c.Request()
	addr, _ := a.cfg.ClientIP.Resolve(req)
	ip := addr.String()
	addrKey := netrules.AddrKey(addr, a.cfg.IPv6PrefixBits)
	presented := ""
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")

	resp, clientID, scopes, oerr := a.issue(c, addrKey, &presented)
	if oerr != nil {
		a.metrics.refused.WithLabelValues(oerr.reason).Inc()
		a.logger.LogAttrs(req.Context(), slog.LevelWarn, "token request refused",
			slog.Bool("audit", true), slog.String("event", "token.refused"), slog.String("reason", oerr.reason),
			slog.String("client_id", truncate(presented, 64)), slog.String("ip", ip),
			slog.String("request_id", httpserver.RequestID(req.Context())))
		if oerr.status == http.StatusUnauthorized {
			h.Set("WWW-Authenticate", `Basic realm="switchyard", charset="UTF-8"`)
		}
		if oerr.retryAfter > 0 {
			h.Set("Retry-After", strconv.Itoa(int(oerr.retryAfter.Round(time.Second)/time.Second)+1))
		}
		return c.JSON(oerr.status, ErrorResponse{Error: oerr.code, ErrorDescription: oerr.desc,
			RequestID: httpserver.RequestID(req.Context())})
	}
	a.metrics.issued.Inc()
	httpserver.AddLogAttrs(c, slog.String("client_id", clientID))
	a.logger.LogAttrs(req.Context(), slog.LevelInfo, "token issued",
		slog.Bool("audit", true), slog.String("event", "token.issued"), slog.String("client_id", clientID),
		slog.String("scope", strings.Join(scopes, " ")), slog.String("ip", ip),
		slog.String("request_id", httpserver.RequestID(req.Context())))
	return c.JSON(http.StatusOK, resp)
}

func (a *API) issue(c echo.Context, addrKey string, presented *string) (TokenResponse, string, []string, *oauthError) {
	req := c.Request()
	if wait, ok := a.limits.allowIP(addrKey); !ok {
		a.metrics.rateLimited.WithLabelValues("ip").Inc()
		return TokenResponse{}, "", nil, fail(http.StatusTooManyRequests, "temporarily_unavailable",
			"too many token requests from this address", "rate_limited_ip", wait)
	}
	form, oerr := readForm(c)
	if oerr != nil {
		return TokenResponse{}, "", nil, oerr
	}
	id, secret, oerr := clientCredentials(req.Header.Get("Authorization"), form)
	*presented = id
	if oerr != nil {
		return TokenResponse{}, "", nil, oerr
	}
	if oauthclients.ValidateClientID(id) != nil {
		// No client can have this id: refused before any secret check or
		// bucket, so an id as long as the form allows costs neither a
		// check nor memory kept under its name.
		*presented = truncate(id, 64)
		return TokenResponse{}, "", nil, fail(http.StatusUnauthorized, "invalid_client", "client authentication failed", "malformed_client_id")
	}
	grant := form.Get("grant_type")
	switch {
	case grant == "":
		return TokenResponse{}, "", nil, fail(http.StatusBadRequest, "invalid_request", "grant_type is required", "invalid_request")
	case grant != "client_credentials":
		return TokenResponse{}, "", nil, fail(http.StatusBadRequest, "unsupported_grant_type",
			"only the client_credentials grant is supported", "unsupported_grant_type")
	}
	// Both buckets are looked at before the secret is hashed, so that a
	// limited request costs no secret check; the failure bucket is charged
	// by failures only and per address, the client's by tokens issued.
	if wait, spent := a.limits.failuresSpent(id, addrKey); spent {
		a.metrics.rateLimited.WithLabelValues("client_failures").Inc()
		return TokenResponse{}, "", nil, fail(http.StatusTooManyRequests, "temporarily_unavailable",
			"too many failed authentications for this client from this address", "rate_limited_failures", wait)
	}
	if wait, spent := a.limits.clientSpent(id); spent {
		a.metrics.rateLimited.WithLabelValues("client").Inc()
		return TokenResponse{}, "", nil, fail(http.StatusTooManyRequests, "temporarily_unavailable",
			"too many token requests for this client", "rate_limited_client", wait)
	}
	client, err := a.clients.Authenticate(req.Context(), id, secret)
	switch {
	case err == nil:
		a.limits.issued(id)
	case errors.Is(err, oauthclients.ErrBusy):
		return TokenResponse{}, "", nil, fail(http.StatusServiceUnavailable, "temporarily_unavailable",
			"too many token requests are being checked; retry later", "busy", time.Second)
	case errors.Is(err, oauthclients.ErrInvalidCredentials):
		a.limits.failed(id, addrKey)
		return TokenResponse{}, "", nil, fail(http.StatusUnauthorized, "invalid_client", "client authentication failed", "bad_credentials")
	case errors.Is(err, oauthclients.ErrDisabled):
		a.limits.failed(id, addrKey)
		return TokenResponse{}, "", nil, fail(http.StatusUnauthorized, "invalid_client", "client authentication failed", "client_disabled")
	case errors.Is(err, oauthclients.ErrWrongPepper):
		a.limits.failed(id, addrKey)
		// The caller learns nothing; the operator learns which pepper.
		a.logger.WarnContext(req.Context(), "client secret hashed with another pepper: the client needs a new secret", "client_id", id, "error", err)
		return TokenResponse{}, "", nil, fail(http.StatusUnauthorized, "invalid_client", "client authentication failed", "wrong_pepper")
	case errors.Is(err, oauthclients.ErrUnpeppered):
		a.limits.failed(id, addrKey)
		a.logger.WarnContext(req.Context(), "client secret hashed without the configured pepper: rotate the client's secret, or set SWITCHYARD_TOKENS_ACCEPT_UNPEPPERED=true while migrating", "client_id", id)
		return TokenResponse{}, "", nil, fail(http.StatusUnauthorized, "invalid_client", "client authentication failed", "unpeppered_hash")
	default:
		a.logger.ErrorContext(req.Context(), "authenticating client", "error", err)
		return TokenResponse{}, "", nil, fail(http.StatusServiceUnavailable, "temporarily_unavailable",
			"the client store is unavailable; retry later", "store_unavailable", time.Second)
	}
	scopes, oerr := grantedScopes(form, client.Scopes)
	if oerr != nil {
		return TokenResponse{}, "", nil, oerr
	}
	token, err := a.sign(client.ID, scopes)
	if err != nil {
		if !errors.Is(err, secrets.ErrUnavailable) { // an open breaker was logged once, when it opened
			a.logger.ErrorContext(req.Context(), "signing access token", "error", err)
		}
		return TokenResponse{}, "", nil, fail(http.StatusServiceUnavailable, "temporarily_unavailable",
			"no signing key is available; retry later", "no_signing_key", time.Second)
	}
	return TokenResponse{AccessToken: token, TokenType: "Bearer", ExpiresIn: int(a.cfg.TokenTTL / time.Second),
		Scope: strings.Join(scopes, " ")}, client.ID, scopes, nil
}

func readForm(c echo.Context) (url.Values, *oauthError) {
	req := c.Request()
	mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, fail(http.StatusBadRequest, "invalid_request",
			"send the parameters as application/x-www-form-urlencoded", "invalid_request")
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, maxFormBytes))
	if err != nil {
		return nil, fail(http.StatusBadRequest, "invalid_request", "the request body is unreadable or too large", "invalid_request")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fail(http.StatusBadRequest, "invalid_request", "the form is malformed", "invalid_request")
	}
	for k, v := range form {
		if len(v) > 1 {
			return nil, fail(http.StatusBadRequest, "invalid_request", "parameter "+truncate(k, 32)+" is repeated", "invalid_request")
		}
	}
	return form, nil
}

// clientCredentials extracts the client's id and secret from HTTP Basic
// (client_secret_basic, with RFC 6749 §2.3.1 form-encoding) or from the
// form (client_secret_post); using both is an error.
func clientCredentials(authorization string, form url.Values) (id, secret string, oerr *oauthError) {
	postID, postSecret := form.Get("client_id"), form.Get("client_secret")
	if authorization == "" {
		if postID == "" || postSecret == "" {
			return postID, "", fail(http.StatusUnauthorized, "invalid_client",
				"authenticate with HTTP Basic or client_id and client_secret", "no_credentials")
		}
		return postID, postSecret, nil
	}
	scheme, rest, _ := strings.Cut(authorization, " ")
	if !strings.EqualFold(scheme, "Basic") {
		return "", "", fail(http.StatusUnauthorized, "invalid_client", "only HTTP Basic client authentication is supported in the Authorization header", "bad_scheme")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return "", "", fail(http.StatusUnauthorized, "invalid_client", "malformed Basic credentials", "malformed_basic")
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", "", fail(http.StatusUnauthorized, "invalid_client", "malformed Basic credentials", "malformed_basic")
	}
	if id, err = url.QueryUnescape(user); err == nil {
		secret, err = url.QueryUnescape(pass)
	}
	if err != nil {
		return "", "", fail(http.StatusUnauthorized, "invalid_client", "malformed Basic credentials", "malformed_basic")
	}
	if postSecret != "" || (postID != "" && postID != id) {
		return id, "", fail(http.StatusBadRequest, "invalid_request", "use one client authentication method, not two", "invalid_request")
	}
	return id, secret, nil
}

// grantedScopes is the requested scope, which must be a subset of the
// client's, or all of the client's when none is requested.
func grantedScopes(form url.Values, allowed []string) ([]string, *oauthError) {
	requested, present := form["scope"]
	if !present {
		return allowed, nil
	}
	var out []string
	for _, s := range strings.Fields(requested[0]) {
		if !slices.Contains(allowed, s) {
			return nil, fail(http.StatusBadRequest, "invalid_scope",
				"scope "+strconv.Quote(truncate(s, 64))+" is not allowed for this client", "invalid_scope")
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return allowed, nil
	}
	slices.Sort(out)
	return out, nil
}

func (a *API) sign(clientID string, scopes []string) (string, error) {
	now := a.now()
	key, ok := a.keys.Ring().Active(now)
	if !ok {
		return "", errors.New("no signing key is active yet")
	}
	jti, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("generating jti: %w", err)
	}
	claims := AccessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: a.cfg.Issuer, Subject: clientID, Audience: jwt.ClaimStrings{a.cfg.Audience},
			ExpiresAt: jwt.NewNumericDate(now.Add(a.cfg.TokenTTL)), IssuedAt: jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now), ID: jti.String(),
		},
		ClientID: clientID, Scope: strings.Join(scopes, " "),
	}
	method, err := signingkeys.SigningMethod(key.Algorithm)
	if err != nil {
		return "", err
	}
	t := jwt.NewWithClaims(method, claims)
	t.Header["typ"] = TokenType
	t.Header["kid"] = key.ID
	s, err := t.SignedString(key.Signer)
	if err != nil {
		return "", fmt.Errorf("signing with key %s: %w", key.ID, err)
	}
	return s, nil
}

func (a *API) jwks(c echo.Context) error {
	a.metrics.jwksRequests.Inc()
	keys := a.keys.Ring().Published(a.now(), a.cfg.TokenTTL+a.cfg.ClockSkew)
	set := jwkset.JWKSMarshal{Keys: make([]jwkset.JWKMarshal, 0, len(keys))}
	for _, k := range keys {
		jwk, err := jwkset.NewJWKFromKey(k.Public(), jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{ALG: jwkset.ALG(k.Algorithm), KID: k.ID, USE: jwkset.UseSig},
		})
		if err != nil {
			return fmt.Errorf("encoding key %s as JWK: %w", k.ID, err)
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	c.Response().Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(int(a.cfg.JWKSMaxAge/time.Second)))
	c.Response().Header().Set(echo.HeaderContentType, "application/jwk-set+json")
	return c.JSON(http.StatusOK, set)
}

// Discovery is the OpenID Provider / OAuth authorization server metadata.
type Discovery struct {
	Issuer                            string   `json:"issuer"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	TokenSigningAlgValuesSupported    []string `json:"access_token_signing_alg_values_supported"`
}

func (a *API) discovery(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=300")
	return c.JSON(http.StatusOK, Discovery{
		Issuer: a.cfg.Issuer, TokenEndpoint: a.cfg.Issuer + "/oauth2/token", JWKSURI: a.cfg.Issuer + "/.well-known/jwks.json",
		GrantTypesSupported:               []string{"client_credentials"},
		TokenEndpointAuthMethodsSupported: []string{"client_secret_basic", "client_secret_post"},
		ResponseTypesSupported:            []string{"token"},
		SubjectTypesSupported:             []string{"public"},
		IDTokenSigningAlgValuesSupported:  signingkeys.Algorithms,
		TokenSigningAlgValuesSupported:    signingkeys.Algorithms,
	})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
