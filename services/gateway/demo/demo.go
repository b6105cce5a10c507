// Package demo holds the sync handlers that ship with the gateway as
// examples: text-stats answers at once with the figures the worker's
// text-stats job computes in the background.
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
	return r.Register("text-stats", TextStats())
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
