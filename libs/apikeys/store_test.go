package apikeys_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/apikeys"
	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/oauthclients"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

var testPepper = []byte("a-test-pepper-of-enough-bytes")

type fixture struct {
	dbURL   string
	store   *apikeys.Store
	clients *oauthclients.Store
	audits  *atomic.Int64
	queries *countingDB
}

// countingDB counts the statements the store sends.
type countingDB struct {
	apikeys.DB
	n atomic.Int64
}

func (c *countingDB) Begin(ctx context.Context) (pgx.Tx, error) { c.n.Add(1); return c.DB.Begin(ctx) }
func (c *countingDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c.n.Add(1)
	return c.DB.Exec(ctx, sql, args...)
}

func (c *countingDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	c.n.Add(1)
	return c.DB.Query(ctx, sql, args...)
}

func (c *countingDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	c.n.Add(1)
	return c.DB.QueryRow(ctx, sql, args...)
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dbURL := stacktest.NewDatabase(t)
	pool := stacktest.NewPoolURL(t, dbURL)
	hasher, err := apikeys.NewHasher(testPepper)
	require.NoError(t, err)
	clients, err := oauthclients.New(pool)
	require.NoError(t, err)
	f := &fixture{dbURL: dbURL, clients: clients, audits: &atomic.Int64{}, queries: &countingDB{DB: pool}}
	f.store = apikeys.NewStore(f.queries, hasher).Audited(func(context.Context, pgx.Tx, string, apikeys.Key) error {
		f.audits.Add(1)
		return nil
	})
	return f
}

func (f *fixture) client(t testing.TB, scopes ...string) oauthclients.Client {
	t.Helper()
	c, _, err := f.clients.Create(context.Background(), oauthclients.NewClient{Scopes: scopes})
	require.NoError(t, err)
	return c
}

