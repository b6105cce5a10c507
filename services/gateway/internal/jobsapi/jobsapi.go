// Package jobsapi serves the public asynchronous-jobs API of the gateway:
// Submit handlers accept a job of one type (202, or 200 for an idempotent
// retry) and the Status handler reports a job's status to the client that
// owns it. Which paths they answer on, and who may call them, is the
// routes file's business (see the routes package).
package jobsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/callbacks"
	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/jobcatalog"
	"github.com/switchyard/switchyard/libs/jobpayload"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/jsonbody"
	"github.com/switchyard/switchyard/libs/problem"
	"github.com/switchyard/switchyard/libs/tracing"
)

// Store is what the API needs from the job store.
type Store interface {
	Accept(ctx context.Context, sub jobs.Submission) (jobs.Job, bool, error)
	Get(ctx context.Context, id, clientID string) (jobs.Job, error)
	List(ctx context.Context, clientID string, f jobstore.ListFilter) (jobstore.Page, error)
	Cancel(ctx context.Context, id, clientID string) (jobstore.CancelOutcome, error)
}

// API serves the jobs endpoints.
type API struct {
	store     Store
	catalog   *jobcatalog.Catalog
	publicURL string
	// MaxDelay is how far ahead a submission may schedule its job
	// (DefaultMaxDelay unless set).
	MaxDelay time.Duration
	// Callbacks checks a submission's callback URL against its client's
	// allow-list; nil refuses every callback URL.
	Callbacks CallbackPolicy
}

// CallbackPolicy decides whether a client may name a callback URL
// (callbacks.HostPolicy).
type CallbackPolicy interface {
	Check(ctx context.Context, clientID, rawURL string) error
}

// DefaultMaxDelay is how far ahead a job may be scheduled by default.
const DefaultMaxDelay = 30 * 24 * time.Hour

// Headers that schedule a job: run it after a delay (seconds, or a Go
// duration such as 90s, 20m, 48h) or at a time (RFC 3339).
const (
	HeaderDelay = "Switchyard-Delay"
	HeaderRunAt = "Switchyard-Run-At"
)

// New returns the API. publicURL, when set (e.g. "https://api.example.com"),
// makes status URLs absolute; otherwise they are paths.
func New(store Store, catalog *jobcatalog.Catalog, publicURL string) *API {
	return &API{store: store, catalog: catalog, publicURL: strings.TrimRight(publicURL, "/"), MaxDelay: DefaultMaxDelay}
}

// Register adds the conventional routes to e, each behind mw: POST
// /v1/jobs/{type} for every job type in the catalog, GET /v1/jobs,
// GET /v1/jobs/{id}, POST /v1/jobs/{id}/cancel and DELETE /v1/jobs/{id}.
// The gateway registers from its routes file instead; this is for tests
// and embedders that need no per-route policy.
func (a *API) Register(e *echo.Echo, mw ...echo.MiddlewareFunc) {
	for _, name := range a.catalog.Names() {
		if name == callbacks.JobType {
			continue // the platform's own; clients never submit it
		}
		jt, _ := a.catalog.Lookup(name)
		e.POST("/v1/jobs/"+name, a.Submit(jt), mw...)
	}
	e.POST("/v1/jobs/:type", UnknownJobType)
	e.GET("/v1/jobs", a.List(), mw...)
	e.GET("/v1/jobs/:id", a.Status("id"), mw...)
	e.POST("/v1/jobs/:id/cancel", a.Cancel("id"), mw...)
	e.DELETE("/v1/jobs/:id", a.Cancel("id"), mw...)
}

// UnknownJobType answers a submission to a job type no route declares.
func UnknownJobType(c echo.Context) error {
	return problem.UnknownJobType.Newf("no job type %q is offered here", truncate(c.Param("type"), 64))
}

// Submit returns the handler that accepts jobs of type jt.
func (a *API) Submit(jt *jobcatalog.JobType) echo.HandlerFunc {
	return func(c echo.Context) error { return a.submit(c, jt) }
}

// Status returns the handler that reports the job whose id is the path
// parameter param.
func (a *API) Status(param string) echo.HandlerFunc {
	return func(c echo.Context) error { return a.get(c, param) }
}

// Accepted is the body of a 202 (or idempotent 200) answer.
type Accepted struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	// RunAt is when a scheduled job is due.
	RunAt     *time.Time `json:"run_at,omitempty"`
	StatusURL string     `json:"status_url"`
}

