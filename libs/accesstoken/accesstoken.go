// Package accesstoken verifies OAuth2 access tokens that are JWTs (RFC
// 9068 and the common OIDC-issuer variants: this platform's token service,
// Azure AD, Keycloak) and turns them into an authn.Identity. It implements
// authn.Authenticator for the gateway and the admin APIs.
//
// Keys come from the issuer's JWKS (github.com/MicahParks/jwkset): found through OIDC discovery unless a JWKS URL is configured,
// refreshed periodically, refreshed on an unknown kid at most once per
// UnknownKIDInterval, and kept when the JWKS endpoint fails. Tokens are
// parsed and checked by github.com/golang-jwt/jwt/v5: an algorithm
// allow-list, iss, aud, exp and nbf required (with Leeway), typ checked,
// strict base64. Verified tokens are cached (bounded LRU, for at most
// CacheTTL and never past exp) so that a client's repeated calls cost a map
// lookup instead of a signature check; revocation by client (Revoked) is
// checked on every request, cached or not.
package accesstoken

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/switchyard/switchyard/libs/authn"
)

// Config configures a Verifier.
type Config struct {
	// Issuer is the expected iss, and the base of OIDC discovery.
	Issuer string
	// Audience is the expected aud (one of the token's audiences).
	Audience string
	// Audiences are more accepted audiences (any one is enough).
	Audiences []string
	// Name labels the issuer in logs and metrics (default: the issuer
	// URL).
	Name string
	// Mapping turns an external provider's claims into a Switchyard
	// identity (nil: client_id/azp/appid names the client, scope/scp/roles
	// carry its scopes, as this platform's own tokens do).
	Mapping *Mapping
	// JWKSURL, when set, skips discovery.
	JWKSURL string
	// Algorithms allowed in the token header (default ES256, EdDSA, RS256).
	// Symmetric algorithms and "none" are never accepted.
	Algorithms []string
	// Types are the accepted JWS typ values, compared case-insensitively
	// (default at+jwt and application/at+jwt, RFC 9068). Azure AD issues
	// typ JWT: configure it explicitly for such issuers.
	Types []string
	// RequireNotBefore makes nbf mandatory (default true through
	// DefaultConfig; Keycloak omits nbf, so switch it off there).
	RequireNotBefore bool
	// Leeway is the clock skew allowed on exp, nbf and iat (default 30s).
	Leeway time.Duration
	// RefreshInterval is how often the JWKS is re-fetched (default 5m).
	RefreshInterval time.Duration
	// UnknownKIDInterval is the least time between two refreshes caused
	// by a token with an unknown kid (default 30s).
	UnknownKIDInterval time.Duration
	// HTTPTimeout bounds discovery and JWKS requests (default 5s).
	HTTPTimeout time.Duration
	// CacheSize is how many verified tokens are remembered (default
	// 10000; negative disables the cache).
	CacheSize int
	// CacheTTL is the longest a verified token is trusted without being
	// verified again (default 1m), which bounds how long a key removed from
	// the JWKS keeps working for tokens already seen.
	CacheTTL time.Duration
	// Revoked, when set, is asked on every request whether a client id
	// has been disabled; an error means it cannot tell yet (the list was
	// never loaded), and the request is refused as unavailable (503), not
	// let through.
	Revoked func(clientID string) (bool, error)
	// HTTPClient fetches discovery and JWKS documents (default: a client
	// with HTTPTimeout).
	HTTPClient *http.Client
	// Registerer receives the verifier's metrics (nil: none).
	Registerer prometheus.Registerer
	// Logger logs key refresh failures (default slog.Default()).
	Logger *slog.Logger
}

// DefaultConfig returns a Config for issuer and audience with the defaults.
func DefaultConfig(issuer, audience string) Config {
	return Config{Issuer: issuer, Audience: audience, RequireNotBefore: true}
}

