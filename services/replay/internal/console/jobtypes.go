package console

import (
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/services/replay/internal/adminapi"
)

type jobTypesView struct {
	Types  []adminapi.JobTypeView
	Notice string
}

func (c *Console) jobTypesPage(ec echo.Context) error {
	sess := sessionOf(ec)
	var out struct {
		JobTypes []adminapi.JobTypeView `json:"job_types"`
	}
	if _, err := c.call(ec, sess, http.MethodGet, "/admin/v1/job-types", nil, nil, &out); err != nil {
		return c.failed(ec, sess, err)
	}
	v := jobTypesView{Types: out.JobTypes}
	switch ec.QueryParam("done") {
	case "paused":
		v.Notice = "Paused: its workers stop receiving within a receive wait; its messages wait in SQS."
	case "resumed":
		v.Notice = "Resumed: its workers receive again."
	}
	return c.render(ec, sess, http.StatusOK, "job-types", "Job types", v)
}

// pauseJobType pauses (pause) or resumes the job type named in the path.
func (c *Console) pauseJobType(pause bool) echo.HandlerFunc {
	return func(ec echo.Context) error {
		sess := sessionOf(ec)
		verb, done := "resume", "resumed"
		var body any
		if pause {
			verb, done = "pause", "paused"
			body = adminapi.PauseBody{Reason: shorten(ec.Request().PostFormValue("reason"), 500)}
		}
		if _, err := c.call(ec, sess, http.MethodPost, "/admin/v1/job-types/"+url.PathEscape(ec.Param("type"))+"/"+verb, nil, body, nil); err != nil {
			return c.failed(ec, sess, err)
		}
		return ec.Redirect(http.StatusSeeOther, Prefix+"/job-types?done="+done)
	}
}
