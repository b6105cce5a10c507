// Package jobhandler is how work plugs into Switchyard: implement Handler
// for a job type, register it by name in a Registry, and the worker runs it
// for every message of the job types that name it in the catalog.
//
// A handler runs inside the worker's transaction: whatever it writes
// through Task.Tx commits together with the inbox record and the job's
// final status, so a redelivered message applies nothing twice. Effects
// outside Postgres (HTTP calls, e-mail) cannot join that transaction; pass
// Task.IdempotencyKey() downstream so the other side can deduplicate.
package jobhandler

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard/switchyard/libs/handlerregistry"
)

// Task is one attempt at one job.
type Task struct {
	JobID     string
	Type      string
	ClientID  string
	MessageID string
	// Attempt counts from 1.
	Attempt int
	Payload json.RawMessage
	// TraceParent is the W3C trace context the job was submitted with.
	TraceParent string
	// Tx is the worker's transaction for this message; see the package doc.
	Tx pgx.Tx
}

// IdempotencyKey is the key to send with effects outside Postgres: the job
// id, stable across redeliveries and retries of the same job.
func (t Task) IdempotencyKey() string { return t.JobID }

// Handler processes one job type. Returning a nil error means the job
// succeeded; result (valid JSON, or nil) is shown on the job's status.
// Returning an error fails the attempt; wrap it with Permanent when
// retrying cannot help.
type Handler interface {
	Handle(ctx context.Context, task Task) (result json.RawMessage, err error)
}

// Func adapts a function to Handler.
type Func func(ctx context.Context, task Task) (json.RawMessage, error)

// Handle implements Handler.
func (f Func) Handle(ctx context.Context, task Task) (json.RawMessage, error) { return f(ctx, task) }

// PermanentError marks a failure that retrying cannot fix (bad input, a
// target's 4xx).
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a PermanentError.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err is, or wraps, a PermanentError.
func IsPermanent(err error) bool {
	var pe *PermanentError
	return errors.As(err, &pe)
}

// Registry maps handler names to job handlers. It is safe for concurrent
// use.
type Registry = handlerregistry.Registry[Handler]

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return handlerregistry.New[Handler]() }