func (c *Config) setDefaults() {
	if len(c.Algorithms) == 0 {
		c.Algorithms = []string{"ES256", "EdDSA", "RS256"}
	}
	if len(c.Types) == 0 {
		c.Types = []string{"at+jwt", "application/at+jwt"}
	}
	if c.Leeway == 0 {
		c.Leeway = 30 * time.Second
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = 5 * time.Minute
	}
	if c.UnknownKIDInterval == 0 {
		c.UnknownKIDInterval = 30 * time.Second
	}
	if c.HTTPTimeout == 0 {
		c.HTTPTimeout = 5 * time.Second
	}
	if c.CacheSize == 0 {
		c.CacheSize = 10_000
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.Issuer == "" {
		return errors.New("issuer is required")
	}
	if c.Audience == "" && len(c.Audiences) == 0 {
		return errors.New("audience is required")
	}
	if c.Mapping != nil {
		if err := c.Mapping.validate(); err != nil {
			return err
		}
	}
	for _, u := range []string{c.Issuer, c.JWKSURL} {
		if u == "" {
			continue
		}
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return fmt.Errorf("%q is not an http(s) URL", u)
		}
	}
	for _, a := range c.Algorithms {
		if !slices.Contains([]string{"ES256", "ES384", "ES512", "EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, a) {
			return fmt.Errorf("algorithm %q is not allowed (asymmetric JWS algorithms only)", a)
		}
	}
	if c.Leeway < 0 || c.Leeway > 5*time.Minute {
		return fmt.Errorf("leeway %s must be between 0 and 5m", c.Leeway)
	}
	return nil
}

// Verifier verifies access tokens.
type Verifier struct {
	cfg     Config
	parser  *jwt.Parser
	keys    atomic.Pointer[jwkset.Storage]
	keysErr atomic.Pointer[error]
	cache   *lru.Cache[string, cached]
	metrics metrics
	now     func() time.Time
	started sync.Once
	ready   chan struct{}
}

type cached struct {
	id    authn.Identity
	until time.Time // min(exp+leeway, verified+CacheTTL)
	nbf   time.Time
}

// New returns a Verifier. It does not wait for the issuer: Run (which the
// caller starts in a goroutine) fetches discovery and keys, retrying, and
// until keys arrive
// Authenticate fails with authn.ErrUnavailable and Ready reports why.
func New(cfg Config) (*Verifier, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid access token config: %w", err)
	}
	// The issuer is compared without a trailing slash (Azure AD v1's
	// issuer has one, its discovery document too; this platform's has none).
	cfg.Issuer = strings.TrimRight(cfg.Issuer, "/")
	if cfg.Name == "" {
		cfg.Name = cfg.Issuer
	}
	audiences := cfg.Audiences
	if cfg.Audience != "" {
		audiences = append([]string{cfg.Audience}, audiences...)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(cfg.Algorithms), jwt.WithAudience(audiences...),
		jwt.WithLeeway(cfg.Leeway), jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithStrictDecoding(),
	}
	if cfg.RequireNotBefore {
		opts = append(opts, jwt.WithNotBeforeRequired())
	}
	reg := cfg.Registerer
	if reg != nil {
		// Each issuer's series carry its name, so that several verifiers
		// share one registry.
		reg = prometheus.WrapRegistererWith(prometheus.Labels{"issuer": cfg.Name}, reg)
	}
	v := &Verifier{cfg: cfg, parser: jwt.NewParser(opts...), metrics: newMetrics(reg), now: time.Now,
		ready: make(chan struct{})}
	if cfg.CacheSize > 0 {
		v.cache, _ = lru.New[string, cached](cfg.CacheSize) // size > 0
	}
	notYet := errors.New("the issuer's keys have not been fetched yet")
	v.keysErr.Store(&notYet)
	if v.cfg.HTTPClient == nil {
		v.cfg.HTTPClient = &http.Client{Timeout: cfg.HTTPTimeout}
	}
	v.cfg.HTTPClient = countingClient(v.cfg.HTTPClient, v.metrics)
	return v, nil
}

// Run fetches the keys (discovering the JWKS URL first if needed),
// retrying with backoff, and keeps them fresh until ctx ends (it blocks,
// as every background loop here does: start it with go or an errgroup).
// A second Run returns at once.
func (v *Verifier) Run(ctx context.Context) {
	first := false
	v.started.Do(func() { first = true })
	if !first {
		return
	}
	v.run(ctx)
	<-ctx.Done()
}

