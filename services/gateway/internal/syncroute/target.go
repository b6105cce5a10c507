package syncroute

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/switchyard/switchyard/libs/outboundhttp"
	"github.com/switchyard/switchyard/libs/synchandler"
	"github.com/switchyard/switchyard/libs/tracing"
	"github.com/switchyard/switchyard/services/gateway/internal/routes"
)

// inbound is what a target needs of one client request.
type inbound struct {
	method, path, rawQuery string
	params                 map[string]string
	header                 http.Header
	body                   []byte
	clientID               string
	scopes                 []string
	requestID              string
	remoteIP, proto, host  string
}

// reply is a target's answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// target answers calls: an HTTP upstream or a Go handler.
type target interface {
	call(ctx context.Context, in *inbound) (*reply, error)
	// passFailures reports whether a failed (5xx) reply is sent to the
	// client as it is (a Go handler's) rather than as a 502.
	passFailures() bool
}

// Outcomes of a call, as the breaker and the client see them.
var (
	// errTimeout is the cause of a context ended by the route's timeout.
	errTimeout = errors.New("the route's timeout passed")
	// errCanceled: the client (or every client of a coalesced call) went
	// away; neither a success nor a failure.
	errCanceled = errors.New("the client went away")
	// errUnreachable: no connection to the upstream.
	errUnreachable = errors.New("the upstream could not be reached")
	// errTooLarge: the upstream's answer exceeds max_response_bytes.
	errTooLarge = errors.New("the upstream's response is larger than max_response_bytes")
	// errHandler: a Go handler returned an error or panicked.
	errHandler = errors.New("the handler failed")
)

// statusError is a 5xx answer: a failure for the breaker.
type statusError struct{ status int }

func (e *statusError) Error() string { return fmt.Sprintf("the target answered %d", e.status) }

// ctxOutcome names why ctx ended, or returns nil if it has not.
func ctxOutcome(ctx context.Context) error {
	if ctx.Err() == nil {
		return nil
	}
	if errors.Is(context.Cause(ctx), errTimeout) {
		return errTimeout
	}
	return errCanceled
}

// Hop-by-hop headers (RFC 9110 §7.6.1) and those the gateway sets itself
// are never copied from an upstream's response.
var droppedResponseHeaders = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Connection", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", "Content-Length", "X-Request-Id"}

// NewTransport returns the HTTP transport for upstreams
// (outboundhttp.NewTransport: pooled, bounded dial, no proxy from the
// environment, bodies passed as sent).
func NewTransport() *http.Transport { return outboundhttp.NewTransport() }

// NewClient returns the upstream client over transport: redirects are
// passed to the client, not followed. With tracing on, each call is a
// client span, sent upstream as its traceparent.
func NewClient(transport http.RoundTripper) *http.Client {
	if tracing.Enabled() {
		transport = otelhttp.NewTransport(transport)
	}
	return outboundhttp.NewClient(transport)
}

var urlParamRe = regexp.MustCompile(`\{([a-z][a-z0-9_]*)\}`)

type upstreamTarget struct {
	spec   *routes.Upstream
	client *http.Client
}

func (u *upstreamTarget) passFailures() bool { return false }

// url fills the URL template: parameters in the path are path-escaped,
// parameters in the query query-escaped, so no value can add a segment or
// a query field. The routes file refuses parameters before the path, so
// no value can change the scheme, host or port.
func (u *upstreamTarget) url(in *inbound) string {
	path, query, hasQuery := strings.Cut(u.spec.URL, "?")
	target := urlParamRe.ReplaceAllStringFunc(path, func(m string) string {
		return pathParam(in.params[m[1:len(m)-1]])
	})
	if hasQuery {
		target += "?" + urlParamRe.ReplaceAllStringFunc(query, func(m string) string {
			return url.QueryEscape(in.params[m[1:len(m)-1]])
		})
	}
	if in.rawQuery == "" {
		return target
	}
	if strings.Contains(target, "?") {
		return target + "&" + in.rawQuery
	}
	return target + "?" + in.rawQuery
}

