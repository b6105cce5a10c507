package handlerregistry_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/handlerregistry"
)

func TestRegistry(t *testing.T) {
	t.Parallel()
	r := handlerregistry.New[int]()
	require.NoError(t, r.Register("b", 2))
	require.NoError(t, r.Register("a", 1))
	require.ErrorContains(t, r.Register("a", 3), `"a" registered twice`)
	require.Error(t, r.Register("", 4))
	v, ok := r.Lookup("a")
	require.True(t, ok)
	require.Equal(t, 1, v)
	require.True(t, r.Has("b"))
	require.False(t, r.Has("c"))
	require.Equal(t, []string{"a", "b"}, r.Names())
}
