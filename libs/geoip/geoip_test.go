package geoip

import (
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/geoip/geoiptest"
)

func TestCountry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "country.mmdb")
	geoiptest.Write(t, path, map[string]string{"192.0.2.0/24": "DE", "2001:db8:1::/48": "FR", "198.51.100.0/24": "KP"})
	db, err := Open(path, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	for addr, want := range map[string]string{
		"192.0.2.55": "DE", "::ffff:192.0.2.55": "DE", "2001:db8:1::9": "FR", "198.51.100.1": "KP",
		"203.0.113.1": Unknown, "10.0.0.1": Unknown, "2001:db8:2::1": Unknown,
	} {
		assert.Equal(t, want, db.Country(netip.MustParseAddr(addr)), addr)
	}
	assert.Equal(t, Unknown, db.Country(netip.Addr{}))

	var reloads atomic.Int32
	db.OnReload = func(err error) {
		if err == nil {
			reloads.Add(1)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go db.Run(ctx, 10*time.Millisecond)
	geoiptest.Write(t, path, map[string]string{"192.0.2.0/24": "NL"})
	require.Eventually(t, func() bool { return reloads.Load() >= 1 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, "NL", db.Country(netip.MustParseAddr("192.0.2.55")))
}

func TestOpenRefusesGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.mmdb")
	geoiptest.WriteRaw(t, path, []byte("not a database"))
	_, err := Open(path, nil)
	require.Error(t, err)
	_, err = Open(filepath.Join(t.TempDir(), "missing.mmdb"), nil)
	require.Error(t, err)
}
