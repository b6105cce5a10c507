package adminapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/libs/problem"
	"github.com/switchyard/switchyard/libs/replayapi"
	"github.com/switchyard/switchyard/services/replay/internal/deadletterstore"
)

// JobDetail is the answer of GET /admin/v1/jobs/{id}: a job of any client
// as an operator sees it, with its timeline, its attempts (with the
// operators' error detail) and its dead letters.
type JobDetail struct {
	ID                string          `json:"id"`
	Type              string          `json:"type"`
	ClientID          string          `json:"client_id"`
	Status            string          `json:"status"`
	Payload           json.RawMessage `json:"payload"`
	PayloadEncoding   string          `json:"payload_encoding"`
	Result            json.RawMessage `json:"result,omitempty"`
	Attempts          int             `json:"attempts"`
	IdempotencyKey    string          `json:"idempotency_key,omitempty"`
	RequestID         string          `json:"request_id,omitempty"`
	TraceID           string          `json:"trace_id,omitempty"`
	CallbackURL       string          `json:"callback_url,omitempty"`
	CreatedAt         time.Time       `json:"created_at"`
	RunAt             *time.Time      `json:"run_at,omitempty"`
	QueuedAt          *time.Time      `json:"queued_at,omitempty"`
	StartedAt         *time.Time      `json:"started_at,omitempty"`
	FinishedAt        *time.Time      `json:"finished_at,omitempty"`
	CancelRequestedAt *time.Time      `json:"cancel_requested_at,omitempty"`
	// Timeline is the job's events, oldest first, as its owner sees them.
	Timeline []EventView `json:"timeline"`
	// History is every attempt with the operators' error detail.
	History []AttemptView `json:"history"`
	// DeadLetters are the job's dead letters, newest first.
	DeadLetters []replayapi.DeadLetter `json:"dead_letters"`
}

// EventView is one entry of a job's timeline.
type EventView struct {
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

// traceIDOf reads the trace id from a W3C traceparent.
func traceIDOf(traceparent string) string {
	parts := strings.Split(traceparent, "-")
	if len(parts) == 4 && len(parts[1]) == 32 {
		return parts[1]
	}
	return ""
}

// getJob answers GET /admin/v1/jobs/{id}.
func (a *API) getJob(c echo.Context) error {
	id := c.Param("id")
	e := auditOf(c, "jobs.get", id)
	if err := onlyParams(c.QueryParams(), nil); err != nil {
		return a.recordRead(c, e, err)
	}
	return a.answerJob(c, e, id)
}

// findJob answers GET /admin/v1/jobs?client=&idempotency_key=: the
// client's job submitted with that key, while the key is kept.
func (a *API) findJob(c echo.Context) error {
	q := c.QueryParams()
	e := auditOf(c, "jobs.get", "")
	if err := onlyParams(q, []string{"client", "idempotency_key"}); err != nil {
		return a.recordRead(c, e, err)
	}
	client, key := q.Get("client"), q.Get("idempotency_key")
	e.Filter = map[string]string{"client": client, "idempotency_key": key}
	if client == "" || key == "" {
		return a.recordRead(c, e, problem.InvalidParameter.New("look a job up by client and idempotency_key (both), or GET /admin/v1/jobs/{id}"))
	}
	id, err := a.Jobs.FindByKey(c.Request().Context(), client, key)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	e.Target = id
	return a.answerJob(c, e, id)
}

func (a *API) answerJob(c echo.Context, e deadletterstore.AuditEntry, id string) error {
	ctx := c.Request().Context()
	j, err := a.Jobs.Inspect(ctx, id)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	attempts, err := a.Jobs.Attempts(ctx, id)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	dls, _, err := a.store.List(ctx, deadletterstore.Filter{JobID: id}, MaxLimit, "")
	if err != nil {
		return a.recordRead(c, e, err)
	}
	out := JobDetail{
		ID: j.ID, Type: j.Type, ClientID: j.ClientID, Status: string(j.Status), Result: j.Result, Attempts: j.Attempts,
		IdempotencyKey: j.IdempotencyKey, RequestID: j.RequestID, TraceID: traceIDOf(j.TraceParent), CallbackURL: j.CallbackURL,
		CreatedAt: j.CreatedAt, RunAt: j.RunAt, QueuedAt: j.QueuedAt, StartedAt: j.StartedAt, FinishedAt: j.FinishedAt,
		CancelRequestedAt: j.CancelRequestedAt, Timeline: []EventView{}, History: []AttemptView{}, DeadLetters: dls,
	}
	out.Payload, out.PayloadEncoding = renderPayload(j.Payload)
	for _, ev := range j.Events {
		out.Timeline = append(out.Timeline, EventView{At: ev.At, Type: string(ev.Type), Attempt: ev.Attempt, Error: ev.Error,
			ErrorClass: ev.ErrorClass, Permanent: ev.Permanent, NextAttemptAt: ev.NextAttemptAt, Reason: ev.Reason, Edited: ev.Edited})
	}
	for _, at := range attempts {
		out.History = append(out.History, AttemptView{Number: at.Number, MessageID: at.MessageID, Outcome: at.Outcome, Error: at.Error,
			Fingerprint: at.Fingerprint, Permanent: at.Permanent, StartedAt: at.StartedAt, FinishedAt: at.FinishedAt})
	}
	if out.DeadLetters == nil {
		out.DeadLetters = []replayapi.DeadLetter{}
	}
	e.Counts = map[string]int{"dead_letters": len(dls)}
	if err := a.recordRead(c, e, nil); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}
