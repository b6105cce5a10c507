// Package authn is the authentication and authorization slot of
// Switchyard's HTTP APIs. An Authenticator establishes who is calling (the
// gateway's is libs/accesstoken, which verifies OAuth2/OIDC JWT access
// tokens); Middleware stores the Identity for handlers and answers 401 as
// RFC 6750 prescribes when it cannot; Guard does that and applies a
// route's policy (403 insufficient_scope, or deny for a route that has
// none).
package authn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/problem"
)

// Realm is the realm named in WWW-Authenticate challenges.
const Realm = "switchyard"

// Identity is an authenticated caller.
type Identity struct {
	// ClientID identifies the calling client; jobs are owned by it.
	ClientID string
	// Scopes the caller was granted.
	Scopes []string
	// Issuer is who vouched for the caller (the token's iss, or
	// apikeys.Issuer).
	Issuer string
	// KeyID names the API key the caller presented (empty for a token).
	KeyID string
	// Plan is the usage plan that comes with the credential (an API
	// key's), enforced by the edge on top of the route's and the client's
	// limits; nil: none.
	Plan *Plan
}

// Plan is a credential's usage plan; zero fields are no limit.
type Plan struct {
	// RatePerSecond and Burst: a token bucket, shared by every gateway
	// through the edge's rate limiter.
	RatePerSecond float64
	Burst         int
	// Daily and Monthly quotas (UTC periods).
	Daily, Monthly int64
}

// HasScopes reports whether the identity holds every scope in required.
func (id Identity) HasScopes(required []string) bool {
	for _, s := range required {
		if !slices.Contains(id.Scopes, s) {
			return false
		}
	}
	return true
}

// HasAnyScope reports whether the identity holds at least one of scopes.
func (id Identity) HasAnyScope(scopes []string) bool {
	return slices.ContainsFunc(scopes, func(s string) bool { return slices.Contains(id.Scopes, s) })
}

// Authenticator establishes the identity behind a request.
type Authenticator interface {
	// Authenticate returns the caller's identity, or an error wrapping
	// ErrNoCredentials, ErrUnauthenticated or ErrUnavailable.
	Authenticate(r *http.Request) (Identity, error)
}

// Errors an Authenticator wraps.
var (
	// ErrNoCredentials: the request carries no credentials at all.
	ErrNoCredentials = errors.New("no credentials")
	// ErrUnauthenticated: the credentials are malformed, invalid, expired
	// or revoked.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrUnavailable: the credentials cannot be checked right now (the
	// issuer's keys have never been fetched); not the caller's fault.
	ErrUnavailable = errors.New("authentication unavailable")
)

// Reason is a short, bounded label for why authentication failed, for
// metrics and logs.
type Reason string

// ReasonError is an authentication failure with a Reason.
type ReasonError struct {
	Reason Reason
	Err    error
}

func (e *ReasonError) Error() string { return string(e.Reason) + ": " + e.Err.Error() }

func (e *ReasonError) Unwrap() error { return e.Err }

// Fail returns an error wrapping kind (ErrNoCredentials,
// ErrUnauthenticated or ErrUnavailable) with a reason and a description.
func Fail(kind error, reason Reason, format string, args ...any) error {
	return &ReasonError{Reason: reason, Err: fmt.Errorf("%w: %s", kind, fmt.Sprintf(format, args...))}
}

// ReasonOf returns the reason of err, or "other".
func ReasonOf(err error) Reason {
	var re *ReasonError
	if errors.As(err, &re) {
		return re.Reason
	}
	return "other"
}

type identityKey struct{}

// FromContext returns the identity the middleware stored (or WithIdentity).
func FromContext(ctx context.Context) (Identity, bool) {
	if id, ok := ctx.Value(identityKey{}).(Identity); ok {
		return id, true
	}
	id, ok := httpserver.Principal(ctx).(*Identity)
	if !ok || id == nil {
		return Identity{}, false
	}
	return *id, true
}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// Middleware authenticates every request with a. Failures are answered
// as RFC 6750 §3 says: 401 with a Bearer challenge, carrying
// error="invalid_token" when credentials were sent but are not good (with
// no credentials at all the challenge names no error, per §3.1); 503 when
// the authenticator cannot check tokens yet.
func Middleware(a Authenticator, logger *slog.Logger) echo.MiddlewareFunc {
	return Guard(a, logger, Policy{})
}

