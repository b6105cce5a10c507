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
	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/httpserver"
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
// handling) with and without authentication, alternating blocks of
// requests in the same run, and reports both rates and their ratio.
// Authentication here is the full path a caller takes: Authorization
// header parsing, the verified-token cache (or a signature check), the
// disabled-client check and the scope policy.
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
			e.GET("/guarded", authn.Guard(v, logger, authn.Policy{Scopes: []string{"jobs:read"}})(ok))
			bearer := "Bearer " + sign(b, is.key(0), is.claims("bench", "jobs:read"), nil)

			serve := func(path string) {
				req := httptest.NewRequest(http.MethodGet, path, nil)
				req.Header.Set("Authorization", bearer)
				rec := httptest.NewRecorder()
				e.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
				}
			}
			const block = 100
			var open, guarded time.Duration
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
			}
			n := float64(b.N * block)
			b.ReportMetric(n/open.Seconds(), "open_req/s")
			b.ReportMetric(n/guarded.Seconds(), "auth_req/s")
			b.ReportMetric(open.Seconds()/guarded.Seconds(), "auth/open")
		})
	}
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
