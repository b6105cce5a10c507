package apikeys_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/apikeys"
)

func TestGenerateAndParse(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		key, id, err := apikeys.Generate()
		require.NoError(t, err)
		require.Len(t, key, apikeys.KeyLength)
		require.True(t, strings.HasPrefix(key, "sy_"+id+"_"), key)
		require.True(t, apikeys.ValidID(id))
		got, err := apikeys.Parse(key)
		require.NoError(t, err)
		require.Equal(t, id, got)
		require.False(t, seen[key])
		seen[key] = true
	}
}

func TestParseRefusesWhatIsNotAKey(t *testing.T) {
	t.Parallel()
	key, _, err := apikeys.Generate()
	require.NoError(t, err)
	flip := func(i int) string {
		b := []byte(key)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	for name, s := range map[string]string{
		"empty":               "",
		"short":               key[:len(key)-1],
		"long":                key + "a",
		"other prefix":        "sk" + key[2:],
		"upper case":          strings.ToUpper(key),
		"a secret digit off":  flip(30),
		"an id character off": flip(5),
		"checksum off":        flip(len(key) - 1),
		"no separator":        key[:19] + "a" + key[20:],
	} {
		_, err := apikeys.Parse(s)
		require.ErrorIs(t, err, apikeys.ErrMalformed, name)
	}
}

func TestHasherNeedsALongPepperAndIsKeyed(t *testing.T) {
	t.Parallel()
	_, err := apikeys.NewHasher([]byte("short"))
	require.Error(t, err)
	a, err := apikeys.NewHasher([]byte("pepper-number-one-0123"))
	require.NoError(t, err)
	b, err := apikeys.NewHasher([]byte("pepper-number-two-0123"))
	require.NoError(t, err)
	require.NotEqual(t, a.Hash("sy_x"), b.Hash("sy_x"), "another pepper, another hash")
	require.NotEqual(t, a.PepperID(), b.PepperID())
	require.Len(t, a.PepperID(), 8)
}
