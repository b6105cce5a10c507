// Package console serves the operator console: server-rendered pages
// under /console/ on the replay service's admin listener, for the dead
// letters, their replays and the audit log.
//
// The console holds no rules of its own. An operator signs in with the
// client credentials of an admin or on-call client; the console exchanges
// them for a token at the token service and keeps a server-side session
// (Sessions). Every page reads, and every form acts, by calling the admin
// API in-process with that token (adminAPI), so the scopes, validation
// and audit of the API apply unchanged; the console only hides what the
// operator's scopes would not allow.
//
// Pages carry a strict Content-Security-Policy (no inline script or
// style), every state-changing form a per-session CSRF token, and the
// session cookie is HttpOnly and SameSite=Strict (Secure under TLS).
package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/libs/auditlog"
	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/problem"
	"github.com/switchyard/switchyard/libs/ratelimit"
	"github.com/switchyard/switchyard/services/replay/internal/deadletterstore"
)

// Settings configure the console.
type Settings struct {
	Enabled      bool          `conf:"default:true,env:SWITCHYARD_CONSOLE_ENABLED,help:serve the operator console under /console/ on the admin listener"`
	TokenURL     string        `conf:"env:SWITCHYARD_CONSOLE_TOKEN_URL,help:token endpoint the console exchanges an operator's client credentials at (default: SWITCHYARD_AUTH_ISSUER + /oauth2/token: this platform's token service)"`
	SessionIdle  time.Duration `conf:"default:30m,env:SWITCHYARD_CONSOLE_SESSION_IDLE,help:a console session unused this long ends"`
	SessionMax   time.Duration `conf:"default:8h,env:SWITCHYARD_CONSOLE_SESSION_MAX,help:a console session ends this long after sign-in whatever its use"`
	SecureCookie bool          `conf:"default:false,env:SWITCHYARD_CONSOLE_SECURE_COOKIE,help:mark the session cookie Secure even on plain HTTP (behind a TLS-terminating proxy); it is always Secure when the listener serves TLS"`
	// GatewayMetrics are the gateways' /metrics URLs, read for the
	// breaker states on the overview.
	GatewayMetrics []string `conf:"env:SWITCHYARD_CONSOLE_GATEWAY_METRICS,help:gateways' /metrics URLs (;-separated) whose circuit breaker states the overview shows (empty: none shown)"`
	TraceURL       string   `conf:"env:SWITCHYARD_CONSOLE_TRACE_URL,help:link to a trace in the trace UI with {trace_id} replaced (e.g. http://jaeger:16686/trace/{trace_id}; empty: no link)"`
}

// Validate reports settings the console cannot run with.
func (s Settings) Validate() error {
	var errs []error
	if s.SessionIdle < time.Minute || s.SessionIdle > 24*time.Hour {
		errs = append(errs, fmt.Errorf("SWITCHYARD_CONSOLE_SESSION_IDLE %s must be from 1m to 24h", s.SessionIdle))
	}
	if s.SessionMax < s.SessionIdle || s.SessionMax > 7*24*time.Hour {
		errs = append(errs, fmt.Errorf("SWITCHYARD_CONSOLE_SESSION_MAX %s must be from SWITCHYARD_CONSOLE_SESSION_IDLE (%s) to 168h", s.SessionMax, s.SessionIdle))
	}
	if s.TokenURL != "" {
		if u, err := url.Parse(s.TokenURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("SWITCHYARD_CONSOLE_TOKEN_URL %q is not an http(s) URL", s.TokenURL))
		}
	}
	for _, u := range s.GatewayMetrics {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			errs = append(errs, fmt.Errorf("SWITCHYARD_CONSOLE_GATEWAY_METRICS: %q is not an http(s) URL", u))
		}
	}
	if s.TraceURL != "" && !strings.Contains(s.TraceURL, "{trace_id}") {
		errs = append(errs, fmt.Errorf("SWITCHYARD_CONSOLE_TRACE_URL %q has no {trace_id}", s.TraceURL))
	}
	return errors.Join(errs...)
}

// Prefix is where the console is served.
const Prefix = "/console"

// Cookie names: the session's, and the sign-in form's anti-forgery
// cookie. Under TLS they take the __Host- prefix, which browsers accept
// only Secure, host-only and for path /, so that no sibling host can
// plant one.
const (
	sessionCookie = "switchyard_console"
	signInCookie  = "switchyard_console_signin"
)

