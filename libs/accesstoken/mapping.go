package accesstoken

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchyard/switchyard/libs/authn"
)

// Mapping turns an external identity provider's token into a Switchyard
// identity: which claim names the calling application, which carry its
// permissions, which must have a fixed value (a tenant), and how the
// provider's applications and roles map to Switchyard clients and scopes.
type Mapping struct {
	// ClientClaims are tried in order; the first present names the
	// caller (default client_id, azp, appid).
	ClientClaims []string `yaml:"client_claims"`
	// ScopeClaims carry the caller's permissions, each a space-separated
	// string or an array; a dotted name reads a nested claim, e.g.
	// Keycloak's realm_access.roles (default scope, scp, roles).
	ScopeClaims []string `yaml:"scope_claims"`
	// RequiredClaims must be present with exactly these string values
	// (Azure AD: tid, the tenant; ver).
	RequiredClaims map[string]string `yaml:"required_claims"`
	// Clients maps the provider's application ids (the client claim) to
	// Switchyard clients. When set, an application not listed is refused.
	Clients map[string]ClientMapping `yaml:"clients"`
	// RoleScopes maps the token's permission values to Switchyard scopes;
	// when set, only mapped values grant anything.
	RoleScopes map[string][]string `yaml:"role_scopes"`
}

// ClientMapping is one provider application as a Switchyard client.
type ClientMapping struct {
	// ClientID is the Switchyard client the application acts as: its jobs
	// are that client's, and disabling that client refuses its tokens.
	ClientID string `yaml:"client_id"`
	// Scopes, when set, are what the application may do, whatever its
	// token says; otherwise its token's permissions (through RoleScopes).
	Scopes []string `yaml:"scopes"`
}

func (m *Mapping) validate() error {
	for app, c := range m.Clients {
		if app == "" || c.ClientID == "" {
			return fmt.Errorf("client mapping %q: both the provider's application id and client_id are required", app)
		}
	}
	for _, name := range append(slices.Clone(m.ClientClaims), m.ScopeClaims...) {
		if name == "" || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") {
			return fmt.Errorf("claim name %q is not valid", name)
		}
	}
	return nil
}

// identity applies the mapping to verified claims.
func (m *Mapping) identity(claims jwt.MapClaims) (authn.Identity, error) {
	for name, want := range m.RequiredClaims {
		if got, _ := claims[name].(string); got != want {
			return authn.Identity{}, authn.Fail(authn.ErrUnauthenticated, "claim_mismatch", "claim %s is %q, not %q", name, truncate(got, 100), want)
		}
	}
	clientClaims := m.ClientClaims
	if len(clientClaims) == 0 {
		clientClaims = []string{"client_id", "azp", "appid"}
	}
	app := ""
	for _, name := range clientClaims {
		if s, ok := lookup(claims, name).(string); ok && s != "" {
			app = s
			break
		}
	}
	if app == "" {
		return authn.Identity{}, authn.Fail(authn.ErrUnauthenticated, "missing_claim", "the token names no client (%s)", strings.Join(clientClaims, ", "))
	}
	scopeClaims := m.ScopeClaims
	if len(scopeClaims) == 0 {
		scopeClaims = []string{"scope", "scp", "roles"}
	}
	var granted []string
	for _, name := range scopeClaims {
		for _, v := range stringsOf(lookup(claims, name)) {
			if m.RoleScopes == nil {
				granted = appendNew(granted, v)
				continue
			}
			for _, sc := range m.RoleScopes[v] {
				granted = appendNew(granted, sc)
			}
		}
	}
	id := authn.Identity{ClientID: app, Scopes: granted}
	if m.Clients != nil {
		c, ok := m.Clients[app]
		if !ok {
			return authn.Identity{}, authn.Fail(authn.ErrUnauthenticated, "unmapped_client", "application %q is not mapped to a client", truncate(app, 100))
		}
		id.ClientID = c.ClientID
		if c.Scopes != nil {
			id.Scopes = slices.Clone(c.Scopes)
		}
	}
	if id.Scopes == nil {
		id.Scopes = []string{}
	}
	return id, nil
}

// lookup reads a claim, following dots into nested objects.
func lookup(claims map[string]any, name string) any {
	if v, ok := claims[name]; ok {
		return v
	}
	head, rest, ok := strings.Cut(name, ".")
	if !ok {
		return nil
	}
	inner, ok := claims[head].(map[string]any)
	if !ok {
		return nil
	}
	return lookup(inner, rest)
}

// stringsOf reads a space-separated string or an array of strings.
func stringsOf(v any) []string {
	switch t := v.(type) {
	case string:
		return strings.Fields(t)
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// errUnknownIssuer is what Issuers answers for a token whose iss no
// configured issuer has.
var errUnknownIssuer = errors.New("the token's issuer is not trusted here")
