// Package apikeys is Switchyard's API keys: long-lived credentials a client
// may hold besides its OAuth2 secret, each with its own scopes (a subset
// of the client's), optional expiry, source networks and usage plan.
//
// A key reads "sy_" + a 16-character id + "_" + 52 characters of secret +
// a 7-character checksum, all lower-case base32: the prefix makes keys
// recognisable to people and secret scanners, the id names the key in
// logs, metrics and audit rows (never the key itself), and the checksum
// (CRC-32 of the rest) lets a scanner, or the gateway, tell a key from a
// random string without any lookup. The secret is 256 random bits, so a
// fast keyed hash is enough to store it: the store keeps HMAC-SHA256 of
// the whole key under a pepper that lives outside the database (Vault),
// so that a copy of the table neither reveals nor checks a key.
//
// Gateways keep every usable key in memory (Set), reloaded when Postgres
// announces a change and by a poll: checking a key, known or not, costs a
// map lookup and one HMAC, never a query, and a revocation reaches every
// gateway within the notification's delay.
package apikeys

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"strings"
	"sync"
	"unsafe"
)

// Prefix starts every key.
const Prefix = "sy_"

const (
	idBytes     = 10 // 16 base32 characters
	secretBytes = 32 // 52 base32 characters
	idLen       = 16
	secretLen   = 52
	checksumLen = 7
	// KeyLength is the length of every key.
	KeyLength = len(Prefix) + idLen + 1 + secretLen + checksumLen
)

var encoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// MinPepperLength is the shortest pepper accepted.
const MinPepperLength = 16

// Hasher computes the stored form of keys under one pepper.
type Hasher struct {
	pepper []byte
	id     string
	// macs holds keyed HMAC states for reuse: a key check on the request
	// path allocates none.
	macs sync.Pool
}

// NewHasher returns a Hasher for pepper (at least MinPepperLength bytes).
func NewHasher(pepper []byte) (*Hasher, error) {
	if len(pepper) < MinPepperLength {
		return nil, fmt.Errorf("the API key pepper must be at least %d bytes (it is %d)", MinPepperLength, len(pepper))
	}
	sum := sha256.Sum256(pepper)
	h := &Hasher{pepper: append([]byte(nil), pepper...), id: hex.EncodeToString(sum[:4])}
	h.macs.New = func() any { return hmac.New(sha256.New, h.pepper) }
	return h, nil
}

// PepperID names the pepper (the first 8 hex digits of its SHA-256)
// without revealing it; it is stored with each hash.
func (h *Hasher) PepperID() string { return h.id }

// Hash returns HMAC-SHA256(pepper, key).
func (h *Hasher) Hash(key string) [32]byte {
	mac := h.macs.Get().(hash.Hash) //nolint:errcheck // the pool holds only these
	mac.Reset()
	_, _ = io.WriteString(mac, key)
	var out [32]byte
	mac.Sum(out[:0])
	h.macs.Put(mac)
	return out
}

// Generate returns a new key and its id.
func Generate() (key, id string, err error) {
	raw := make([]byte, idBytes+secretBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", "", fmt.Errorf("generating an API key: %w", err)
	}
	id = encoding.EncodeToString(raw[:idBytes])
	body := Prefix + id + "_" + encoding.EncodeToString(raw[idBytes:])
	sum := checksum(body)
	return body + string(sum[:]), id, nil
}

// checksum is the base32 of CRC-32 (IEEE) of body, computed without
// allocating.
func checksum(body string) [checksumLen]byte {
	var crc [4]byte
	binary.BigEndian.PutUint32(crc[:], crc32.ChecksumIEEE(readOnlyBytes(body)))
	var out [checksumLen]byte
	encoding.Encode(out[:], crc[:])
	return out
}

// ErrMalformed is returned for a string not shaped like a key (or whose
// checksum is wrong): no lookup is needed to refuse it.
var ErrMalformed = errors.New("not an API key")

// Parse checks key's shape and checksum and returns its id.
func Parse(key string) (id string, err error) {
	if len(key) != KeyLength || !strings.HasPrefix(key, Prefix) || key[len(Prefix)+idLen] != '_' {
		return "", ErrMalformed
	}
	for i := len(Prefix); i < len(key); i++ {
		c := key[i]
		if i == len(Prefix)+idLen {
			continue
		}
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return "", ErrMalformed
		}
	}
	sum := checksum(key[:len(key)-checksumLen])
	if string(sum[:]) != key[len(key)-checksumLen:] {
		return "", ErrMalformed
	}
	return key[len(Prefix) : len(Prefix)+idLen], nil
}

// ValidID reports whether id is shaped like a key id.
func ValidID(id string) bool {
	if len(id) != idLen {
		return false
	}
	for i := range len(id) {
		if c := id[i]; (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

// readOnlyBytes views s as bytes without copying, for crc32, which only
// reads them: a conversion would allocate on every key check (crc32's
// assembly makes its argument escape).
func readOnlyBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s)) //nolint:gosec // read only, not kept (see above)
}
