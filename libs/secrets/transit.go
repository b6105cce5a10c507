package secrets

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/libs/signingkeys"
)

// TransitKeys is a signingkeys.Source whose keys are the versions of one
// key of Vault's transit engine: the private keys never leave Vault, which
// signs every token (one call per token; transit's own audit log records
// it). A version becomes active lead after Vault created it, so that it
// is published in the JWKS first (the first version is active at once).
// Rotating is `vault write -f <mount>/keys/<name>/rotate`; the token
// service picks the new version up on its next reload.
type TransitKeys struct {
	client      *Client
	mount, name string
	lead        time.Duration
}

// TransitKeys returns the Source for key name of the transit engine at
// mount.
func (c *Client) TransitKeys(mount, name string, lead time.Duration) *TransitKeys {
	return &TransitKeys{client: c, mount: strings.Trim(mount, "/"), name: name, lead: lead}
}

// transitAlgorithms maps transit key types to JWS algorithms.
var transitAlgorithms = map[string]string{
	"ecdsa-p256": signingkeys.ES256, "ed25519": signingkeys.EdDSA,
	"rsa-2048": signingkeys.RS256, "rsa-3072": signingkeys.RS256, "rsa-4096": signingkeys.RS256,
}

// Load implements signingkeys.Source.
func (t *TransitKeys) Load(ctx context.Context) (signingkeys.Ring, error) {
	if t.client == nil {
		return signingkeys.Ring{}, ErrDisabled
	}
	path := t.mount + "/keys/" + t.name
	var data map[string]any
	err := t.client.withToken(ctx, func() error {
		s, err := t.client.api.Logical().ReadWithContext(ctx, path)
		if err != nil {
			return err
		}
		if s == nil {
			return fmt.Errorf("no transit key %s", path)
		}
		data = s.Data
		return nil
	})
	if err != nil {
		return signingkeys.Ring{}, fmt.Errorf("reading transit key %s: %w", path, err)
	}
	typ, _ := data["type"].(string)
	alg, ok := transitAlgorithms[typ]
	if !ok {
		return signingkeys.Ring{}, fmt.Errorf("transit key %s is of type %q; tokens need ecdsa-p256, ed25519 or rsa-*", path, typ)
	}
	versions, _ := data["keys"].(map[string]any)
	var nums []int
	for v := range versions {
		n, err := strconv.Atoi(v)
		if err != nil {
			return signingkeys.Ring{}, fmt.Errorf("transit key %s: version %q", path, v)
		}
		nums = append(nums, n)
	}
	slices.Sort(nums)
	var ring signingkeys.Ring
	for i, n := range nums {
		meta, _ := versions[strconv.Itoa(n)].(map[string]any)
		pub, err := parseTransitPublic(typ, meta)
		if err != nil {
			return signingkeys.Ring{}, fmt.Errorf("transit key %s version %d: %w", path, n, err)
		}
		created, err := time.Parse(time.RFC3339Nano, fmt.Sprint(meta["creation_time"]))
		if err != nil {
			return signingkeys.Ring{}, fmt.Errorf("transit key %s version %d: creation time: %w", path, n, err)
		}
		id, err := signingkeys.KeyID(pub)
		if err != nil {
			return signingkeys.Ring{}, err
		}
		activates := created.Add(t.lead)
		if i == 0 {
			activates = created // nothing to publish it before
		}
		ring.Keys = append(ring.Keys, signingkeys.Key{ID: id, Algorithm: alg, CreatedAt: created.UTC(), ActivatesAt: activates.UTC(),
			Signer: &transitSigner{keys: t, version: n, typ: typ, pub: pub}})
	}
	return ring, nil
}

func parseTransitPublic(typ string, meta map[string]any) (crypto.PublicKey, error) {
	raw, _ := meta["public_key"].(string)
	if raw == "" {
		return nil, errors.New("no public key")
	}
	if typ == "ed25519" {
		b, err := base64.StdEncoding.DecodeString(raw)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, errors.New("malformed ed25519 public key")
		}
		return ed25519.PublicKey(b), nil
	}
	block, _ := pem.Decode([]byte(raw))
	if block == nil {
		return nil, errors.New("public key is not PEM")
	}
	return x509.ParsePKIXPublicKey(block.Bytes)
}

// transitSigner is one version of a transit key as a crypto.Signer.
type transitSigner struct {
	keys    *TransitKeys
	version int
	typ     string
	pub     crypto.PublicKey
}

func (s *transitSigner) Public() crypto.PublicKey { return s.pub }

// signTimeout bounds one signing call to Vault.
const signTimeout = 5 * time.Second

// Sign asks Vault to sign digest (or, for Ed25519, the message) with this
// version. ECDSA signatures come back in ASN.1 DER, as crypto.Signer's
// contract says.
func (s *transitSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	body := map[string]any{"input": base64.StdEncoding.EncodeToString(digest), "key_version": s.version}
	path := s.keys.mount + "/sign/" + s.keys.name
	if s.typ != "ed25519" {
		if opts.HashFunc() != crypto.SHA256 {
			return nil, fmt.Errorf("transit signing supports SHA-256 digests here, not %v", opts.HashFunc())
		}
		path += "/sha2-256"
		body["prehashed"] = true
		body["marshaling_algorithm"] = "asn1"
		if strings.HasPrefix(s.typ, "rsa-") {
			body["signature_algorithm"] = "pkcs1v15"
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), signTimeout)
	defer cancel()
	c := s.keys.client
	var sig string
	err := c.withToken(ctx, func() error {
		out, err := c.api.Logical().WriteWithContext(ctx, path, body)
		if err != nil {
			return err
		}
		if out == nil {
			return errors.New("empty answer")
		}
		sig, _ = out.Data["signature"].(string)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("signing with transit key %s version %d: %w", s.keys.name, s.version, err)
	}
	// "vault:v<version>:<base64 signature>"
	parts := strings.SplitN(sig, ":", 3)
	if len(parts) != 3 || parts[1] != "v"+strconv.Itoa(s.version) {
		return nil, fmt.Errorf("signing with transit key %s: unexpected signature format", s.keys.name)
	}
	return base64.StdEncoding.DecodeString(parts[2])
}

// String names the key version (never key material: there is none here).
func (s *transitSigner) String() string {
	return fmt.Sprintf("transit:%s/%s v%d", s.keys.mount, s.keys.name, s.version)
}

var _ json.Marshaler = (*transitSigner)(nil)

// MarshalJSON keeps a transit key out of files and logs by mistake: it has
// no private part to write.
func (s *transitSigner) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }
