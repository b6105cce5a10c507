package cli

import (
	"encoding/json"
	"time"
)

// Views of the admin API's answers, as far as the tables show them.
type (
	dlqDeadLetter struct {
		ID             string     `json:"id"`
		Topic          string     `json:"topic"`
		JobID          string     `json:"job_id"`
		ClientID       string     `json:"client_id"`
		Reason         string     `json:"reason"`
		Error          string     `json:"error"`
		Fingerprint    string     `json:"fingerprint"`
		Attempts       int        `json:"attempts"`
		Handler        string     `json:"handler"`
		TraceID        string     `json:"trace_id"`
		FirstFailureAt *time.Time `json:"first_failure_at"`
		LastFailureAt  *time.Time `json:"last_failure_at"`
		DeadLetteredAt time.Time  `json:"dead_lettered_at"`
		Status         string     `json:"status"`
		ReplayCount    int        `json:"replay_count"`
		ReplayedAt     *time.Time `json:"replayed_at"`
		ReplayedBy     string     `json:"replayed_by"`
		ReplayOf       string     `json:"replay_of"`
	}
	dlqDetail struct {
		dlqDeadLetter
		Payload         json.RawMessage `json:"payload"`
		PayloadEncoding string          `json:"payload_encoding"`
		JobURL          string          `json:"job_url"`
		History         []struct {
			Attempt     int       `json:"attempt"`
			Outcome     string    `json:"outcome"`
			Error       string    `json:"error"`
			Fingerprint string    `json:"fingerprint"`
			Permanent   bool      `json:"permanent"`
			StartedAt   time.Time `json:"started_at"`
		} `json:"history"`
	}
	dlqPage[T any] struct {
		Items      []T    `json:"items"`
		NextCursor string `json:"next_cursor"`
	}
	dlqSelection struct {
		Matched       int            `json:"matched"`
		WouldReplay   int            `json:"would_replay"`
		Deduplicated  int            `json:"deduplicated"`
		NotReplayable map[string]int `json:"not_replayable"`
		BeyondMax     int            `json:"beyond_max"`
	}
	dlqProgress struct {
		Total        int `json:"total"`
		Pending      int `json:"pending"`
		Replayed     int `json:"replayed"`
		Deduplicated int `json:"deduplicated"`
		Skipped      int `json:"skipped"`
		Succeeded    int `json:"succeeded"`
		FailedAgain  int `json:"failed_again"`
		InFlight     int `json:"in_flight"`
	}
	dlqOperation struct {
		ID           string       `json:"id"`
		Status       string       `json:"status"`
		CreatedAt    time.Time    `json:"created_at"`
		CreatedBy    string       `json:"created_by"`
		RatePerS     float64      `json:"rate_per_s"`
		Stages       []any        `json:"stages"`
		StageTargets []int        `json:"stage_targets"`
		Stage        int          `json:"stage"`
		Selection    dlqSelection `json:"selection"`
		Progress     dlqProgress  `json:"progress"`
		StopReason   string       `json:"stop_reason"`
		FinishedAt   *time.Time   `json:"finished_at"`
	}
)
