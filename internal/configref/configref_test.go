package configref_test

import (
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/internal/configref"
)

var update = flag.Bool("update", false, "rewrite docs/configuration-reference.md from the code")

const root = "../.."

var page = filepath.Join(root, "docs", "configuration-reference.md")

// TestReferenceIsCurrent: the committed reference is what the code
// declares today.
func TestReferenceIsCurrent(t *testing.T) {
	settings, err := configref.Collect(root)
	require.NoError(t, err)
	want := configref.Markdown(settings)
	if *update {
		require.NoError(t, os.WriteFile(page, []byte(want), 0o644))
	}
	got, err := os.ReadFile(page)
	require.NoError(t, err)
	require.Equal(t, want, string(got), "docs/configuration-reference.md is out of date: go test ./internal/configref -update")
}

// TestCollectFindsEveryService: the walk reaches nested and shared
// configurations (the queue settings of three services, the Vault login of
// all five, the gateway's edge and auth settings).
func TestCollectFindsEveryService(t *testing.T) {
	settings, err := configref.Collect(root)
	require.NoError(t, err)
	by := map[string]configref.Setting{}
	for _, s := range settings {
		if prev, ok := by[s.Env]; ok {
			s.Services = append(append([]string{}, prev.Services...), s.Services...)
			sort.Strings(s.Services)
		}
		by[s.Env] = s
	}
	require.Equal(t, []string{"gateway", "relay", "replay", "tokens", "worker"}, by["DATABASE_URL"].Services)
	require.True(t, by["DATABASE_URL"].Required && by["DATABASE_URL"].Secret)
	require.Equal(t, []string{"gateway", "relay", "replay", "tokens", "worker"}, by["VAULT_ADDR"].Services)
	require.Equal(t, []string{"relay", "replay", "worker"}, by["SWITCHYARD_QUEUE_PREFIX"].Services)
	require.Equal(t, "switchyard-", by["SWITCHYARD_QUEUE_PREFIX"].Default)
	require.Contains(t, by, "SWITCHYARD_EDGE_TRUSTED_PROXIES")
	require.Contains(t, by["SWITCHYARD_AUTH_ISSUER"].Services, "gateway")
	require.Greater(t, len(settings), 80)
}

// TestHelpHasNoComma: conf reads a tag's options up to each comma, so a
// comma in a help text cuts what --help shows at it.
func TestHelpHasNoComma(t *testing.T) {
	settings, err := configref.Collect(root)
	require.NoError(t, err)
	for _, s := range settings {
		assert.False(t, strings.Contains(s.Help, ","), "%s (%s): its help has a comma, where --help cuts it: %q", s.Env, s.Where, s.Help)
	}
}