// csp is the pages' Content-Security-Policy: scripts, styles and images
// from the console's own static files only; no inline script or style, no
// framing, forms post only to the console.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// Console serves the console's pages.
type Console struct {
	settings Settings
	sessions *Sessions
	api      adminAPI
	store    *deadletterstore.Store
	auth     authn.Authenticator
	tokens   tokenExchange
	refusals *auditlog.Refusals
	logger   *slog.Logger
	pages    map[string]*template.Template
	// metricsClient reads the gateways' metrics.
	metricsClient *http.Client
	// signIns bounds sign-in attempts per source address and in all, so
	// that the console cannot be used to guess secrets or to load the
	// token service.
	signIns ratelimit.Limiter
}

// Deps are what the console is built from.
type Deps struct {
	Sessions *Sessions
	// API is the admin API's handler (the replay service's Echo), called
	// in-process.
	API http.Handler
	// Store records the console's own audit entries (sign-in, sign-out).
	Store *deadletterstore.Store
	// Authenticator checks a token got at sign-in as the admin API would.
	Authenticator authn.Authenticator
	// Issuer is SWITCHYARD_AUTH_ISSUER, whose /oauth2/token is the
	// default token endpoint.
	Issuer   string
	Refusals *auditlog.Refusals
	Logger   *slog.Logger
}

// New returns the console.
func New(s Settings, d Deps) (*Console, error) {
	tokenURL := s.TokenURL
	if tokenURL == "" {
		tokenURL = strings.TrimRight(d.Issuer, "/") + "/oauth2/token"
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	return &Console{
		settings: s, sessions: d.Sessions, api: adminAPI{handler: d.API}, store: d.Store, auth: d.Authenticator,
		tokens: tokenExchange{url: tokenURL, client: &http.Client{Timeout: 10 * time.Second, Transport: forwarding{next: http.DefaultTransport}}}, refusals: d.Refusals,
		logger: d.Logger, pages: pages, signIns: ratelimit.NewLocal(), metricsClient: &http.Client{Timeout: 2 * time.Second},
	}, nil
}

// Mount registers the console's routes on e.
func (c *Console) Mount(e *echo.Echo) {
	e.GET(Prefix, func(ec echo.Context) error { return ec.Redirect(http.StatusFound, Prefix+"/") })
	g := e.Group(Prefix, c.headers)
	static, _ := fs.Sub(staticFiles, "static")
	g.GET("/static/*", echo.WrapHandler(http.StripPrefix(Prefix+"/static/", staticHandler(static))))
	g.GET("/sign-in", c.signInPage)
	g.POST("/sign-in", c.signIn)
	signed := g.Group("", c.requireSession)
	signed.POST("/sign-out", c.signOut, c.checkCSRF)
	signed.GET("/", c.overview)
	signed.GET("/dead-letters", c.deadLetters)
	signed.GET("/dead-letters/:id", c.deadLetter)
	signed.POST("/dead-letters/remove", c.removeSelected, c.checkCSRF)
	signed.POST("/dead-letters/:id/replay", c.replay, c.checkCSRF)
	signed.POST("/dead-letters/:id/archive", c.archive, c.checkCSRF)
	signed.GET("/audit", c.audit)
	signed.GET("/jobs", c.jobsPage)
	signed.GET("/job-types", c.jobTypesPage)
	signed.POST("/job-types/:type/pause", c.pauseJobType(true), c.checkCSRF)
	signed.POST("/job-types/:type/resume", c.pauseJobType(false), c.checkCSRF)
	signed.GET("/analytics", c.analytics)
	signed.GET("/analytics.csv", c.analyticsCSV)
	signed.GET("/replays", c.replaysPage)
	signed.GET("/replays/new", c.newReplayPage)
	signed.POST("/replays", c.startReplay, c.checkCSRF)
	signed.GET("/replays/:id", c.replayPage)
	signed.POST("/replays/:id/cancel", c.cancelReplay, c.checkCSRF)
	e.RouteNotFound(Prefix+"/*", c.headers(func(ec echo.Context) error {
		return c.renderError(ec, nil, http.StatusNotFound, "Not found", "There is no console page at this address.")
	}))
}

// staticHandler serves the embedded assets, cacheable for an hour.
func staticHandler(files fs.FS) http.Handler {
	fileServer := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		fileServer.ServeHTTP(w, r)
	})
}

// headers sets the security headers of every console answer.
func (c *Console) headers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ec echo.Context) error {
		h := ec.Response().Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		if c.secure(ec.Request()) {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		return next(ec)
	}
}

// secure reports whether cookies are Secure for r.
func (c *Console) secure(r *http.Request) bool { return r.TLS != nil || c.settings.SecureCookie }