// WaitReady blocks until the first key fetch succeeded or ctx ends.
func (v *Verifier) WaitReady(ctx context.Context) error {
	select {
	case <-v.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the issuer's keys: %w (last error: %w)", ctx.Err(), *v.keysErr.Load())
	}
}

func (v *Verifier) run(ctx context.Context) {
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		store, err := v.connect(ctx)
		if err == nil {
			v.keys.Store(&store)
			var none error
			v.keysErr.Store(&none)
			close(v.ready)
			return
		}
		v.keysErr.Store(&err)
		v.cfg.Logger.Warn("fetching the issuer's keys failed; retrying", "issuer", v.cfg.Issuer, "error", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// connect discovers the JWKS URL if needed and makes the first fetch; the
// storage then refreshes by itself until ctx ends.
func (v *Verifier) connect(ctx context.Context) (jwkset.Storage, error) {
	jwksURL := v.cfg.JWKSURL
	if jwksURL == "" {
		var err error
		if jwksURL, err = v.discover(ctx); err != nil {
			return nil, err
		}
	}
	storage, err := jwkset.NewStorageFromHTTP(jwksURL, jwkset.HTTPClientStorageOptions{
		Client: v.cfg.HTTPClient, Ctx: ctx, HTTPTimeout: v.cfg.HTTPTimeout, RefreshInterval: v.cfg.RefreshInterval,
		RefreshErrorHandler: func(ctx context.Context, err error) {
			v.cfg.Logger.WarnContext(ctx, "refreshing the issuer's keys failed; keeping the cached keys", "jwks_url", jwksURL, "error", err)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("fetching JWKS %s: %w", jwksURL, err)
	}
	client, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs: map[string]jwkset.Storage{jwksURL: storage},
		// A token with an unknown kid may trigger a refresh at most once
		// per window; others fail at once instead of waiting for it.
		RefreshUnknownKID: rate.NewLimiter(rate.Every(v.cfg.UnknownKIDInterval), 1),
		RateLimitWaitMax:  time.Millisecond,
	})
	if err != nil {
		return nil, fmt.Errorf("creating JWKS client: %w", err)
	}
	return client, nil
}

// discover reads the issuer's OpenID configuration and returns jwks_uri.
func (v *Verifier) discover(ctx context.Context) (string, error) {
	u := v.cfg.Issuer + "/.well-known/openid-configuration"
	ctx, cancel := context.WithTimeout(ctx, v.cfg.HTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("discovery request: %w", err)
	}
	resp, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("discovery %s: %w", u, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("discovery %s: status %d", u, resp.StatusCode)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil {
		return "", fmt.Errorf("discovery %s: %w", u, err)
	}
	// OIDC Discovery §4.3: the issuer in the document must be the one asked.
	if strings.TrimRight(doc.Issuer, "/") != v.cfg.Issuer {
		return "", fmt.Errorf("discovery %s: issuer %q does not match the configured %q", u, doc.Issuer, v.cfg.Issuer)
	}
	if p, err := url.Parse(doc.JWKSURI); err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
		return "", fmt.Errorf("discovery %s: jwks_uri %q is not an http(s) URL", u, doc.JWKSURI)
	}
	return doc.JWKSURI, nil
}

// Ready is nil once the issuer's keys were fetched.
func (v *Verifier) Ready(context.Context) error { return *v.keysErr.Load() }

// Authenticate implements authn.Authenticator.
func (v *Verifier) Authenticate(r *http.Request) (authn.Identity, error) {
	token, err := authn.BearerToken(r.Header.Get("Authorization"))
	if err != nil {
		v.metrics.failures.WithLabelValues(string(authn.ReasonOf(err))).Inc()
		return authn.Identity{}, err
	}
	id, err := v.Verify(r.Context(), token)
	return id, v.countFailure(err)
}

// countFailure counts err, when not nil, by its reason, and returns it.
func (v *Verifier) countFailure(err error) error {
	if err != nil {
		v.metrics.failures.WithLabelValues(string(authn.ReasonOf(err))).Inc()
	}
	return err
}

// cached returns the identity of a token this verifier has verified and
// may still trust without verifying it again.
func (v *Verifier) cached(token string) (authn.Identity, bool) {
	if v.cache == nil {
		return authn.Identity{}, false
	}
	now := v.now()
	if c, ok := v.cache.Get(token); ok && now.Before(c.until) && !now.Add(v.cfg.Leeway).Before(c.nbf) {
		v.metrics.cacheHits.Inc()
		return c.id, true
	}
	return authn.Identity{}, false
}

// Verify checks a token and returns its identity.
func (v *Verifier) Verify(ctx context.Context, token string) (authn.Identity, error) {
	if id, ok := v.cached(token); ok {
		return v.checkRevoked(id)
	}
	return v.verifyUncached(ctx, token)
}

// verifyUncached is Verify for a token the cache does not hold (the caller
// has looked).
func (v *Verifier) verifyUncached(ctx context.Context, token string) (authn.Identity, error) {
	now := v.now()
	store := v.keys.Load()
	if store == nil {
		return authn.Identity{}, authn.Fail(authn.ErrUnavailable, "keys_unavailable", "%v", *v.keysErr.Load())
	}
	var (
		id    authn.Identity
		claim jwt.Claims
	)
	if v.cfg.Mapping == nil {
		var claims tokenClaims
		if _, err := v.parser.ParseWithClaims(token, &claims, v.keyfunc(ctx, *store)); err != nil {
			return authn.Identity{}, classify(err)
		}
		id = authn.Identity{ClientID: claims.clientID(), Scopes: claims.scopes(), Issuer: claims.Issuer}
		claim = claims
	} else {
		claims := jwt.MapClaims{}
		if _, err := v.parser.ParseWithClaims(token, claims, v.keyfunc(ctx, *store)); err != nil {
			return authn.Identity{}, classify(err)
		}
		var err error
		if id, err = v.cfg.Mapping.identity(claims); err != nil {
			return authn.Identity{}, err
		}
		claim = claims
	}
	if iss, _ := claim.GetIssuer(); strings.TrimRight(iss, "/") != v.cfg.Issuer {
		return authn.Identity{}, authn.Fail(authn.ErrUnauthenticated, "wrong_issuer", "the token's issuer %q is not %q", truncate(iss, 200), v.cfg.Issuer)
	}
	id.Issuer = v.cfg.Issuer
	if id.ClientID == "" {
		return authn.Identity{}, authn.Fail(authn.ErrUnauthenticated, "missing_claim", "the token names no client (client_id, azp or appid)")
	}
	exp, _ := claim.GetExpirationTime()
	nbfClaim, _ := claim.GetNotBefore()
	if v.cache != nil {
		until := now.Add(v.cfg.CacheTTL)
		if exp := exp.Add(v.cfg.Leeway); exp.Before(until) {
			until = exp
		}
		var nbf time.Time
		if nbfClaim != nil {
			nbf = nbfClaim.Time
		}
		v.cache.Add(token, cached{id: id, until: until, nbf: nbf})
	}
	return v.checkRevoked(id)
}

func (v *Verifier) checkRevoked(id authn.Identity) (authn.Identity, error) {
	if v.cfg.Revoked == nil {
		return id, nil
	}
	revoked, err := v.cfg.Revoked(id.ClientID)
	switch {
	case err != nil:
		return authn.Identity{}, authn.Fail(authn.ErrUnavailable, "disabled_clients_unknown", "%v", err)
	case revoked:
		return authn.Identity{}, authn.Fail(authn.ErrUnauthenticated, "client_disabled", "client %q is disabled", id.ClientID)
	}
	return id, nil
}

// forbiddenHeaders name keys or certificates by reference or by value;
// trusting them would let a token pick its own key. crit names extensions
// this verifier does not implement (RFC 7515 §4.1.11).
var forbiddenHeaders = []string{"jku", "x5u", "jwk", "x5c", "crit"}

type headerError struct {
	reason authn.Reason
	msg    string
}

func (e *headerError) Error() string { return e.msg }

func (v *Verifier) keyfunc(ctx context.Context, store jwkset.Storage) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		typ, _ := t.Header["typ"].(string)
		if !slices.ContainsFunc(v.cfg.Types, func(s string) bool { return strings.EqualFold(s, typ) }) {
			return nil, &headerError{"wrong_type", fmt.Sprintf("token typ %q is not accepted", truncate(typ, 32))}
		}
		for _, h := range forbiddenHeaders {
			if _, ok := t.Header[h]; ok {
				return nil, &headerError{"forbidden_header", "the token header carries " + h}
			}
		}
		kid, ok := t.Header["kid"].(string)
		if !ok || kid == "" || len(kid) > 256 {
			return nil, &headerError{"bad_kid", "the token header has no usable kid"}
		}
		// An unknown kid may refresh the JWKS, at most once per window;
		// otherwise the read fails at once.
		jwk, err := store.KeyRead(ctx, kid)
		if err != nil {
			return nil, &headerError{"unknown_kid", "no key has the token's kid"}
		}
		m := jwk.Marshal()
		if alg := t.Method.Alg(); m.ALG != "" && m.ALG.String() != alg {
			return nil, &headerError{"key_mismatch", fmt.Sprintf("key %s is for %s, not %s", truncate(kid, 64), m.ALG, alg)}
		}
		if m.USE != "" && m.USE != jwkset.UseSig {
			return nil, &headerError{"key_mismatch", "key " + truncate(kid, 64) + " is not a signing key"}
		}
		key := jwk.Key()
		if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
			key = pk.Public()
		}
		return key, nil
	}
}

