package accesstoken

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/switchyard/switchyard/libs/authn"
)

// Issuers trusts several issuers at once: this platform's token service
// and any number of external OIDC providers, each a Verifier with its own
// keys, audiences, algorithms and claim mapping. A token is matched to
// its issuer by its iss claim before any key is looked up, so a key id
// from one issuer never verifies a token claiming another, and an issuer
// that is down (whose keys cannot be fetched) slows no other: each has
// its own key set, refreshed on its own.
type Issuers struct {
	primary *Verifier
	all     []*Verifier
	byIss   map[string]*Verifier
}

// NewIssuers returns the set; primary is this platform's own issuer
// (its readiness is the gateway's), others the external ones.
func NewIssuers(primary *Verifier, others ...*Verifier) (*Issuers, error) {
	m := &Issuers{primary: primary, byIss: map[string]*Verifier{}}
	for _, v := range append([]*Verifier{primary}, others...) {
		if _, dup := m.byIss[v.cfg.Issuer]; dup {
			return nil, fmt.Errorf("issuer %s is configured twice", v.cfg.Issuer)
		}
		m.byIss[v.cfg.Issuer] = v
		m.all = append(m.all, v)
	}
	return m, nil
}

// Count is how many issuers are trusted (the primary included).
func (m *Issuers) Count() int { return len(m.all) }

// Run keeps every issuer's keys fresh until ctx ends (it blocks).
func (m *Issuers) Run(ctx context.Context) {
	for _, v := range m.all[1:] {
		go v.Run(ctx)
	}
	m.primary.Run(ctx)
}

// Ready is the primary issuer's readiness.
func (m *Issuers) Ready(ctx context.Context) error { return m.primary.Ready(ctx) }

// External reports, for each external issuer by name, nil or why its
// keys are not available (a degraded check: the others keep working).
func (m *Issuers) External(ctx context.Context) error {
	var bad []string
	for _, v := range m.all[1:] {
		if err := v.Ready(ctx); err != nil {
			bad = append(bad, v.cfg.Name+": "+err.Error())
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("issuers without keys: %s", strings.Join(bad, "; "))
	}
	return nil
}

// Authenticate implements authn.Authenticator.
func (m *Issuers) Authenticate(r *http.Request) (authn.Identity, error) {
	token, err := authn.BearerToken(r.Header.Get("Authorization"))
	if err != nil {
		m.primary.metrics.failures.WithLabelValues(string(authn.ReasonOf(err))).Inc()
		return authn.Identity{}, err
	}
	if len(m.all) == 1 {
		id, err := m.primary.Verify(r.Context(), token)
		return id, m.primary.countFailure(err)
	}
	// A token seen before costs a cache lookup, whoever issued it.
	for _, cand := range m.all {
		if id, ok := cand.cached(token); ok {
			return cand.checkRevoked(id)
		}
	}
	iss := unverifiedIssuer(token)
	v, known := m.byIss[strings.TrimRight(iss, "/")]
	if !known || iss == "" {
		err := authn.Fail(authn.ErrUnauthenticated, "unknown_issuer", "%v: %q", errUnknownIssuer, truncate(iss, 200))
		m.primary.metrics.failures.WithLabelValues("unknown_issuer").Inc()
		return authn.Identity{}, err
	}
	// Every issuer's cache has been looked in above.
	id, err := v.verifyUncached(r.Context(), token)
	return id, v.countFailure(err)
}

// unverifiedIssuer reads the iss claim of a JWS without verifying it, to
// choose the issuer whose keys will ("" when it cannot be read).
func unverifiedIssuer(token string) string {
	_, rest, ok := strings.Cut(token, ".")
	if !ok {
		return ""
	}
	payload, _, ok := strings.Cut(rest, ".")
	if !ok {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return ""
	}
	var claims struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(raw, &claims) != nil {
		return ""
	}
	return claims.Iss
}
