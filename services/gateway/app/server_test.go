package app_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ardanlabs/conf/v3"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack"
	"github.com/switchyard/switchyard/services/gateway/app"
)

// defaults is the gateway's configuration as the environment gives it
// with only the required settings, read the way the service reads it.
func defaults(t *testing.T) app.Config {
	t.Helper()
	root, err := devstack.ModuleRoot(".")
	require.NoError(t, err)
	t.Setenv("DATABASE_URL", "postgres://127.0.0.1:1/none")
	t.Setenv("SWITCHYARD_AUTH_ISSUER", "http://127.0.0.1:1")
	t.Setenv("SWITCHYARD_JOBS_FILE", filepath.Join(root, "deployments", "config", "jobs.yaml"))
	args := os.Args
	os.Args = os.Args[:1] // conf reads flags too; the test binary's are not the gateway's
	defer func() { os.Args = args }()
	var cfg app.Config
	_, err = conf.Parse("", &cfg)
	require.NoError(t, err)
	return cfg
}

// TestValidate: the defaults are valid, and each setting the gateway
// cannot run with is refused with its variable named, before anything
// connects.
func TestValidate(t *testing.T) {
	require.NoError(t, defaults(t).Validate())
	tests := map[string]struct {
		mutate func(*app.Config)
		want   string
	}{
		"negative cache":         {func(c *app.Config) { c.CacheMaxBytes = -1 }, "SWITCHYARD_GATEWAY_CACHE_MAX_BYTES"},
		"usage flush too short":  {func(c *app.Config) { c.UsageFlush = 0 }, "SWITCHYARD_USAGE_FLUSH"},
		"no jobs file":           {func(c *app.Config) { c.JobsFile = "/nonexistent/jobs.yaml" }, "SWITCHYARD_JOBS_FILE"},
		"redirect without https": {func(c *app.Config) { c.HTTP.RedirectAddr = ":8081" }, "SWITCHYARD_GATEWAY_PUBLIC_URL"},
		"half a TLS pair":        {func(c *app.Config) { c.HTTP.TLSCertFile = "/tmp/cert.pem" }, "key"},
		"edge: bad proxies":      {func(c *app.Config) { c.Edge.TrustedProxies = "not-a-cidr" }, "SWITCHYARD_EDGE_TRUSTED_PROXIES"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := defaults(t)
			tt.mutate(&cfg)
			require.ErrorContains(t, cfg.Validate(), tt.want)
		})
	}
}
