// Package adminapi serves the replay service's admin API (DESIGN.md,
// "Replay / admin"): dead letters listed with filters and cursor paging,
// shown with their payload and error history, counted by topic and
// fingerprint, replayed one at a time (optionally with an edited payload,
// validated like a new request) or in bulk by filter (dry run, max, rate,
// staged release, progress, cancel), archived or purged; and the audit
// log.
// Jobs of any client are looked up by id or by client and idempotency
// key, with their timeline, attempts and dead letters.
// Every call needs the admin scope or the capability scope of its route
// (ScopeRead, ScopeReplay, ScopeEdit, ScopePurge, ScopeAudit) and writes
// an audit row; calls that change something write it in the transaction
// of the change.
package adminapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/libs/auditlog"
	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/deadletter"
	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/jobcatalog"
	"github.com/switchyard/switchyard/libs/jobpayload"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/jsonbody"
	"github.com/switchyard/switchyard/libs/problem"
	"github.com/switchyard/switchyard/libs/replayapi"
	"github.com/switchyard/switchyard/libs/retention"
	"github.com/switchyard/switchyard/libs/usage"
	"github.com/switchyard/switchyard/services/replay/internal/deadletterstore"
)

// Scope grants every admin call.
const Scope = "switchyard:admin"

// Capability scopes grant parts of the admin API, so that operators can
// be given roles narrower than Scope (a role is the set of scopes its
// OAuth client may request): an on-call engineer read and replay, a lead
// also edit and purge, an auditor audit only.
const (
	// ScopeRead: list, show and count dead letters; list and show bulk
	// replay operations.
	ScopeRead = "dead-letters:read"
	// ScopeReplay: replay dead letters (one, or in bulk, dry runs
	// included) and cancel bulk replays.
	ScopeReplay = "dead-letters:replay"
	// ScopeEdit: replay a dead letter with an edited payload (with
	// ScopeReplay).
	ScopeEdit = "dead-letters:edit"
	// ScopePurge: archive and purge dead letters.
	ScopePurge = "dead-letters:purge"
	// ScopeAudit: read the audit log.
	ScopeAudit = "audit:read"
	// ScopeUsage: read the usage report.
	ScopeUsage = "usage:read"
)

// Guards returns, for a capability scope, the middleware that
// authenticates a call and requires that scope or Scope.
type Guards func(capability string) echo.MiddlewareFunc

// Page sizes.
const (
	DefaultLimit = 50
	MaxLimit     = 500
	// maxReplayBody bounds a replay request: the largest payload a job type
	// may take, plus room for the envelope.
	maxReplayBody = jobcatalog.MaxBodyBytesLimit + 4<<10
)

// API is the admin API.
type API struct {
	store   *deadletterstore.Store
	catalog *jobcatalog.Catalog
	// retention is how long an archived dead letter is kept.
	retention time.Duration
	// Kick, when set, is called after a bulk replay operation is created
	// (bulkreplay.Runner.Kick), so that it starts without waiting for the
	// runner's next scan.
	Kick func()
	// Usage reads the usage report (usage.Read on the platform's
	// database); nil: GET /admin/v1/usage is 404.
	Usage func(ctx context.Context, q usage.Query) (usage.Report, error)
	// UsageSeries reads usage over time (usage.Series); nil: GET
	// /admin/v1/usage/series is 404.
	UsageSeries func(ctx context.Context, q usage.Query, step time.Duration) ([]usage.Point, error)
	// Retention runs one retention pass (retention.Janitor.Pass); nil:
	// POST /admin/v1/retention/run is 404.
	Retention func(ctx context.Context, dryRun bool) ([]retention.Report, error)
	// Keys manages API keys; nil: the /admin/v1/api-keys calls are 404.
	Keys *APIKeys
	// Jobs looks jobs of any client up (scope dead-letters:read); nil:
	// /admin/v1/jobs is 404.
	Jobs *jobstore.Store
	// JobTypes lists job types with their queues and pauses them; nil:
	// /admin/v1/job-types is 404.
	JobTypes *JobTypes
}