func (f *fixture) set(t testing.TB, opts apikeys.SetOptions) *apikeys.Set {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.Registerer = prometheus.NewRegistry()
	set, err := apikeys.NewSet(f.store, database.NewDialer(database.Config{URL: f.dbURL}), opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go set.Run(ctx)
	require.Eventually(t, func() bool { return set.Ready(ctx) == nil }, 10*time.Second, 10*time.Millisecond)
	return set
}

func request(header, value, remote string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if header != "" {
		r.Header.Set(header, value)
	}
	if remote != "" {
		r.RemoteAddr = remote
	}
	return r
}

func TestCreateChecksScopesAndAudits(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := f.client(t, "jobs:submit", "jobs:read")

	_, _, err := f.store.Create(ctx, apikeys.NewKey{ClientID: c.ID, ClientScopes: c.Scopes, Scopes: []string{"admin"}})
	require.ErrorContains(t, err, `scope "admin" is not one of the client's`)
	_, _, err = f.store.Create(ctx, apikeys.NewKey{ClientID: "nobody", ClientScopes: nil})
	require.ErrorContains(t, err, `no client "nobody"`)
	_, _, err = f.store.Create(ctx, apikeys.NewKey{ClientID: c.ID, ClientScopes: c.Scopes, Plan: apikeys.Plan{Quota: 5}})
	require.ErrorContains(t, err, "needs a period")
	require.Zero(t, f.audits.Load(), "nothing refused is audited")

	key, rec, err := f.store.Create(ctx, apikeys.NewKey{ClientID: c.ID, ClientScopes: c.Scopes, Name: "ci",
		Scopes: []string{"jobs:submit"}, AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/16")}})
	require.NoError(t, err)
	id, err := apikeys.Parse(key)
	require.NoError(t, err)
	require.Equal(t, id, rec.ID)
	require.Equal(t, []string{"jobs:submit"}, rec.Scopes)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, rec.AllowedCIDRs, "stored masked")
	require.EqualValues(t, 1, f.audits.Load())

	_, all, err := f.store.Create(ctx, apikeys.NewKey{ClientID: c.ID, ClientScopes: c.Scopes})
	require.NoError(t, err)
	require.ElementsMatch(t, c.Scopes, all.Scopes, "no scopes named: all of the client's")

	list, err := f.store.List(ctx, c.ID)
	require.NoError(t, err)
	require.Len(t, list, 2)

	// Narrowing the client narrows its keys.
	_, err = f.clients.SetScopes(ctx, c.ID, []string{"jobs:read"})
	require.NoError(t, err)
	got, err := f.store.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.Empty(t, got.Scopes)
	got, err = f.store.Get(ctx, all.ID)
	require.NoError(t, err)
	require.Equal(t, []string{"jobs:read"}, got.Scopes)
}

func TestSetAuthenticates(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := f.client(t, "jobs:submit")
	disabled := atomic.Bool{}
	set := f.set(t, apikeys.SetOptions{Revoked: func(string) (bool, error) { return disabled.Load(), nil }})

	key, rec, err := f.store.Create(ctx, apikeys.NewKey{ClientID: c.ID, ClientScopes: c.Scopes})
	require.NoError(t, err)
	var id authn.Identity
	require.Eventually(t, func() bool {
		id, err = set.Authenticate(request(apikeys.HeaderName, key, ""))
		return err == nil
	}, 10*time.Second, 5*time.Millisecond, "a new key is usable once NOTIFY reloads the set")
	require.Equal(t, authn.Identity{ClientID: c.ID, Scopes: []string{"jobs:submit"}, Issuer: apikeys.Issuer, KeyID: rec.ID}, id)
	_, err = set.Authenticate(request("Authorization", "apikey  "+key, ""))
	require.NoError(t, err, "Authorization: ApiKey, scheme in any case")

	refusedAs := func(r *http.Request, reason string) {
		t.Helper()
		_, err := set.Authenticate(r)
		require.ErrorIs(t, err, authn.ErrUnauthenticated)
		require.Equal(t, authn.Reason("api_key_"+reason), authn.ReasonOf(err))
	}
	other, _, err := apikeys.Generate()
	require.NoError(t, err)
	refusedAs(request(apikeys.HeaderName, other, ""), "unknown")
	refusedAs(request(apikeys.HeaderName, "sy_nonsense", ""), "malformed")
	both := request(apikeys.HeaderName, key, "")
	both.Header.Set("Authorization", "Bearer x")
	refusedAs(both, "ambiguous")
	disabled.Store(true)
	refusedAs(request(apikeys.HeaderName, key, ""), "client_disabled")
	disabled.Store(false)

	start := time.Now()
	_, err = f.store.Revoke(ctx, rec.ID)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := set.Authenticate(request(apikeys.HeaderName, key, ""))
		return authn.ReasonOf(err) == "api_key_revoked"
	}, 10*time.Second, 5*time.Millisecond)
	t.Logf("revocation reached the set in %s", time.Since(start))
}

