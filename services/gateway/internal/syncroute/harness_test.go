package syncroute_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/synchandler"
	"github.com/switchyard/switchyard/services/gateway/demo"
	"github.com/switchyard/switchyard/services/gateway/internal/respcache"
	"github.com/switchyard/switchyard/services/gateway/internal/routes"
	"github.com/switchyard/switchyard/services/gateway/internal/syncroute"
)

// TestMain fails the package if any test leaves a goroutine behind
// (bulkhead waiters, coalesced calls, upstream connections).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// upstream is a real HTTP server on loopback whose behaviour a test
// switches at run time, counting the calls it receives.
type upstream struct {
	srv      *httptest.Server
	hits     atomic.Int64
	inFlight atomic.Int64
	maxIn    atomic.Int64
	mu       sync.Mutex
	handler  http.HandlerFunc
}

func newUpstream(t testing.TB, h http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{handler: h}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		n := u.inFlight.Add(1)
		defer u.inFlight.Add(-1)
		for {
			m := u.maxIn.Load()
			if n <= m || u.maxIn.CompareAndSwap(m, n) {
				break
			}
		}
		u.mu.Lock()
		h := u.handler
		u.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) set(h http.HandlerFunc) {
	u.mu.Lock()
	u.handler = h
	u.mu.Unlock()
}

// held answers status and body once release is closed (or the request
// ends first).
func held(release <-chan struct{}, status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		answer(status, body)(w, r)
	}
}

// fanOut sends n concurrent GETs of path; answers arrive on the channel
// as they come (status -1: no answer).
func (g *gateway) fanOut(t *testing.T, n int, path string) <-chan response {
	g.trans.MaxIdleConnsPerHost = n
	results := make(chan response, n)
	for range n {
		go func() {
			r, err := g.do(context.Background(), t, http.MethodGet, path, "c", "")
			if err != nil {
				r.status = -1
			}
			results <- r
		}()
	}
	return results
}

func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// headerAuth stands in for token verification (tested with real tokens in
// libs/accesstoken and the e2e suite): X-Test-Client names the caller.
type headerAuth struct{}

func (headerAuth) Authenticate(r *http.Request) (authn.Identity, error) {
	id := r.Header.Get("X-Test-Client")
	if id == "" {
		return authn.Identity{}, authn.Fail(authn.ErrNoCredentials, "missing", "no test client")
	}
	return authn.Identity{ClientID: id, Scopes: []string{"t"}}, nil
}

// gateway serves one sync route parsed from a routes file entry.
type gateway struct {
	e      *httpserver.Echo
	srv    *httptest.Server
	route  *syncroute.Route
	reg    *prometheus.Registry
	client *http.Client
	jobs   atomic.Int64 // requests accepted by the fallback
	cache  *respcache.Cache
	trans  *http.Transport
}

// newGateway parses entry (the YAML of one route, without the scopes) and
// serves it over loopback.
func newGateway(t testing.TB, entry string) *gateway {
	t.Helper()
	handlers := synchandler.NewRegistry()
	require.NoError(t, demo.Register(handlers))
	require.NoError(t, handlers.Register("panics", synchandler.Func(func(context.Context, synchandler.Request) (synchandler.Response, error) {
		panic("handler bug")
	})))
	require.NoError(t, handlers.Register("ok", synchandler.Func(func(context.Context, synchandler.Request) (synchandler.Response, error) {
		return synchandler.Response{Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"ok":true}`)}, nil
	})))
	require.NoError(t, handlers.Register("shared-header", synchandler.Func(func(context.Context, synchandler.Request) (synchandler.Response, error) {
		return synchandler.Response{Header: sharedHeader, Body: []byte(`{"shared":true}`)}, nil
	})))
	require.NoError(t, handlers.Register("fails", synchandler.Func(func(_ context.Context, req synchandler.Request) (synchandler.Response, error) {
		return synchandler.Response{Status: http.StatusServiceUnavailable, Body: []byte(`{"busy":true}`)}, nil
	})))
	doc := "routes:\n  - " + strings.ReplaceAll(strings.TrimSpace(entry), "\n", "\n    ") + "\n    scopes: [t]\n"
	f, err := routes.Parse("test.yaml", []byte(doc), routes.Known{
		JobTypes: names{"webhook": true}, Handlers: handlers,
	})
	require.NoError(t, err)
	g := &gateway{e: httpserver.NewEcho(slog.New(slog.DiscardHandler)), reg: prometheus.NewRegistry(),
		cache: respcache.New(1 << 20), trans: syncroute.NewTransport()}
	metrics := syncroute.NewMetrics(g.reg)
	r := f.Routes[0]
	g.route, err = syncroute.New(r, syncroute.Options{
		Handlers: handlers, Client: syncroute.NewClient(g.trans), Cache: g.cache, Metrics: metrics,
		Logger: slog.New(slog.DiscardHandler),
		Fallback: func(string) (echo.HandlerFunc, error) {
			return func(c echo.Context) error {
				g.jobs.Add(1)
				body, _ := io.ReadAll(c.Request().Body)
				return c.JSON(http.StatusAccepted, map[string]any{"id": "job-1", "status": "accepted", "payload_bytes": len(body)})
			}, nil
		},
	})
	require.NoError(t, err)
	for _, m := range g.route.Methods() {
		g.e.Add(m, r.EchoPath(), authn.Guard(headerAuth{}, slog.New(slog.DiscardHandler), authn.Policy{Scopes: r.Scopes})(g.route.Handle))
	}
	g.srv = httptest.NewServer(g.e)
	g.client = g.srv.Client()
	t.Cleanup(func() {
		g.srv.Close()
		g.trans.CloseIdleConnections()
	})
	return g
}

// sharedHeader is the one header map the "shared-header" handler answers
// every call with, as a handler may (synchandler.Response.Header), with
// a Content-Length the gateway must not send and must not delete.
var sharedHeader = http.Header{
	"Content-Type":   {"application/json"},
	"Content-Length": {"999"},
	"Cache-Control":  {"max-age=60"},
}

type names map[string]bool

func (n names) Has(name string) bool { return n[name] }

// response is what a test reads of an answer.
type response struct {
	status int
	header http.Header
	body   string
}

func (r response) problemType() string {
	var p struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal([]byte(r.body), &p)
	return p.Type
}

// do sends a request over the network as client.
func (g *gateway) do(ctx context.Context, t *testing.T, method, path, client string, body string, header ...string) (response, error) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, g.srv.URL+path, rd)
	require.NoError(t, err)
	req.Header.Set("X-Test-Client", client)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}, err
}

// get is do for a GET that must get an answer.
func (g *gateway) get(t *testing.T, path, client string, header ...string) response {
	t.Helper()
	r, err := g.do(context.Background(), t, http.MethodGet, path, client, "", header...)
	require.NoError(t, err)
	return r
}

// serve answers one request in process (no sockets), for timing.
func (g *gateway) serve(method, path, client string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	req.Header.Set("X-Test-Client", client)
	rec := httptest.NewRecorder()
	g.e.ServeHTTP(rec, req)
	return rec
}

// metric sums the samples of the counter or gauge name whose labels
// include the given name/value pairs.
func (g *gateway) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	families, err := g.reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if m.GetCounter() != nil {
				sum += m.GetCounter().GetValue()
			} else {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}
