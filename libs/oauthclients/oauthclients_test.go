package oauthclients_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/oauthclients"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

func TestClientLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	store, err := oauthclients.New(pool)
	require.NoError(t, err)

	c, secret, err := store.Create(ctx, oauthclients.NewClient{Name: "billing", Scopes: []string{"jobs:submit", "jobs:read", "jobs:read"}})
	require.NoError(t, err)
	require.Regexp(t, `^c-[a-z0-9]{20}$`, c.ID)
	require.Len(t, secret, 43, "256 bits, base64url")
	require.Equal(t, []string{"jobs:read", "jobs:submit"}, c.Scopes)

	var stored string
	require.NoError(t, pool.QueryRow(ctx, `SELECT secret_hash FROM oauth_clients WHERE client_id = $1`, c.ID).Scan(&stored))
	require.Regexp(t, `^\$argon2id\$v=19\$m=19456,t=2,p=1\$`, stored)
	require.NotContains(t, stored, secret)

	got, err := store.Authenticate(ctx, c.ID, secret)
	require.NoError(t, err)
	require.Equal(t, c.ID, got.ID)
	_, err = store.Authenticate(ctx, c.ID, secret+"x")
	require.ErrorIs(t, err, oauthclients.ErrInvalidCredentials)
	_, err = store.Authenticate(ctx, "nobody", secret)
	require.ErrorIs(t, err, oauthclients.ErrInvalidCredentials, "unknown ids and wrong secrets look the same")

	_, _, err = store.Create(ctx, oauthclients.NewClient{ID: c.ID})
	require.ErrorIs(t, err, oauthclients.ErrExists)
	_, _, err = store.Create(ctx, oauthclients.NewClient{ID: "bad id"})
	require.Error(t, err)
	_, _, err = store.Create(ctx, oauthclients.NewClient{Scopes: []string{"a\"b"}})
	require.Error(t, err)

	// Scopes are replaced (normalised), never merged.
	c, err = store.SetScopes(ctx, c.ID, []string{"demo:echo", "jobs:read", "demo:echo"})
	require.NoError(t, err)
	require.Equal(t, []string{"demo:echo", "jobs:read"}, c.Scopes)
	_, err = store.SetScopes(ctx, c.ID, []string{"bad scope"})
	require.Error(t, err)
	_, err = store.SetScopes(ctx, "nobody", []string{"a"})
	require.ErrorIs(t, err, oauthclients.ErrNotFound)

	// Disable: the right secret now says disabled; enable restores.
	c, err = store.SetDisabled(ctx, c.ID, true)
	require.NoError(t, err)
	require.True(t, c.Disabled())
	_, err = store.Authenticate(ctx, c.ID, secret)
	require.ErrorIs(t, err, oauthclients.ErrDisabled)
	_, err = store.SetDisabled(ctx, c.ID, false)
	require.NoError(t, err)
	_, err = store.Authenticate(ctx, c.ID, secret)
	require.NoError(t, err)

	// Rotation without grace: the old secret stops at once.
	_, second, err := store.RotateSecret(ctx, c.ID, 0)
	require.NoError(t, err)
	_, err = store.Authenticate(ctx, c.ID, secret)
	require.ErrorIs(t, err, oauthclients.ErrInvalidCredentials)
	_, err = store.Authenticate(ctx, c.ID, second)
	require.NoError(t, err)

	// Rotation with grace: both work until the grace ends.
	c, third, err := store.RotateSecret(ctx, c.ID, time.Hour)
	require.NoError(t, err)
	require.NotNil(t, c.PreviousSecretExpiresAt)
	for _, s := range []string{second, third} {
		_, err = store.Authenticate(ctx, c.ID, s)
		require.NoError(t, err)
	}
	_, err = pool.Exec(ctx, `UPDATE oauth_clients SET previous_secret_expires_at = now() - interval '1s' WHERE client_id = $1`, c.ID)
	require.NoError(t, err)
	_, err = store.Authenticate(ctx, c.ID, second)
	require.ErrorIs(t, err, oauthclients.ErrInvalidCredentials, "the previous secret expires with its grace")

	// A provided secret is used as is.
	_, given, err := store.Create(ctx, oauthclients.NewClient{ID: "provisioned", Secret: "0123456789abcdef0123456789abcdef"})
	require.NoError(t, err)
	require.Equal(t, "0123456789abcdef0123456789abcdef", given)
	_, _, err = store.Create(ctx, oauthclients.NewClient{ID: "short", Secret: "short"})
	require.Error(t, err)

	list, err := store.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
}

// TestDisabledSetFollowsNotifications: a disable reaches the set through
// NOTIFY, well before the (here one-hour) poll.
func TestDisabledSetFollowsNotifications(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dbURL := stacktest.NewDatabase(t)
	pool := stacktest.NewPoolURL(t, dbURL)
	store, err := oauthclients.New(pool)
	require.NoError(t, err)
	c, _, err := store.Create(ctx, oauthclients.NewClient{})
	require.NoError(t, err)

	set := oauthclients.NewDisabledSet(store, database.NewDialer(database.Config{URL: dbURL}), time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.Error(t, set.Ready(ctx), "not ready before the first load")
	_, err = set.Revoked(c.ID)
	require.ErrorIs(t, err, oauthclients.ErrNotLoaded, "fails closed before the first load")
	go set.Run(ctx)
	require.Eventually(t, func() bool { return set.Ready(ctx) == nil }, 10*time.Second, 10*time.Millisecond)
	require.False(t, set.Disabled(c.ID))
	revoked, err := set.Revoked(c.ID)
	require.NoError(t, err)
	require.False(t, revoked)

	start := time.Now()
	_, err = store.SetDisabled(ctx, c.ID, true)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return set.Disabled(c.ID) }, 10*time.Second, 5*time.Millisecond)
	t.Logf("disable propagated in %s", time.Since(start))

	_, err = store.SetDisabled(ctx, c.ID, false)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !set.Disabled(c.ID) }, 10*time.Second, 5*time.Millisecond)
}

