// Package docscheck holds the checks of the documentation that no other
// test makes: the README's index lists every page, and no page links to
// a path outside the repository.
package docscheck_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const root = "../.."

// TestReadmeIndexesEveryPage: each page under docs/ is linked from the
// README, which is the front door.
func TestReadmeIndexesEveryPage(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	require.NotEmpty(t, pages)
	for _, p := range pages {
		assert.Contains(t, string(readme), "(docs/"+filepath.Base(p)+")", "README.md does not link docs/%s", filepath.Base(p))
	}
	lines := strings.Count(string(readme), "\n")
	assert.LessOrEqual(t, lines, 250, "the README is a front door: at most 250 lines")
}

var link = regexp.MustCompile(`\]\(([^)#\s]+)`)

// TestLinksStayInTheRepository: every relative link of the README and the
// docs resolves to a file or directory of the repository.
func TestLinksStayInTheRepository(t *testing.T) {
	abs, err := filepath.Abs(root)
	require.NoError(t, err)
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	pages = append(pages, filepath.Join(root, "README.md"), filepath.Join(root, "deployments", "k8s", "README.md"))
	for _, p := range pages {
		src, err := os.ReadFile(p)
		require.NoError(t, err)
		for _, m := range link.FindAllStringSubmatch(string(src), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			resolved, err := filepath.Abs(filepath.Join(filepath.Dir(p), target))
			require.NoError(t, err)
			rel, err := filepath.Rel(abs, resolved)
			if !assert.NoError(t, err) {
				continue
			}
			assert.False(t, strings.HasPrefix(rel, ".."), "%s links %s, outside the repository", p, target)
			_, err = os.Stat(resolved)
			assert.NoError(t, err, "%s links %s, which does not exist", p, target)
		}
	}
}
