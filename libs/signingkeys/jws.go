package signingkeys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/golang-jwt/jwt/v5"
)

// SigningMethod returns the JWT signing method of alg that signs with any
// crypto.Signer: a key in memory, or one that lives elsewhere and signs
// there (Vault's transit engine), which golang-jwt's own methods cannot
// take. Signatures are the same bytes golang-jwt's methods make, so
// verifiers use the standard methods.
func SigningMethod(alg string) (jwt.SigningMethod, error) {
	switch alg {
	case ES256, EdDSA, RS256:
		return signerMethod{alg: alg, verify: jwt.GetSigningMethod(alg)}, nil
	}
	return nil, fmt.Errorf("no signing method for %q", alg)
}

type signerMethod struct {
	alg    string
	verify jwt.SigningMethod
}

func (m signerMethod) Alg() string { return m.alg }

// Verify delegates to golang-jwt's method of the algorithm.
func (m signerMethod) Verify(signingString string, sig []byte, key any) error {
	return m.verify.Verify(signingString, sig, key)
}

// Sign signs with key, a crypto.Signer.
func (m signerMethod) Sign(signingString string, key any) ([]byte, error) {
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s signing needs a crypto.Signer, not %T", m.alg, key)
	}
	switch m.alg {
	case EdDSA:
		// Ed25519 signs the message itself.
		return signer.Sign(rand.Reader, []byte(signingString), crypto.Hash(0))
	case RS256:
		digest := sha256Sum(signingString)
		return signer.Sign(rand.Reader, digest, crypto.SHA256)
	default: // ES256: crypto.Signer gives ASN.1 DER; JWS wants r || s.
		digest := sha256Sum(signingString)
		der, err := signer.Sign(rand.Reader, digest, crypto.SHA256)
		if err != nil {
			return nil, err
		}
		return derToJWS(der, signer.Public())
	}
}

func sha256Sum(s string) []byte {
	h := crypto.SHA256.New()
	h.Write([]byte(s))
	return h.Sum(nil)
}

// derToJWS turns an ASN.1 ECDSA signature into the fixed-size r || s of
// RFC 7518 §3.4.
func derToJWS(der []byte, pub crypto.PublicKey) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &sig); err != nil || len(rest) > 0 {
		return nil, errors.New("the signer returned a malformed ECDSA signature")
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("an ES256 key has an ECDSA public key, not %T", pub)
	}
	size := (ec.Curve.Params().BitSize + 7) / 8
	out := make([]byte, 2*size)
	sig.R.FillBytes(out[:size])
	sig.S.FillBytes(out[size:])
	return out, nil
}
