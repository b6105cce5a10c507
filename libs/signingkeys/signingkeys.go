// Package signingkeys holds the token service's signing keys and the rules
// by which they rotate without breaking a single token:
//
//   - a new key is added with an activation time in the future (the
//     publication lead); from then on it is published in the JWKS, so every
//     verifier can learn it before any token carries its kid;
//   - at its activation time it becomes the active key and signs every new
//     token;
//   - the key it replaced stays published for the retention period (at
//     least the longest token lifetime plus clock leeway), so that tokens it
//     signed keep verifying until they expire; after that it is dropped.
//
// Keys come from a Source. FileSource reads a JSON file of PKCS#8 PEM keys
// (written by `switchyard keys`); secrets.TransitKeys reads the versions of
// a key of Vault's transit engine, which signs there (SigningMethod signs
// with any crypto.Signer).
package signingkeys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Supported signing algorithms (RFC 7518 / RFC 8037 names).
const (
	ES256 = "ES256"
	EdDSA = "EdDSA"
	RS256 = "RS256"
)

// Algorithms lists the supported signing algorithms.
var Algorithms = []string{ES256, EdDSA, RS256}

// Key is one signing key.
type Key struct {
	// ID is the JWS kid: a thumbprint of the public key.
	ID string
	// Algorithm is ES256, EdDSA or RS256.
	Algorithm string
	// CreatedAt is when the key was generated.
	CreatedAt time.Time
	// ActivatesAt is when the key starts signing; it is published before.
	ActivatesAt time.Time
	// Signer is the private key.
	Signer crypto.Signer
}

// Public returns the public key.
func (k Key) Public() crypto.PublicKey { return k.Signer.Public() }

// Ring is a set of keys ordered by activation time.
type Ring struct {
	Keys []Key
}

// Active returns the key that signs at now: the one activated last.
func (r Ring) Active(now time.Time) (Key, bool) {
	for i := len(r.Keys) - 1; i >= 0; i-- {
		if !r.Keys[i].ActivatesAt.After(now) {
			return r.Keys[i], true
		}
	}
	return Key{}, false
}

// Published returns the keys a verifier needs at now: every key not yet
// active, the active key, and every key replaced less than retention ago.
func (r Ring) Published(now time.Time, retention time.Duration) []Key {
	var out []Key
	for i, k := range r.Keys {
		if i+1 < len(r.Keys) {
			replacedAt := r.Keys[i+1].ActivatesAt
			if !replacedAt.After(now) && now.Sub(replacedAt) >= retention {
				continue // replaced long enough ago that its tokens expired
			}
		}
		out = append(out, k)
	}
	return out
}

// Rotate returns the ring with a new key of algorithm alg that activates
// at now+lead, without the keys replaced more than retention before now.
func (r Ring) Rotate(alg string, now time.Time, lead, retention time.Duration) (Ring, Key, error) {
	if lead < 0 || retention < 0 {
		return Ring{}, Key{}, errors.New("lead and retention cannot be negative")
	}
	k, err := Generate(alg, now, now.Add(lead))
	if err != nil {
		return Ring{}, Key{}, err
	}
	keys := append(r.Published(now, retention), k)
	slices.SortStableFunc(keys, func(a, b Key) int { return a.ActivatesAt.Compare(b.ActivatesAt) })
	return Ring{Keys: keys}, k, nil
}

// Generate creates a key for alg.
func Generate(alg string, now, activatesAt time.Time) (Key, error) {
	var signer crypto.Signer
	var err error
	switch alg {
	case ES256:
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case EdDSA:
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	case RS256:
		signer, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		return Key{}, fmt.Errorf("unsupported signing algorithm %q (supported: %v)", alg, Algorithms)
	}
	if err != nil {
		return Key{}, fmt.Errorf("generating %s key: %w", alg, err)
	}
	id, err := thumbprint(signer.Public())
	if err != nil {
		return Key{}, err
	}
	return Key{ID: id, Algorithm: alg, CreatedAt: now.UTC(), ActivatesAt: activatesAt.UTC(), Signer: signer}, nil
}

// KeyID is the kid of a public key: the first 128 bits of the SHA-256 of
// its SubjectPublicKeyInfo, base64url.
func KeyID(pub crypto.PublicKey) (string, error) { return thumbprint(pub) }

// thumbprint names a key by the SHA-256 of its SubjectPublicKeyInfo.
func thumbprint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encoding public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:16]), nil
}

// Source supplies the current key ring.
type Source interface {
	// Load returns the ring as it is now.
	Load(ctx context.Context) (Ring, error)
}