// Policy is what a route requires of an authenticated caller.
type Policy struct {
	// Scopes the caller must hold, all of them (none: any caller).
	Scopes []string
	// AnyScope, when set, also requires at least one of these scopes (a
	// capability, or a scope that implies it, such as an admin scope).
	AnyScope []string
	// Deny refuses every caller (a route that declares no policy).
	Deny bool
	// OnRefused, when set, is told of each request the guard refuses with
	// 401 (id nil: no valid credentials) or 403 (id: who was refused), to
	// audit it. It runs on the request path: keep it cheap.
	OnRefused func(c echo.Context, id *Identity, status int)
}

// Guard authenticates a request with a (as Middleware does) and then
// applies p: 403 insufficient_scope naming the scopes needed (RFC 6750
// §3.1), or 403 for a denied route. One middleware rather than two keeps
// the per-request cost of a protected route low.
func Guard(a Authenticator, logger *slog.Logger, p Policy) echo.MiddlewareFunc {
	scopes, anyScope := slices.Clone(p.Scopes), slices.Clone(p.AnyScope)
	deny, onRefused := p.Deny, p.OnRefused
	challenge := `Bearer realm="` + Realm + `", error="insufficient_scope", scope="` + strings.Join(scopes, " ") + `"`
	anyChallenge := `Bearer realm="` + Realm + `", error="insufficient_scope", scope="` + strings.Join(append(slices.Clone(scopes), anyScope...), " ") + `"`
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			id, err := a.Authenticate(c.Request())
			if err != nil {
				if onRefused != nil && !errors.Is(err, ErrUnavailable) {
					onRefused(c, nil, http.StatusUnauthorized)
				}
				return refuse(c, logger, err)
			}
			httpserver.AddLogAttrs(c, slog.String("client_id", id.ClientID))
			if id.KeyID != "" {
				httpserver.AddLogAttrs(c, slog.String("api_key_id", id.KeyID))
			}
			var refusal error
			switch {
			case deny:
				refusal = problem.Forbidden.New("no access policy allows this route")
			case !id.HasScopes(scopes):
				refusal = problem.InsufficientScope.Newf("this route requires the scopes: %s", strings.Join(scopes, " ")).
					WithHeader("WWW-Authenticate", challenge)
			case len(anyScope) > 0 && !id.HasAnyScope(anyScope):
				refusal = problem.InsufficientScope.Newf("this route requires one of the scopes: %s", strings.Join(anyScope, " ")).
					WithHeader("WWW-Authenticate", anyChallenge)
			}
			if refusal != nil {
				if onRefused != nil {
					onRefused(c, &id, http.StatusForbidden)
				}
				return refusal
			}
			// Recorded in the request state the shared middleware already
			// keeps, not in a new context: that would copy the request.
			if !httpserver.SetPrincipal(c.Request().Context(), &id) {
				c.SetRequest(c.Request().WithContext(WithIdentity(c.Request().Context(), id)))
			}
			return next(c)
		}
	}
}

func refuse(c echo.Context, logger *slog.Logger, err error) error {
	reason := ReasonOf(err)
	httpserver.AddLogAttrs(c, slog.String("auth_failure", string(reason)))
	logger.DebugContext(c.Request().Context(), "authentication failed", "reason", reason, "error", err)
	switch {
	case errors.Is(err, ErrUnavailable):
		return problem.Unavailable.New("access tokens cannot be verified right now; retry shortly").
			WithHeader("Retry-After", "5").WithCause(err)
	case errors.Is(err, ErrNoCredentials):
		return problem.Unauthorized.New("an access token is required: send Authorization: Bearer <token>").
			WithHeader("WWW-Authenticate", `Bearer realm="`+Realm+`"`).WithCause(err)
	case strings.HasPrefix(string(reason), "api_key_"):
		// One answer whatever is wrong with a key: its reason is in the
		// access log and the metrics only.
		return problem.InvalidToken.New("the API key is not valid here").
			WithHeader("WWW-Authenticate", `Bearer realm="`+Realm+`", error="invalid_token"`).WithCause(err)
	default:
		return problem.InvalidToken.New("the access token is missing, malformed, expired or not valid here").
			WithHeader("WWW-Authenticate", `Bearer realm="`+Realm+`", error="invalid_token"`).WithCause(err)
	}
}

// DenyAll refuses every request. It is what runs when no authenticator is
// configured: closed by default.
type DenyAll struct{}

// Authenticate implements Authenticator.
func (DenyAll) Authenticate(*http.Request) (Identity, error) {
	return Identity{}, Fail(ErrUnavailable, "not_configured", "no authenticator is configured")
}
