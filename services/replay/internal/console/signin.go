package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/problem"
	"github.com/switchyard/switchyard/libs/ratelimit"
	"github.com/switchyard/switchyard/services/replay/internal/adminapi"
	"github.com/switchyard/switchyard/services/replay/internal/deadletterstore"
)

// operatorScopes are the scopes that let a client use the console: the
// admin scope or any capability of the admin API.
var operatorScopes = []string{
	adminapi.Scope, adminapi.ScopeRead, adminapi.ScopeReplay, adminapi.ScopeEdit,
	adminapi.ScopePurge, adminapi.ScopeAudit, adminapi.ScopeUsage, adminapi.ScopePause,
}

// Sign-in limits: attempts per source address, and in all (each costs the
// token service a slow secret check).
var (
	signInPerAddress = ratelimit.Limit{Rate: 10, Period: time.Minute, Burst: 10}
	signInTotal      = ratelimit.Limit{Rate: 5, Period: time.Second, Burst: 20}
)

// tokenExchange gets tokens with client credentials.
type tokenExchange struct {
	url    string
	client *http.Client
}

// errBadCredentials: the token service refused the client id or secret.
var errBadCredentials = errors.New("the client id or secret was refused")

// forwardedFor is the context key of the operator's address, which the
// exchange forwards to the token service.
type forwardedFor struct{}

// forwarding sets X-Forwarded-For to the operator's address (from the
// request's context) on the token request. The token service limits
// failed secrets per client id and address: without it, every sign-in
// would come from the replay service's own address, and an attacker's
// wrong secrets for an operator's client id would lock the operator out
// of the console. The token service believes the header only from its
// trusted proxies (SWITCHYARD_TOKENS_TRUSTED_PROXIES, which must hold the
// replay service's address; in Kubernetes the pod network does).
type forwarding struct{ next http.RoundTripper }

func (f forwarding) RoundTrip(r *http.Request) (*http.Response, error) {
	if ip, ok := r.Context().Value(forwardedFor{}).(string); ok && ip != "" {
		r = r.Clone(r.Context())
		r.Header.Set("X-Forwarded-For", ip)
	}
	return f.next.RoundTrip(r)
}

// exchange returns a token for the client's credentials (every scope the
// client may have), asked on behalf of the operator at address from.
func (t tokenExchange) exchange(ctx context.Context, clientID, secret, from string) (*oauth2.Token, error) {
	cc := clientcredentials.Config{ClientID: clientID, ClientSecret: secret, TokenURL: t.url, AuthStyle: oauth2.AuthStyleInHeader}
	ctx = context.WithValue(ctx, forwardedFor{}, from)
	tok, err := cc.Token(context.WithValue(ctx, oauth2.HTTPClient, t.client))
	if err == nil {
		return tok, nil
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		switch {
		case re.ErrorCode == "invalid_client" || re.ErrorCode == "unauthorized_client" || re.Response.StatusCode == http.StatusUnauthorized:
			return nil, errBadCredentials
		case re.Response.StatusCode == http.StatusTooManyRequests:
			return nil, problem.RateLimited.New("the token service is refusing this client's attempts for now; wait a minute and try again")
		}
	}
	return nil, problem.Unavailable.New("the token service could not be reached; try again shortly").WithCause(fmt.Errorf("exchanging client credentials: %w", err))
}

type signInView struct {
	Token     string
	ClientID  string
	Error     string
	SignedOut bool
}

func (c *Console) signInPage(ec echo.Context) error {
	return c.renderSignIn(ec, http.StatusOK, signInView{SignedOut: ec.QueryParam("signed_out") == "1"})
}

// renderSignIn renders the sign-in form with a fresh anti-forgery pair.
func (c *Console) renderSignIn(ec echo.Context, status int, v signInView) error {
	ck := c.cookie(ec.Request(), signInCookie)
	if len(ck) < 16 {
		ck = randomToken(16)
		c.setCookie(ec, signInCookie, ck, 30*time.Minute)
	}
	v.Token = signInToken(ck)
	return c.render(ec, nil, status, "sign-in", "Sign in", v)
}

