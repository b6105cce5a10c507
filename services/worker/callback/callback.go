// Package callback is the worker's built-in handler of completion
// callbacks (job type callbacks.JobType): it POSTs a finished job's event
// to the URL its submission named, signed per the Standard Webhooks
// specification with every signing secret the job's client has now.
//
// The delivery's webhook-id is the callback job's id, the same on every
// retry, so a receiver deduplicates on it; webhook-timestamp is the
// attempt's time. 2xx succeeds; 410 Gone (the receiver says it wants no
// more) and 3xx (redirects are never followed) are permanent; anything
// else, 4xx included, is retried with the job type's backoff and ends in
// the DLQ after the last attempt, from which an operator can replay it.
// The host is checked against the client's allow-list again at each
// attempt: a host an operator has removed since is never called.
package callback

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/switchyard/switchyard/libs/buildinfo"
	"github.com/switchyard/switchyard/libs/callbacks"
	"github.com/switchyard/switchyard/libs/jobhandler"
	"github.com/switchyard/switchyard/libs/outboundhttp"
	"github.com/switchyard/switchyard/services/worker/internal/callout"
)

// Handler delivers callbacks.
type Handler struct {
	client *http.Client
	now    func() time.Time
}

// New returns the handler, calling out through client (nil: an
// outboundhttp client, which follows no redirect and uses no proxy).
func New(client *http.Client) *Handler {
	return &Handler{client: outboundhttp.ForJobs(client), now: time.Now}
}

// Payload is a callback job's payload, as the database trigger that
// creates the job writes it (migration 00019).
type Payload struct {
	URL string `json:"url"`
	// Event is the body POSTed: {"type": "job.<status>", "timestamp",
	// "data": the job's final state}.
	Event json.RawMessage `json:"event"`
}

// maxAnswerBytes caps how much of a receiver's answer is read.
const maxAnswerBytes = 4 << 10

// Handle implements jobhandler.Handler.
func (h *Handler) Handle(ctx context.Context, task jobhandler.Task) (json.RawMessage, error) {
	var p Payload
	if err := json.Unmarshal(task.Payload, &p); err != nil || len(p.Event) == 0 {
		return nil, jobhandler.Permanent(jobhandler.ForClient(jobhandler.ClassInvalidPayload, "the callback job is malformed",
			fmt.Errorf("decoding callback payload: %w", errors.Join(err, errors.New("need url and event")))))
	}
	u, err := callbacks.ParseURL(p.URL)
	if err != nil {
		return nil, jobhandler.Permanent(jobhandler.ForClient(jobhandler.ClassMisconfigured, err.Error(), err))
	}
	// The worker's own transaction: the store reads what is committed.
	store := callbacks.NewStore(task.Tx)
	hosts, err := store.Hosts(ctx, task.ClientID)
	if err != nil {
		return nil, err
	}
	if !callbacks.Allowed(u, hosts) {
		return nil, jobhandler.Permanent(jobhandler.ForClient(jobhandler.ClassMisconfigured,
			"the callback host is no longer on the client's allow-list", fmt.Errorf("%w: %s", callbacks.ErrHostNotAllowed, u.Host)))
	}
	secrets, err := store.Secrets(ctx, task.ClientID, true)
	if err != nil {
		return nil, err
	}
	values := make([]string, len(secrets))
	for i, s := range secrets {
		values[i] = s.Value
	}
	var body bytes.Buffer
	if err := json.Compact(&body, p.Event); err != nil {
		return nil, jobhandler.Permanent(jobhandler.ForClient(jobhandler.ClassInvalidPayload, "the callback event is malformed", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body.Bytes()))
	if err != nil {
		return nil, jobhandler.Permanent(jobhandler.ForClient(jobhandler.ClassMisconfigured, "the callback URL is unusable", err))
	}
	if err := callbacks.SignHeaders(req.Header, values, task.JobID, h.now(), body.Bytes()); err != nil {
		return nil, jobhandler.Permanent(jobhandler.ForClient(jobhandler.ClassMisconfigured, "the client has no usable callback signing secret", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Switchyard-Webhooks/"+buildinfo.Version)
	req.Header.Set("X-Switchyard-Attempt", strconv.Itoa(task.Attempt))
	if task.TraceParent != "" {
		req.Header.Set("traceparent", task.TraceParent)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, callout.TransportError(ctx, "the callback receiver", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswerBytes))
	_ = resp.Body.Close()
	if err := callout.Answer(resp, "the callback receiver", callout.Webhook); err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{"status": resp.StatusCode, "signatures": len(values)})
}