// Status is the body of GET /v1/jobs/{id}.
type Status struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
	// LastError is written for the client; LastErrorClass names the kind
	// of failure (target_unreachable, target_rejected, timeout, ...).
	LastError      string          `json:"last_error,omitempty"`
	LastErrorClass string          `json:"last_error_class,omitempty"`
	Result         json.RawMessage `json:"result,omitempty"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
	QueuedAt       *time.Time      `json:"queued_at,omitempty"`
	StartedAt      *time.Time      `json:"started_at,omitempty"`
	FinishedAt     *time.Time      `json:"finished_at,omitempty"`
	// NextAttemptAt is when a failed job will be tried again.
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	// CancelRequestedAt is when the owner asked to cancel the job.
	CancelRequestedAt *time.Time `json:"cancel_requested_at,omitempty"`
	// RunAt is when a scheduled job is (or was) due.
	RunAt *time.Time `json:"run_at,omitempty"`
	// CallbackURL is where the job's final state is POSTed when it
	// finishes.
	CallbackURL string `json:"callback_url,omitempty"`
	// TraceID is the W3C trace the job belongs to: the submitting
	// request's, which the relay, the worker and any replay continue.
	TraceID string `json:"trace_id,omitempty"`
	// Events is the job's timeline, oldest first.
	Events []Event `json:"events"`
}

// Event is one entry of a job's timeline: accepted, queued,
// attempt_started, attempt_succeeded, attempt_failed, attempt_abandoned
// (its worker died), attempt_cancelled, retry_scheduled, dead_lettered,
// replayed, cancel_requested, cancelled.
type Event struct {
	At            time.Time  `json:"at"`
	Type          string     `json:"type"`
	Attempt       int        `json:"attempt,omitempty"`
	Error         string     `json:"error,omitempty"`
	ErrorClass    string     `json:"error_class,omitempty"`
	Permanent     bool       `json:"permanent,omitempty"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	Reason        string     `json:"reason,omitempty"`
	Edited        bool       `json:"edited,omitempty"`
}

// HeaderIdempotencyKey is the header that makes a submission idempotent.
const HeaderIdempotencyKey = "Idempotency-Key"

var idempotencyKeyPattern = regexp.MustCompile(`^[\x21-\x7e]{1,255}$`)

func (a *API) submit(c echo.Context, jt *jobcatalog.JobType) error {
	req := c.Request()
	if err := requireJSON(req.Header.Get("Content-Type")); err != nil {
		return err
	}
	key := req.Header.Get(HeaderIdempotencyKey)
	if key != "" && !idempotencyKeyPattern.MatchString(key) {
		return problem.InvalidParameter.New("Idempotency-Key must be 1 to 255 visible ASCII characters")
	}
	runAt, options, err := a.schedule(req.Header, time.Now())
	if err != nil {
		return err
	}
	body, err := jsonbody.Read(c.Request(), jt.MaxBodyBytes, "this job type's")
	if err != nil {
		return err
	}
	if err := jobpayload.Check(jt, body); err != nil {
		return err
	}
	id, ok := authn.FromContext(req.Context())
	if !ok {
		return errors.New("jobs API reached without an identity: authentication middleware missing")
	}
	callbackURL := req.Header.Get(callbacks.Header)
	if callbackURL != "" {
		if err := a.checkCallback(req.Context(), id.ClientID, callbackURL); err != nil {
			return err
		}
		options = append(options, callbacks.Header+"="+callbackURL)
	}
	jobID, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("generating job id: %w", err)
	}
	msgID, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("generating message id: %w", err)
	}
	sub := jobs.Submission{
		ID: jobID.String(), MessageID: msgID.String(), Type: jt.Name, ClientID: id.ClientID, ClientScopes: id.Scopes,
		Payload: body, IdempotencyKey: key, RequestID: httpserver.RequestID(req.Context()),
		// The request's span (or, with tracing off, the caller's
		// traceparent): the relay and the worker continue this trace.
		TraceParent: tracing.TraceParent(req.Context()),
		RunAt:       runAt, CallbackURL: callbackURL, Options: options,
	}
	job, created, err := a.store.Accept(req.Context(), sub)
	if err != nil {
		return err
	}
	trace.SpanFromContext(req.Context()).SetAttributes(attribute.String("switchyard.job_id", job.ID),
		attribute.String("switchyard.job_type", jt.Name), attribute.Bool("switchyard.job_created", created))
	statusURL := a.statusURL(job.ID)
	c.Response().Header().Set("Location", statusURL)
	code := http.StatusAccepted
	if !created {
		code = http.StatusOK
		c.Response().Header().Set("Idempotent-Replayed", "true")
	}
	return c.JSON(code, Accepted{ID: job.ID, Status: string(job.Status), RunAt: job.RunAt, StatusURL: statusURL})
}

func (a *API) get(c echo.Context, param string) error {
	jobID, err := jobIDParam(c, param)
	if err != nil {
		return err
	}
	id, ok := authn.FromContext(c.Request().Context())
	if !ok {
		return errors.New("jobs API reached without an identity: authentication middleware missing")
	}
	return a.writeStatus(c, jobID, id.ClientID, http.StatusOK)
}

