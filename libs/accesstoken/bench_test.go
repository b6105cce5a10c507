package accesstoken_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/libs/accesstoken"
	"github.com/switchyard/switchyard/libs/apikeys"
	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/oauthclients"
	"github.com/switchyard/switchyard/libs/signingkeys"
)

// BenchmarkVerify is the cost of verifying one token: a signature check
// per algorithm (cache off), and a repeat of a token already verified.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range signingkeys.Algorithms {
		for _, cache := range []int{-1, 10_000} {
			name := alg + "/uncached"
			if cache > 0 {
				name = alg + "/cached"
			}
			b.Run(name, func(b *testing.B) {
				is := newIssuerB(b, alg)
				v := newVerifierB(b, is, cache)
				tok := sign(b, is.key(0), is.claims("bench", "jobs:read"), nil)
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := v.Verify(ctx, tok); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkAuthenticatedRoute serves a route that touches no database
// through the gateway's HTTP stack (request id, access log, error
// handling) without authentication, with a token and with an API key
// (each on a route that accepts both, as the gateway wraps it),
// alternating blocks of requests in the same run, and reports the rates
// and their ratios (apikey/auth: an API key against a cached token).
// Authentication here is the full path a caller takes: header parsing,
// the verified-token cache (or a signature check) or the key's HMAC and
// lookup in the in-memory set, the disabled-client check and the scope
// policy.
func BenchmarkAuthenticatedRoute(b *testing.B) {
	for _, cache := range []int{10_000, -1} {
		name := "cached"
		if cache < 0 {
			name = "uncached"
		}
		b.Run(name, func(b *testing.B) {
			is := newIssuerB(b, signingkeys.ES256)
			v := newVerifierB(b, is, cache)
			logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
			e := httpserver.NewEcho(logger)
			ok := func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]bool{"ok": true}) }
			e.GET("/open", ok)
			// Wrapped once, as the gateway's Mount does (Echo would apply route
			// middleware anew on every request).
			keys, apiKey := newKeySetB(b)
			either := authn.Credentials{Bearer: v, APIKey: keys}
			e.GET("/guarded", authn.Guard(either, logger, authn.Policy{Scopes: []string{"jobs:read"}})(ok))
			e.GET("/keyed", authn.Guard(either, logger, authn.Policy{Scopes: []string{"jobs:read"}})(ok))
			bearer := "Bearer " + sign(b, is.key(0), is.claims("bench", "jobs:read"), nil)

			serve := func(path string) {
				req := httptest.NewRequest(http.MethodGet, path, nil)
				if path == "/keyed" {
					req.Header.Set("X-API-Key", apiKey)
				} else {
					req.Header.Set("Authorization", bearer)
				}
				rec := httptest.NewRecorder()
				e.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
				}
			}
			const block = 100
			var open, guarded, keyed time.Duration
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				for range block {
					serve("/open")
				}
				open += time.Since(start)
				start = time.Now()
				for range block {
					serve("/guarded")
				}
				guarded += time.Since(start)
				start = time.Now()
				for range block {
					serve("/keyed")
				}
				keyed += time.Since(start)
			}
			n := float64(b.N * block)
			b.ReportMetric(n/open.Seconds(), "open_req/s")
			b.ReportMetric(n/guarded.Seconds(), "auth_req/s")
			b.ReportMetric(n/keyed.Seconds(), "apikey_req/s")
			b.ReportMetric(open.Seconds()/guarded.Seconds(), "auth/open")
			b.ReportMetric(open.Seconds()/keyed.Seconds(), "apikey/open")
			b.ReportMetric(guarded.Seconds()/keyed.Seconds(), "apikey/auth")
		})
	}
}

// newKeySetB returns a gateway's API key set over a new database holding
// one key of client "bench" (scope jobs:read), and that key.
func newKeySetB(b *testing.B) (*apikeys.Set, string) {
	b.Helper()
	ctx := context.Background()
	dbURL := stacktest.NewDatabase(b)
	pool := stacktest.NewPoolURL(b, dbURL)
	hasher, err := apikeys.NewHasher([]byte("benchmark-pepper-0123456789"))
	if err != nil {
		b.Fatal(err)
	}
	store := apikeys.NewStore(pool, hasher)
	clients, err := oauthclients.New(pool)
	if err != nil {
		b.Fatal(err)
	}
	c, _, err := clients.Create(ctx, oauthclients.NewClient{ID: "bench", Scopes: []string{"jobs:read"}})
	if err != nil {
		b.Fatal(err)
	}
	key, _, err := store.Create(ctx, apikeys.NewKey{ClientID: c.ID, ClientScopes: c.Scopes})
	if err != nil {
		b.Fatal(err)
	}
	set, err := apikeys.NewSet(store, database.NewDialer(database.Config{URL: dbURL}), apikeys.SetOptions{
		Revoked: func(string) (bool, error) { return false, nil }, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	b.Cleanup(cancel)
	go set.Run(runCtx)
	for deadline := time.Now().Add(10 * time.Second); set.Ready(ctx) != nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal(set.Ready(ctx))
		}
	}
	return set, key
}

func newIssuerB(b *testing.B, alg string) *issuer {
	b.Helper()
	is := &issuer{}
	is.addKey(b, alg)
	srv := newIssuerServer(is)
	b.Cleanup(srv.Close)
	return is
}

func newVerifierB(b *testing.B, is *issuer, cacheSize int) *accesstoken.Verifier {
	b.Helper()
	cfg := accesstoken.DefaultConfig(is.srv.URL, "switchyard")
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.CacheSize = cacheSize
	cfg.Revoked = func(string) (bool, error) { return false, nil }
	v, err := accesstoken.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	go v.Run(ctx)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := v.WaitReady(wctx); err != nil {
		b.Fatal(err)
	}
	return v
}

func TestMain(m *testing.M) { stacktest.Main(m) }
