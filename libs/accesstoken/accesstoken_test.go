package accesstoken_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// issuer is a minimal OIDC issuer on a real HTTP listener: discovery and a
// JWKS built from a key ring, with a hit counter and an off switch.
type issuer struct {
	srv      *httptest.Server
	mu       sync.Mutex
	keys     []signingkeys.Key
	jwksHits atomic.Int64
	down     atomic.Bool
}

func newIssuer(t *testing.T, algs ...string) *issuer {
	t.Helper()
	is := &issuer{}
	for _, alg := range algs {
		is.addKey(t, alg)
	}
	srv := newIssuerServer(is)
	t.Cleanup(srv.Close)
	return is
}

// newIssuerServer serves is's discovery and JWKS on a real listener.
func newIssuerServer(is *issuer) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": is.srv.URL, "jwks_uri": is.srv.URL + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		is.jwksHits.Add(1)
		if is.down.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		is.mu.Lock()
		defer is.mu.Unlock()
		set := jwkset.JWKSMarshal{}
		for _, k := range is.keys {
			jwk, err := jwkset.NewJWKFromKey(k.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
				ALG: jwkset.ALG(k.Algorithm), KID: k.ID, USE: jwkset.UseSig}})
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			set.Keys = append(set.Keys, jwk.Marshal())
		}
		_ = json.NewEncoder(w).Encode(set)
	})
	is.srv = httptest.NewServer(mux)
	return is.srv
}

func (is *issuer) addKey(t testing.TB, alg string) signingkeys.Key {
	t.Helper()
	k, err := signingkeys.Generate(alg, time.Now(), time.Now())
	require.NoError(t, err)
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys = append(is.keys, k)
	return k
}

func (is *issuer) key(i int) signingkeys.Key {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.keys[i]
}

// claims returns valid claims for client.
func (is *issuer) claims(client string, scopes ...string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": is.srv.URL, "sub": client, "aud": "switchyard", "client_id": client, "scope": strings.Join(scopes, " "),
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "jti": rand.Text(),
	}
}

func sign(t testing.TB, k signingkeys.Key, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(k.Algorithm), claims)
	tok.Header["kid"] = k.ID
	tok.Header["typ"] = "at+jwt"
	for h, v := range header {
		if v == nil {
			delete(tok.Header, h)
		} else {
			tok.Header[h] = v
		}
	}
	s, err := tok.SignedString(k.Signer)
	require.NoError(t, err)
	return s
}

func newVerifier(t *testing.T, is *issuer, mod func(*accesstoken.Config)) *accesstoken.Verifier {
	t.Helper()
	cfg := accesstoken.DefaultConfig(is.srv.URL, "switchyard")
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if mod != nil {
		mod(&cfg)
	}
	v, err := accesstoken.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go v.Run(ctx)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	require.NoError(t, v.WaitReady(wctx))
	return v
}