// writeStatus answers with job id's status.
func (a *API) writeStatus(c echo.Context, jobID, clientID string, code int) error {
	job, err := a.store.Get(c.Request().Context(), jobID, clientID)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(code, Status{
		ID: job.ID, Type: job.Type, Status: string(job.Status), Attempts: job.Attempts, LastError: job.LastError, LastErrorClass: job.LastErrorClass,
		Result: job.Result, CreatedAt: job.CreatedAt, UpdatedAt: job.UpdatedAt,
		QueuedAt: job.QueuedAt, StartedAt: job.StartedAt, FinishedAt: job.FinishedAt, NextAttemptAt: job.NextAttemptAt,
		CancelRequestedAt: job.CancelRequestedAt, RunAt: job.RunAt, CallbackURL: job.CallbackURL, TraceID: tracing.TraceIDOf(job.TraceParent), Events: events(job.Events),
	})
}

// schedule reads when the submission asks its job to run: nil for at
// once, and the headers as sent (part of the request's hash, so that a
// retry with the same Idempotency-Key and other scheduling is refused).
// A time in the past runs at once; one beyond MaxDelay is refused.
func (a *API) schedule(h http.Header, now time.Time) (*time.Time, []string, error) {
	delay, at := h.Get(HeaderDelay), h.Get(HeaderRunAt)
	var runAt time.Time
	switch {
	case delay == "" && at == "":
		return nil, nil, nil
	case delay != "" && at != "":
		return nil, nil, problem.InvalidParameter.Newf("send %s or %s, not both", HeaderDelay, HeaderRunAt)
	case delay != "":
		d, err := time.ParseDuration(delay)
		if secs, serr := strconv.ParseUint(delay, 10, 32); serr == nil {
			d, err = time.Duration(secs)*time.Second, nil
		}
		if err != nil || d < 0 {
			return nil, nil, problem.InvalidParameter.Newf("%s must be seconds (300) or a duration (90s, 20m, 48h)", HeaderDelay)
		}
		if d > a.MaxDelay {
			return nil, nil, problem.InvalidParameter.Newf("%s %s is beyond the longest delay, %s", HeaderDelay, truncate(delay, 32), a.MaxDelay)
		}
		runAt = now.Add(d)
	default:
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return nil, nil, problem.InvalidParameter.Newf("%s must be an RFC 3339 time such as 2026-12-24T18:00:00Z", HeaderRunAt)
		}
		if t.Sub(now) > a.MaxDelay {
			return nil, nil, problem.InvalidParameter.Newf("%s %s is more than %s ahead", HeaderRunAt, truncate(at, 40), a.MaxDelay)
		}
		runAt = t
	}
	if !runAt.After(now) {
		return nil, []string{HeaderDelay + "=" + delay, HeaderRunAt + "=" + at}, nil
	}
	return &runAt, []string{HeaderDelay + "=" + delay, HeaderRunAt + "=" + at}, nil
}

// checkCallback refuses a callback URL that is malformed (400) or whose
// host is not on the client's allow-list (422); a store that cannot be
// read is unavailable (503), never a refusal.
func (a *API) checkCallback(ctx context.Context, clientID, rawURL string) error {
	if a.Callbacks == nil || !a.catalog.CallbacksEnabled() {
		return problem.CallbackNotAllowed.Newf("callbacks are not enabled here (the job types file does not declare %s)", callbacks.JobType)
	}
	err := a.Callbacks.Check(ctx, clientID, rawURL)
	var urlErr *callbacks.URLError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &urlErr):
		return problem.InvalidParameter.Newf("%s: %s", callbacks.Header, urlErr.Reason)
	case errors.Is(err, callbacks.ErrHostNotAllowed):
		return problem.CallbackNotAllowed.Newf("%s names a host that is not on your client's callback allow-list; an operator adds hosts with `switchyard clients callbacks set-hosts`", callbacks.Header)
	case database.Unavailable(err):
		return fmt.Errorf("%w: checking the callback host: %w", jobs.ErrStoreUnavailable, err)
	default:
		return fmt.Errorf("checking the callback host: %w", err)
	}
}

// jobIDParam reads the job id path parameter param.
func jobIDParam(c echo.Context, param string) (string, error) {
	raw := c.Param(param)
	jobID, err := uuid.Parse(raw)
	if err != nil || len(raw) != 36 {
		return "", problem.InvalidParameter.New("a job id is a UUID such as 0192f0c1-7c1e-7d2a-9c55-1e0f3b1f2a3b")
	}
	return jobID.String(), nil
}

func events(in []jobs.Event) []Event {
	out := make([]Event, len(in))
	for i, e := range in {
		out[i] = Event{At: e.At, Type: string(e.Type), Attempt: e.Attempt, Error: e.Error, ErrorClass: e.ErrorClass, Permanent: e.Permanent,
			NextAttemptAt: e.NextAttemptAt, Reason: e.Reason, Edited: e.Edited}
	}
	return out
}

func (a *API) statusURL(id string) string { return a.publicURL + "/v1/jobs/" + id }

// requireJSON accepts application/json and any application/*+json type.
func requireJSON(contentType string) error {
	if jsonbody.IsMediaType(contentType) {
		return nil
	}
	if contentType == "" {
		return problem.UnsupportedMedia.New("send the payload with Content-Type: application/json")
	}
	return problem.UnsupportedMedia.Newf("Content-Type %q is not accepted; use application/json", truncate(contentType, 64))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
