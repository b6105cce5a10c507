package routes_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/jobcatalog"
	"github.com/switchyard/switchyard/services/gateway/internal/routes"
)

type types map[string]bool

func (t types) Has(name string) bool { return t[name] }

var known = routes.Known{
	JobTypes: types{"text-stats": true, "webhook": true},
	Handlers: types{"text-stats": true},
}

func TestShippedRoutesFileIsValid(t *testing.T) {
	t.Parallel()
	f, err := routes.Load("../../../../deployments/config/routes.yaml", known)
	require.NoError(t, err)
	require.NotEmpty(t, f.Routes)
	for _, r := range f.Routes {
		require.False(t, r.Denied, "%s %s ships without a policy", r.Method, r.Path)
	}
}

// TestDeploymentOverlayFilesAreValid: the job types and routes a
// Kubernetes overlay ships parse, and every route names a declared job
// type.
func TestDeploymentOverlayFilesAreValid(t *testing.T) {
	t.Parallel()
	overlays, err := filepath.Glob("../../../../deployments/k8s/overlays/*/routes.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, overlays)
	for _, routesFile := range overlays {
		catalog, err := jobcatalog.Load(filepath.Join(filepath.Dir(routesFile), "jobs.yaml"))
		require.NoError(t, err, routesFile)
		f, err := routes.Load(routesFile, routes.Known{JobTypes: catalog, Handlers: types{}})
		require.NoError(t, err)
		require.NotEmpty(t, f.Routes, routesFile)
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	f, err := routes.Parse("r.yaml", []byte(`
admin_scope: ops:admin
routes:
  - method: POST
    path: /v1/jobs/text-stats
    mode: async
    job_type: text-stats
    scopes: [jobs:submit, jobs:submit]
    auth: [bearer, api_key, api_key]
  - method: GET
    path: /v1/jobs/{id}
    mode: job-status
    scopes: []
  - method: POST
    path: /v1/hooks
    mode: async
    job_type: webhook
  - method: GET
    path: /admin/v1/jobs/{job_id}
    mode: job-status
    scopes: [ops:admin]
`), known)
	require.NoError(t, err)
	require.Equal(t, "ops:admin", f.AdminScope)
	require.Len(t, f.Routes, 4)
	require.Equal(t, []string{"jobs:submit"}, f.Routes[0].Scopes, "duplicates are folded")
	require.False(t, f.Routes[1].Denied, "[] allows any authenticated caller")
	require.Empty(t, f.Routes[1].Scopes)
	require.True(t, f.Routes[2].Denied, "no scopes key: denied by default")
	require.Equal(t, "/admin/v1/jobs/:job_id", f.Routes[3].EchoPath())
	require.Equal(t, []string{"job_id"}, f.Routes[3].Params())
	require.Equal(t, []string{"bearer", "api_key"}, f.Routes[0].Auth, "duplicates are folded")
	require.Equal(t, []string{"bearer"}, f.Routes[1].Auth, "default: bearer only")
}

func TestParseErrorsNameFileLineAndField(t *testing.T) {
	t.Parallel()
	route := func(body string) string {
		return "routes:\n  - " + strings.ReplaceAll(strings.TrimSpace(body), "\n", "\n    ") + "\n"
	}
	tests := []struct {
		name, doc, want string
	}{
		{"unknown top-level", "routs: []\n", "r.yaml:1: routs: unknown field"},
		{"no routes", "admin_scope: x\n", "r.yaml:1: routes: a list of routes is required"},
		{"route not a mapping", "routes:\n  - just a string\n", "r.yaml:2: routes[0]: a route is a mapping"},
		{"unknown route field", route("method: GET\npath: /a/{id}\nmode: job-status\nscope: [a]"), "r.yaml:5: routes[0].scope: unknown field"},
		{"bad method", route("method: FETCH\npath: /a\nmode: async\njob_type: webhook\nscopes: [a]"), "r.yaml:2: routes[0].method: \"FETCH\" is not one of"},
		{"dot segment", route("method: POST\npath: /a/../b\nmode: async\njob_type: webhook\nscopes: [a]"), "routes[0].path:"},
		{"encoded slash", route("method: POST\npath: /a%2Fb\nmode: async\njob_type: webhook\nscopes: [a]"), "routes[0].path:"},
		{"unknown job type", route("method: POST\npath: /a\nmode: async\njob_type: nope\nscopes: [a]"), "routes[0].job_type: no job type \"nope\""},
		{"callback delivery", route("method: POST\npath: /a\nmode: async\njob_type: switchyard-callback\nscopes: [a]"), "routes[0].job_type: switchyard-callback is the platform's own callback delivery"},
		{"status without id", route("method: GET\npath: /a\nmode: job-status\nscopes: [a]"), "routes[0].path: a job-status route has exactly one path parameter"},
		{"no mode", route("method: GET\npath: /a\nscopes: [a]"), "routes[0].mode: is required"},
		{"scopes not a list", route("method: GET\npath: /a/{id}\nmode: job-status\nscopes: a"), "r.yaml:5: routes[0].scopes: must be a list"},
		{"bad scope", route("method: GET\npath: /a/{id}\nmode: job-status\nscopes: [\"a b\"]"), "r.yaml:5: routes[0].scopes: scope \"a b\" is not a valid scope token"},
		{"admin without admin scope", route("method: GET\npath: /admin/x/{id}\nmode: job-status\nscopes: [jobs:read]"), "routes[0].scopes: a route under /admin/ must require the admin scope \"switchyard:admin\""},
		{"duplicate", route("method: GET\npath: /a/{id}\nmode: job-status\nscopes: [a]") + "  - method: GET\n    path: /a/{x}\n    mode: job-status\n    scopes: [b]\n",
			"r.yaml:6: routes[1]: GET /a/{x} duplicates the route at line 2"},
		{"not YAML", "routes: [\n", "r.yaml: parsing YAML"},
		{"unknown credential", route("method: GET\npath: /a/{id}\nmode: job-status\nscopes: [a]\nauth: [basic]"), "r.yaml:6: routes[0].auth: \"basic\" is not a credential (known: bearer, api_key)"},
		{"empty auth", route("method: GET\npath: /a/{id}\nmode: job-status\nscopes: [a]\nauth: []"), "routes[0].auth: must be a non-empty list"},
	}
	for _, tt := range tests {
		_, err := routes.Parse("r.yaml", []byte(tt.doc), known)
		require.Error(t, err, tt.name)
		require.Contains(t, err.Error(), tt.want, tt.name)
	}
}

// FuzzParse: any document either parses into routes that satisfy the
// policy invariants, or is refused with an error naming the file; it never
// panics.
func FuzzParse(f *testing.F) {
	shipped, err := os.ReadFile("../../../../deployments/config/routes.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(shipped))
	f.Add("routes:\n  - {method: GET, path: /a/{id}, mode: job-status}\n")
	f.Add("admin_scope: a\nroutes:\n  - {method: POST, path: /admin/x, mode: async, job_type: webhook, scopes: [a]}\n")
	f.Add("routes: [1, [2], {a: b}]\n")
	f.Add("routes:\n  - &a {method: GET}\n  - *a\n")
	f.Add("routes:\n  - {method: GET, path: \"/q/{s}\", mode: sync, scopes: [], upstream: {url: \"http://h/{s}\"}, cache: {ttl: 1s}, retries: {attempts: 2}}\n")
	f.Add("routes:\n  - {method: POST, path: /h, mode: sync, scopes: [a], handler: text-stats, fallback_job_type: webhook, breaker: {open_for: 1s}}\n")
	f.Fuzz(func(t *testing.T, doc string) {
		file, err := routes.Parse("fuzz.yaml", []byte(doc), known)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, r := range file.Routes {
			if !strings.HasPrefix(r.Path, "/") || strings.Contains(r.Path, "..") || strings.Contains(r.Path, "//") {
				t.Fatalf("accepted path %q", r.Path)
			}
			if strings.HasPrefix(r.Path+"/", "/admin/") && !r.Denied && !contains(r.Scopes, file.AdminScope) {
				t.Fatalf("admin route %q without the admin scope", r.Path)
			}
			if r.Mode == routes.ModeAsync && !known.JobTypes.Has(r.JobType) {
				t.Fatalf("async route with unknown job type %q", r.JobType)
			}
			if s := r.Sync; r.Mode == routes.ModeSync {
				if (s.Handler == "") == (s.Upstream == nil) || s.Timeout <= 0 || s.MaxConcurrent < 1 {
					t.Fatalf("sync route %s: target or limits invalid: %+v", r.Path, s)
				}
				if s.Retries.Attempts > 0 && r.Method == http.MethodPost || s.Cache != nil && r.Method != http.MethodGet {
					t.Fatalf("sync route %s %s: retries or cache on a method that must not have them", r.Method, r.Path)
				}
			} else if s != nil {
				t.Fatalf("%s route %s carries sync settings", r.Mode, r.Path)
			}
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestEdgeSection: the file's and a route's edge settings are read, and
// mistakes name their line and field.
func TestEdgeSection(t *testing.T) {
	t.Parallel()
	route := func(body string) string {
		return "routes:\n  - " + strings.ReplaceAll(strings.TrimSpace(body), "\n", "\n    ") + "\n"
	}
	f, err := routes.Parse("routes.yaml", []byte(`
edge:
  ip: {deny: ["192.0.2.0/24", "::ffff:198.51.100.0/120"]}
  countries: {deny: [kp]}
  rate_limit:
    per_client: {rate: 100, burst: 20}
    per_ip: {rate: 10, per: 1m}
  quota: {daily: 1000, monthly: 20000}
  clients:
    partner: {rate_limit: {rate: 500}, quota: {daily: 5000}}
routes:
  - name: r
    method: POST
    path: /v1/jobs/webhook
    mode: async
    job_type: webhook
    scopes: [a]
    edge:
      ip: {allow: [10.0.0.0/8]}
      content_types: [application/json]
      cors: {allow_origins: ["https://app.example.com"], allow_headers: [Authorization]}
`), known)
	require.NoError(t, err)
	assert.Equal(t, "192.0.2.0/24,198.51.100.0/24", f.Edge.IP.Deny.String())
	assert.Equal(t, []string{"KP"}, f.Edge.Countries.Deny)
	assert.Equal(t, 20, f.Edge.PerClient.Burst)
	assert.Equal(t, 10, f.Edge.PerIP.Burst, "burst defaults to the rate")
	assert.Equal(t, time.Minute, f.Edge.PerIP.Period)
	assert.Equal(t, int64(20000), f.Edge.Quota.Monthly)
	assert.Equal(t, int64(5000), f.Edge.Clients["partner"].Quota.Daily)
	r := f.Routes[0].Edge
	assert.Equal(t, "10.0.0.0/8", r.IP.Allow.String())
	assert.Equal(t, []string{"https://app.example.com"}, r.CORS.AllowOrigins)

	for name, tc := range map[string]struct{ doc, want string }{
		"host bits":      {"edge: {ip: {deny: [10.1.2.3/8]}}\nroutes: []", "routes.yaml:1: edge.ip.deny"},
		"country":        {"edge: {countries: {allow: [Germany]}}\nroutes: []", "edge.countries.allow"},
		"zero rate":      {"edge: {rate_limit: {per_ip: {rate: 0}}}\nroutes: []", "edge.rate_limit.per_ip.rate"},
		"route quota":    {route("method: POST\npath: /a\nmode: async\njob_type: webhook\nscopes: [a]\nedge: {quota: {daily: 1}}"), "quotas are per client"},
		"cors wildcard":  {route("method: POST\npath: /a\nmode: async\njob_type: webhook\nscopes: [a]\nedge: {cors: {allow_origins: ['*'], allow_credentials: true}}"), "allow_credentials"},
		"unknown key":    {"edge: {waf: true}\nroutes: []", "edge.waf: unknown field"},
		"bad media type": {route("method: POST\npath: /a\nmode: async\njob_type: webhook\nscopes: [a]\nedge: {content_types: [json]}"), "content_types"},
	} {
		_, err := routes.Parse("routes.yaml", []byte(tc.doc), known)
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), tc.want, name)
	}
}
