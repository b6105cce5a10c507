package console

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/libs/problem"
	"github.com/switchyard/switchyard/libs/replayapi"
	"github.com/switchyard/switchyard/libs/replayplan"
	"github.com/switchyard/switchyard/services/replay/internal/adminapi"
)

// bulkFilterFields are the filter fields of a bulk replay form.
var bulkFilterFields = []string{"type", "fingerprint", "reason", "client", "since", "until"}

// bulkForm is a bulk replay form as the operator filled it in (kept as
// text, so that a refused form comes back as it was typed).
type bulkForm struct {
	Filter                   map[string]string
	Max, Rate, Stages, Ratio string
	Settle                   string
	Force                    bool
}

type bulkView struct {
	Form    bulkForm
	Preview *adminapi.DryRunResult
	// NotReplayable lists the preview's reasons, sorted.
	NotReplayable []reasonCount
	Refusal       *errorView
}

type reasonCount struct {
	Reason string
	Count  int
}

// readBulkForm reads the form from query parameters (a link from the
// dead-letter list) or a post.
func readBulkForm(v url.Values) bulkForm {
	f := bulkForm{Filter: map[string]string{}}
	for _, k := range bulkFilterFields {
		if s := strings.TrimSpace(v.Get(k)); s != "" {
			f.Filter[k] = s
		}
	}
	f.Max, f.Rate = strings.TrimSpace(v.Get("max")), strings.TrimSpace(v.Get("rate_per_s"))
	f.Stages, f.Ratio = strings.TrimSpace(v.Get("stages")), strings.TrimSpace(v.Get("stop_if_failed_ratio"))
	f.Settle = strings.TrimSpace(v.Get("settle_timeout"))
	f.Force = v.Get("force") == "on"
	return f
}

// body turns the form into the admin API's request; a field that is not
// a number is refused here with the field named.
func (f bulkForm) body(dryRun bool) (adminapi.BulkReplayBody, error) {
	b := adminapi.BulkReplayBody{DryRun: dryRun, Force: f.Force, SettleTimeout: f.Settle}
	b.Filter = adminapi.BulkFilter{
		Type: f.Filter["type"], Fingerprint: f.Filter["fingerprint"], Reason: f.Filter["reason"], Client: f.Filter["client"],
	}
	if s := f.Filter["since"]; s != "" {
		b.Filter.Since = fromLocalInput(s)
	}
	if s := f.Filter["until"]; s != "" {
		b.Filter.Until = fromLocalInput(s)
	}
	if f.Max != "" {
		n, err := strconv.Atoi(f.Max)
		if err != nil {
			return b, problem.InvalidParameter.Newf("max %q is not a whole number", shorten(f.Max, 20))
		}
		b.Max = &n
	}
	if f.Rate != "" {
		r, err := strconv.ParseFloat(f.Rate, 64)
		if err != nil {
			return b, problem.InvalidParameter.Newf("rate %q is not a number", shorten(f.Rate, 20))
		}
		b.RatePerS = &r
	}
	if f.Ratio != "" {
		r, err := strconv.ParseFloat(f.Ratio, 64)
		if err != nil {
			return b, problem.InvalidParameter.Newf("stop ratio %q is not a number", shorten(f.Ratio, 20))
		}
		b.StopIfFailedRatio = &r
	}
	if f.Stages != "" {
		st, err := replayplan.ParseStages(f.Stages)
		if err != nil {
			return b, problem.InvalidParameter.New("stages: " + err.Error())
		}
		b.Stages = st
	}
	return b, nil
}

func (c *Console) replaysPage(ec echo.Context) error {
	sess := sessionOf(ec)
	var page replayapi.Page[replayapi.Operation]
	if _, err := c.call(ec, sess, http.MethodGet, "/admin/v1/replays", url.Values{"limit": {"50"}}, nil, &page); err != nil {
		return c.failed(ec, sess, err)
	}
	return c.render(ec, sess, http.StatusOK, "replays", "Bulk replays", page.Items)
}

