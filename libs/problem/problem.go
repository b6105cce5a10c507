// Package problem writes RFC 9457 problem details and is the one place
// where errors become HTTP statuses. Handlers return errors; the error
// handler calls From, which keeps a *Problem as it is, maps domain errors
// by identity, and turns anything else into a 500 whose cause is logged,
// never sent.
package problem

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/deadletter"
	"github.com/switchyard/switchyard/libs/jobs"
)

// ContentType is the media type of a problem document.
const ContentType = "application/problem+json"

// TypePrefix begins every problem type URI. The types are listed in
// docs/problems.md; they are stable identifiers, not links.
const TypePrefix = "urn:switchyard:problem:"

// Kind is a class of problem: a stable type, a title and a status.
type Kind struct {
	Slug   string
	Title  string
	Status int
}

// The problems Switchyard answers with.
var (
	BadRequest           = Kind{"bad-request", "Bad request", http.StatusBadRequest}
	MalformedJSON        = Kind{"malformed-json", "Request body is not valid JSON", http.StatusBadRequest}
	JSONTooDeep          = Kind{"json-too-deep", "Request body nests too deeply", http.StatusBadRequest}
	InvalidParameter     = Kind{"invalid-parameter", "Invalid parameter", http.StatusBadRequest}
	Unauthorized         = Kind{"unauthorized", "Authentication required", http.StatusUnauthorized}
	InvalidToken         = Kind{"invalid-token", "Invalid access token", http.StatusUnauthorized}
	Forbidden            = Kind{"forbidden", "Forbidden", http.StatusForbidden}
	InsufficientScope    = Kind{"insufficient-scope", "Insufficient scope", http.StatusForbidden}
	NotFound             = Kind{"not-found", "Not found", http.StatusNotFound}
	JobNotFound          = Kind{"job-not-found", "Job not found", http.StatusNotFound}
	UnknownJobType       = Kind{"unknown-job-type", "Unknown job type", http.StatusNotFound}
	JobFinished          = Kind{"job-finished", "Job already finished", http.StatusConflict}
	DeadLetterNotFound   = Kind{"dead-letter-not-found", "Dead letter not found", http.StatusNotFound}
	NotReplayable        = Kind{"not-replayable", "Dead letter cannot be replayed in its state", http.StatusConflict}
	OperationNotFound    = Kind{"replay-operation-not-found", "Replay operation not found", http.StatusNotFound}
	OperationFinished    = Kind{"replay-operation-finished", "Replay operation is not running", http.StatusConflict}
	RetentionBusy        = Kind{"retention-busy", "A retention pass is already running", http.StatusConflict}
	SelectionTooLarge    = Kind{"selection-too-large", "The filter selects too many dead letters", http.StatusUnprocessableEntity}
	MethodNotAllowed     = Kind{"method-not-allowed", "Method not allowed", http.StatusMethodNotAllowed}
	PayloadTooLarge      = Kind{"payload-too-large", "Request body too large", http.StatusRequestEntityTooLarge}
	UnsupportedMedia     = Kind{"unsupported-media-type", "Unsupported media type", http.StatusUnsupportedMediaType}
	ValidationFailed     = Kind{"validation-failed", "Payload does not match the job type's schema", http.StatusUnprocessableEntity}
	IdempotencyKeyReused = Kind{"idempotency-key-reused", "Idempotency key reused for a different request", http.StatusUnprocessableEntity}
	CallbackNotAllowed   = Kind{"callback-not-allowed", "Callback host not allowed for this client", http.StatusUnprocessableEntity}
	RateLimited          = Kind{"rate-limited", "Too many requests", http.StatusTooManyRequests}
	QuotaExceeded        = Kind{"quota-exceeded", "Quota used up", http.StatusTooManyRequests}
	AddressDenied        = Kind{"address-denied", "Address not allowed", http.StatusForbidden}
	CountryDenied        = Kind{"country-denied", "Country not allowed", http.StatusForbidden}
	Blocked              = Kind{"blocked", "Temporarily blocked", http.StatusForbidden}
	Internal             = Kind{"internal", "Internal error", http.StatusInternalServerError}
	Unavailable          = Kind{"unavailable", "Service unavailable", http.StatusServiceUnavailable}
	// Sync routes.
	RequestRejected = Kind{"request-rejected", "Request rejected by the route's handler", http.StatusBadRequest}
	ClientClosed    = Kind{"client-closed-request", "Client closed the request", 499}
	BadGateway      = Kind{"bad-gateway", "Upstream failed", http.StatusBadGateway}
	CircuitOpen     = Kind{"circuit-open", "Upstream unavailable: circuit breaker open", http.StatusServiceUnavailable}
	Overloaded      = Kind{"overloaded", "Route at its concurrency limit", http.StatusServiceUnavailable}
	// Busy: the whole server is at its in-flight limit (answered before
	// routing, so it names no route).
	Busy            = Kind{"busy", "Server at its concurrency limit", http.StatusServiceUnavailable}
	UpstreamTimeout = Kind{"upstream-timeout", "Upstream timed out", http.StatusGatewayTimeout}
)

// Type returns the kind's problem type URI.
func (k Kind) Type() string { return TypePrefix + k.Slug }