// MaxUsageRange is the longest range one usage report covers.
const MaxUsageRange = 93 * 24 * time.Hour

// New returns the API.
func New(store *deadletterstore.Store, catalog *jobcatalog.Catalog, archiveRetention time.Duration) *API {
	return &API{store: store, catalog: catalog, retention: archiveRetention}
}

// Mount registers the routes on e, each behind the guard of its
// capability.
func (a *API) Mount(e *echo.Echo, guard Guards) {
	read, replay, purge, audit := guard(ScopeRead), guard(ScopeReplay), guard(ScopePurge), guard(ScopeAudit)
	g := e.Group("/admin/v1")
	g.GET("/dead-letters", a.list, read)
	g.GET("/dead-letters/stats", a.stats, read)
	g.GET("/dead-letters/:id", a.get, read)
	g.POST("/dead-letters/:id/replay", a.replay, replay)
	g.DELETE("/dead-letters/:id", a.remove, purge)
	g.POST("/dead-letters/remove", a.removeMatching, purge)
	g.POST("/replays", a.createReplay, replay)
	g.GET("/replays", a.listReplays, read)
	g.GET("/replays/:id", a.getReplay, read)
	g.GET("/replays/:id/items", a.replayItems, read)
	g.POST("/replays/:id/cancel", a.cancelReplay, replay)
	g.GET("/audit", a.audit, audit)
	if a.JobTypes != nil {
		g.GET("/job-types", a.listJobTypes, read)
		g.GET("/outbox", a.outbox, read)
		g.GET("/job-types/:type/schema", a.jobTypeSchema, read)
		g.POST("/job-types/:type/pause", a.pauseJobType(true), guard(ScopePause))
		g.POST("/job-types/:type/resume", a.pauseJobType(false), guard(ScopePause))
	}
	if a.Jobs != nil {
		g.GET("/jobs", a.findJob, read)
		g.GET("/jobs/:id", a.getJob, read)
	}
	if a.Usage != nil {
		g.GET("/usage", a.usage, guard(ScopeUsage))
	}
	if a.UsageSeries != nil {
		g.GET("/usage/series", a.usageSeries, guard(ScopeUsage))
	}
	if a.Retention != nil {
		g.POST("/retention/run", a.runRetention, guard(Scope))
	}
	a.mountAPIKeys(g, guard)
}

// RetentionRun is the body of POST /admin/v1/retention/run.
type RetentionRun struct {
	// DryRun counts what a pass would delete now and deletes nothing.
	DryRun bool `json:"dry_run"`
}

// RetentionResult is its answer: per table, the rows deleted (or that
// would be) and the oldest row left.
type RetentionResult struct {
	DryRun bool               `json:"dry_run"`
	Tables []retention.Report `json:"tables"`
}

// runRetention runs one retention pass now (admin scope only), or with
// dry_run says what it would delete; audited with the counts. 409 while
// another replica's janitor runs a pass.
func (a *API) runRetention(c echo.Context) error {
	var req RetentionRun
	body, err := jsonbody.Read(c.Request(), 1<<10, "a retention run's")
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return problem.InvalidParameter.New(`the body is {"dry_run": true|false}`)
	}
	e := auditOf(c, "retention.run", "")
	if req.DryRun {
		e.Action = "retention.dry_run"
	}
	reports, err := a.Retention(c.Request().Context(), req.DryRun)
	if errors.Is(err, retention.ErrBusy) {
		return a.recordRead(c, e, problem.RetentionBusy.New("another replica's janitor is running a pass; try again in a minute"))
	}
	counts := map[string]int{}
	for _, r := range reports {
		counts[r.Table] = int(r.Rows)
	}
	e.Counts = counts
	if auditErr := a.recordRead(c, e, err); auditErr != nil {
		return auditErr
	}
	return c.JSON(http.StatusOK, RetentionResult{DryRun: req.DryRun, Tables: reports})
}

