// Package demo holds the sync handlers that ship with the gateway as
// examples: text-stats answers at once with the figures the worker's
// text-stats job computes in the background; hello answers a fixed
// greeting, the least a handler can do (the benchmark compares the
// gateway's cost around it with a bare server's).
package demo

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/switchyard/switchyard/libs/synchandler"
	"github.com/switchyard/switchyard/libs/textstats"
)

// Register adds the demo handlers to r.
func Register(r *synchandler.Registry) error {
	if err := r.Register("hello", Hello()); err != nil {
		return err
	}
	return r.Register("text-stats", TextStats())
}

// hello is Hello's answer, shared: the handler allocates nothing.
var hello = synchandler.Response{Status: http.StatusOK, Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, Body: []byte("Hello, World!")}

// Hello answers "Hello, World!" whatever it is sent.
func Hello() synchandler.Handler {
	return synchandler.Func(func(context.Context, synchandler.Request) (synchandler.Response, error) { return hello, nil })
}

// TextStats answers {"text": "..."} with its word and line counts and
// SHA-256, or 400 when the body is not such an object.
func TextStats() synchandler.Handler {
	return synchandler.Func(func(_ context.Context, req synchandler.Request) (synchandler.Response, error) {
		var in struct {
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(req.Body, &in); err != nil || in.Text == nil {
			return synchandler.Response{}, synchandler.Refuse(http.StatusBadRequest, `the body must be a JSON object with a "text" string`)
		}
		return synchandler.JSON(http.StatusOK, textstats.Analyse(*in.Text))
	})
}