func TestSetChecksNetworksExpiryAndRotation(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := f.client(t, "jobs:submit")
	set := f.set(t, apikeys.SetOptions{})

	netKey, _, err := f.store.Create(ctx, apikeys.NewKey{ClientID: c.ID, ClientScopes: c.Scopes,
		AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/48")}})
	require.NoError(t, err)
	soon := time.Now().Add(time.Second)
	shortKey, _, err := f.store.Create(ctx, apikeys.NewKey{ClientID: c.ID, ClientScopes: c.Scopes, ExpiresAt: &soon})
	require.NoError(t, err)
	oldKey, oldRec, err := f.store.Create(ctx, apikeys.NewKey{ClientID: c.ID, ClientScopes: c.Scopes, Name: "rotating"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := set.Authenticate(request(apikeys.HeaderName, oldKey, ""))
		return err == nil
	}, 10*time.Second, 5*time.Millisecond)

	_, err = set.Authenticate(request(apikeys.HeaderName, netKey, "192.0.2.77:5000"))
	require.NoError(t, err)
	_, err = set.Authenticate(request(apikeys.HeaderName, netKey, "[2001:db8:0:1::5]:443"))
	require.NoError(t, err)
	_, err = set.Authenticate(request(apikeys.HeaderName, netKey, "198.51.100.1:5000"))
	require.Equal(t, authn.Reason("api_key_source_not_allowed"), authn.ReasonOf(err))

	require.Eventually(t, func() bool {
		_, err := set.Authenticate(request(apikeys.HeaderName, shortKey, ""))
		return authn.ReasonOf(err) == "api_key_expired"
	}, 10*time.Second, 20*time.Millisecond)

	newKey, newRec, err := f.store.Rotate(ctx, oldRec.ID, time.Hour, c.Scopes)
	require.NoError(t, err)
	require.Equal(t, oldRec.ID, newRec.RotatedFrom)
	require.Equal(t, "rotating", newRec.Name)
	require.Eventually(t, func() bool {
		_, err := set.Authenticate(request(apikeys.HeaderName, newKey, ""))
		return err == nil
	}, 10*time.Second, 5*time.Millisecond)
	_, err = set.Authenticate(request(apikeys.HeaderName, oldKey, ""))
	require.NoError(t, err, "the old key works during the overlap")
	old, err := f.store.Get(ctx, oldRec.ID)
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(time.Hour), *old.ExpiresAt, time.Minute)

	_, _, err = f.store.Rotate(ctx, oldRec.ID, 0, c.Scopes)
	require.NoError(t, err, "rotating again with no overlap")
	require.Eventually(t, func() bool {
		_, err := set.Authenticate(request(apikeys.HeaderName, oldKey, ""))
		return authn.ReasonOf(err) == "api_key_expired"
	}, 10*time.Second, 5*time.Millisecond)
}

// TestRandomKeysCostNoQuery floods the set with 10,000 random keys, half
// shaped like keys (valid checksum, unknown id) and half not, and counts
// the statements the store sends meanwhile: none.
func TestRandomKeysCostNoQuery(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := f.client(t, "jobs:submit")
	key, _, err := f.store.Create(ctx, apikeys.NewKey{ClientID: c.ID, ClientScopes: c.Scopes})
	require.NoError(t, err)
	set := f.set(t, apikeys.SetOptions{PollInterval: time.Hour, FlushInterval: time.Hour})
	require.Eventually(t, func() bool {
		_, err := set.Authenticate(request(apikeys.HeaderName, key, ""))
		return err == nil
	}, 10*time.Second, 5*time.Millisecond)

	quiet(t, set)
	before := f.queries.n.Load()
	for i := range 10_000 {
		random, _, err := apikeys.Generate()
		require.NoError(t, err)
		if i%2 == 1 {
			random = random[:len(random)-1] + "a"
		}
		_, err = set.Authenticate(request(apikeys.HeaderName, random, ""))
		require.ErrorIs(t, err, authn.ErrUnauthenticated)
	}
	require.Equal(t, before, f.queries.n.Load(), "10,000 random keys sent no statement to Postgres")
}

// quiet waits for the set's reload after its listener connected (it
// catches up on what it may have missed), after which, with no change and
// the poll an hour away, the set sends nothing.
func quiet(t *testing.T, set *apikeys.Set) {
	t.Helper()
	require.Eventually(t, func() bool { return set.Loads() >= 2 }, 10*time.Second, 5*time.Millisecond)
}

func TestLastUsedIsWrittenInBatches(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := f.client(t, "jobs:submit")
	key, rec, err := f.store.Create(ctx, apikeys.NewKey{ClientID: c.ID, ClientScopes: c.Scopes})
	require.NoError(t, err)
	set := f.set(t, apikeys.SetOptions{PollInterval: time.Hour, FlushInterval: time.Hour})
	require.Eventually(t, func() bool {
		_, err := set.Authenticate(request(apikeys.HeaderName, key, ""))
		return err == nil
	}, 10*time.Second, 5*time.Millisecond)
	quiet(t, set)
	before := f.queries.n.Load()
	for range 100 {
		_, err := set.Authenticate(request(apikeys.HeaderName, key, ""))
		require.NoError(t, err)
	}
	set.Flush(ctx)
	require.Equal(t, before+1, f.queries.n.Load(), "100 uses, one statement")
	got, err := f.store.Get(ctx, rec.ID)
	require.NoError(t, err)
	require.NotNil(t, got.LastUsedAt)
	require.WithinDuration(t, time.Now(), *got.LastUsedAt, 10*time.Second)
	// (before + the flush + the Get just made.)
	set.Flush(ctx)
	require.Equal(t, before+2, f.queries.n.Load(), "nothing used since: no statement")
}
