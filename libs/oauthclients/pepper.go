package oauthclients

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/alexedwards/argon2id"
)

// Option configures a Store.
type Option func(*Store)

// WithPepper hashes new and rotated secrets with pepper: the secret is
// HMAC-SHA256'd with it before argon2id, so that a copy of the database
// alone does not let anyone test guesses offline. The pepper lives in a
// secret store (Vault), never in the database. Secrets hashed before a
// pepper was configured keep working; a secret hashed with another pepper
// is refused (its client needs a new secret), which is what changing the
// pepper means.
func WithPepper(pepper []byte) Option {
	return func(s *Store) {
		if len(pepper) > 0 {
			s.pepper = append([]byte(nil), pepper...)
		}
	}
}

// pepperedPrefix marks a peppered hash: "pepper:<id>:<PHC string>", id the
// first 8 hex digits of the pepper's SHA-256 (naming it, not revealing it).
const pepperedPrefix = "pepper:"

// MinPepperLength is the shortest pepper accepted.
const MinPepperLength = 16

// ErrWrongPepper is returned when a secret was hashed with a pepper other
// than the configured one.
var ErrWrongPepper = errors.New("the secret was hashed with another pepper")

func pepperID(pepper []byte) string {
	sum := sha256.Sum256(pepper)
	return hex.EncodeToString(sum[:4])
}

func (s *Store) pepperInput(secret string) string {
	mac := hmac.New(sha256.New, s.pepper)
	mac.Write([]byte(secret))
	return base64.RawStdEncoding.EncodeToString(mac.Sum(nil))
}

// hash returns the stored form of secret.
func (s *Store) hash(secret string) (string, error) {
	if s.pepper == nil {
		h, err := argon2id.CreateHash(secret, HashParams)
		if err != nil {
			return "", fmt.Errorf("hashing client secret: %w", err)
		}
		return h, nil
	}
	h, err := argon2id.CreateHash(s.pepperInput(secret), HashParams)
	if err != nil {
		return "", fmt.Errorf("hashing client secret: %w", err)
	}
	return pepperedPrefix + pepperID(s.pepper) + ":" + h, nil
}

// matches compares secret with a stored hash, in constant time.
func (s *Store) matches(secret, stored string) (bool, error) {
	rest, peppered := strings.CutPrefix(stored, pepperedPrefix)
	if !peppered {
		return argon2id.ComparePasswordAndHash(secret, stored)
	}
	id, phc, ok := strings.Cut(rest, ":")
	if !ok {
		return false, errors.New("malformed peppered hash")
	}
	if s.pepper == nil || id != pepperID(s.pepper) {
		// Spend the same time as a comparison, then say why.
		_, _ = argon2id.ComparePasswordAndHash(secret, s.dummyHash)
		if s.pepper == nil {
			return false, fmt.Errorf("%w (%s) and no pepper is configured", ErrWrongPepper, id)
		}
		return false, fmt.Errorf("%w (%s, not the configured %s)", ErrWrongPepper, id, pepperID(s.pepper))
	}
	return argon2id.ComparePasswordAndHash(s.pepperInput(secret), phc)
}
