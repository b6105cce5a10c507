// Package authn is the authentication slot of Switchyard's HTTP APIs: an
// Authenticator establishes who is calling, the middleware stores the
// Identity for handlers and answers 401 (RFC 6750) when it cannot.
//
// Real token verification (OAuth2/OIDC JWTs) plugs in here as another
// Authenticator. Until then DevHeader, a development-only authenticator
// that must be switched on explicitly, trusts a header; with nothing
// configured, DenyAll refuses every request.
package authn

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"regexp"

	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/problem"
)

// Identity is an authenticated caller.
type Identity struct {
	// ClientID identifies the calling client; jobs are owned by it.
	ClientID string
	// Scopes the caller was granted.
	Scopes []string
}

// Authenticator establishes the identity behind a request.
type Authenticator interface {
	// Authenticate returns the caller's identity, or an error (wrapping
	// ErrUnauthenticated) saying why there is none.
	Authenticate(r *http.Request) (Identity, error)
}

// ErrUnauthenticated is wrapped by every authentication failure.
var ErrUnauthenticated = errors.New("unauthenticated")

type identityKey struct{}

// FromContext returns the identity the middleware stored.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// Middleware authenticates every request with a, or answers 401 with
// WWW-Authenticate: Bearer.
func Middleware(a Authenticator, logger *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			id, err := a.Authenticate(c.Request())
			if err != nil {
				logger.DebugContext(c.Request().Context(), "authentication failed", "error", err)
				return problem.Unauthorized.New("a valid access token is required").
					WithHeader("WWW-Authenticate", `Bearer realm="switchyard"`).WithCause(err)
			}
			httpserver.AddLogAttrs(c, slog.String("client_id", id.ClientID))
			c.SetRequest(c.Request().WithContext(WithIdentity(c.Request().Context(), id)))
			return next(c)
		}
	}
}

// DenyAll refuses every request. It is what runs when no authenticator is
// configured: closed by default.
type DenyAll struct{}

// Authenticate implements Authenticator.
func (DenyAll) Authenticate(*http.Request) (Identity, error) {
	return Identity{}, errors.Join(ErrUnauthenticated, errors.New("no authenticator is configured"))
}

// HeaderDevClient is the header DevHeader trusts.
const HeaderDevClient = "X-Switchyard-Client"

var clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// DevHeader takes the caller's client id from the X-Switchyard-Client
// header, with no proof at all. DEVELOPMENT ONLY: it is off unless
// SWITCHYARD_DEV_AUTH=true, and the gateway logs a warning when it is on.
type DevHeader struct{}

// Authenticate implements Authenticator.
func (DevHeader) Authenticate(r *http.Request) (Identity, error) {
	id := r.Header.Get(HeaderDevClient)
	if id == "" {
		return Identity{}, errors.Join(ErrUnauthenticated, errors.New("missing "+HeaderDevClient+" header"))
	}
	if !clientIDPattern.MatchString(id) {
		return Identity{}, errors.Join(ErrUnauthenticated, errors.New(HeaderDevClient+" must match "+clientIDPattern.String()))
	}
	return Identity{ClientID: id}, nil
}
