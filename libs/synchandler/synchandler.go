// Package synchandler is how Go code answers a sync route: implement
// Handler, register it by name in a Registry, name it as the route's
// handler in the routes file, and the gateway calls it behind the route's
// timeout, concurrency limit (bulkhead), circuit breaker and cache.
//
// The gateway has already authenticated the caller and checked the route's
// scopes; Request carries who the caller is. A handler must return when
// ctx ends (the route's timeout): the gateway answers 504 for a call that
// outlives it. Return a Refusal to refuse a request with a 4xx problem. A
// response with a 5xx status, any other error or a panic counts as a
// failure for the route's circuit breaker; an error or a panic is answered
// with a 500 whose cause is logged, never sent.
package synchandler

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/switchyard/switchyard/libs/handlerregistry"
)

// Request is one call of a sync route.
type Request struct {
	// Method and Path are the request's, as the client sent them.
	Method string
	Path   string
	// Params holds the route's path parameters by name.
	Params map[string]string
	// Query is the parsed query string.
	Query url.Values
	// Header holds the request headers, without Authorization and Cookie.
	Header http.Header
	// Body is the request body, at most the route's max_body_bytes.
	Body []byte
	// ClientID and Scopes identify the authenticated caller.
	ClientID string
	Scopes   []string
}

// Response is a handler's answer.
type Response struct {
	// Status is the HTTP status (200 when zero).
	Status int
	// Header holds response headers; Content-Length is set by the gateway.
	// The gateway only reads it: a handler may answer with a map it keeps
	// and reuses, as long as it does not change it once returned.
	Header http.Header
	// Body is sent as it is.
	Body []byte
}

// JSON returns a response with v encoded as JSON.
func JSON(status int, v any) (Response, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Response{}, fmt.Errorf("encoding response: %w", err)
	}
	return Response{Status: status, Header: http.Header{"Content-Type": {"application/json"}}, Body: b}, nil
}

// Refusal is the error a handler returns to refuse a request it cannot
// serve as sent: the gateway answers RFC 9457 problem JSON with Status (a
// 4xx) and Detail, and the refusal does not count as a failure for the
// circuit breaker.
type Refusal struct {
	Status int
	Detail string
}

// Refuse returns a Refusal with status (400 when it is not a 4xx) and
// detail.
func Refuse(status int, detail string) *Refusal {
	if status < 400 || status > 499 {
		status = http.StatusBadRequest
	}
	return &Refusal{Status: status, Detail: detail}
}

func (r *Refusal) Error() string { return fmt.Sprintf("refused (%d): %s", r.Status, r.Detail) }

// Handler answers a sync route.
type Handler interface {
	Serve(ctx context.Context, req Request) (Response, error)
}

// Func adapts a function to Handler.
type Func func(ctx context.Context, req Request) (Response, error)

// Serve implements Handler.
func (f Func) Serve(ctx context.Context, req Request) (Response, error) { return f(ctx, req) }

// Registry maps handler names to sync handlers.
type Registry = handlerregistry.Registry[Handler]

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return handlerregistry.New[Handler]() }
