package oauthclients

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
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

// WithUnpepperedAccepted keeps accepting secrets hashed before a pepper
// was configured (a migration setting): each one that authenticates is
// re-hashed with the pepper, so that the setting can be turned off once
// every client has authenticated since. Without it, and with a pepper,
// an un-peppered hash is refused (ErrUnpeppered): otherwise a copy of the
// database alone would still let anyone test guesses for it offline.
func WithUnpepperedAccepted(accept bool) Option {
	return func(s *Store) { s.acceptUnpeppered = accept }
}

// ErrUnpeppered is returned when a pepper is configured and the secret's
// hash was made without one (and such hashes are not accepted).
var ErrUnpeppered = errors.New("the secret was hashed without the configured pepper")

// hash returns the stored form of secret.
func (s *Store) hash(ctx context.Context, secret string) (string, error) {
	if s.pepper == nil {
		return s.create(ctx, secret)
	}
	h, err := s.create(ctx, s.pepperInput(secret))
	if err != nil {
		return "", err
	}
	return pepperedPrefix + pepperID(s.pepper) + ":" + h, nil
}

// matches compares secret with a stored hash, in constant time. upgrade
// reports that the hash matched but should be replaced by a peppered one.
func (s *Store) matches(ctx context.Context, secret, stored string) (ok, upgrade bool, err error) {
	rest, peppered := strings.CutPrefix(stored, pepperedPrefix)
	if !peppered {
		if s.pepper != nil && !s.acceptUnpeppered {
			// Spend the same time as a comparison, then say why.
			_, _ = s.compare(ctx, secret, s.dummyHash)
			return false, false, ErrUnpeppered
		}
		ok, err := s.compare(ctx, secret, stored)
		return ok, ok && s.pepper != nil, err
	}
	id, phc, ok := strings.Cut(rest, ":")
	if !ok {
		return false, false, errors.New("malformed peppered hash")
	}
	if s.pepper == nil || id != pepperID(s.pepper) {
		_, _ = s.compare(ctx, secret, s.dummyHash)
		if s.pepper == nil {
			return false, false, fmt.Errorf("%w (%s) and no pepper is configured", ErrWrongPepper, id)
		}
		return false, false, fmt.Errorf("%w (%s, not the configured %s)", ErrWrongPepper, id, pepperID(s.pepper))
	}
	ok, err = s.compare(ctx, s.pepperInput(secret), phc)
	return ok, false, err
}
