package authn

import (
	"net/http"
	"strings"
)

// Credential kinds a route may accept (the routes file's auth list).
const (
	// CredentialBearer is an OAuth2 access token: Authorization: Bearer.
	CredentialBearer = "bearer"
	// CredentialAPIKey is an API key: X-API-Key or Authorization: ApiKey.
	CredentialAPIKey = "api_key"
)

// Credentials chooses the authenticator by the kind of credential a
// request carries, among those a route accepts: an API key (X-API-Key,
// or Authorization: ApiKey) goes to APIKey, anything else to Bearer. A
// route that does not accept a kind refuses it with 401 without looking
// at it, so a route that never wanted keys cannot be reached with one.
type Credentials struct {
	// Bearer checks access tokens (nil: the route accepts none).
	Bearer Authenticator
	// APIKey checks API keys (nil: the route accepts none).
	APIKey Authenticator
}

// Authenticate implements Authenticator.
func (c Credentials) Authenticate(r *http.Request) (Identity, error) {
	if _, ok := APIKeyFromRequest(r); ok {
		if c.APIKey == nil {
			return Identity{}, Fail(ErrUnauthenticated, "api_key_not_accepted", "this route does not accept API keys")
		}
		return c.APIKey.Authenticate(r)
	}
	if c.Bearer == nil {
		if len(r.Header["Authorization"]) == 0 {
			return Identity{}, Fail(ErrNoCredentials, "missing", "no API key")
		}
		return Identity{}, Fail(ErrUnauthenticated, "bearer_not_accepted", "this route accepts API keys only")
	}
	return c.Bearer.Authenticate(r)
}

// APIKeyFromRequest returns the API key r presents: X-API-Key, or
// Authorization: ApiKey <key> (scheme case-insensitive). ok is false when
// it presents neither; a present but empty key is ok with key "" (and
// fails the key check as malformed).
func APIKeyFromRequest(r *http.Request) (key string, ok bool) {
	// The canonical form of X-API-Key; a direct lookup costs no
	// canonicalisation on the bearer path.
	if v := r.Header["X-Api-Key"]; len(v) > 0 {
		return v[0], true
	}
	if auth := r.Header["Authorization"]; len(auth) > 0 && len(auth[0]) >= 7 && strings.EqualFold(auth[0][:7], "ApiKey ") {
		return strings.TrimLeft(auth[0][7:], " "), true
	}
	return "", false
}
