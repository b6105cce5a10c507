package adminapi

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/libs/problem"
	"github.com/switchyard/switchyard/services/replay/internal/deadletterstore"
)

// RemoveFilter selects the dead letters of a bulk archive or purge: the
// list endpoint's filters, status included.
type RemoveFilter struct {
	BulkFilter
	Status string `json:"status,omitempty"`
}

// BulkRemoveBody is the body of POST /admin/v1/dead-letters/remove.
type BulkRemoveBody struct {
	Filter RemoveFilter `json:"filter"`
	// Mode is archive (kept until the archive retention ends, then
	// deleted) or purge (deleted now).
	Mode string `json:"mode"`
	// Max is the most dead letters the request may change (default and at
	// most deadletterstore.MaxRemove); a filter selecting more is refused
	// whole.
	Max *int `json:"max,omitempty"`
	// DryRun counts and changes nothing.
	DryRun bool `json:"dry_run,omitempty"`
}

// BulkRemoveResult is its answer.
type BulkRemoveResult struct {
	DryRun bool                         `json:"dry_run"`
	Mode   string                       `json:"mode"`
	Filter deadletterstore.Filter       `json:"filter"`
	Result deadletterstore.RemoveResult `json:"result"`
}

// removeMatching archives or purges every dead letter a filter selects
// (dead-letters:purge), or with dry_run counts them; audited as
// dead_letters.archive_bulk / purge_bulk (or ..._dry_run) with the filter
// and counts. Dead letters a running bulk replay holds are left alone.
func (a *API) removeMatching(c echo.Context) error {
	e := auditOf(c, "dead_letters.remove_bulk", "")
	body, err := readJSONBody[BulkRemoveBody](c, maxBulkBody)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	mode := deadletterstore.RemoveMode(body.Mode)
	if mode != deadletterstore.ModeArchive && mode != deadletterstore.ModePurge {
		return a.recordRead(c, e, problem.InvalidParameter.New(`mode must be "archive" or "purge"`))
	}
	e.Action = "dead_letters." + string(mode) + "_bulk"
	if body.DryRun {
		e.Action += "_dry_run"
	}
	q := body.Filter.values()
	if body.Filter.Status != "" {
		q.Set("status", body.Filter.Status)
	}
	f, err := parseFilter(q)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	limit := deadletterstore.MaxRemove
	if body.Max != nil {
		if *body.Max < 1 || *body.Max > deadletterstore.MaxRemove {
			return a.recordRead(c, e, problem.InvalidParameter.Newf("max %d must be from 1 to %d", *body.Max, deadletterstore.MaxRemove))
		}
		limit = *body.Max
	}
	res, err := a.store.RemoveMatching(c.Request().Context(), f, mode, a.retention, limit, body.DryRun, e)
	if err != nil {
		// Refused before anything changed: the refusal is audited on its
		// own (a successful call's audit row is written with its effect).
		return a.recordRead(c, e, err)
	}
	return c.JSON(http.StatusOK, BulkRemoveResult{DryRun: body.DryRun, Mode: string(mode), Filter: f, Result: res})
}
