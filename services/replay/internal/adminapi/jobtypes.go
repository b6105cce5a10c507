package adminapi

import (
	"context"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"golang.org/x/sync/errgroup"

	"github.com/switchyard/switchyard/libs/auditlog"
	"github.com/switchyard/switchyard/libs/jobpause"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/outbox"
	"github.com/switchyard/switchyard/libs/problem"
	"github.com/switchyard/switchyard/libs/sqsqueue"
)

// ScopePause grants pausing and resuming job types.
const ScopePause = "job-types:pause"

// JobTypes is what the job-type calls need: the database (pauses and
// counts) and the queues' depths.
type JobTypes struct {
	Pool *pgxpool.Pool
	// Depth reads a topic's queue depth (sqsqueue.Queues.Depth; a
	// dead-letter topic: its DLQ).
	Depth func(ctx context.Context, topic string) (sqsqueue.Depth, error)
}

// JobTypeView is one job type in GET /admin/v1/job-types.
type JobTypeView struct {
	Name string `json:"name"`
	// Paused is the type's pause (absent: running).
	Paused *jobpause.Pause `json:"paused,omitempty"`
	// Queue and DLQ are the approximate depths of its queues (absent
	// when SQS could not be read: DepthError says why).
	Queue      *sqsqueue.Depth `json:"queue,omitempty"`
	DLQ        *sqsqueue.Depth `json:"dlq,omitempty"`
	DepthError string          `json:"depth_error,omitempty"`
	// LastHour counts the jobs that finished in the last hour by status;
	// ErrorRate is the dead-lettered share of them.
	LastHour  map[string]int64 `json:"last_hour"`
	ErrorRate float64          `json:"error_rate"`
}

// PauseBody is the optional body of POST /admin/v1/job-types/{type}/pause.
type PauseBody struct {
	Reason string `json:"reason,omitempty"`
}

func (a *API) listJobTypes(c echo.Context) error {
	e := auditOf(c, "job_types.list", "")
	if err := onlyParams(c.QueryParams(), nil); err != nil {
		return a.recordRead(c, e, err)
	}
	ctx := c.Request().Context()
	pauses, err := jobpause.List(ctx, a.JobTypes.Pool)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	paused := map[string]jobpause.Pause{}
	for _, p := range pauses {
		paused[p.JobType] = p
	}
	counts, err := jobstore.CountFinished(ctx, a.JobTypes.Pool, time.Now().Add(-time.Hour))
	if err != nil {
		return a.recordRead(c, e, err)
	}
	names := a.catalog.Names()
	out := make([]JobTypeView, len(names))
	// The depths are two SQS calls per type: made at once, not in turn.
	var g errgroup.Group
	g.SetLimit(8)
	for i, name := range names {
		v := JobTypeView{Name: name, LastHour: map[string]int64{}}
		if p, ok := paused[name]; ok {
			v.Paused = &p
		}
		for _, tc := range counts {
			if tc.Type == name {
				v.LastHour[tc.Status] = tc.Count
			}
		}
		if done := v.LastHour["succeeded"] + v.LastHour["dead_lettered"]; done > 0 {
			v.ErrorRate = float64(v.LastHour["dead_lettered"]) / float64(done)
		}
		out[i] = v
		g.Go(func() error {
			if q, err := a.JobTypes.Depth(ctx, name); err == nil {
				out[i].Queue = &q
			} else {
				out[i].DepthError = problem.From(err).Detail
			}
			return nil
		})
		g.Go(func() error {
			if d, err := a.JobTypes.Depth(ctx, sqsqueue.DeadLetterTopic(name)); err == nil {
				out[i].DLQ = &d
			}
			return nil
		})
	}
	_ = g.Wait() // the goroutines report in out, never fail
	e.Counts = map[string]int{"job_types": len(out), "paused": len(pauses)}
	if err := a.recordRead(c, e, nil); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"job_types": out})
}

// pauseJobType pauses (pause) or resumes a declared job type, audited in
// the same transaction; answering again what is already so changes
// nothing (changed: false).
func (a *API) pauseJobType(pause bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		name := c.Param("type")
		action := "job_types.resume"
		if pause {
			action = "job_types.pause"
		}
		e := auditOf(c, action, name)
		body, err := readJSONBody[PauseBody](c, 4<<10)
		if err != nil {
			return a.recordRead(c, e, err)
		}
		if len(body.Reason) > 500 {
			return a.recordRead(c, e, problem.InvalidParameter.New("reason is at most 500 characters"))
		}
		if _, ok := a.catalog.Lookup(name); !ok {
			return a.recordRead(c, e, problem.UnknownJobType.Newf("no job type %q is declared", truncate(name, 64)))
		}
		var changed bool
		err = pgx.BeginFunc(c.Request().Context(), a.JobTypes.Pool, func(tx pgx.Tx) error {
			var err error
			if pause {
				changed, err = jobpause.Set(c.Request().Context(), tx, name, e.Actor, body.Reason)
				e.After = map[string]any{"paused": true, "reason": body.Reason}
			} else {
				changed, err = jobpause.Clear(c.Request().Context(), tx, name)
				e.After = map[string]any{"paused": false}
			}
			if err != nil {
				return err
			}
			if !changed {
				e.Outcome = "unchanged"
			}
			return auditlog.Write(c.Request().Context(), tx, e)
		})
		if err != nil {
			return a.recordRead(c, e, err)
		}
		return c.JSON(http.StatusOK, map[string]any{"job_type": name, "paused": pause, "changed": changed})
	}
}

// OutboxView is the answer of GET /admin/v1/outbox: messages waiting for
// the relay, the oldest one's wait, and parked rows.
type OutboxView struct {
	Pending          int64   `json:"pending"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	Parked           int64   `json:"parked"`
}

func (a *API) outbox(c echo.Context) error {
	e := auditOf(c, "outbox.read", "")
	if err := onlyParams(c.QueryParams(), nil); err != nil {
		return a.recordRead(c, e, err)
	}
	b, err := outbox.ReadBacklog(c.Request().Context(), a.JobTypes.Pool)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	if err := a.recordRead(c, e, nil); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, OutboxView{Pending: b.Pending, OldestAgeSeconds: b.OldestAge.Seconds(), Parked: b.Parked})
}

// jobTypeSchema answers GET /admin/v1/job-types/{type}/schema: the job
// type's payload JSON Schema (2020-12), which edited replays are checked
// against.
func (a *API) jobTypeSchema(c echo.Context) error {
	name := c.Param("type")
	e := auditOf(c, "job_types.schema", name)
	if err := onlyParams(c.QueryParams(), nil); err != nil {
		return a.recordRead(c, e, err)
	}
	jt, ok := a.catalog.Lookup(name)
	if !ok {
		return a.recordRead(c, e, problem.UnknownJobType.Newf("no job type %q is declared", truncate(name, 64)))
	}
	if err := a.recordRead(c, e, nil); err != nil {
		return err
	}
	return c.Blob(http.StatusOK, "application/schema+json", jt.SchemaJSON)
}