// usage answers GET /admin/v1/usage?since=&until=&client=&route=: requests
// per client and route (errors, mean and percentile latencies) and jobs by
// type and status, over [since, until) (default: the last 24 hours).
func (a *API) usage(c echo.Context) error {
	e := auditOf(c, "usage.read", "")
	uq, err := usageQuery(c.QueryParams(), nil)
	e.Filter = map[string]any{"since": uq.Since, "until": uq.Until, "client": uq.ClientID, "route": uq.Route}
	if err != nil {
		return a.recordRead(c, e, err)
	}
	rep, err := a.Usage(c.Request().Context(), uq)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	e.Counts = map[string]int{"clients": len(rep.Clients)}
	if err := a.recordRead(c, e, nil); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, rep)
}

// usageQuery reads since, until (default: the 24 hours to now), client
// and route, and the extra parameters allowed.
func usageQuery(q url.Values, extra []string) (usage.Query, error) {
	var uq usage.Query
	if err := onlyParams(q, append([]string{"since", "until", "client", "route"}, extra...)); err != nil {
		return uq, err
	}
	until, err := parseTime(q, "until")
	if err != nil {
		return uq, err
	}
	if until == nil {
		now := time.Now().UTC()
		until = &now
	}
	since, err := parseTime(q, "since")
	if err != nil {
		return uq, err
	}
	if since == nil {
		from := until.Add(-24 * time.Hour)
		since = &from
	}
	uq = usage.Query{Since: *since, Until: *until, ClientID: q.Get("client"), Route: q.Get("route")}
	switch {
	case !uq.Until.After(uq.Since):
		return uq, problem.InvalidParameter.New("until must be after since")
	case uq.Until.Sub(uq.Since) > MaxUsageRange:
		return uq, problem.InvalidParameter.Newf("a report covers at most %d days; narrow since/until", int(MaxUsageRange/(24*time.Hour)))
	}
	return uq, nil
}

// SeriesAnswer is the answer of GET /admin/v1/usage/series.
type SeriesAnswer struct {
	Since  time.Time     `json:"since"`
	Until  time.Time     `json:"until"`
	Step   string        `json:"step"`
	Points []usage.Point `json:"points"`
}

// usageSeries answers GET /admin/v1/usage/series?since=&until=&client=
// &route=&step=: requests per step by outcome with p50 and p95 (step: a
// whole number of minutes; default: the range in about 60 steps).
func (a *API) usageSeries(c echo.Context) error {
	e := auditOf(c, "usage.read", "series")
	q := c.QueryParams()
	uq, err := usageQuery(q, []string{"step"})
	e.Filter = map[string]any{"since": uq.Since, "until": uq.Until, "client": uq.ClientID, "route": uq.Route, "step": q.Get("step")}
	if err != nil {
		return a.recordRead(c, e, err)
	}
	step := max(time.Minute, (uq.Until.Sub(uq.Since) / 60).Round(time.Minute))
	if v := q.Get("step"); v != "" {
		d, perr := time.ParseDuration(v)
		if perr != nil || d < time.Minute || d%time.Minute != 0 {
			return a.recordRead(c, e, problem.InvalidParameter.Newf("step %q must be a whole number of minutes such as 5m or 1h", truncate(v, 20)))
		}
		step = d
	}
	if uq.Until.Sub(uq.Since)/step >= usage.MaxSeriesPoints {
		return a.recordRead(c, e, problem.InvalidParameter.Newf("since to until in steps of %s is %d points or more (at most %d); take a longer step",
			step, usage.MaxSeriesPoints, usage.MaxSeriesPoints-1))
	}
	points, err := a.UsageSeries(c.Request().Context(), uq, step)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	if err := a.recordRead(c, e, nil); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, SeriesAnswer{Since: uq.Since.UTC(), Until: uq.Until.UTC(), Step: step.String(), Points: points})
}