// FileSource reads the ring from a JSON key file.
type FileSource struct {
	Path string
}

// Load implements Source.
func (f FileSource) Load(context.Context) (Ring, error) {
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return Ring{}, fmt.Errorf("reading signing keys: %w", err)
	}
	r, err := Parse(data)
	if err != nil {
		return Ring{}, fmt.Errorf("signing keys file %s: %w", f.Path, err)
	}
	return r, nil
}

type fileDoc struct {
	Keys []fileKey `json:"keys"`
}

type fileKey struct {
	ID          string    `json:"kid"`
	Algorithm   string    `json:"alg"`
	CreatedAt   time.Time `json:"created_at"`
	ActivatesAt time.Time `json:"activates_at"`
	PrivateKey  string    `json:"private_key"`
}

// Parse reads a key file document.
func Parse(data []byte) (Ring, error) {
	var doc fileDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return Ring{}, fmt.Errorf("parsing JSON: %w", err)
	}
	r := Ring{Keys: make([]Key, 0, len(doc.Keys))}
	seen := map[string]bool{}
	for i, fk := range doc.Keys {
		k, err := fk.key()
		if err != nil {
			return Ring{}, fmt.Errorf("keys[%d]: %w", i, err)
		}
		if seen[k.ID] {
			return Ring{}, fmt.Errorf("keys[%d]: duplicate kid %q", i, k.ID)
		}
		seen[k.ID] = true
		r.Keys = append(r.Keys, k)
	}
	slices.SortStableFunc(r.Keys, func(a, b Key) int { return a.ActivatesAt.Compare(b.ActivatesAt) })
	return r, nil
}

func (fk fileKey) key() (Key, error) {
	block, _ := pem.Decode([]byte(fk.PrivateKey))
	if block == nil || block.Type != "PRIVATE KEY" {
		return Key{}, errors.New("private_key must be a PKCS#8 PEM block (BEGIN PRIVATE KEY)")
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return Key{}, fmt.Errorf("parsing private_key: %w", err)
	}
	signer, ok := parsed.(crypto.Signer)
	if !ok {
		return Key{}, errors.New("private_key is not a signing key")
	}
	if err := checkAlgorithm(fk.Algorithm, signer); err != nil {
		return Key{}, err
	}
	id, err := thumbprint(signer.Public())
	if err != nil {
		return Key{}, err
	}
	if fk.ID != "" && fk.ID != id {
		return Key{}, fmt.Errorf("kid %q does not match the key's thumbprint %q", fk.ID, id)
	}
	if fk.ActivatesAt.IsZero() {
		return Key{}, errors.New("activates_at is required")
	}
	return Key{ID: id, Algorithm: fk.Algorithm, CreatedAt: fk.CreatedAt, ActivatesAt: fk.ActivatesAt, Signer: signer}, nil
}

func checkAlgorithm(alg string, signer crypto.Signer) error {
	switch k := signer.(type) {
	case *ecdsa.PrivateKey:
		if alg == ES256 && k.Curve == elliptic.P256() {
			return nil
		}
	case ed25519.PrivateKey:
		if alg == EdDSA {
			return nil
		}
	case *rsa.PrivateKey:
		if alg == RS256 && k.N.BitLen() >= 2048 {
			return nil
		}
	}
	return fmt.Errorf("alg %q does not fit the key (%T); supported: ES256 with P-256, EdDSA with Ed25519, RS256 with RSA >= 2048 bits", alg, signer)
}

// Marshal encodes a ring as a key file document.
func Marshal(r Ring) ([]byte, error) {
	doc := fileDoc{Keys: make([]fileKey, 0, len(r.Keys))}
	for _, k := range r.Keys {
		der, err := x509.MarshalPKCS8PrivateKey(k.Signer)
		if err != nil {
			return nil, fmt.Errorf("encoding key %s: %w", k.ID, err)
		}
		doc.Keys = append(doc.Keys, fileKey{
			ID: k.ID, Algorithm: k.Algorithm, CreatedAt: k.CreatedAt, ActivatesAt: k.ActivatesAt,
			PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		})
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding key file: %w", err)
	}
	return append(data, '\n'), nil
}

// WriteFile writes r to path atomically (temporary file + rename), readable
// by its owner only.
func WriteFile(path string, r Ring) error {
	data, err := Marshal(r)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".signing-keys-*")
	if err != nil {
		return fmt.Errorf("writing signing keys: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("writing signing keys: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("writing signing keys: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing signing keys: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing signing keys: %w", err)
	}
	return nil
}
