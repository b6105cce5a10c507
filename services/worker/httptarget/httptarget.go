// Package httptarget is the built-in handler that delivers a job's payload
// to an HTTP endpoint: a POST with the job id as Idempotency-Key, so the
// endpoint can recognise a redelivery. 2xx succeeds (a JSON body becomes
// the job's result); 3xx (redirects are never followed) and 4xx other
// than 408 and 429 are permanent; anything else (5xx, timeouts, refused
// connections) is worth retrying.
package httptarget

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/switchyard/switchyard/libs/jobcatalog"
	"github.com/switchyard/switchyard/libs/jobhandler"
	"github.com/switchyard/switchyard/libs/outboundhttp"
	"github.com/switchyard/switchyard/services/worker/internal/callout"
)

// maxResultBytes caps how much of a response becomes the job's result.
const maxResultBytes = 64 << 10

// Target delivers payloads to one URL.
type Target struct {
	cfg    jobcatalog.HTTPTarget
	client *http.Client
}

// New returns a Target for cfg using client (when nil, an
// outboundhttp client: redirects are not followed, so a 3xx is a permanent
// failure and the payload and the type's secret headers go to the
// configured URL only; no proxy from the environment).
// With tracing on, its transport is wrapped: each call is a client span in
// the job's trace, and the target receives that span as its traceparent
// (with tracing off, the job's traceparent).
func New(cfg jobcatalog.HTTPTarget, client *http.Client) *Target {
	return &Target{cfg: cfg, client: outboundhttp.ForJobs(client)}
}

// Handle implements jobhandler.Handler.
func (t *Target) Handle(ctx context.Context, task jobhandler.Task) (json.RawMessage, error) {
	if t.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.cfg.Timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.cfg.URL, bytes.NewReader(task.Payload))
	if err != nil {
		return nil, jobhandler.Permanent(jobhandler.ForClient(jobhandler.ClassMisconfigured,
			"the job type's target is misconfigured", fmt.Errorf("building request: %w", err)))
	}
	for k, v := range t.cfg.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", task.IdempotencyKey())
	req.Header.Set("X-Switchyard-Job-Id", task.JobID)
	req.Header.Set("X-Switchyard-Job-Type", task.Type)
	req.Header.Set("X-Switchyard-Attempt", strconv.Itoa(task.Attempt))
	if task.TraceParent != "" {
		// The transport replaces it with the call's own span when ctx
		// holds one.
		req.Header.Set("traceparent", task.TraceParent)
	}
	// The errors' own text (operators only) names the target's URL; the
	// submitter gets a class and a message (see jobhandler.ClientError).
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, callout.TransportError(ctx, "the target", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResultBytes+1))
	if err != nil {
		return nil, jobhandler.ForClient(jobhandler.ClassTargetUnreachable, "the target's answer could not be read",
			fmt.Errorf("reading target response: %w", err))
	}
	if err := callout.Answer(resp, "the target", callout.Request); err != nil {
		return nil, err
	}
	if len(body) > 0 && len(body) <= maxResultBytes && json.Valid(body) {
		return body, nil
	}
	return json.Marshal(map[string]int{"status": resp.StatusCode})
}