// GuardsFor returns Guards on authenticator: each requires its capability
// or Scope. Every call they refuse (401, 403) goes to refusals (nil: not
// audited) as action "admin.refused", by the refused client or
// "anonymous".
func GuardsFor(authenticator authn.Authenticator, logger *slog.Logger, refusals *auditlog.Refusals) Guards {
	var onRefused func(c echo.Context, id *authn.Identity, status int)
	if refusals != nil {
		onRefused = func(c echo.Context, id *authn.Identity, status int) {
			clientID := ""
			if id != nil {
				clientID = id.ClientID
			}
			refusals.Refused(c.Request(), httpserver.RequestID(c.Request().Context()), c.RealIP(), clientID, status)
		}
	}
	return func(capability string) echo.MiddlewareFunc {
		return authn.Guard(authenticator, logger, authn.Policy{AnyScope: []string{capability, Scope}, OnRefused: onRefused})
	}
}

// auditOf starts the audit entry of the call in c.
func auditOf(c echo.Context, action, target string) deadletterstore.AuditEntry {
	id, _ := authn.FromContext(c.Request().Context())
	return deadletterstore.AuditEntry{
		Actor: id.ClientID, Action: action, Target: target,
		RequestID: httpserver.RequestID(c.Request().Context()), SourceIP: c.RealIP(),
	}
}

// recordRead audits a call that changed nothing: its outcome, whether it
// succeeded or was refused. It returns err (or the audit failure).
func (a *API) recordRead(c echo.Context, e deadletterstore.AuditEntry, err error) error {
	if err != nil {
		e.Outcome = "refused: " + strconv.Itoa(problem.From(err).Status)
	}
	if auditErr := a.store.Audit(c.Request().Context(), e); auditErr != nil {
		return errors.Join(err, auditErr)
	}
	return err
}

// Detail is the answer of GET /admin/v1/dead-letters/{id} (libs/replayapi).
type Detail = replayapi.Detail

// AttemptView is one attempt of the job in a Detail (libs/replayapi).
type AttemptView = replayapi.AttemptView

// Page is a page of a listing (replayapi.Page).
type Page[T any] = replayapi.Page[T]

var filterParams = []string{"topic", "type", "fingerprint", "client", "reason", "status", "job", "since", "until"}

func (a *API) list(c echo.Context) error {
	e := auditOf(c, "dead_letters.list", "")
	f, limit, cursor, err := parseListQuery(c.QueryParams())
	e.Filter = f
	if err != nil {
		return a.recordRead(c, e, err)
	}
	after := ""
	if cursor != "" {
		after, err = decodeCursor(cursor)
		if err != nil {
			return a.recordRead(c, e, err)
		}
	}
	items, more, err := a.store.List(c.Request().Context(), f, limit, after)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	page := Page[deadletterstore.DeadLetter]{Items: items}
	if page.Items == nil {
		page.Items = []deadletterstore.DeadLetter{}
	}
	if more {
		page.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(items[len(items)-1].ID))
	}
	e.Counts = map[string]int{"returned": len(items)}
	if err := a.recordRead(c, e, nil); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, page)
}

func (a *API) stats(c echo.Context) error {
	e := auditOf(c, "dead_letters.stats", "")
	if err := onlyParams(c.QueryParams(), append(slices.Clone(filterParams), "hourly")); err != nil {
		return a.recordRead(c, e, err)
	}
	hours := 0
	if v := c.QueryParam("hourly"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 168 {
			return a.recordRead(c, e, problem.InvalidParameter.Newf("hourly %q must be a number of hours from 1 to 168", truncate(v, 20)))
		}
		hours = n
	}
	q := c.QueryParams()
	q.Del("hourly")
	f, err := parseFilter(q)
	e.Filter = f
	if err != nil {
		return a.recordRead(c, e, err)
	}
	groups, err := a.store.Stats(c.Request().Context(), f)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	if groups == nil {
		groups = []deadletterstore.Group{}
	}
	if hours > 0 {
		if err := a.store.AddHourly(c.Request().Context(), groups, f, hours, time.Now()); err != nil {
			return a.recordRead(c, e, err)
		}
	}
	total := 0
	for _, g := range groups {
		total += g.Count
	}
	e.Counts = map[string]int{"groups": len(groups), "dead_letters": total}
	if err := a.recordRead(c, e, nil); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"groups": groups, "total": total})
}