// signIn exchanges the posted client credentials at the token service,
// checks the token as the admin API would, and starts a session.
func (c *Console) signIn(ec echo.Context) error {
	r := ec.Request()
	r.Body = http.MaxBytesReader(ec.Response(), r.Body, 8<<10)
	ck := c.cookie(r, signInCookie)
	if ck == "" || !sameOrigin(r) || r.PostFormValue("csrf") != signInToken(ck) {
		return c.renderSignIn(ec, http.StatusForbidden, signInView{Error: "The sign-in form had expired. Try again."})
	}
	clientID := strings.TrimSpace(r.PostFormValue("client_id"))
	secret := r.PostFormValue("client_secret")
	if clientID == "" || secret == "" || len(clientID) > 200 || len(secret) > 1024 || !utf8.ValidString(clientID) {
		return c.renderSignIn(ec, http.StatusBadRequest, signInView{ClientID: shorten(clientID, 200), Error: "Enter a client id and its secret."})
	}
	ip := ec.RealIP()
	d, err := c.signIns.Allow(r.Context(), []ratelimit.Check{
		{Key: "ip:" + ip, Name: "ip", Limit: signInPerAddress},
		{Key: "all", Name: "all", Limit: signInTotal},
	})
	if err != nil {
		return c.failed(ec, nil, err)
	}
	if !d.Allowed {
		ec.Response().Header().Set("Retry-After", fmt.Sprint(max(1, int(d.RetryAfter.Round(time.Second)/time.Second))))
		return c.renderSignIn(ec, http.StatusTooManyRequests, signInView{ClientID: clientID, Error: "Too many sign-in attempts; wait a minute and try again."})
	}
	tok, err := c.tokens.exchange(r.Context(), clientID, secret, ip)
	if errors.Is(err, errBadCredentials) {
		c.refused(ec, clientID, http.StatusUnauthorized)
		return c.renderSignIn(ec, http.StatusUnauthorized, signInView{ClientID: clientID, Error: "That client id and secret were not accepted."})
	}
	if err != nil {
		p := problem.From(err)
		if p.Status == http.StatusServiceUnavailable {
			ec.Response().Header().Set("Retry-After", "5")
		}
		return c.renderSignIn(ec, p.Status, signInView{ClientID: clientID, Error: p.Detail})
	}
	id, err := c.identity(r.Context(), tok.AccessToken)
	if err != nil {
		return c.failed(ec, nil, err)
	}
	if !id.HasAnyScope(operatorScopes) {
		c.refused(ec, clientID, http.StatusForbidden)
		return c.renderSignIn(ec, http.StatusForbidden, signInView{ClientID: clientID,
			Error: "This client holds none of the operator scopes (" + strings.Join(operatorScopes, ", ") + ")."})
	}
	value, _, err := c.sessions.Create(r.Context(), NewSession{
		ClientID: id.ClientID, ClientSecret: secret, Scopes: id.Scopes, Token: tok.AccessToken, TokenExpiry: tok.Expiry,
		SourceIP: ip, UserAgent: r.UserAgent(),
	})
	if err != nil {
		return c.failed(ec, nil, err)
	}
	if err := c.store.Audit(r.Context(), deadletterstore.AuditEntry{
		Actor: id.ClientID, Action: "console.sign_in", RequestID: httpserver.RequestID(r.Context()), SourceIP: ip,
		Counts: map[string]int{"scopes": len(id.Scopes)},
	}); err != nil {
		return c.failed(ec, nil, err)
	}
	c.setCookie(ec, signInCookie, "", -1)
	c.setCookie(ec, sessionCookie, value, 0)
	return ec.Redirect(http.StatusSeeOther, Prefix+"/")
}

// refused audits a refused sign-in (bounded, as the API's refusals are).
func (c *Console) refused(ec echo.Context, clientID string, status int) {
	if c.refusals != nil {
		c.refusals.Refused(ec.Request(), httpserver.RequestID(ec.Request().Context()), ec.RealIP(), shorten(clientID, 64), status)
	}
}

// identity checks token as the admin API will.
func (c *Console) identity(ctx context.Context, token string) (authn.Identity, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, Prefix+"/", http.NoBody)
	if err != nil {
		return authn.Identity{}, fmt.Errorf("checking the new token: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	id, err := c.auth.Authenticate(req)
	if err != nil {
		return authn.Identity{}, problem.Unavailable.New("the token the token service issued could not be checked; try again shortly").WithCause(err)
	}
	return id, nil
}

func (c *Console) signOut(ec echo.Context) error {
	sess := sessionOf(ec)
	r := ec.Request()
	if err := c.sessions.End(r.Context(), sess); err != nil {
		return c.failed(ec, sess, err)
	}
	if err := c.store.Audit(r.Context(), deadletterstore.AuditEntry{
		Actor: sess.ClientID, Action: "console.sign_out", RequestID: httpserver.RequestID(r.Context()), SourceIP: ec.RealIP(),
	}); err != nil {
		return c.failed(ec, nil, err)
	}
	c.setCookie(ec, sessionCookie, "", -1)
	return ec.Redirect(http.StatusSeeOther, Prefix+"/sign-in?signed_out=1")
}

// renewBefore is how long before its expiry a session's token is
// replaced.
const renewBefore = time.Minute

// call calls the admin API as the session's operator, first replacing a
// token about to expire. A token the API no longer accepts (the client
// was disabled, its secret rotated) ends the session: ErrNoSession.
func (c *Console) call(ec echo.Context, sess *Session, method, path string, q url.Values, body, out any) (int, error) {
	r := ec.Request()
	if err := c.renew(ec, sess); err != nil {
		return 0, err
	}
	status, err := c.api.call(r, sess.creds.Token, method, path, q, body, out)
	if status == http.StatusUnauthorized {
		return status, c.endRefused(r.Context(), sess)
	}
	return status, err
}

// renew replaces the session's token when it is about to expire. Calls
// made at once from one page renew first, once, and then only read the
// session.
func (c *Console) renew(ec echo.Context, sess *Session) error {
	if time.Until(sess.tokenExpiry) >= renewBefore {
		return nil
	}
	r := ec.Request()
	tok, err := c.tokens.exchange(r.Context(), sess.ClientID, sess.creds.Secret, ec.RealIP())
	if errors.Is(err, errBadCredentials) {
		return c.endRefused(r.Context(), sess)
	}
	if err != nil {
		return err
	}
	id, err := c.identity(r.Context(), tok.AccessToken)
	if err != nil {
		return err
	}
	return c.sessions.SaveToken(r.Context(), sess, tok.AccessToken, tok.Expiry, id.Scopes)
}

// endRefused ends a session whose credentials are refused.
func (c *Console) endRefused(ctx context.Context, sess *Session) error {
	if err := c.sessions.End(ctx, sess); err != nil {
		return err
	}
	return ErrNoSession
}

// shorten cuts s to n bytes on a rune boundary.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
