package cli_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

// The dlq commands against the real replay service are tested end to end
// (services/e2e: TestBulkReplayFlow and others); these are the CLI's own
// refusals and how it reports the API's problems.

func TestDLQUsageErrors(t *testing.T) {
	t.Setenv("SWITCHYARD_ADMIN_TOKEN", "")
	t.Setenv("SWITCHYARD_ADMIN_CLIENT_ID", "")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"dlq", "list"}, "no credentials for the admin API"},
		{[]string{"dlq", "list", "--token", "t", "--since", "yesterday"}, `--since: "yesterday" is neither an RFC 3339 time`},
		{[]string{"dlq", "list", "--token", "t", "--limit", "0"}, "--limit 0 must be from 1 to 500"},
		{[]string{"dlq", "show"}, "accepts 1 arg(s)"},
		{[]string{"dlq", "stats", "extra"}, "unknown command"},
		{[]string{"dlq", "replay", "x", "--token", "t", "--payload", "{"}, "not valid JSON"},
		{[]string{"dlq", "replay", "x", "--token", "t", "--payload", "{}", "--payload-file", "f"}, "not both"},
		{[]string{"dlq", "list", "--token", "t", "--admin-url", "ftp://x"}, "is not an http(s) URL"},
		{[]string{"dlq", "list", "--client-id", "ops"}, "SWITCHYARD_ADMIN_CLIENT_SECRET"},
	}
	for _, tt := range tests {
		code, _, stderr := run(tt.args...)
		require.Equal(t, 2, code, "%v: %s", tt.args, stderr)
		require.Contains(t, stderr, tt.want, tt.args)
	}
}

func TestDLQReportsProblems(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "Bearer secret-token", r.Header.Get("Authorization"))
		require.Equal(t, "/admin/v1/dead-letters", r.URL.Path)
		require.Equal(t, "webhook", r.URL.Query().Get("type"))
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"type":"urn:switchyard:problem:invalid-parameter","title":"Invalid parameter","status":400,` +
			`"detail":"limit \"9\" is odd","request_id":"req-42"}`))
	}))
	defer srv.Close()
	t.Setenv("SWITCHYARD_ADMIN_TOKEN", "secret-token")
	code, _, stderr := run("dlq", "list", "--admin-url", srv.URL, "--type", "webhook")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, `the admin API answered 400 Invalid parameter: limit "9" is odd (request req-42)`)
	require.NotContains(t, stderr, "secret-token", "the token is never printed")
}

func TestVaultProvisionUsageErrors(t *testing.T) {
	t.Setenv("VAULT_ADDR", "")
	code, _, stderr := run("vault", "provision", "--database-url", "postgres://x@h/db")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "set VAULT_ADDR and VAULT_TOKEN")
	t.Setenv("VAULT_ADDR", "http://127.0.0.1:1")
	t.Setenv("VAULT_TOKEN", "t")
	t.Setenv("DATABASE_URL", "")
	code, _, stderr = run("vault", "provision")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "no database")
	code, _, stderr = run("vault", "provision", "--database-url", "postgres://x@h/db", "--kubernetes-host", "https://k8s:443")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "need --kubernetes-namespace")
	code, _, stderr = run("vault", "provision", "--database-url", "postgres://x@h/db", "--kubernetes-namespace", "sy",
		"--kubernetes-ca-cert-file", "/nonexistent/ca.crt")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "--kubernetes-ca-cert-file")
}