func (a *API) get(c echo.Context) error {
	id := c.Param("id")
	e := auditOf(c, "dead_letters.get", id)
	if err := onlyParams(c.QueryParams(), nil); err != nil {
		return a.recordRead(c, e, err)
	}
	d, err := a.store.Get(c.Request().Context(), id)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	attempts, err := a.store.Attempts(c.Request().Context(), d)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	out := Detail{DeadLetter: d, History: []AttemptView{}}
	out.Payload, out.PayloadEncoding = renderPayload(d.Payload)
	for _, at := range attempts {
		out.History = append(out.History, AttemptView{
			Number: at.Number, MessageID: at.MessageID, Outcome: at.Outcome, Error: at.Error, Fingerprint: at.Fingerprint,
			Permanent: at.Permanent, StartedAt: at.StartedAt, FinishedAt: at.FinishedAt,
		})
	}
	if d.JobID != "" {
		out.JobURL = "/v1/jobs/" + d.JobID
	}
	if err := a.recordRead(c, e, nil); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// renderPayload returns a body as JSON: itself when it is JSON, else a
// JSON string of its text or its base64.
func renderPayload(body []byte) (json.RawMessage, string) {
	if json.Valid(body) {
		return body, "json"
	}
	if utf8.Valid(body) {
		s, _ := json.Marshal(string(body))
		return s, "text"
	}
	s, _ := json.Marshal(base64.StdEncoding.EncodeToString(body))
	return s, "base64"
}

// ReplayBody is the optional body of POST /admin/v1/dead-letters/{id}/replay.
type ReplayBody struct {
	// Payload replaces the message's payload; it is validated like a new
	// request of the job type.
	Payload json.RawMessage `json:"payload,omitempty"`
	// Force replays a dead letter that was replayed before.
	Force bool `json:"force,omitempty"`
}

func (a *API) replay(c echo.Context) error {
	id := c.Param("id")
	e := auditOf(c, "dead_letters.replay", id)
	body, err := readJSONBody[ReplayBody](c, maxReplayBody)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	e.Filter = map[string]any{"force": body.Force, "edited": len(body.Payload) > 0}
	if len(body.Payload) > 0 {
		if id, _ := authn.FromContext(c.Request().Context()); !id.HasAnyScope([]string{ScopeEdit, Scope}) {
			return a.recordRead(c, e, problem.InsufficientScope.Newf("replaying an edited payload requires one of the scopes: %s %s", ScopeEdit, Scope).
				WithHeader("WWW-Authenticate", `Bearer realm="`+authn.Realm+`", error="insufficient_scope", scope="`+ScopeEdit+` `+Scope+`"`))
		}
		d, err := a.store.Get(c.Request().Context(), id)
		if err != nil {
			return a.recordRead(c, e, err)
		}
		jt, ok := a.catalog.Lookup(d.Topic)
		if !ok {
			return a.recordRead(c, e, fmt.Errorf("job type %q is no longer declared, so an edited payload cannot be validated: %w", d.Topic, deadletter.ErrNotReplayable))
		}
		if err := jobpayload.Check(jt, body.Payload); err != nil {
			return a.recordRead(c, e, err)
		}
	}
	res, err := a.store.Replay(c.Request().Context(), deadletterstore.ReplayRequest{ID: id, Payload: body.Payload, Force: body.Force, Audit: e})
	if err != nil {
		return a.recordRead(c, e, err)
	}
	status := http.StatusAccepted
	if res.Deduplicated {
		status = http.StatusOK
	}
	return c.JSON(status, res)
}

func (a *API) remove(c echo.Context) error {
	id := c.Param("id")
	e := auditOf(c, "dead_letters.archive", id)
	if err := onlyParams(c.QueryParams(), []string{"mode"}); err != nil {
		return a.recordRead(c, e, err)
	}
	mode := deadletterstore.RemoveMode(c.QueryParam("mode"))
	switch mode {
	case "", deadletterstore.ModeArchive:
		mode = deadletterstore.ModeArchive
	case deadletterstore.ModePurge:
		e.Action = "dead_letters.purge"
	default:
		return a.recordRead(c, e, problem.InvalidParameter.Newf("mode %q must be archive (the default) or purge", truncate(string(mode), 32)))
	}
	d, err := a.store.Remove(c.Request().Context(), id, mode, a.retention, e)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	answer := map[string]any{"id": d.ID, "mode": mode}
	if mode == deadletterstore.ModeArchive {
		answer["purge_after"] = d.PurgeAfter
	}
	return c.JSON(http.StatusOK, answer)
}

func (a *API) audit(c echo.Context) error {
	e := auditOf(c, "audit.list", "")
	q := c.QueryParams()
	if err := onlyParams(q, []string{"actor", "action", "target", "since", "until", "skip_reads", "limit", "cursor"}); err != nil {
		return a.recordRead(c, e, err)
	}
	f := deadletterstore.AuditFilter{Actor: q.Get("actor"), Action: q.Get("action"), Target: q.Get("target")}
	var err error
	if v := q.Get("skip_reads"); v != "" {
		if f.SkipReads, err = strconv.ParseBool(v); err != nil {
			return a.recordRead(c, e, problem.InvalidParameter.Newf("skip_reads %q must be true or false", truncate(v, 20)))
		}
	}
	if f.Since, err = parseTime(q, "since"); err != nil {
		return a.recordRead(c, e, err)
	}
	if f.Until, err = parseTime(q, "until"); err != nil {
		return a.recordRead(c, e, err)
	}
	limit, err := parseLimit(q)
	if err != nil {
		return a.recordRead(c, e, err)
	}
	var before int64
	if cur := q.Get("cursor"); cur != "" {
		raw, err := decodeCursor(cur)
		if err == nil {
			before, err = strconv.ParseInt(raw, 10, 64)
		}
		if err != nil || before <= 0 {
			return a.recordRead(c, e, problem.InvalidParameter.New("cursor is not one this API returned"))
		}
	}
	e.Filter = map[string]any{"actor": f.Actor, "action": f.Action, "target": f.Target, "since": f.Since, "until": f.Until, "skip_reads": f.SkipReads}
	// The read is recorded first, so that it shows in its own answer.
	if err := a.recordRead(c, e, nil); err != nil {
		return err
	}
	items, more, err := a.store.ListAudit(c.Request().Context(), f, limit, before)
	if err != nil {
		return err
	}
	page := Page[deadletterstore.AuditEntry]{Items: items}
	if page.Items == nil {
		page.Items = []deadletterstore.AuditEntry{}
	}
	if more {
		page.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(items[len(items)-1].ID, 10)))
	}
	return c.JSON(http.StatusOK, page)
}

