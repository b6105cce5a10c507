package yamlenv_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/switchyard/switchyard/libs/yamlenv"
)

func TestExpand(t *testing.T) {
	t.Setenv("YAMLENV_HOST", "upstream:8090")
	var n yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte(`
url: http://${YAMLENV_HOST}/x/{id}
fallback: ${YAMLENV_UNSET:-http://127.0.0.1:1}
${YAMLENV_HOST}: keys stay as written
schema: {$ref: "#/defs/a"}
`), &n))
	require.NoError(t, yamlenv.Expand(&n))
	var out map[string]any
	require.NoError(t, n.Decode(&out))
	require.Equal(t, "http://upstream:8090/x/{id}", out["url"])
	require.Equal(t, "http://127.0.0.1:1", out["fallback"])
	require.Equal(t, "keys stay as written", out["${YAMLENV_HOST}"])
	require.Equal(t, map[string]any{"$ref": "#/defs/a"}, out["schema"])

	var missing yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte("a: 1\nb: ${YAMLENV_MISSING}\n"), &missing))
	require.EqualError(t, yamlenv.Expand(&missing), "line 2: environment variable YAMLENV_MISSING is not set")
}

func TestExpandedTypes(t *testing.T) {
	t.Setenv("YAMLENV_RATE", "100")
	var n yaml.Node
	require.NoError(t, yaml.Unmarshal([]byte("rate: ${YAMLENV_RATE}\nquoted: \"${YAMLENV_RATE}\"\nflag: ${YAMLENV_FLAG:-true}\n"), &n))
	require.NoError(t, yamlenv.Expand(&n))
	m := n.Content[0]
	require.Equal(t, "!!int", m.Content[1].Tag)
	require.Equal(t, "!!str", m.Content[3].Tag, "quoted stays a string")
	require.Equal(t, "!!bool", m.Content[5].Tag)
}
