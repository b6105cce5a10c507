package adminapi

import (
	"encoding/base64"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/libs/problem"
	"github.com/switchyard/switchyard/libs/replayplan"
	"github.com/switchyard/switchyard/services/replay/internal/deadletterstore"
)

// Bulk replay defaults and bounds.
const (
	DefaultRatePerS          = 10
	MaxRatePerS              = 1000
	DefaultStopIfFailedRatio = 0.1
	DefaultSettleTimeout     = 5 * time.Minute
	MaxSettleTimeout         = 24 * time.Hour
	maxBulkBody              = 16 << 10
)

// BulkFilter selects the dead letters of a bulk replay; the fields are the
// list endpoint's filters (status is implied: stored dead letters are
// replayed, replayed ones counted as deduplicated).
type BulkFilter struct {
	Topic       string `json:"topic,omitempty"`
	Type        string `json:"type,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Client      string `json:"client,omitempty"`
	Reason      string `json:"reason,omitempty"`
	Since       string `json:"since,omitempty"`
	Until       string `json:"until,omitempty"`
}

func (f BulkFilter) values() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"topic": f.Topic, "type": f.Type, "fingerprint": f.Fingerprint, "client": f.Client,
		"reason": f.Reason, "since": f.Since, "until": f.Until} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

// BulkReplayBody is the body of POST /admin/v1/replays.
type BulkReplayBody struct {
	Filter BulkFilter `json:"filter"`
	// All must be set to replay without a filter.
	All bool `json:"all,omitempty"`
	// DryRun reports what would be replayed, changing nothing.
	DryRun bool `json:"dry_run,omitempty"`
	// Max caps the dead letters replayed (the oldest first); absent: all.
	Max *int `json:"max,omitempty"`
	// RatePerS is the replay rate (default 10, at most 1000).
	RatePerS *float64 `json:"rate_per_s,omitempty"`
	// Force replays dead letters replayed before.
	Force bool `json:"force,omitempty"`
	// Stages cut the release, e.g. [1, "10%", "100%"]: each stage waits
	// for the one before it to settle.
	Stages []replayplan.Stage `json:"stages,omitempty"`
	// StopIfFailedRatio stops the operation when more than this share of
	// its settled replays dead-letter again (default 0.1).
	StopIfFailedRatio *float64 `json:"stop_if_failed_ratio,omitempty"`
	// SettleTimeout bounds a stage's wait for its replays to settle
	// (default 5m).
	SettleTimeout string `json:"settle_timeout,omitempty"`
}

// DryRunResult is the answer of a dry run.
type DryRunResult struct {
	DryRun    bool                     `json:"dry_run"`
	Filter    deadletterstore.Filter   `json:"filter"`
	Selection replayplan.Selection     `json:"selection"`
	Stages    []replayplan.Stage       `json:"stages"`
	Targets   []int                    `json:"stage_targets"`
	RatePerS  float64                  `json:"rate_per_s"`
	Estimated deadletterstore.Duration `json:"estimated_send_time"`
}

func (a *API) createReplay(c echo.Context) error {
	e := auditOf(c, "replays.create", "")
	body, err := readJSONBody[BulkReplayBody](c, maxBulkBody)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	if body.DryRun {
		e.Action = "replays.dry_run"
	}
	req, err := bulkRequest(body)
	e.Filter = req.Filter
	if err != nil {
		return a.recordRead(c, e, err)
	}
	req.Audit = e
	if body.DryRun {
		sel, targets, err := a.store.Plan(c.Request().Context(), req)
		if err != nil {
			return a.recordRead(c, e, err)
		}
		stages := req.Stages
		if stages == nil {
			stages = []replayplan.Stage{}
		}
		return c.JSON(http.StatusOK, DryRunResult{
			DryRun: true, Filter: req.Filter, Selection: sel, Stages: stages, Targets: targets, RatePerS: req.RatePerS,
			Estimated: deadletterstore.Duration(time.Duration(float64(sel.WouldReplay) / req.RatePerS * float64(time.Second)).Round(time.Second)),
		})
	}
	op, err := a.store.CreateOperation(c.Request().Context(), req)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	if a.Kick != nil {
		a.Kick()
	}
	c.Response().Header().Set(echo.HeaderLocation, "/admin/v1/replays/"+op.ID)
	return c.JSON(http.StatusAccepted, op)
}

// bulkRequest validates body and fills in the defaults.
func bulkRequest(body BulkReplayBody) (deadletterstore.BulkRequest, error) {
	var req deadletterstore.BulkRequest
	f, err := parseFilter(body.Filter.values())
	if err != nil {
		return req, err
	}
	req.Filter = f
	if f == (deadletterstore.Filter{}) && !body.All {
		return req, problem.InvalidParameter.New(`filter is empty: name a topic, fingerprint, client, reason or time range, or set "all": true to replay every dead letter`)
	}
	if body.Max != nil {
		if *body.Max < 1 || *body.Max > deadletterstore.MaxOperationItems {
			return req, problem.InvalidParameter.Newf("max %d must be from 1 to %d (leave it out to replay every match)", *body.Max, deadletterstore.MaxOperationItems)
		}
		req.Max = *body.Max
	}
	req.RatePerS = DefaultRatePerS
	if body.RatePerS != nil {
		r := *body.RatePerS
		if math.IsNaN(r) || r <= 0 || r > MaxRatePerS {
			return req, problem.InvalidParameter.Newf("rate_per_s %g must be above 0 and at most %d", r, MaxRatePerS)
		}
		req.RatePerS = r
	}
	if err := replayplan.ValidateStages(body.Stages); err != nil {
		return req, problem.InvalidParameter.New("stages: " + err.Error())
	}
	req.Stages = body.Stages
	req.StopIfFailedRatio = DefaultStopIfFailedRatio
	if body.StopIfFailedRatio != nil {
		r := *body.StopIfFailedRatio
		if math.IsNaN(r) || r < 0 || r > 1 {
			return req, problem.InvalidParameter.Newf("stop_if_failed_ratio %g must be from 0 (stop at the first failure) to 1 (never stop)", r)
		}
		req.StopIfFailedRatio = r
	}
	req.SettleTimeout = DefaultSettleTimeout
	if body.SettleTimeout != "" {
		d, err := time.ParseDuration(body.SettleTimeout)
		if err != nil || d < time.Second || d > MaxSettleTimeout {
			return req, problem.InvalidParameter.Newf("settle_timeout %q must be a duration from 1s to %s, such as 5m", truncate(body.SettleTimeout, 32), MaxSettleTimeout)
		}
		req.SettleTimeout = d
	}
	req.Force = body.Force
	return req, nil
}

var operationStatuses = []string{deadletterstore.OperationRunning, deadletterstore.OperationCompleted,
	deadletterstore.OperationStopped, deadletterstore.OperationCancelled}

func (a *API) listReplays(c echo.Context) error {
	e := auditOf(c, "replays.list", "")
	q := c.QueryParams()
	if err := onlyParams(q, []string{"status", "limit", "cursor"}); err != nil {
		return a.recordRead(c, e, err)
	}
	status := q.Get("status")
	e.Filter = map[string]string{"status": status}
	if status != "" && !slices.Contains(operationStatuses, status) {
		return a.recordRead(c, e, problem.InvalidParameter.Newf("status %q must be running, completed, stopped or cancelled", truncate(status, 32)))
	}
	limit, err := parseLimit(q)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	before := ""
	if cur := q.Get("cursor"); cur != "" {
		if before, err = decodeCursor(cur); err != nil {
			return a.recordRead(c, e, err)
		}
	}
	ops, more, err := a.store.ListOperations(c.Request().Context(), status, limit, before)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	page := Page[deadletterstore.Operation]{Items: ops}
	if more {
		page.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(ops[len(ops)-1].ID))
	}
	e.Counts = map[string]int{"returned": len(ops)}
	if err := a.recordRead(c, e, nil); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, page)
}

func (a *API) getReplay(c echo.Context) error {
	id := c.Param("id")
	e := auditOf(c, "replays.get", id)
	if err := onlyParams(c.QueryParams(), nil); err != nil {
		return a.recordRead(c, e, err)
	}
	op, err := a.store.GetOperation(c.Request().Context(), id)
	if err := a.recordRead(c, e, err); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, op)
}

var itemStates = []string{deadletterstore.ItemPending, deadletterstore.ItemReplayed, deadletterstore.ItemDeduplicated, deadletterstore.ItemSkipped}

func (a *API) replayItems(c echo.Context) error {
	id := c.Param("id")
	e := auditOf(c, "replays.items", id)
	q := c.QueryParams()
	if err := onlyParams(q, []string{"state", "limit", "cursor"}); err != nil {
		return a.recordRead(c, e, err)
	}
	state := q.Get("state")
	if state != "" && !slices.Contains(itemStates, state) {
		return a.recordRead(c, e, problem.InvalidParameter.Newf("state %q must be pending, replayed, deduplicated or skipped", truncate(state, 32)))
	}
	limit, err := parseLimit(q)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	after := 0
	if cur := q.Get("cursor"); cur != "" {
		raw, err := decodeCursor(cur)
		if err == nil {
			after, err = strconv.Atoi(raw)
		}
		if err != nil || after <= 0 {
			return a.recordRead(c, e, problem.InvalidParameter.New("cursor is not one this API returned"))
		}
	}
	items, more, err := a.store.OperationItems(c.Request().Context(), id, state, limit, after)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	page := Page[deadletterstore.Item]{Items: items}
	if page.Items == nil {
		page.Items = []deadletterstore.Item{}
	}
	if more {
		page.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(items[len(items)-1].Seq)))
	}
	e.Counts = map[string]int{"returned": len(items)}
	if err := a.recordRead(c, e, nil); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, page)
}

func (a *API) cancelReplay(c echo.Context) error {
	id := c.Param("id")
	e := auditOf(c, "replays.cancel", id)
	if err := onlyParams(c.QueryParams(), nil); err != nil {
		return a.recordRead(c, e, err)
	}
	op, err := a.store.CancelOperation(c.Request().Context(), id, e)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	return c.JSON(http.StatusOK, op)
}