// parseListQuery reads the list endpoint's query: filters, limit, cursor.
func parseListQuery(q url.Values) (deadletterstore.Filter, int, string, error) {
	if err := onlyParams(q, append(slices.Clone(filterParams), "limit", "cursor")); err != nil {
		return deadletterstore.Filter{}, 0, "", err
	}
	f, err := parseFilter(q)
	if err != nil {
		return f, 0, "", err
	}
	limit, err := parseLimit(q)
	return f, limit, q.Get("cursor"), err
}

// parseFilter reads a dead-letter filter from query parameters (topic or
// type, fingerprint, client, reason, status, job, since, until).
func parseFilter(q url.Values) (deadletterstore.Filter, error) {
	f := deadletterstore.Filter{Fingerprint: q.Get("fingerprint"), ClientID: q.Get("client"), Reason: q.Get("reason"), Status: q.Get("status"), JobID: q.Get("job")}
	if f.JobID != "" && uuid.Validate(f.JobID) != nil {
		return f, problem.InvalidParameter.Newf("job %q is not a job id", truncate(f.JobID, 40))
	}
	topic, typ := q.Get("topic"), q.Get("type")
	if topic != "" && typ != "" && topic != typ {
		return f, problem.InvalidParameter.New("topic and type name the same thing (the job type); give one")
	}
	f.Topic = topic
	if f.Topic == "" {
		f.Topic = typ
	}
	if f.Status != "" && !slices.Contains([]string{deadletterstore.StatusStored, deadletterstore.StatusReplayed, deadletterstore.StatusArchived}, f.Status) {
		return f, problem.InvalidParameter.Newf("status %q must be stored, replayed or archived", truncate(f.Status, 32))
	}
	var err error
	if f.Since, err = parseTime(q, "since"); err != nil {
		return f, err
	}
	if f.Until, err = parseTime(q, "until"); err != nil {
		return f, err
	}
	if f.Since != nil && f.Until != nil && !f.Until.After(*f.Since) {
		return f, problem.InvalidParameter.New("until must be after since")
	}
	return f, nil
}

