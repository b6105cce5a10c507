package signingkeys_test

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/signingkeys"
)

// TestSigningMethodMatchesGolangJWT: a token signed through a
// crypto.Signer verifies with golang-jwt's own methods, for every
// algorithm, and is refused with another key.
func TestSigningMethodMatchesGolangJWT(t *testing.T) {
	t.Parallel()
	for _, alg := range signingkeys.Algorithms {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			key, err := signingkeys.Generate(alg, time.Now(), time.Now())
			require.NoError(t, err)
			other, err := signingkeys.Generate(alg, time.Now(), time.Now())
			require.NoError(t, err)
			method, err := signingkeys.SigningMethod(alg)
			require.NoError(t, err)
			for range 20 { // ECDSA: r and s of every length pad to 32 bytes
				s, err := jwt.NewWithClaims(method, jwt.MapClaims{"sub": "x"}).SignedString(key.Signer)
				require.NoError(t, err)
				_, err = jwt.Parse(s, func(*jwt.Token) (any, error) { return key.Public(), nil }, jwt.WithValidMethods([]string{alg}))
				require.NoError(t, err)
				_, err = jwt.Parse(s, func(*jwt.Token) (any, error) { return other.Public(), nil }, jwt.WithValidMethods([]string{alg}))
				require.Error(t, err)
			}
		})
	}
	_, err := signingkeys.SigningMethod("HS256")
	require.Error(t, err)
	method, _ := signingkeys.SigningMethod(signingkeys.ES256)
	_, err = method.Sign("x", "not a signer")
	require.ErrorContains(t, err, "needs a crypto.Signer")
}
