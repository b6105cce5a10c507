package signingkeys_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/signingkeys"
)

func ids(keys []signingkeys.Key) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.ID
	}
	return out
}

// TestRotationPublishesBeforeUseAndRetainsAfter walks one key's life:
// published before it signs, signing, then published until retention ends.
func TestRotationPublishesBeforeUseAndRetainsAfter(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lead, retain := 10*time.Minute, 20*time.Minute
	ring, first, err := signingkeys.Ring{}.Rotate(signingkeys.ES256, t0, 0, retain)
	require.NoError(t, err)
	active, ok := ring.Active(t0)
	require.True(t, ok)
	require.Equal(t, first.ID, active.ID)

	t1 := t0.Add(time.Hour)
	ring, second, err := ring.Rotate(signingkeys.EdDSA, t1, lead, retain)
	require.NoError(t, err)
	require.NotEqual(t, first.ID, second.ID)

	// Before activation: the old key signs, both are published.
	active, _ = ring.Active(t1.Add(lead - time.Second))
	require.Equal(t, first.ID, active.ID)
	require.Equal(t, []string{first.ID, second.ID}, ids(ring.Published(t1, retain)))
	// After activation: the new key signs, the old one is still published.
	active, _ = ring.Active(t1.Add(lead))
	require.Equal(t, second.ID, active.ID)
	require.Equal(t, []string{first.ID, second.ID}, ids(ring.Published(t1.Add(lead+retain-time.Second), retain)))
	// Once retention has passed, the old key is gone.
	require.Equal(t, []string{second.ID}, ids(ring.Published(t1.Add(lead+retain), retain)))

	// A later rotation prunes it from the ring itself.
	ring, third, err := ring.Rotate(signingkeys.RS256, t1.Add(lead+retain), lead, retain)
	require.NoError(t, err)
	require.Equal(t, []string{second.ID, third.ID}, ids(ring.Keys))
}

func TestFileRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Now()
	ring, _, err := signingkeys.Ring{}.Rotate(signingkeys.ES256, now, 0, time.Hour)
	require.NoError(t, err)
	ring, _, err = ring.Rotate(signingkeys.EdDSA, now, time.Minute, time.Hour)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "keys.json")
	require.NoError(t, signingkeys.WriteFile(path, ring))
	back, err := signingkeys.FileSource{Path: path}.Load(context.Background())
	require.NoError(t, err)
	require.Equal(t, ids(ring.Keys), ids(back.Keys))
	for i := range ring.Keys {
		require.Equal(t, ring.Keys[i].Algorithm, back.Keys[i].Algorithm)
		require.True(t, ring.Keys[i].ActivatesAt.Equal(back.Keys[i].ActivatesAt))
	}
}

func TestParseRefusesBadKeys(t *testing.T) {
	t.Parallel()
	now := time.Now()
	ring, _, err := signingkeys.Ring{}.Rotate(signingkeys.ES256, now, 0, time.Hour)
	require.NoError(t, err)
	good, err := signingkeys.Marshal(ring)
	require.NoError(t, err)
	for name, doc := range map[string]string{
		"not JSON":      `{`,
		"no PEM":        `{"keys":[{"alg":"ES256","activates_at":"2026-01-01T00:00:00Z","private_key":"x"}]}`,
		"wrong alg":     string(replace(good, `"alg": "ES256"`, `"alg": "RS256"`)),
		"wrong kid":     string(replace(good, `"kid": "`, `"kid": "x`)),
		"no activation": string(replace(good, `"activates_at"`, `"ignored"`)),
	} {
		_, err := signingkeys.Parse([]byte(doc))
		require.Error(t, err, name)
	}
}

func replace(b []byte, old, replacement string) []byte {
	if !strings.Contains(string(b), old) {
		panic("not found: " + old)
	}
	return []byte(strings.Replace(string(b), old, replacement, 1))
}