func parseTime(q url.Values, name string) (*time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return nil, problem.InvalidParameter.Newf("%s %q is not an RFC 3339 time such as 2026-11-23T10:00:00Z", name, truncate(v, 40))
	}
	return &t, nil
}

func parseLimit(q url.Values) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return DefaultLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxLimit {
		return 0, problem.InvalidParameter.Newf("limit %q must be a whole number from 1 to %d", truncate(v, 20), MaxLimit)
	}
	return n, nil
}

func decodeCursor(cur string) (string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(cur)
	if err != nil || len(raw) == 0 {
		return "", problem.InvalidParameter.New("cursor is not one this API returned")
	}
	s := string(raw)
	if _, perr := strconv.ParseInt(s, 10, 64); perr != nil && uuid.Validate(s) != nil {
		return "", problem.InvalidParameter.New("cursor is not one this API returned")
	}
	return s, nil
}

// onlyParams refuses query parameters other than allowed, and repeated ones.
func onlyParams(q url.Values, allowed []string) error {
	for k, vs := range q {
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return problem.InvalidParameter.Newf("unknown query parameter %q: this endpoint takes none", truncate(k, 40))
			}
			return problem.InvalidParameter.Newf("unknown query parameter %q (accepted: %s)", truncate(k, 40), strings.Join(allowed, ", "))
		}
		if len(vs) > 1 {
			return problem.InvalidParameter.Newf("query parameter %q is given %d times", k, len(vs))
		}
	}
	return nil
}

// readJSONBody decodes an optional JSON body into T, refusing unknown
// fields, trailing data and bodies over limit.
func readJSONBody[T any](c echo.Context, limit int64) (T, error) {
	var v T
	req := c.Request()
	data, err := io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return v, problem.PayloadTooLarge.Newf("the body exceeds %d bytes", limit)
		}
		return v, fmt.Errorf("reading request body: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return v, nil
	}
	if ct := req.Header.Get(echo.HeaderContentType); ct != "" && !strings.HasPrefix(ct, echo.MIMEApplicationJSON) {
		return v, problem.UnsupportedMedia.Newf("Content-Type %q is not accepted; use application/json", truncate(ct, 64))
	}
	if err := jobpayload.CheckJSON(data); err != nil {
		return v, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, problem.BadRequest.Newf("the body does not fit this endpoint: %s", truncate(err.Error(), 200))
	}
	return v, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