// classify maps a golang-jwt error to an authentication failure reason.
func classify(err error) error {
	var he *headerError
	switch {
	case errors.As(err, &he):
		return authn.Fail(authn.ErrUnauthenticated, he.reason, "%s", he.msg)
	case errors.Is(err, jwt.ErrTokenMalformed):
		return authn.Fail(authn.ErrUnauthenticated, "malformed", "%v", err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid) && strings.Contains(err.Error(), "signing method"):
		// golang-jwt's algorithm allow-list refusal carries no error of its own.
		return authn.Fail(authn.ErrUnauthenticated, "bad_alg", "%v", err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return authn.Fail(authn.ErrUnauthenticated, "bad_signature", "%v", err)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return authn.Fail(authn.ErrUnauthenticated, "bad_alg", "%v", err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return authn.Fail(authn.ErrUnauthenticated, "expired", "%v", err)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return authn.Fail(authn.ErrUnauthenticated, "not_yet_valid", "%v", err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return authn.Fail(authn.ErrUnauthenticated, "wrong_issuer", "%v", err)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return authn.Fail(authn.ErrUnauthenticated, "wrong_audience", "%v", err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return authn.Fail(authn.ErrUnauthenticated, "missing_claim", "%v", err)
	default:
		return authn.Fail(authn.ErrUnauthenticated, "invalid", "%v", err)
	}
}

// tokenClaims reads the claims of RFC 9068 tokens and of the common
// issuers' variants.
type tokenClaims struct {
	jwt.RegisteredClaims
	ClientID string      `json:"client_id"` // RFC 9068
	AZP      string      `json:"azp"`       // Keycloak, Azure AD v2
	AppID    string      `json:"appid"`     // Azure AD v1
	Scope    stringsOrSp `json:"scope"`     // RFC 9068, Keycloak
	SCP      stringsOrSp `json:"scp"`       // Azure AD delegated
	Roles    stringsOrSp `json:"roles"`     // Azure AD application permissions
}

func (c tokenClaims) clientID() string {
	for _, s := range []string{c.ClientID, c.AZP, c.AppID} {
		if s != "" {
			return s
		}
	}
	return ""
}

func (c tokenClaims) scopes() []string {
	out := make([]string, 0, len(c.Scope)+len(c.SCP)+len(c.Roles))
	for _, list := range [][]string{c.Scope, c.SCP, c.Roles} {
		for _, s := range list {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// stringsOrSp is a claim that is a space-separated string or an array of
// strings.
type stringsOrSp []string

// UnmarshalJSON implements json.Unmarshaler.
func (s *stringsOrSp) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err == nil {
		*s = strings.Fields(str)
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return errors.New("a scope claim must be a string or an array of strings")
	}
	*s = list
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
