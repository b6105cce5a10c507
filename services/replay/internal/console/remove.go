package console

import (
	"net/http"
	"net/url"
	"slices"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
)

// maxSelected is the most dead letters one selection archives or purges
// (two pages of the list).
const maxSelected = 100

type removeView struct {
	Mode      string
	IDs       []string
	Confirmed bool
	// Done and Refused count the outcomes once confirmed; Errors say why
	// each refused one was.
	Done, Refused int
	Errors        []string
}

// removeSelected archives or purges the dead letters selected in the list:
// first a confirmation page naming them, then, confirmed, one admin API
// call each (each audited).
func (c *Console) removeSelected(ec echo.Context) error {
	sess := sessionOf(ec)
	r := ec.Request()
	v := removeView{Mode: r.PostFormValue("mode")}
	if v.Mode != "purge" {
		v.Mode = "archive"
	}
	for _, id := range r.PostForm["id"] {
		if uuid.Validate(id) == nil && !slices.Contains(v.IDs, id) {
			v.IDs = append(v.IDs, id)
		}
	}
	switch {
	case len(v.IDs) == 0:
		return c.renderError(ec, sess, http.StatusBadRequest, "Nothing selected", "Select the dead letters to remove in the list first.")
	case len(v.IDs) > maxSelected:
		return c.renderError(ec, sess, http.StatusBadRequest, "Too many selected",
			"Select at most 100 dead letters at once; to remove more, use the filter with switchyard dlq archive or purge.")
	}
	if r.PostFormValue("confirm") != "1" {
		return c.render(ec, sess, http.StatusOK, "remove", "Confirm: "+v.Mode, v)
	}
	v.Confirmed = true
	for _, id := range v.IDs {
		if _, err := c.call(ec, sess, http.MethodDelete, "/admin/v1/dead-letters/"+url.PathEscape(id), url.Values{"mode": {v.Mode}}, nil, nil); err != nil {
			if sessionEnded(err) {
				return c.failed(ec, sess, err)
			}
			p := problemOf(err)
			if p.Status == http.StatusForbidden {
				return c.failed(ec, sess, err)
			}
			v.Refused++
			v.Errors = append(v.Errors, id+": "+p.Detail)
			continue
		}
		v.Done++
	}
	return c.render(ec, sess, http.StatusOK, "remove", "Removed: "+v.Mode, v)
}