// New returns a problem of kind k with detail.
func (k Kind) New(detail string) *Problem {
	return &Problem{Type: k.Type(), Title: k.Title, Status: k.Status, Detail: detail}
}

// Newf is New with a format.
func (k Kind) Newf(format string, args ...any) *Problem { return k.New(fmt.Sprintf(format, args...)) }

// Problem is an RFC 9457 problem details document. It is also an error, so
// handlers can return one.
type Problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail,omitempty"`
	Instance  string       `json:"instance,omitempty"`
	RequestID string       `json:"request_id,omitempty"`
	Errors    []FieldError `json:"errors,omitempty"`

	header http.Header
	cause  error
}

// FieldError points at one invalid part of a request body (RFC 6901
// pointer into the JSON document).
type FieldError struct {
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

// Error implements error.
func (p *Problem) Error() string {
	if p.cause != nil {
		return fmt.Sprintf("%s: %s: %v", p.Title, p.Detail, p.cause)
	}
	return fmt.Sprintf("%s: %s", p.Title, p.Detail)
}

// Unwrap returns the error the problem was made from, if any.
func (p *Problem) Unwrap() error { return p.cause }

// WithHeader adds a response header sent with the problem (Retry-After,
// WWW-Authenticate, ...).
func (p *Problem) WithHeader(key, value string) *Problem {
	if p.header == nil {
		p.header = http.Header{}
	}
	p.header.Add(key, value)
	return p
}

// WithErrors attaches field errors.
func (p *Problem) WithErrors(errs []FieldError) *Problem {
	p.Errors = errs
	return p
}

// WithCause records the underlying error for logs; it is never sent.
func (p *Problem) WithCause(err error) *Problem {
	p.cause = err
	return p
}

// Header returns the extra response headers.
func (p *Problem) Header() http.Header { return p.header }

// StatusCoder is implemented by errors that carry an HTTP status, such as
// Echo's *echo.HTTPError.
type StatusCoder interface{ StatusCode() int }

// From maps err to the problem to answer with.
func From(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return JobNotFound.New("no job with this id belongs to the caller").WithCause(err)
	case errors.Is(err, jobs.ErrAlreadyFinished):
		return JobFinished.New("the job already succeeded or was dead-lettered; only a job that has not finished can be cancelled").WithCause(err)
	case errors.Is(err, deadletter.ErrOperationNotFound):
		return OperationNotFound.New(err.Error()).WithCause(err)
	case errors.Is(err, deadletter.ErrOperationFinished):
		return OperationFinished.New(err.Error()).WithCause(err)
	case errors.Is(err, deadletter.ErrEmptyFilter):
		return InvalidParameter.New("a bulk archive or purge needs at least one filter (type, fingerprint, client, reason, status, since, until)").WithCause(err)
	case errors.Is(err, deadletter.ErrSelectionTooLarge):
		return SelectionTooLarge.New(err.Error()).WithCause(err)
	case errors.Is(err, deadletter.ErrNotFound):
		return DeadLetterNotFound.New(err.Error()).WithCause(err)
	case errors.Is(err, deadletter.ErrNotReplayable):
		return NotReplayable.New(err.Error()).WithCause(err)
	case errors.Is(err, jobs.ErrUnknownType):
		return UnknownJobType.New(err.Error()).WithCause(err)
	case errors.Is(err, jobs.ErrOverloaded):
		return Overloaded.New("the service is taking jobs as fast as it can; retry after the interval in Retry-After").
			WithHeader("Retry-After", "1").WithCause(err)
	case errors.Is(err, jobs.ErrStoreUnavailable):
		return Unavailable.New("the job store cannot be reached; retry after the interval in Retry-After").
			WithHeader("Retry-After", "2").WithCause(err)
	case errors.Is(err, jobs.ErrIdempotencyKeyReused):
		return IdempotencyKeyReused.New("this Idempotency-Key was first used with a different job type or payload").WithCause(err)
	}
	var sc StatusCoder
	if errors.As(err, &sc) {
		return fromStatus(sc.StatusCode()).WithCause(err)
	}
	// Whatever failed because Postgres could not be reached (restarting,
	// failing over, out of connections) is an outage to retry, not a
	// fault of this request.
	if database.Unavailable(err) {
		return Unavailable.New("a database this service needs cannot be reached; retry after the interval in Retry-After").
			WithHeader("Retry-After", "2").WithCause(err)
	}
	return Internal.New("the request could not be completed").WithCause(err)
}

func fromStatus(status int) *Problem {
	for _, k := range []Kind{BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, PayloadTooLarge, UnsupportedMedia, Unavailable} {
		if k.Status == status {
			return k.New(http.StatusText(status))
		}
	}
	if status >= 400 && status < 500 {
		return &Problem{Type: "about:blank", Title: http.StatusText(status), Status: status}
	}
	return Internal.New("the request could not be completed")
}

// Write sends p.
func Write(w http.ResponseWriter, p *Problem) error {
	for k, vs := range p.header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	if err := json.NewEncoder(w).Encode(p); err != nil {
		return fmt.Errorf("writing problem: %w", err)
	}
	return nil
}
