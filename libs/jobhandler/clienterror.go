package jobhandler

import (
	"context"
	"errors"
)

// Error classes a job's submitter sees for a failed attempt.
const (
	// ClassHandlerError: a handler failed without saying more.
	ClassHandlerError = "handler_error"
	// ClassTimeout: the attempt ran out of time.
	ClassTimeout = "timeout"
	// ClassInvalidPayload: the handler refused the payload.
	ClassInvalidPayload = "invalid_payload"
	// ClassTargetUnreachable: an HTTP target could not be reached.
	ClassTargetUnreachable = "target_unreachable"
	// ClassTargetRejected: an HTTP target answered 4xx.
	ClassTargetRejected = "target_rejected"
	// ClassTargetFailed: an HTTP target answered 5xx (or 408, 429).
	ClassTargetFailed = "target_failed"
	// ClassTargetRedirected: an HTTP target answered 3xx (not followed).
	ClassTargetRedirected = "target_redirected"
	// ClassMisconfigured: the job type cannot work as configured.
	ClassMisconfigured = "misconfigured"
)

// ClientError is a failure with a message written for the job's
// submitter. Error() is the detail operators see (the admin API, logs);
// Class and Message are all the submitter sees (GET /v1/jobs/{id}), so
// they must hold nothing internal: no URLs, host names, addresses, stack
// traces or other clients' data.
type ClientError struct {
	Class   string
	Message string
	Err     error
}

func (e *ClientError) Error() string { return e.Err.Error() }
func (e *ClientError) Unwrap() error { return e.Err }

// ForClient wraps err with what the submitter may see of it.
func ForClient(class, message string, err error) error {
	if err == nil {
		return nil
	}
	return &ClientError{Class: class, Message: message, Err: err}
}

// Describe returns what a job's submitter may see of a failed attempt's
// error: its ClientError's class and message, or a generic one. The error's
// own text is never part of it.
func Describe(err error) (class, message string) {
	var ce *ClientError
	switch {
	case errors.As(err, &ce):
		return ce.Class, ce.Message
	case errors.Is(err, context.DeadlineExceeded):
		return ClassTimeout, "the attempt did not finish within the job type's timeout"
	}
	return ClassHandlerError, "the job's handler failed; the operators can see why"
}
