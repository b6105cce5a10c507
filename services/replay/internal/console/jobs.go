package console

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/libs/problem"
	"github.com/switchyard/switchyard/services/replay/internal/adminapi"
)

type jobView struct {
	ID, Client, Key string
	Job             *adminapi.JobDetail
	PayloadText     string
	ResultText      string
	TraceURL        string
	NotFound        string
}

// jobsPage looks a job up by id, or by client and idempotency key, and
// shows its timeline, attempts and dead letters.
func (c *Console) jobsPage(ec echo.Context) error {
	sess := sessionOf(ec)
	in := ec.QueryParams()
	v := jobView{ID: strings.TrimSpace(in.Get("id")), Client: strings.TrimSpace(in.Get("client")), Key: strings.TrimSpace(in.Get("key"))}
	var path string
	var q url.Values
	switch {
	case v.ID != "":
		path = "/admin/v1/jobs/" + url.PathEscape(v.ID)
	case v.Client != "" && v.Key != "":
		path, q = "/admin/v1/jobs", url.Values{"client": {v.Client}, "idempotency_key": {v.Key}}
	default:
		return c.render(ec, sess, http.StatusOK, "jobs", "Jobs", v)
	}
	var j adminapi.JobDetail
	if _, err := c.call(ec, sess, http.MethodGet, path, q, nil, &j); err != nil {
		var p *problem.Problem
		if errors.As(err, &p) && (p.Status == http.StatusNotFound || p.Status == http.StatusBadRequest) {
			v.NotFound = p.Detail
			return c.render(ec, sess, p.Status, "jobs", "Jobs", v)
		}
		return c.failed(ec, sess, err)
	}
	v.Job = &j
	v.PayloadText = prettyPayload(j.Payload, j.PayloadEncoding)
	if len(j.Result) > 0 {
		v.ResultText = prettyPayload(j.Result, "json")
	}
	if j.TraceID != "" && c.settings.TraceURL != "" {
		v.TraceURL = strings.ReplaceAll(c.settings.TraceURL, "{trace_id}", url.PathEscape(j.TraceID))
	}
	return c.render(ec, sess, http.StatusOK, "jobs", "Job "+j.ID, v)
}