// pathParam escapes a value for one path segment: every character that
// could end the segment, the path or the authority is escaped, and a
// value that is a dot segment ("." or "..") has its dots escaped, so that
// no value can move the request to another path of the upstream.
func pathParam(v string) string {
	if v == "." || v == ".." {
		return strings.Repeat("%2E", len(v))
	}
	return url.PathEscape(v)
}

func (u *upstreamTarget) call(ctx context.Context, in *inbound) (*reply, error) {
	var body io.Reader
	if len(in.body) > 0 {
		body = bytes.NewReader(in.body)
	}
	// A HEAD on a GET route is asked upstream as the route's GET, so that
	// the answer can be cached for both.
	req, err := http.NewRequestWithContext(ctx, u.spec.Method, u.url(in), body)
	if err != nil {
		return nil, fmt.Errorf("%w: building the request: %w", errUnreachable, err)
	}
	for _, h := range u.spec.ForwardHeaders {
		for _, v := range in.header.Values(h) {
			req.Header.Add(h, v)
		}
	}
	for k, v := range u.spec.Headers {
		req.Header.Set(k, v)
	}
	// The caller's trace context; with tracing on, the transport replaces
	// it with the call's own span.
	for _, h := range []string{"Traceparent", "Tracestate"} {
		if v := in.header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set("X-Request-Id", in.requestID)
	req.Header.Set("X-Forwarded-For", in.remoteIP)
	req.Header.Set("X-Forwarded-Proto", in.proto)
	req.Header.Set("X-Forwarded-Host", in.host)
	req.Header.Set("X-Switchyard-Client-Id", in.clientID)
	req.Header.Set("X-Switchyard-Scopes", strings.Join(in.scopes, " "))

	resp, err := u.client.Do(req)
	if err != nil {
		if o := ctxOutcome(ctx); o != nil {
			return nil, o
		}
		return nil, fmt.Errorf("%w: %w", errUnreachable, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, u.spec.MaxResponseBytes+1))
	if err != nil {
		if o := ctxOutcome(ctx); o != nil {
			return nil, o
		}
		return nil, fmt.Errorf("%w: reading the response: %w", errUnreachable, err)
	}
	if int64(len(data)) > u.spec.MaxResponseBytes {
		return nil, errTooLarge
	}
	h := resp.Header.Clone()
	for _, k := range droppedResponseHeaders {
		h.Del(k)
	}
	for _, k := range strings.Split(resp.Header.Get("Connection"), ",") {
		if k = strings.TrimSpace(k); k != "" {
			h.Del(k)
		}
	}
	return &reply{status: resp.StatusCode, header: h, body: data}, nil
}

type handlerTarget struct {
	name    string
	handler synchandler.Handler
}

func (t *handlerTarget) passFailures() bool { return true }

func (t *handlerTarget) call(ctx context.Context, in *inbound) (rep *reply, err error) {
	header := in.header.Clone()
	header.Del("Authorization")
	header.Del("Cookie")
	query, _ := url.ParseQuery(in.rawQuery) // a malformed pair is dropped, as net/http does
	req := synchandler.Request{Method: in.method, Path: in.path, Params: in.params, Query: query, Header: header,
		Body: in.body, ClientID: in.clientID, Scopes: in.scopes}
	defer func() {
		if p := recover(); p != nil {
			rep, err = nil, fmt.Errorf("%w: handler %s panicked: %v", errHandler, t.name, p)
		}
	}()
	resp, err := t.handler.Serve(ctx, req)
	if o := ctxOutcome(ctx); o != nil {
		return nil, o
	}
	var refusal *synchandler.Refusal
	if errors.As(err, &refusal) {
		return nil, refusal
	}
	if err != nil {
		return nil, fmt.Errorf("%w: handler %s: %w", errHandler, t.name, err)
	}
	if resp.Status == 0 {
		resp.Status = http.StatusOK
	}
	if resp.Status < 200 || resp.Status > 599 {
		return nil, fmt.Errorf("%w: handler %s answered status %d", errHandler, t.name, resp.Status)
	}
	// The handler's header map as it is: the gateway only reads it
	// (copyHeader, and a clone when the answer is cached).
	return &reply{status: resp.Status, header: resp.Header, body: resp.Body}, nil
}
