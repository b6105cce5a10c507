// Package jobs is the domain model of asynchronous jobs: what a job is, the
// states it moves through and which moves are allowed, and the rules that
// decide whether two submissions are the same request. It performs no I/O
// and imports no adapter (Echo, Watermill, pgx).
package jobs

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Status is a job's lifecycle state.
type Status string

// The lifecycle of a job. A job is accepted (durably committed with its
// outbox message), queued once the relay has handed it to SQS, processing
// while a worker runs its handler, and then succeeded or failed. A failed
// job may be retried (processing again) or dead-lettered; a dead-lettered
// job may be replayed, which queues it again. A job asked to run later is
// scheduled until then (its message handed to SQS with a delay, or held
// in the outbox), then processing. A job that is not running
// may be cancelled by its owner; a running one is marked, and cancelled
// instead of retried or dead-lettered if its attempt fails.
const (
	StatusScheduled    Status = "scheduled"
	StatusAccepted     Status = "accepted"
	StatusQueued       Status = "queued"
	StatusProcessing   Status = "processing"
	StatusSucceeded    Status = "succeeded"
	StatusFailed       Status = "failed"
	StatusDeadLettered Status = "dead_lettered"
	StatusReplayed     Status = "replayed"
	StatusCancelled    Status = "cancelled"
)

// transitions lists, for each status, the statuses a job may move to.
// Processing may follow accepted directly because SQS can deliver a message
// before the relay has recorded it as queued, and processing may follow
// processing when a worker died mid-handler and the message was redelivered.
// Any unfinished status may become dead_lettered: the worker dead-letters a
// job from processing (a permanent error or the last attempt), and SQS's
// RedrivePolicy moves a message whose worker keeps crashing whatever the
// job's status was when it last started.
//
// Cancelled is final. A job that is not running (scheduled, accepted,
// queued, failed and waiting for its retry, replayed) may move there at its owner's
// request; a processing one moves there only when the worker finds the
// owner's request (its attempt failed, or its worker died).
var transitions = map[Status][]Status{
	StatusScheduled:    {StatusProcessing, StatusDeadLettered, StatusCancelled},
	StatusAccepted:     {StatusQueued, StatusProcessing, StatusDeadLettered, StatusCancelled},
	StatusQueued:       {StatusProcessing, StatusDeadLettered, StatusCancelled},
	StatusProcessing:   {StatusProcessing, StatusSucceeded, StatusFailed, StatusDeadLettered, StatusCancelled},
	StatusFailed:       {StatusProcessing, StatusDeadLettered, StatusCancelled},
	StatusDeadLettered: {StatusReplayed},
	StatusReplayed:     {StatusQueued, StatusProcessing, StatusDeadLettered, StatusCancelled},
	StatusSucceeded:    nil,
	StatusCancelled:    nil,
}

// Finished reports whether s is final for its owner: succeeded,
// dead-lettered (an operator may still replay it) or cancelled.
func (s Status) Finished() bool {
	return s == StatusSucceeded || s == StatusDeadLettered || s == StatusCancelled
}

// Cancellable reports whether a job in status s may be cancelled at once
// (it is not running and not finished).
func (s Status) Cancellable() bool {
	return s.CanMoveTo(StatusCancelled) && s != StatusProcessing
}

// Valid reports whether s is one of the defined statuses.
func (s Status) Valid() bool {
	_, ok := transitions[s]
	return ok
}

// CanMoveTo reports whether a job in status s may move to next.
func (s Status) CanMoveTo(next Status) bool {
	for _, t := range transitions[s] {
		if t == next {
			return true
		}
	}
	return false
}

// Sources returns every status from which a job may move to target, in a
// stable order. Stores use it to guard updates so that a late or duplicated
// event never moves a job backwards.
func Sources(target Status) []Status {
	var out []Status
	for _, s := range allStatuses {
		if s.CanMoveTo(target) {
			out = append(out, s)
		}
	}
	return out
}

var allStatuses = []Status{
	StatusScheduled, StatusAccepted, StatusQueued, StatusProcessing, StatusSucceeded,
	StatusFailed, StatusDeadLettered, StatusReplayed, StatusCancelled,
}

// Statuses returns every status, in lifecycle order.
func Statuses() []Status { return append([]Status(nil), allStatuses...) }

// Job is one unit of asynchronous work as the platform records it.
type Job struct {
	ID       string
	Type     string
	ClientID string
	// ClientScopes are the scopes the caller held when the job was accepted.
	ClientScopes []string
	Status       Status
	Payload      json.RawMessage
	Result       json.RawMessage
	Attempts     int
	// LastError and LastErrorClass describe the last failed attempt as
	// the job's owner may see it (never the operators' detail).
	LastError      string
	LastErrorClass string
	IdempotencyKey string
	RequestHash    []byte
	RequestID      string
	TraceParent    string
	CreatedAt      time.Time
	UpdatedAt      time.Time
	QueuedAt       *time.Time
	StartedAt      *time.Time
	FinishedAt     *time.Time
	// NextAttemptAt is when a failed job will be tried again.
	NextAttemptAt *time.Time
	// RunAt is when a scheduled job is due (nil: at once).
	RunAt *time.Time
	// CancelRequestedAt is when its owner asked to cancel the job.
	CancelRequestedAt *time.Time
	// CallbackURL is where the job's final state is POSTed when it
	// finishes ("" for none).
	CallbackURL string
	// Events is the job's timeline, oldest first (filled by reads that
	// say so).
	Events []Event
}

// EventType names an entry of a job's timeline.
type EventType string

