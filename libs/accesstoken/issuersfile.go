package accesstoken

import (
	"bytes"
	"fmt"
	"os"
	"time"

	"gopkg.in/yaml.v3"
)

// IssuerSpec is one external issuer in the issuers file
// (SWITCHYARD_AUTH_ISSUERS_FILE).
type IssuerSpec struct {
	// Name labels the issuer in logs and /readyz.
	Name string `yaml:"name"`
	// Issuer is the token's iss; discovery is at
	// <issuer>/.well-known/openid-configuration unless JWKSURL is set.
	Issuer  string `yaml:"issuer"`
	JWKSURL string `yaml:"jwks_url"`
	// Audiences accepted (any one; at least one).
	Audiences []string `yaml:"audiences"`
	// Algorithms allowed (default RS256: what Azure AD and Keycloak sign
	// with).
	Algorithms []string `yaml:"algorithms"`
	// TokenTypes accepted as the JWS typ (default JWT).
	TokenTypes []string `yaml:"token_types"`
	// RequireNotBefore makes nbf mandatory (default false: Keycloak
	// omits it).
	RequireNotBefore bool `yaml:"require_nbf"`
	// Mapping says how the provider's claims become a Switchyard
	// identity.
	Mapping `yaml:",inline"`
}

// issuersFile is the file's shape.
type issuersFile struct {
	Issuers []IssuerSpec `yaml:"issuers"`
}

// LoadIssuersFile reads the external issuers file; "" means none.
func LoadIssuersFile(path string) ([]Config, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path) //nolint:gosec // the operator's configured file
	if err != nil {
		return nil, fmt.Errorf("reading the issuers file: %w", err)
	}
	cfgs, err := ParseIssuers(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfgs, nil
}

// ParseIssuers parses an issuers file: unknown fields are errors, and so
// is anything a Config would refuse.
func ParseIssuers(data []byte) ([]Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f issuersFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("parsing the issuers file: %w", err)
	}
	out := make([]Config, 0, len(f.Issuers))
	seen := map[string]bool{}
	for i, spec := range f.Issuers {
		where := fmt.Sprintf("issuers[%d]", i)
		if spec.Name == "" {
			return nil, fmt.Errorf("%s: name is required", where)
		}
		if seen[spec.Name] {
			return nil, fmt.Errorf("%s: name %q is used twice", where, spec.Name)
		}
		seen[spec.Name] = true
		if len(spec.Audiences) == 0 {
			return nil, fmt.Errorf("%s (%s): audiences: at least one is required", where, spec.Name)
		}
		algs, types := spec.Algorithms, spec.TokenTypes
		if len(algs) == 0 {
			algs = []string{"RS256"}
		}
		if len(types) == 0 {
			types = []string{"JWT"}
		}
		mapping := spec.Mapping
		cfg := Config{Name: spec.Name, Issuer: spec.Issuer, JWKSURL: spec.JWKSURL, Audiences: spec.Audiences,
			Algorithms: algs, Types: types, RequireNotBefore: spec.RequireNotBefore, Mapping: &mapping,
			UnknownKIDInterval: 30 * time.Second}
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("%s (%s): %w", where, spec.Name, err)
		}
		out = append(out, cfg)
	}
	return out, nil
}