// cookieName is name, with the __Host- prefix when cookies are Secure.
func (c *Console) cookieName(r *http.Request, name string) string {
	if c.secure(r) {
		return "__Host-" + name
	}
	return name
}

func (c *Console) setCookie(ec echo.Context, name, value string, maxAge time.Duration) {
	r := ec.Request()
	ck := &http.Cookie{ //nolint:gosec // G124: Secure whenever the console is reached over TLS (c.secure); plain HTTP is for development
		Name: c.cookieName(r, name), Value: value, Path: "/", HttpOnly: true,
		Secure: c.secure(r), SameSite: http.SameSiteStrictMode,
	}
	switch {
	case maxAge < 0:
		ck.MaxAge = -1
	case maxAge > 0:
		ck.MaxAge = int(maxAge / time.Second)
	}
	ec.SetCookie(ck)
}

func (c *Console) cookie(r *http.Request, name string) string {
	ck, err := r.Cookie(c.cookieName(r, name))
	if err != nil {
		return ""
	}
	return ck.Value
}

// requireSession loads the operator's session, or sends the browser to
// sign in (a form post without one is refused).
func (c *Console) requireSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ec echo.Context) error {
		r := ec.Request()
		sess, err := c.sessions.Load(r.Context(), c.cookie(r, sessionCookie))
		if errors.Is(err, ErrNoSession) {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				return ec.Redirect(http.StatusSeeOther, Prefix+"/sign-in")
			}
			return c.renderError(ec, nil, http.StatusUnauthorized, "Signed out", "Your session has ended; sign in again.")
		}
		if err != nil {
			return c.failed(ec, nil, err)
		}
		ec.Set("session", sess)
		return next(ec)
	}
}

func sessionOf(ec echo.Context) *Session {
	s, _ := ec.Get("session").(*Session)
	return s
}

// checkCSRF refuses a form post whose csrf field is not the session's
// token, or that the browser says came from another site.
func (c *Console) checkCSRF(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ec echo.Context) error {
		sess := sessionOf(ec)
		r := ec.Request()
		r.Body = http.MaxBytesReader(ec.Response(), r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
				return c.renderError(ec, sess, http.StatusRequestEntityTooLarge, "Form too large",
					fmt.Sprintf("A form may carry at most %d MiB.", maxFormBytes>>20))
			}
			return c.renderError(ec, sess, http.StatusBadRequest, "Form not readable", "The form's body could not be read.")
		}
		if !sameOrigin(ec.Request()) || !hmac.Equal([]byte(ec.Request().PostFormValue("csrf")), []byte(sess.CSRF())) {
			return c.renderError(ec, sess, http.StatusForbidden, "Form refused",
				"The form did not carry this session's anti-forgery token. Reload the page and try again.")
		}
		return next(ec)
	}
}

// sameOrigin reports whether a post came from the console's own pages, as
// far as the browser says: Sec-Fetch-Site (when sent) is same-origin, and
// Origin (when sent) is the request's own host.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	return true
}

// maxFormBytes bounds a form post: the largest edited payload a job type
// takes, and then some.
const maxFormBytes = 2 << 20

// randomToken returns n random bytes, base64url.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// signInToken is the sign-in form's anti-forgery field for the sign-in
// cookie's value.
func signInToken(cookie string) string {
	mac := hmac.New(sha256.New, []byte(cookie))
	mac.Write([]byte("switchyard console sign-in"))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// failed renders err: the API's problem as it was, anything else as a 500
// (logged) or, for an outage, 503.
func (c *Console) failed(ec echo.Context, sess *Session, err error) error {
	if errors.Is(err, ErrNoSession) {
		c.setCookie(ec, sessionCookie, "", -1)
		return c.renderError(ec, nil, http.StatusUnauthorized, "Signed out", "Your session has ended; sign in again.")
	}
	p := problem.From(err)
	if p.Status >= 500 && p.Status != http.StatusServiceUnavailable {
		c.logger.ErrorContext(ec.Request().Context(), "console page failed", "error", err, "request_id", httpserver.RequestID(ec.Request().Context()))
		return c.renderError(ec, sess, http.StatusInternalServerError, "Something went wrong", "The error is in the replay service's log under this request id.")
	}
	if p.Status == http.StatusServiceUnavailable {
		ec.Response().Header().Set("Retry-After", "5")
	}
	return c.renderError(ec, sess, p.Status, p.Title, p.Detail)
}

// sessionEnded reports whether err ended the operator's session.
func sessionEnded(err error) bool { return errors.Is(err, ErrNoSession) }

// problemOf is err as a problem document.
func problemOf(err error) *problem.Problem { return problem.From(err) }