// The entries of a job's timeline.
const (
	// EventAccepted: the job and its message were committed.
	EventAccepted EventType = "accepted"
	// EventQueued: the relay handed the job's message to SQS (again after
	// a replay).
	EventQueued EventType = "queued"
	// EventAttemptStarted: a worker began an attempt.
	EventAttemptStarted EventType = "attempt_started"
	// EventAttemptSucceeded, EventAttemptFailed: how an attempt ended.
	EventAttemptSucceeded EventType = "attempt_succeeded"
	EventAttemptFailed    EventType = "attempt_failed"
	// EventAttemptAbandoned: the attempt's worker died; another took over.
	EventAttemptAbandoned EventType = "attempt_abandoned"
	// EventAttemptCancelled: the worker found the job's cancellation
	// before running its handler.
	EventAttemptCancelled EventType = "attempt_cancelled"
	// EventRetryScheduled: a failed attempt will be retried at NextAttemptAt.
	EventRetryScheduled EventType = "retry_scheduled"
	// EventDeadLettered: no more attempts; the message went to the DLQ.
	EventDeadLettered EventType = "dead_lettered"
	// EventReplayed: an operator sent the dead-lettered job again.
	EventReplayed EventType = "replayed"
	// EventCancelRequested: the owner asked to cancel the job while an
	// attempt ran; no later attempt runs.
	EventCancelRequested EventType = "cancel_requested"
	// EventCancelled: the job was cancelled; its handler runs no more.
	EventCancelled EventType = "cancelled"
)

// Event is one entry of a job's timeline, as its owner sees it.
type Event struct {
	At   time.Time
	Type EventType
	// Attempt numbers the attempt an attempt_* or retry_scheduled event
	// is about.
	Attempt int
	// Error is why an attempt failed, as written for the job's owner;
	// ErrorClass names the kind of failure (jobhandler's classes).
	Error      string
	ErrorClass string
	// Permanent says a failed attempt's error was not worth retrying.
	Permanent bool
	// NextAttemptAt is when a scheduled retry runs.
	NextAttemptAt *time.Time
	// Reason says why a job was dead-lettered (attempts_exhausted,
	// permanent_error, max_receive_count).
	Reason string
	// Edited says a replay changed the payload.
	Edited bool
}

// Attempt is one run of a job's handler.
type Attempt struct {
	// Number counts the job's attempts from 1, across replays.
	Number int
	// MessageID is the message that carried the attempt; a replay sends a
	// new one.
	MessageID string
	// Outcome is running, succeeded, failed or abandoned (the worker died).
	Outcome     string
	Error       string
	Fingerprint string
	Permanent   bool
	StartedAt   time.Time
	FinishedAt  *time.Time
}

// Submission is a validated request to run a job, as the gateway hands it
// to the store.
type Submission struct {
	// ID is the new job's id (a UUID chosen by the caller of the store).
	ID string
	// MessageID is the id of the outbox message that carries the job; the
	// worker's inbox deduplicates on it.
	MessageID      string
	Type           string
	ClientID       string
	ClientScopes   []string
	Payload        json.RawMessage
	IdempotencyKey string
	RequestID      string
	TraceParent    string
	// RunAt, when set and in the future, schedules the job: it runs no
	// earlier than then.
	RunAt *time.Time
	// CallbackURL, when set, is where the platform POSTs the job's final
	// state when it finishes (checked against the client's allow-list
	// before it gets here).
	CallbackURL string
	// Options are the request's other settings as the client sent them
	// (the delay or time asked for), part of the request's hash.
	Options []string
}

// RequestHash fingerprints what a client asked for, so that a retried
// request with the same Idempotency-Key can be told apart from a different
// request that reuses the key. The client is part of the key's scope, not
// of the hash; options (how the client asked to schedule the job, as
// sent) are, and a request without options hashes as it always did.
func RequestHash(jobType string, payload []byte, options ...string) []byte {
	h := sha256.New()
	h.Write([]byte(jobType))
	h.Write([]byte{0})
	h.Write(payload)
	for _, o := range options {
		h.Write([]byte{0})
		h.Write([]byte(o))
	}
	return h.Sum(nil)
}

// Errors the domain reports; libs/problem maps them to HTTP problems.
var (
	// ErrNotFound: no such job, or not one the caller may see.
	ErrNotFound = errors.New("job not found")
	// ErrIdempotencyKeyReused: the key was used before for a different request.
	ErrIdempotencyKeyReused = errors.New("idempotency key was used for a different request")
	// ErrUnknownType: the job type is not declared.
	ErrUnknownType = errors.New("unknown job type")
	// ErrStoreUnavailable: the job store cannot be reached now (a
	// connection failed, the database is restarting); try again later.
	ErrStoreUnavailable = errors.New("job store unavailable")
	// ErrAlreadyFinished: the job succeeded or was dead-lettered, so it
	// cannot be cancelled.
	ErrAlreadyFinished = errors.New("job already finished")
	// ErrOverloaded: the store is taking submissions as fast as it can and
	// this one would wait longer than allowed; try again later.
	ErrOverloaded = errors.New("job store overloaded")
)

var typeNamePattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,47}$`)

// ValidateTypeName checks that name can be a job type: lower-case letters,
// digits, '-' and '_', starting with a letter, at most 48 characters. The
// name doubles as the Watermill topic and part of the SQS queue names, whose
// alphabet and 80-character limit this respects.
func ValidateTypeName(name string) error {
	if !typeNamePattern.MatchString(name) {
		return fmt.Errorf("job type %q must match %s", name, typeNamePattern)
	}
	return nil
}