func TestVerifiesAndRefusesWithReasons(t *testing.T) {
	t.Parallel()
	is := newIssuer(t, signingkeys.ES256, signingkeys.EdDSA, signingkeys.RS256)
	v := newVerifier(t, is, nil)
	ctx := context.Background()
	es, ed := is.key(0), is.key(1)

	for i := range 3 {
		id, err := v.Verify(ctx, sign(t, is.key(i), is.claims("billing", "jobs:submit", "jobs:read"), nil))
		require.NoError(t, err, is.key(i).Algorithm)
		require.Equal(t, authn.Identity{ClientID: "billing", Scopes: []string{"jobs:submit", "jobs:read"}, Issuer: is.srv.URL}, id)
	}

	with := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := is.claims("billing")
		mod(c)
		return c
	}
	stranger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	impostor := signingkeys.Key{ID: es.ID, Algorithm: signingkeys.ES256, Signer: stranger}
	good := sign(t, es, is.claims("billing"), nil)
	parts := strings.Split(good, ".")
	tamperedPayload := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"`+is.srv.URL+`","aud":"switchyard","client_id":"admin","exp":9999999999,"nbf":1,"iat":1}`)) + "." + parts[2]
	sig := []byte(parts[2])
	if sig[10] == 'A' {
		sig[10] = 'B'
	} else {
		sig[10] = 'A'
	}
	tamperedSig := parts[0] + "." + parts[1] + "." + string(sig)

	tests := []struct {
		name   string
		token  string
		reason authn.Reason
	}{
		{"expired", sign(t, es, with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), nil), "expired"},
		{"nbf in the future", sign(t, es, with(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(5 * time.Minute).Unix() }), nil), "not_yet_valid"},
		{"missing exp", sign(t, es, with(func(c jwt.MapClaims) { delete(c, "exp") }), nil), "missing_claim"},
		{"missing nbf", sign(t, es, with(func(c jwt.MapClaims) { delete(c, "nbf") }), nil), "missing_claim"},
		{"wrong iss", sign(t, es, with(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }), nil), "wrong_issuer"},
		{"wrong aud", sign(t, es, with(func(c jwt.MapClaims) { c["aud"] = "other" }), nil), "wrong_audience"},
		{"no client", sign(t, es, with(func(c jwt.MapClaims) { delete(c, "client_id") }), nil), "missing_claim"},
		{"wrong typ", sign(t, es, is.claims("billing"), map[string]any{"typ": "JWT"}), "wrong_type"},
		{"no typ", sign(t, es, is.claims("billing"), map[string]any{"typ": nil}), "wrong_type"},
		{"no kid", sign(t, es, is.claims("billing"), map[string]any{"kid": nil}), "bad_kid"},
		{"unknown kid", sign(t, es, is.claims("billing"), map[string]any{"kid": "nope"}), "unknown_kid"},
		{"kid with path and SQL", sign(t, es, is.claims("billing"), map[string]any{"kid": "../../etc/passwd' OR 1=1--"}), "unknown_kid"},
		{"jku elsewhere", sign(t, es, is.claims("billing"), map[string]any{"jku": "https://evil.example/jwks"}), "forbidden_header"},
		{"x5u elsewhere", sign(t, es, is.claims("billing"), map[string]any{"x5u": "https://evil.example/cert"}), "forbidden_header"},
		{"crit", sign(t, es, is.claims("billing"), map[string]any{"crit": []string{"exp"}}), "forbidden_header"},
		{"alg of another key", sign(t, ed, is.claims("billing"), map[string]any{"kid": es.ID}), "key_mismatch"},
		{"different key, same kid", sign(t, impostor, is.claims("billing"), nil), "bad_signature"},
		{"tampered payload", tamperedPayload, "bad_signature"},
		{"tampered signature", tamperedSig, "bad_signature"},
		{"garbage", "a.b.c", "malformed"},
	}
	for _, tt := range tests {
		_, err := v.Verify(ctx, tt.token)
		require.ErrorIs(t, err, authn.ErrUnauthenticated, tt.name)
		require.Equal(t, tt.reason, authn.ReasonOf(err), "%s: %v", tt.name, err)
	}

	// alg none and HS256 keyed with the public key bytes.
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, is.claims("billing")).SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)
	_, err = v.Verify(ctx, none)
	require.ErrorIs(t, err, authn.ErrUnauthenticated)
	pubJSON, err := json.Marshal(es.Public())
	require.NoError(t, err)
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, is.claims("billing"))
	hs.Header["kid"], hs.Header["typ"] = es.ID, "at+jwt"
	hsToken, err := hs.SignedString(pubJSON)
	require.NoError(t, err)
	_, err = v.Verify(ctx, hsToken)
	require.ErrorIs(t, err, authn.ErrUnauthenticated)
	require.Equal(t, authn.Reason("bad_alg"), authn.ReasonOf(err))
}

// TestUnknownKidsRefreshAtMostOncePerWindow: a flood of random kids costs
// one JWKS fetch per window, fails fast, and valid tokens keep working.
func TestUnknownKidsRefreshAtMostOncePerWindow(t *testing.T) {
	t.Parallel()
	is := newIssuer(t, signingkeys.ES256)
	v := newVerifier(t, is, func(c *accesstoken.Config) { c.UnknownKIDInterval = time.Hour; c.CacheSize = -1 })
	before := is.jwksHits.Load()
	valid := sign(t, is.key(0), is.claims("billing"), nil)
	ctx := context.Background()
	for range 1000 {
		_, err := v.Verify(ctx, sign(t, is.key(0), is.claims("billing"), map[string]any{"kid": rand.Text()}))
		require.Equal(t, authn.Reason("unknown_kid"), authn.ReasonOf(err))
		_, err = v.Verify(ctx, valid)
		require.NoError(t, err)
	}
	require.LessOrEqual(t, is.jwksHits.Load()-before, int64(1))
}

// TestKeepsCachedKeysWhenTheIssuerIsDown and picks up a new key once it
// is back.
func TestKeepsCachedKeysWhenTheIssuerIsDownAndLearnsNewKeys(t *testing.T) {
	t.Parallel()
	is := newIssuer(t, signingkeys.ES256)
	v := newVerifier(t, is, func(c *accesstoken.Config) {
		c.RefreshInterval = 50 * time.Millisecond
		c.UnknownKIDInterval = 50 * time.Millisecond
		c.CacheSize = -1
	})
	ctx := context.Background()
	is.down.Store(true)
	hits := is.jwksHits.Load()
	require.Eventually(t, func() bool { return is.jwksHits.Load() > hits+2 }, 10*time.Second, 10*time.Millisecond, "refreshes keep trying")
	_, err := v.Verify(ctx, sign(t, is.key(0), is.claims("billing"), nil))
	require.NoError(t, err, "cached keys still verify while the JWKS endpoint fails")

	is.down.Store(false)
	fresh := is.addKey(t, signingkeys.EdDSA)
	require.Eventually(t, func() bool {
		_, err := v.Verify(ctx, sign(t, fresh, is.claims("billing"), nil))
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "a new key is learnt without restart")
}

func TestRevokedClientsAreRefusedEvenFromTheCache(t *testing.T) {
	t.Parallel()
	is := newIssuer(t, signingkeys.ES256)
	var revoked atomic.Bool
	v := newVerifier(t, is, func(c *accesstoken.Config) {
		c.Revoked = func(id string) (bool, error) { return id == "billing" && revoked.Load(), nil }
	})
	tok := sign(t, is.key(0), is.claims("billing"), nil)
	_, err := v.Verify(context.Background(), tok)
	require.NoError(t, err)
	revoked.Store(true)
	_, err = v.Verify(context.Background(), tok)
	require.Equal(t, authn.Reason("client_disabled"), authn.ReasonOf(err))
}

func TestUnavailableUntilKeysArrive(t *testing.T) {
	t.Parallel()
	v, err := accesstoken.New(accesstoken.DefaultConfig("http://127.0.0.1:1", "switchyard"))
	require.NoError(t, err)
	_, err = v.Verify(context.Background(), "a.b.c")
	require.ErrorIs(t, err, authn.ErrUnavailable)
	require.Error(t, v.Ready(context.Background()))
}

func TestConfigRefusesSymmetricAlgorithms(t *testing.T) {
	t.Parallel()
	cfg := accesstoken.DefaultConfig("https://issuer.example", "switchyard")
	cfg.Algorithms = []string{"HS256"}
	_, err := accesstoken.New(cfg)
	require.ErrorContains(t, err, "HS256")
}
