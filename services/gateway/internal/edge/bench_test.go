package edge_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/geoip"
	"github.com/switchyard/switchyard/libs/geoip/geoiptest"
	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/jobcatalog"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/ratelimit"
	"github.com/switchyard/switchyard/libs/synchandler"
	"github.com/switchyard/switchyard/services/gateway/app"
	"github.com/switchyard/switchyard/services/gateway/internal/edge"
	"github.com/switchyard/switchyard/services/gateway/internal/jobsapi"
	"github.com/switchyard/switchyard/services/gateway/internal/quota"
	"github.com/switchyard/switchyard/services/gateway/internal/routes"
	"github.com/switchyard/switchyard/services/gateway/internal/syncroute"
)

// protectedRoutes turns every protection on, with limits far above what
// the benchmark sends, so that every request passes every check.
const protectedRoutes = `
edge:
  ip: {deny: ["192.0.2.0/24", "2001:db8:bad::/48"]}
  countries: {deny: [KP]}
  rate_limit:
    per_client: {rate: 1000000, burst: 1000000}
    per_ip: {rate: 1000000, burst: 1000000}
  quota: {daily: 1000000000, monthly: 1000000000}
routes:
  - name: accept
    method: POST
    path: /v1/jobs/text-stats
    mode: async
    job_type: text-stats
    scopes: [s]
    edge:
      ip: {allow: ["10.0.0.0/8", "198.51.100.0/24"]}
      countries: {allow: [DE]}
      rate_limit: {per_client: {rate: 1000000, burst: 1000000}}
      content_types: [application/json]
      cors: {allow_origins: ["https://app.example.com"]}
  - name: hello
    method: POST
    path: /v1/hello
    mode: sync
    handler: hello
    scopes: [s]
    edge:
      ip: {allow: ["10.0.0.0/8", "198.51.100.0/24"]}
      countries: {allow: [DE]}
      rate_limit: {per_client: {rate: 1000000, burst: 1000000}}
      content_types: [application/json]
      cors: {allow_origins: ["https://app.example.com"]}
`

// BenchmarkProtections serves the authenticated accept route (a job
// written to Postgres) and an authenticated sync route with no database
// through the gateway's HTTP stack, with every edge protection on (local
// limiter, and Redis limiter) and with none, alternating blocks of
// requests in one run, one caller at a time and 16 at once, and reports
// each rate and the ratios. The token
// check is a stub here (the verifier has its own benchmark), which makes
// the edge's share of a request larger than in the gateway: the ratios
// are a lower bound.
func BenchmarkProtections(b *testing.B) {
	pool := stacktest.NewPool(b)
	rds := stacktest.NewRedisServer(b)
	rc := redis.NewClient(&redis.Options{Addr: rds.Addr()})
	b.Cleanup(func() { _ = rc.Close() })
	logger := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
	catalog, err := jobcatalog.Parse([]byte("job_types:\n  text-stats:\n    handler: text-stats\n    schema: {type: object, required: [text]}\n"))
	if err != nil {
		b.Fatal(err)
	}
	handlers := synchandler.NewRegistry()
	if err := handlers.Register("hello", synchandler.Func(func(context.Context, synchandler.Request) (synchandler.Response, error) {
		return synchandler.JSON(200, map[string]bool{"ok": true})
	})); err != nil {
		b.Fatal(err)
	}
	mmdb := filepath.Join(b.TempDir(), "country.mmdb")
	geoiptest.Write(b, mmdb, map[string]string{"198.51.100.0/24": "DE", "192.0.2.0/24": "KP"})
	countries, err := geoip.Open(mmdb, logger)
	if err != nil {
		b.Fatal(err)
	}
	build := func(withEdge bool, limiter ratelimit.Limiter) *httpserver.Echo {
		doc := protectedRoutes
		if !withEdge {
			doc = `
routes:
  - {name: accept, method: POST, path: /v1/jobs/text-stats, mode: async, job_type: text-stats, scopes: [s]}
  - {name: hello, method: POST, path: /v1/hello, mode: sync, handler: hello, scopes: [s]}
`
		}
		f, err := routes.Parse("bench.yaml", []byte(doc), routes.Known{JobTypes: catalog, Handlers: handlers})
		if err != nil {
			b.Fatal(err)
		}
		e := httpserver.NewEcho(logger)
		svc := app.Services{
			API: jobsapi.New(jobstore.New(pool), catalog, ""), Catalog: catalog,
			Guard: func(p authn.Policy, _ []string) echo.MiddlewareFunc { return authn.Guard(bearerClients{}, logger, p) },
			Sync:  syncroute.Options{Handlers: handlers, Metrics: syncroute.NewMetrics(prometheus.NewRegistry()), Logger: logger},
		}
		if withEdge {
			cfg := defaults()
			cfg.TrustedProxies = "10.0.0.0/8"
			cfg.BlockThreshold = 50
			ed, err := edge.New(edge.Options{Config: cfg, File: f.Edge, Limiter: limiter, Countries: countries,
				Quotas: quota.New(pool, nil, logger), Logger: logger, Registerer: prometheus.NewRegistry()})
			if err != nil {
				b.Fatal(err)
			}
			e.IPExtractor = ed.ClientIP
			e.Pre(ed.Pre)
			svc.Edge = ed
		}
		if err := app.Mount(e.Echo, f, svc); err != nil {
			b.Fatal(err)
		}
		return e
	}
	stacks := []struct {
		name string
		e    *httpserver.Echo
	}{
		{"off", build(false, nil)},
		{"on-local", build(true, ratelimit.NewLocal())},
		{"on-redis", build(true, ratelimit.NewRedis(rc, "bench:"))},
	}
	for _, path := range []string{"/v1/hello", "/v1/jobs/text-stats"} {
		name := "sync"
		if strings.Contains(path, "jobs") {
			name = "accept"
		}
		serve := func(b *testing.B, i int) {
			req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{"text":"benchmark"}`))
			req.RemoteAddr = "10.0.0.1:40000"
			req.Header.Set("X-Forwarded-For", "198.51.100.7")
			req.Header.Set("Authorization", "Bearer bench")
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Origin", "https://app.example.com")
			rec := httptest.NewRecorder()
			stacks[i].e.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK && rec.Code != http.StatusAccepted {
				b.Errorf("%s %s: %d %s", stacks[i].name, path, rec.Code, rec.Body)
			}
		}
		// serial: one request at a time, so the rate is 1/latency and a
		// Redis round trip adds in full. concurrent: 16 callers at once,
		// the rate a saturated gateway sustains, where the round trip
		// overlaps with other requests' work and only its CPU counts.
		for _, callers := range []int{1, 16} {
			mode := "serial"
			if callers > 1 {
				mode = "concurrent"
			}
			b.Run(name+"/"+mode, func(b *testing.B) {
				block := 200
				if name == "accept" {
					block = 20
				}
				block *= callers
				spent := make([]time.Duration, len(stacks))
				for b.Loop() {
					for i := range stacks {
						start := time.Now()
						var wg sync.WaitGroup
						for range callers {
							wg.Go(func() {
								for range block / callers {
									serve(b, i)
								}
							})
						}
						wg.Wait()
						spent[i] += time.Since(start)
					}
				}
				n := float64(b.N * block)
				for i, s := range stacks {
					b.ReportMetric(n/spent[i].Seconds(), s.name+"_req/s")
				}
				b.ReportMetric(spent[0].Seconds()/spent[1].Seconds(), "ratio_local")
				b.ReportMetric(spent[0].Seconds()/spent[2].Seconds(), "ratio_redis")
			})
		}
	}
}
