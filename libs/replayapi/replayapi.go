// Package replayapi holds the replay service's admin API answers as they
// travel: dead letters, their detail, pages, bulk replay operations and
// their progress. The replay service stores and serves these types, and
// the CLI (and any other client) reads them, so there is one definition of
// each answer.
package replayapi

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/switchyard/switchyard/libs/deadletter"
	"github.com/switchyard/switchyard/libs/replayplan"
)

// DeadLetter is one stored dead letter.
type DeadLetter struct {
	ID           string `json:"id"`
	MessageID    string `json:"message_id"`
	SQSMessageID string `json:"sqs_message_id"`
	// Topic is the job type whose DLQ held the message.
	Topic          string            `json:"topic"`
	JobID          string            `json:"job_id,omitempty"`
	ClientID       string            `json:"client_id,omitempty"`
	Reason         deadletter.Reason `json:"reason"`
	Error          string            `json:"error"`
	Fingerprint    string            `json:"fingerprint"`
	Attempts       int               `json:"attempts"`
	Handler        string            `json:"handler,omitempty"`
	TraceID        string            `json:"trace_id,omitempty"`
	FirstFailureAt *time.Time        `json:"first_failure_at,omitempty"`
	LastFailureAt  *time.Time        `json:"last_failure_at,omitempty"`
	DeadLetteredAt time.Time         `json:"dead_lettered_at"`
	StoredAt       time.Time         `json:"stored_at"`
	// ReceiveCount is SQS's receive count of the message in the DLQ's
	// source queue, when SQS reported it.
	ReceiveCount int               `json:"receive_count,omitempty"`
	Payload      []byte            `json:"-"`
	Attributes   map[string]string `json:"attributes,omitempty"`
	Status       string            `json:"status"`
	ReplayCount  int               `json:"replay_count"`
	ReplayedAt   *time.Time        `json:"replayed_at,omitempty"`
	ReplayedBy   string            `json:"replayed_by,omitempty"`
	// ReplayMessageID is the message the latest replay sent.
	ReplayMessageID string `json:"replay_message_id,omitempty"`
	// ReplayOf is the dead letter whose replay failed again as this one.
	ReplayOf   string     `json:"replay_of,omitempty"`
	ArchivedAt *time.Time `json:"archived_at,omitempty"`
	PurgeAfter *time.Time `json:"purge_after,omitempty"`
}

// Filter selects dead letters. Empty fields match everything.
type Filter struct {
	Topic       string `json:"topic,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	ClientID    string `json:"client,omitempty"`
	Reason      string `json:"reason,omitempty"`
	Status      string `json:"status,omitempty"`
	// JobID selects the dead letters of one job (its lineage).
	JobID string     `json:"job,omitempty"`
	Since *time.Time `json:"since,omitempty"`
	Until *time.Time `json:"until,omitempty"`
}

// Operation is a bulk replay and its progress.
type Operation struct {
	ID        string    `json:"id"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	RequestID string    `json:"request_id,omitempty"`
	Filter    Filter    `json:"filter"`
	Max       int       `json:"max,omitempty"`
	RatePerS  float64   `json:"rate_per_s"`
	Force     bool      `json:"force"`
	// Stages as asked, and the cumulative item counts they came to.
	Stages       []replayplan.Stage `json:"stages"`
	StageTargets []int              `json:"stage_targets"`
	// Stage is the stage being released, from 1.
	Stage             int        `json:"stage"`
	StageDoneAt       *time.Time `json:"stage_done_at,omitempty"`
	StopIfFailedRatio float64    `json:"stop_if_failed_ratio"`
	SettleTimeout     Duration   `json:"settle_timeout"`
	// Selection is what the filter matched when the operation was created.
	Selection   replayplan.Selection `json:"selection"`
	Progress    Progress             `json:"progress"`
	StopReason  string               `json:"stop_reason,omitempty"`
	CancelledBy string               `json:"cancelled_by,omitempty"`
	UpdatedAt   time.Time            `json:"updated_at"`
	FinishedAt  *time.Time           `json:"finished_at,omitempty"`
}

// Duration is a time.Duration written as "1m30s" in JSON.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads what MarshalJSON writes ("1m30s").
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"1m30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("reading duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// Progress counts an operation's items by state, and what became of the
// replayed ones: in all, and per stage.
type Progress struct {
	ItemCounts
	// ByStage counts each stage's own items (not cumulative), in order: stage
	// k holds the items past stage k-1's target up to its own.
	ByStage []ItemCounts `json:"by_stage,omitempty"`
}

// ItemCounts counts a set of an operation's items by state, and what
// became of the replayed ones.
type ItemCounts struct {
	Total        int `json:"total"`
	Pending      int `json:"pending"`
	Deduplicated int `json:"deduplicated"`
	Skipped      int `json:"skipped"`
	replayplan.Outcomes
	InFlight int `json:"in_flight"`
}

// Add adds c's counts to these.
func (n *ItemCounts) Add(c ItemCounts) {
	n.Total += c.Total
	n.Pending += c.Pending
	n.Deduplicated += c.Deduplicated
	n.Skipped += c.Skipped
	n.Replayed += c.Replayed
	n.Succeeded += c.Succeeded
	n.FailedAgain += c.FailedAgain
	n.InFlight += c.InFlight
}

// State is the operation's progress as replayplan.Next reads it.
func (o Operation) State(now time.Time) replayplan.State {
	st := replayplan.State{
		Targets: o.StageTargets, Stage: o.Stage - 1, Processed: o.Progress.Total - o.Progress.Pending,
		Outcomes: o.Progress.Outcomes, Now: now, SettleTimeout: time.Duration(o.SettleTimeout),
		StopIfFailedRatio: o.StopIfFailedRatio,
	}
	if o.StageDoneAt != nil {
		st.StageDoneAt = *o.StageDoneAt
	}
	return st
}

// Page is a page of a listing.
type Page[T any] struct {
	Items []T `json:"items"`
	// NextCursor fetches the next page; absent on the last.
	NextCursor string `json:"next_cursor,omitempty"`
}

// Detail is the answer of GET /admin/v1/dead-letters/{id}.
type Detail struct {
	DeadLetter
	// Payload is the message body: JSON as it was, or a string when the
	// body is not JSON (PayloadEncoding says how).
	Payload         json.RawMessage `json:"payload"`
	PayloadEncoding string          `json:"payload_encoding"`
	// History is the job's attempts with their errors, oldest first
	// (DeadLetter.Attempts counts the failed attempts of the message).
	History []AttemptView `json:"history"`
	// JobURL links to the job (GET /v1/jobs/{id} on the gateway, for its
	// owning client).
	JobURL string `json:"job_url,omitempty"`
}

// AttemptView is one attempt of the job.
type AttemptView struct {
	Number      int        `json:"attempt"`
	MessageID   string     `json:"message_id"`
	Outcome     string     `json:"outcome"`
	Error       string     `json:"error,omitempty"`
	Fingerprint string     `json:"fingerprint,omitempty"`
	Permanent   bool       `json:"permanent,omitempty"`
	StartedAt   time.Time  `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
}