// newReplayPage is the bulk replay form, filled in from the query (the
// dead-letter list links here with its filter).
func (c *Console) newReplayPage(ec echo.Context) error {
	sess := sessionOf(ec)
	if !operatorOf(sess).CanReplay {
		return c.renderError(ec, sess, http.StatusForbidden, "Not allowed", "Bulk replay needs the dead-letters:replay scope.")
	}
	f := readBulkForm(ec.QueryParams())
	return c.render(ec, sess, http.StatusOK, "replay-new", "New bulk replay", bulkView{Form: f})
}

// startReplay previews (action=preview: a dry run) or starts a bulk
// replay; a refused form comes back with the operator's input and the
// reason.
func (c *Console) startReplay(ec echo.Context) error {
	sess := sessionOf(ec)
	r := ec.Request()
	f := readBulkForm(r.PostForm)
	dry := r.PostFormValue("action") != "start"
	v := bulkView{Form: f}
	body, err := f.body(dry)
	if err == nil {
		if dry {
			var res adminapi.DryRunResult
			if _, err = c.call(ec, sess, http.MethodPost, "/admin/v1/replays", nil, body, &res); err == nil {
				v.Preview = &res
				for reason, n := range res.Selection.NotReplayable {
					v.NotReplayable = append(v.NotReplayable, reasonCount{reason, n})
				}
				slices.SortFunc(v.NotReplayable, func(a, b reasonCount) int { return strings.Compare(a.Reason, b.Reason) })
				return c.render(ec, sess, http.StatusOK, "replay-new", "New bulk replay", v)
			}
		} else {
			var op replayapi.Operation
			if _, err = c.call(ec, sess, http.MethodPost, "/admin/v1/replays", nil, body, &op); err == nil {
				return ec.Redirect(http.StatusSeeOther, Prefix+"/replays/"+url.PathEscape(op.ID))
			}
		}
	}
	var p *problem.Problem
	if errors.Is(err, ErrNoSession) || !errors.As(err, &p) || p.Status >= 500 || p.Status == http.StatusForbidden {
		return c.failed(ec, sess, err)
	}
	v.Refusal = &errorView{Status: p.Status, Title: p.Title, Detail: p.Detail, Fields: p.Errors}
	return c.render(ec, sess, p.Status, "replay-new", "New bulk replay", v)
}

type operationView struct {
	replayapi.Operation
	// Stages pairs each stage as asked with the item count it came to.
	Stages []stageView
	// Running: the page refreshes its progress.
	Running bool
}

type stageView struct {
	Number int
	Asked  string
	Target int
	// Items counts the stage's own items and their outcomes.
	Items   replayapi.ItemCounts
	Current bool
	Done    bool
}

func (c *Console) replayPage(ec echo.Context) error {
	sess := sessionOf(ec)
	var op replayapi.Operation
	if _, err := c.call(ec, sess, http.MethodGet, "/admin/v1/replays/"+url.PathEscape(ec.Param("id")), nil, nil, &op); err != nil {
		return c.failed(ec, sess, err)
	}
	v := operationView{Operation: op, Running: op.Status == "running"}
	for i, target := range op.StageTargets {
		asked := "all"
		if i < len(op.Stages) {
			asked = op.Stages[i].String()
		}
		var items replayapi.ItemCounts
		if i < len(op.Progress.ByStage) {
			items = op.Progress.ByStage[i]
		}
		v.Stages = append(v.Stages, stageView{
			Number: i + 1, Asked: asked, Target: target, Items: items,
			Current: v.Running && i+1 == op.Stage, Done: i+1 < op.Stage || (!v.Running && op.Progress.Replayed >= target),
		})
	}
	return c.render(ec, sess, http.StatusOK, "replay", "Bulk replay "+op.ID, v)
}

func (c *Console) cancelReplay(ec echo.Context) error {
	sess := sessionOf(ec)
	id := ec.Param("id")
	if _, err := c.call(ec, sess, http.MethodPost, "/admin/v1/replays/"+url.PathEscape(id)+"/cancel", nil, nil, nil); err != nil {
		return c.failed(ec, sess, err)
	}
	return ec.Redirect(http.StatusSeeOther, Prefix+"/replays/"+url.PathEscape(id))
}
