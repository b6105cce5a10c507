package callbacks_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/callbacks"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

func TestParseURL(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"https://hooks.example.com/a?b=c":    "",
		"http://127.0.0.1:8080/cb":           "",
		"http://[::1]:9000/cb":               "",
		"ftp://hooks.example.com/":           "absolute http or https",
		"/relative":                          "absolute http or https",
		"https://user:pw@hooks.example.com/": "user info",
		"https://hooks.example.com/#frag":    "fragment",
		"https:///path":                      "no host",
		"https://hooks.example.com:99999/":   "port",
		"https://hooks.example.com/" + strings.Repeat("a", callbacks.MaxURLLength): "longer than",
		"http://%zz": "does not parse",
	} {
		_, err := callbacks.ParseURL(raw)
		if want == "" {
			require.NoError(t, err, raw)
		} else {
			require.ErrorContains(t, err, want, raw)
		}
	}
}

func TestAllowed(t *testing.T) {
	t.Parallel()
	hosts := []string{"hooks.example.com", "10.0.3.7:8443", "*.billing.example.org", "[::1]:9000"}
	for raw, want := range map[string]bool{
		"https://hooks.example.com/x":        true,
		"https://HOOKS.example.com:444/x":    true, // any port when the entry names none
		"https://evil-hooks.example.com/x":   false,
		"https://hooks.example.com.evil.io/": false,
		"https://10.0.3.7:8443/x":            true,
		"https://10.0.3.7/x":                 false, // the entry names a port
		"https://a.billing.example.org/":     true,
		"https://a.b.billing.example.org/":   true,
		"https://billing.example.org/":       false, // a wildcard is for subdomains
		"https://xbilling.example.org/":      false,
		"http://[::1]:9000/cb":               true,
		"http://[::1]:9001/cb":               false,
	} {
		u, err := url.Parse(raw)
		require.NoError(t, err)
		require.Equal(t, want, callbacks.Allowed(u, hosts), raw)
	}
}

func TestNormalizeHost(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"Hooks.Example.com": "hooks.example.com", "10.0.0.1:443": "10.0.0.1:443", "*.Example.com": "*.example.com",
		"[::1]:9000": "[::1]:9000",
	} {
		got, err := callbacks.NormalizeHost(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got)
	}
	for _, bad := range []string{"", "https://x.example.com", "x.example.com/path", "user@x.example.com", "*.10.0.0.1", "x:port", "a*.example.com"} {
		_, err := callbacks.NormalizeHost(bad)
		require.Error(t, err, bad)
	}
}

func newClient(t *testing.T, pool *pgxpool.Pool, id string) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `INSERT INTO oauth_clients (client_id, secret_hash) VALUES ($1, 'x')`, id)
	require.NoError(t, err)
}

// TestHostsAndPolicy: hosts are replaced as a whole and audited; the
// gateway's policy refuses unlisted hosts, and sees a change after its
// cache's TTL.
func TestHostsAndPolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	newClient(t, pool, "billing")
	var audited []string
	store := callbacks.NewStore(pool).Audited(func(_ context.Context, _ pgx.Tx, action, clientID string, after map[string]any) error {
		audited = append(audited, action+" "+clientID)
		return nil
	})
	require.NoError(t, store.SetHosts(ctx, "billing", []string{"Hooks.Example.com", "127.0.0.1:9000"}))
	hosts, err := store.Hosts(ctx, "billing")
	require.NoError(t, err)
	require.Equal(t, []string{"127.0.0.1:9000", "hooks.example.com"}, hosts)
	require.ErrorContains(t, store.SetHosts(ctx, "nobody", []string{"a.example.com"}), `no client "nobody"`)
	require.ErrorContains(t, store.SetHosts(ctx, "billing", []string{"bad/host"}), "must be a host name")

	policy := callbacks.NewHostPolicy(callbacks.NewStore(pool), 200*time.Millisecond)
	require.NoError(t, policy.Check(ctx, "billing", "https://hooks.example.com/done"))
	require.ErrorIs(t, policy.Check(ctx, "billing", "https://other.example.com/done"), callbacks.ErrHostNotAllowed)
	require.ErrorIs(t, policy.Check(ctx, "someone-else", "https://hooks.example.com/done"), callbacks.ErrHostNotAllowed)
	var urlErr *callbacks.URLError
	require.True(t, errors.As(policy.Check(ctx, "billing", "ftp://hooks.example.com/"), &urlErr))

	require.NoError(t, store.SetHosts(ctx, "billing", nil))
	require.Eventually(t, func() bool {
		return errors.Is(policy.Check(ctx, "billing", "https://hooks.example.com/done"), callbacks.ErrHostNotAllowed)
	}, 5*time.Second, 20*time.Millisecond, "a removed host is refused once the cache expires")
	require.Equal(t, []string{"callbacks.set_hosts billing", "callbacks.set_hosts billing"}, audited)
}

// TestSecretRotationOverlaps: after a rotation both secrets sign until the
// overlap ends, and a signature made with either verifies with the
// Standard Webhooks library; with no overlap only the new one signs.
func TestSecretRotationOverlaps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	newClient(t, pool, "billing")
	store := callbacks.NewStore(pool)
	first, err := store.RotateSecret(ctx, "billing", time.Hour)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(first.Value, callbacks.SecretPrefix))
	second, err := store.RotateSecret(ctx, "billing", time.Hour)
	require.NoError(t, err)
	active, err := store.Secrets(ctx, "billing", true)
	require.NoError(t, err)
	require.Len(t, active, 2)
	require.Equal(t, second.Value, active[0].Value, "newest first")
	require.Nil(t, active[0].ExpiresAt)
	require.WithinDuration(t, time.Now().Add(time.Hour), *active[1].ExpiresAt, time.Minute)

	body := []byte(`{"type":"job.succeeded","data":{"id":"x"}}`)
	h := http.Header{}
	require.NoError(t, callbacks.SignHeaders(h, []string{active[0].Value, active[1].Value}, "msg-1", time.Now(), body))
	require.Len(t, strings.Fields(h.Get(callbacks.HeaderSignature)), 2)
	for _, s := range []string{first.Value, second.Value} {
		wh, err := standardwebhooks.NewWebhook(s)
		require.NoError(t, err)
		require.NoError(t, wh.Verify(body, h), "a receiver knowing one of the secrets verifies")
	}
	stranger, err := standardwebhooks.NewWebhook("whsec_" + strings.Repeat("A", 43) + "=")
	require.NoError(t, err)
	require.Error(t, stranger.Verify(body, h))

	third, err := store.RotateSecret(ctx, "billing", 0)
	require.NoError(t, err)
	active, err = store.Secrets(ctx, "billing", false)
	require.NoError(t, err)
	require.Len(t, active, 1)
	require.Equal(t, third.ID, active[0].ID)
	require.Empty(t, active[0].Value, "values only when asked for")
	_, err = store.RotateSecret(ctx, "nobody", 0)
	require.ErrorContains(t, err, `no client "nobody"`)
	require.ErrorContains(t, callbacks.SignHeaders(http.Header{}, nil, "m", time.Now(), body), "no callback signing secret")
}
