package jobsapi

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/problem"
)

// DefaultPageSize is a listing's page size when the caller names none.
const DefaultPageSize = 20

// Listing is the body of GET /v1/jobs: a page of the caller's jobs,
// newest first. NextCursor (and NextURL, and a Link header with
// rel="next") is there when more jobs follow.
type Listing struct {
	Jobs       []Summary `json:"jobs"`
	NextCursor string    `json:"next_cursor,omitempty"`
	NextURL    string    `json:"next_url,omitempty"`
}

// Summary is a job in a listing; its status URL has the rest.
type Summary struct {
	ID                string     `json:"id"`
	Type              string     `json:"type"`
	Status            string     `json:"status"`
	Attempts          int        `json:"attempts"`
	LastErrorClass    string     `json:"last_error_class,omitempty"`
	CreatedAt         time.Time  `json:"created_at"`
	UpdatedAt         time.Time  `json:"updated_at"`
	FinishedAt        *time.Time `json:"finished_at,omitempty"`
	NextAttemptAt     *time.Time `json:"next_attempt_at,omitempty"`
	CancelRequestedAt *time.Time `json:"cancel_requested_at,omitempty"`
	RunAt             *time.Time `json:"run_at,omitempty"`
	StatusURL         string     `json:"status_url"`
}

// listParams are the query parameters GET /v1/jobs takes.
var listParams = map[string]bool{"type": true, "status": true, "created_after": true, "created_before": true, "limit": true, "cursor": true}

// List returns the handler of GET /v1/jobs: the caller's jobs, filtered
// by type, status (one or several, comma-separated) and creation time
// (created_after inclusive, created_before exclusive, RFC 3339), newest
// first, limit (1 to 100, default 20) at a time, paged with the cursor
// the previous page returned.
func (a *API) List() echo.HandlerFunc {
	return func(c echo.Context) error {
		id, ok := authn.FromContext(c.Request().Context())
		if !ok {
			return errors.New("jobs API reached without an identity: authentication middleware missing")
		}
		query := c.Request().URL.Query()
		f, err := listFilter(query)
		if err != nil {
			return err
		}
		page, err := a.store.List(c.Request().Context(), id.ClientID, f)
		if err != nil {
			return err
		}
		out := Listing{Jobs: make([]Summary, len(page.Jobs))}
		for i, j := range page.Jobs {
			out.Jobs[i] = Summary{ID: j.ID, Type: j.Type, Status: string(j.Status), Attempts: j.Attempts, LastErrorClass: j.LastErrorClass,
				CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt, FinishedAt: j.FinishedAt, NextAttemptAt: j.NextAttemptAt,
				CancelRequestedAt: j.CancelRequestedAt, RunAt: j.RunAt, StatusURL: a.statusURL(j.ID)}
		}
		if page.Next != nil {
			out.NextCursor = page.Next.Encode()
			query.Set("cursor", out.NextCursor)
			out.NextURL = a.publicURL + c.Request().URL.Path + "?" + query.Encode()
			c.Response().Header().Set("Link", "<"+out.NextURL+`>; rel="next"`)
		}
		c.Response().Header().Set("Cache-Control", "no-store")
		return c.JSON(http.StatusOK, out)
	}
}

func listFilter(query url.Values) (jobstore.ListFilter, error) {
	f := jobstore.ListFilter{Limit: DefaultPageSize}
	for name, values := range query {
		if !listParams[name] {
			return f, problem.InvalidParameter.Newf("unknown query parameter %q; GET /v1/jobs takes type, status, created_after, created_before, limit and cursor", truncate(name, 32))
		}
		if len(values) > 1 {
			return f, problem.InvalidParameter.Newf("query parameter %q is given more than once (several statuses go comma-separated)", name)
		}
	}
	if v := query.Get("type"); v != "" {
		if jobs.ValidateTypeName(v) != nil {
			return f, problem.InvalidParameter.Newf("type %q is not a job type name", truncate(v, 64))
		}
		f.Type = v
	}
	if v := query.Get("status"); v != "" {
		for _, s := range strings.Split(v, ",") {
			status := jobs.Status(strings.TrimSpace(s))
			if !status.Valid() {
				return f, problem.InvalidParameter.Newf("status %q is not one of %s", truncate(string(status), 32), statusNames())
			}
			f.Statuses = append(f.Statuses, status)
		}
	}
	for _, p := range []struct {
		name string
		to   *time.Time
	}{{"created_after", &f.CreatedFrom}, {"created_before", &f.CreatedBefore}} {
		if v := query.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return f, problem.InvalidParameter.Newf("%s must be an RFC 3339 time such as 2026-12-01T00:00:00Z", p.name)
			}
			*p.to = t
		}
	}
	if v := query.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > jobstore.MaxPageSize {
			return f, problem.InvalidParameter.Newf("limit must be a number from 1 to %d", jobstore.MaxPageSize)
		}
		f.Limit = n
	}
	if v := query.Get("cursor"); v != "" {
		cur, err := jobstore.ParseCursor(v)
		if err != nil {
			return f, problem.InvalidParameter.New("cursor is not one this API returned; pass next_cursor from the previous page unchanged")
		}
		f.After = &cur
	}
	return f, nil
}

func statusNames() string {
	var names []string
	for _, s := range jobs.Statuses() {
		names = append(names, string(s))
	}
	return strings.Join(names, ", ")
}

// Cancel returns the handler that cancels the caller's job whose id is
// the path parameter param (POST /v1/jobs/{id}/cancel, DELETE
// /v1/jobs/{id}). It answers with the job's status: 200 when the job is
// cancelled (now or before), 202 when an attempt is running (it ends as
// it would have, and no later attempt runs; poll the status), 409 when
// the job already succeeded or was dead-lettered.
func (a *API) Cancel(param string) echo.HandlerFunc {
	return func(c echo.Context) error {
		jobID, err := jobIDParam(c, param)
		if err != nil {
			return err
		}
		id, ok := authn.FromContext(c.Request().Context())
		if !ok {
			return errors.New("jobs API reached without an identity: authentication middleware missing")
		}
		outcome, err := a.store.Cancel(c.Request().Context(), jobID, id.ClientID)
		if err != nil {
			return err
		}
		code := http.StatusOK
		if outcome == jobstore.CancelRequested {
			code = http.StatusAccepted
		}
		return a.writeStatus(c, jobID, id.ClientID, code)
	}
}