// TestPepper: with a pepper, new secrets are stored peppered (the hash
// alone verifies nothing without it); secrets hashed before the pepper
// are refused unless the store is migrating, which re-hashes them on
// success; another pepper is told apart from a wrong secret.
func TestPepper(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	plain, err := oauthclients.New(pool)
	require.NoError(t, err)
	_, oldSecret, err := plain.Create(ctx, oauthclients.NewClient{ID: "before-pepper"})
	require.NoError(t, err)

	peppered, err := oauthclients.New(pool, oauthclients.WithPepper([]byte("pepper-0123456789abcdef")))
	require.NoError(t, err)
	_, secret, err := peppered.Create(ctx, oauthclients.NewClient{ID: "with-pepper"})
	require.NoError(t, err)
	var stored string
	require.NoError(t, pool.QueryRow(ctx, `SELECT secret_hash FROM oauth_clients WHERE client_id = 'with-pepper'`).Scan(&stored))
	require.True(t, strings.HasPrefix(stored, "pepper:"), stored)
	require.NotContains(t, stored, secret)

	_, err = peppered.Authenticate(ctx, "with-pepper", secret)
	require.NoError(t, err)
	_, err = peppered.Authenticate(ctx, "with-pepper", secret+"x")
	require.ErrorIs(t, err, oauthclients.ErrInvalidCredentials)
	_, err = peppered.Authenticate(ctx, "before-pepper", oldSecret)
	require.ErrorIs(t, err, oauthclients.ErrUnpeppered, "a secret hashed before the pepper is refused")

	_, err = plain.Authenticate(ctx, "with-pepper", secret)
	require.ErrorIs(t, err, oauthclients.ErrWrongPepper, "without the pepper, a peppered secret cannot be checked")
	other, err := oauthclients.New(pool, oauthclients.WithPepper([]byte("another-pepper-0123456789")))
	require.NoError(t, err)
	_, err = other.Authenticate(ctx, "with-pepper", secret)
	require.ErrorIs(t, err, oauthclients.ErrWrongPepper)

	// Rotating under the pepper keeps the previous (unpeppered) secret for
	// the grace period, while migrating.
	migrating, err := oauthclients.New(pool, oauthclients.WithPepper([]byte("pepper-0123456789abcdef")), oauthclients.WithUnpepperedAccepted(true))
	require.NoError(t, err)
	_, rotated, err := peppered.RotateSecret(ctx, "before-pepper", time.Hour)
	require.NoError(t, err)
	_, err = peppered.Authenticate(ctx, "before-pepper", rotated)
	require.NoError(t, err)
	_, err = peppered.Authenticate(ctx, "before-pepper", oldSecret)
	require.ErrorIs(t, err, oauthclients.ErrUnpeppered, "the previous, un-peppered secret is refused")
	_, err = migrating.Authenticate(ctx, "before-pepper", oldSecret)
	require.NoError(t, err, "the previous secret, within its grace, while migrating")

	// Migrating re-hashes an un-peppered current secret on success.
	_, unpeppered, err := plain.Create(ctx, oauthclients.NewClient{ID: "migrated"})
	require.NoError(t, err)
	_, err = migrating.Authenticate(ctx, "migrated", unpeppered)
	require.NoError(t, err)
	require.NoError(t, pool.QueryRow(ctx, `SELECT secret_hash FROM oauth_clients WHERE client_id = 'migrated'`).Scan(&stored))
	require.True(t, strings.HasPrefix(stored, "pepper:"), stored)
	_, err = peppered.Authenticate(ctx, "migrated", unpeppered)
	require.NoError(t, err, "re-hashed: accepted without migrating")

	_, err = oauthclients.New(pool, oauthclients.WithPepper([]byte("short")))
	require.ErrorContains(t, err, "at least 16 bytes")
}

// TestHashLimit: with a budget for one check and a short wait, parallel
// checks beyond what fits are refused with ErrBusy (never reported as a
// wrong secret), and the store answers normally once they are done.
func TestHashLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	store, err := oauthclients.New(pool, oauthclients.WithHashLimit(oauthclients.HashLimit{
		MemoryBytes: int64(oauthclients.HashParams.Memory) * 1024, Wait: time.Millisecond, MaxWaiting: 1}))
	require.NoError(t, err)
	_, secret, err := store.Create(ctx, oauthclients.NewClient{ID: "limited"})
	require.NoError(t, err)
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = store.Authenticate(ctx, "limited", secret) })
	}
	wg.Wait()
	busy, ok := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, oauthclients.ErrBusy):
			busy++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	t.Logf("%d parallel checks with room for one: %d checked, %d busy", n, ok, busy)
	require.Positive(t, ok)
	require.Positive(t, busy)
	require.Equal(t, int64(busy), store.BusyRefusals())
	_, err = store.Authenticate(ctx, "limited", secret)
	require.NoError(t, err)

	_, err = oauthclients.New(pool, oauthclients.WithHashLimit(oauthclients.HashLimit{MemoryBytes: 1 << 20}))
	require.ErrorContains(t, err, "must hold at least one check")
}
