package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/sync/errgroup"

	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/jobmessage"
	"github.com/switchyard/switchyard/libs/problem"
	"github.com/switchyard/switchyard/libs/replayapi"
	"github.com/switchyard/switchyard/services/replay/internal/adminapi"
	"github.com/switchyard/switchyard/services/replay/internal/deadletterstore"
)

// pageNames are the templates under templates/, each rendered inside
// layout.html.
var pageNames = []string{"sign-in", "error", "overview", "dead-letters", "dead-letter", "audit", "replays", "replay-new", "replay", "analytics", "jobs", "job-types", "remove"}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"when":    formatTime,
		"whenPtr": formatTimePtr,
		"withq":   withQuery,
		"join":    strings.Join,
		"f1":      func(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) },
		"secs":    func(x float64) string { return (time.Duration(x * float64(time.Second))).Round(time.Second).String() },
		"pctf":    func(x float64) string { return strconv.FormatFloat(100*x, 'f', 1, 64) + "%" },
	}
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parsing console page %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
}

func formatTimePtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return formatTime(*t)
}

// withQuery returns q with key set to value (removed when empty),
// encoded for a link's query: url.Values.Encode escapes every value, so
// the result is marked safe, lest html/template escape its = and & again.
func withQuery(q url.Values, key, value string) template.URL {
	out := url.Values{}
	for k, vs := range q {
		out[k] = append([]string(nil), vs...)
	}
	if value == "" {
		out.Del(key)
	} else {
		out.Set(key, value)
	}
	return template.URL(out.Encode()) //nolint:gosec // G203: every part escaped by url.Values.Encode
}

// view is what every page's template gets.
type view struct {
	Title string
	// Page names the page (the navigation marks it).
	Page      string
	Operator  *operatorView
	CSRF      string
	RequestID string
	Data      any
}

// operatorView is the signed-in operator and what the scopes allow: the
// pages offer only these actions (the API refuses the rest anyway).
type operatorView struct {
	ClientID                                                            string
	CanRead, CanReplay, CanEdit, CanPurge, CanAudit, CanUsage, CanPause bool
}

func operatorOf(s *Session) *operatorView {
	if s == nil {
		return nil
	}
	admin := s.HasAnyScope(adminapi.Scope)
	return &operatorView{
		ClientID: s.ClientID,
		CanRead:  admin || s.HasAnyScope(adminapi.ScopeRead), CanReplay: admin || s.HasAnyScope(adminapi.ScopeReplay),
		CanEdit:  admin || (s.HasAnyScope(adminapi.ScopeEdit) && s.HasAnyScope(adminapi.ScopeReplay)),
		CanPurge: admin || s.HasAnyScope(adminapi.ScopePurge), CanAudit: admin || s.HasAnyScope(adminapi.ScopeAudit),
		CanUsage: admin || s.HasAnyScope(adminapi.ScopeUsage), CanPause: admin || s.HasAnyScope(adminapi.ScopePause),
	}
}

// render writes page name with data, as HTML.
func (c *Console) render(ec echo.Context, sess *Session, status int, name, title string, data any) error {
	v := view{Title: title, Page: name, Operator: operatorOf(sess), RequestID: httpserver.RequestID(ec.Request().Context()), Data: data}
	if sess != nil {
		v.CSRF = sess.CSRF()
	}
	var buf bytes.Buffer
	if err := c.pages[name].Execute(&buf, v); err != nil {
		c.logger.ErrorContext(ec.Request().Context(), "rendering a console page", "page", name, "error", err)
		return ec.String(http.StatusInternalServerError, "the page could not be rendered")
	}
	return ec.HTMLBlob(status, buf.Bytes())
}

type errorView struct {
	Status        int
	Title, Detail string
	Fields        []problem.FieldError
}

func (c *Console) renderError(ec echo.Context, sess *Session, status int, title, detail string) error {
	return c.render(ec, sess, status, "error", title, errorView{Status: status, Title: title, Detail: detail})
}

type overviewView struct {
	Groups  []groupView
	Total   int
	Stored  int
	Running []replayapi.Operation
	// Outbox is the relay's backlog (nil when it could not be read).
	Outbox *adminapi.OutboxView
	// Queued, InFlight and DLQ add up the job types' queues; Paused
	// counts the paused types.
	Queued, InFlight, DLQ, Paused int
	DepthKnown                    bool
	// Gateways are the configured gateways' breaker states.
	Gateways []gatewayBreakers
}

// groupView is a dead-letter group with its sparkline.
type groupView struct {
	deadletterstore.Group
	Spark sparkline
}

// sparkline is a group's dead letters per hour, drawn in a 120 x 24 box.
type sparkline struct {
	Points string
	Max    int
	Label  string
}

func newSparkline(hourly []int) sparkline {
	sp := sparkline{}
	for _, n := range hourly {
		sp.Max = max(sp.Max, n)
	}
	top := float64(max(sp.Max, 1))
	step := 120.0 / float64(max(len(hourly)-1, 1))
	pts := make([]string, 0, len(hourly))
	for i, n := range hourly {
		pts = append(pts, strconv.FormatFloat(float64(i)*step, 'f', 1, 64)+","+strconv.FormatFloat(22-float64(n)/top*20, 'f', 1, 64))
	}
	sp.Points = strings.Join(pts, " ")
	total := 0
	for _, n := range hourly {
		total += n
	}
	sp.Label = fmt.Sprintf("dead letters per hour: %d in the last %d hours, at most %d in one hour", total, len(hourly), sp.Max)
	return sp
}

func (c *Console) overview(ec echo.Context) error {
	sess := sessionOf(ec)
	// The page's four API calls run at once (the token renewed first, so
	// that they share it).
	if err := c.renew(ec, sess); err != nil {
		return c.failed(ec, sess, err)
	}
	v := overviewView{}
	var stats struct {
		Groups []deadletterstore.Group `json:"groups"`
		Total  int                     `json:"total"`
	}
	var running replayapi.Page[replayapi.Operation]
	var ob adminapi.OutboxView
	var types struct {
		JobTypes []adminapi.JobTypeView `json:"job_types"`
	}
	var obErr, typesErr error
	var g errgroup.Group
	g.Go(func() error {
		_, err := c.call(ec, sess, http.MethodGet, "/admin/v1/dead-letters/stats", url.Values{"hourly": {"24"}}, nil, &stats)
		return err
	})
	g.Go(func() error {
		_, err := c.call(ec, sess, http.MethodGet, "/admin/v1/replays", url.Values{"status": {"running"}, "limit": {"20"}}, nil, &running)
		return err
	})
	g.Go(func() error {
		_, obErr = c.call(ec, sess, http.MethodGet, "/admin/v1/outbox", nil, nil, &ob)
		return nil
	})
	g.Go(func() error {
		_, typesErr = c.call(ec, sess, http.MethodGet, "/admin/v1/job-types", nil, nil, &types)
		return nil
	})
	g.Go(func() error {
		v.Gateways = c.breakerStates(ec.Request().Context())
		return nil
	})
	err := g.Wait()
	for _, e := range []error{obErr, typesErr} {
		if errors.Is(e, ErrNoSession) {
			err = e
		}
	}
	if err != nil {
		return c.failed(ec, sess, err)
	}
	v.Total = stats.Total
	for _, g := range stats.Groups {
		v.Stored += g.Stored
		v.Groups = append(v.Groups, groupView{Group: g, Spark: newSparkline(g.Hourly)})
	}
	v.Running = running.Items
	if obErr == nil {
		v.Outbox = &ob
	}
	if typesErr == nil {
		v.DepthKnown = true
		for _, jt := range types.JobTypes {
			if jt.Queue != nil {
				v.Queued += jt.Queue.Visible
				v.InFlight += jt.Queue.InFlight
			} else {
				v.DepthKnown = false
			}
			if jt.DLQ != nil {
				v.DLQ += jt.DLQ.Visible
			}
			if jt.Paused != nil {
				v.Paused++
			}
		}
	}
	return c.render(ec, sess, http.StatusOK, "overview", "Overview", v)
}

// listFilters are the dead-letter list's filter fields, as the admin API
// names them.
var listFilters = []string{"type", "fingerprint", "reason", "client", "status", "since", "until"}

type deadLettersView struct {
	Query      url.Values
	Filter     map[string]string
	Items      []replayapi.DeadLetter
	NextCursor string
	Notice     string
}

// readFilters reads the non-empty filter fields keys of a list page's
// query in: as typed (to fill the form back in), as the page's own query
// (for its paging links), and into api, the admin API's query (times
// from the browser's local input to RFC 3339).
func readFilters(in url.Values, keys []string, api url.Values) (typed map[string]string, page url.Values) {
	typed, page = map[string]string{}, url.Values{}
	for _, k := range keys {
		val := strings.TrimSpace(in.Get(k))
		if val == "" {
			continue
		}
		typed[k] = val
		page.Set(k, val)
		if k == "since" || k == "until" {
			val = fromLocalInput(val)
		}
		api.Set(k, val)
	}
	return typed, page
}

func (c *Console) deadLetters(ec echo.Context) error {
	sess := sessionOf(ec)
	in := ec.QueryParams()
	v := deadLettersView{}
	q := url.Values{"limit": {"50"}}
	v.Filter, v.Query = readFilters(in, listFilters, q)
	if cur := in.Get("cursor"); cur != "" {
		q.Set("cursor", cur)
	}
	if in.Get("done") == "archived" {
		v.Notice = "The dead letter was archived."
	}
	var page replayapi.Page[replayapi.DeadLetter]
	if _, err := c.call(ec, sess, http.MethodGet, "/admin/v1/dead-letters", q, nil, &page); err != nil {
		var p *problem.Problem
		if errors.As(err, &p) && p.Status == http.StatusBadRequest {
			return c.render(ec, sess, http.StatusBadRequest, "dead-letters", "Dead letters", deadLettersViewWithError(v, p))
		}
		return c.failed(ec, sess, err)
	}
	v.Items, v.NextCursor = page.Items, page.NextCursor
	return c.render(ec, sess, http.StatusOK, "dead-letters", "Dead letters", v)
}

func deadLettersViewWithError(v deadLettersView, p *problem.Problem) deadLettersView {
	v.Notice = "Filter not accepted: " + p.Detail
	return v
}

// fromLocalInput turns a datetime-local value (2026-12-06T10:00, read as
// UTC) into RFC 3339; anything else passes through for the API to judge.
func fromLocalInput(s string) string {
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC().Format(time.RFC3339)
		}
	}
	return s
}

type deadLetterView struct {
	replayapi.Detail
	PayloadText string
	// Edited is the payload the operator submitted, kept when the
	// replay was refused.
	Edited   string
	TraceURL string
	// RequestID is the gateway's request id of the accept that created
	// the job (its X-Request-Id), carried in the message's attributes.
	RequestID string
	Notice    string
	// Refusal is why the operator's replay was refused.
	Refusal *errorView
	// Schema is the job type's payload schema, checked in the browser
	// as the operator edits ("" when not shown an edit form).
	Schema string
}

func (c *Console) loadDeadLetter(ec echo.Context, sess *Session) (deadLetterView, error) {
	var d replayapi.Detail
	if _, err := c.call(ec, sess, http.MethodGet, "/admin/v1/dead-letters/"+url.PathEscape(ec.Param("id")), nil, nil, &d); err != nil {
		return deadLetterView{}, err
	}
	v := deadLetterView{Detail: d, PayloadText: prettyPayload(d.Payload, d.PayloadEncoding), RequestID: d.Attributes[jobmessage.RequestID]}
	if operatorOf(sess).CanEdit && d.PayloadEncoding == "json" {
		var schema json.RawMessage
		if _, err := c.call(ec, sess, http.MethodGet, "/admin/v1/job-types/"+url.PathEscape(d.Topic)+"/schema", nil, nil, &schema); err == nil {
			v.Schema = string(schema)
		} else if sessionEnded(err) {
			return v, err
		}
	}
	if d.TraceID != "" && c.settings.TraceURL != "" {
		v.TraceURL = strings.ReplaceAll(c.settings.TraceURL, "{trace_id}", url.PathEscape(d.TraceID))
	}
	return v, nil
}

// prettyPayload is a payload as an operator reads it: JSON indented, a
// text or base64 body as its string.
func prettyPayload(raw json.RawMessage, encoding string) string {
	if encoding != "json" {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
		return string(raw)
	}
	var buf bytes.Buffer
	if json.Indent(&buf, raw, "", "  ") != nil {
		return string(raw)
	}
	return unescapeHTMLEscapes(buf.String())
}

// unescapeHTMLEscapes turns the \u003c, \u003e and \u0026 escapes that Go's
// JSON encoder writes for <, > and & back into the characters, so that an
// operator reads (and edits) the payload as its sender wrote it; the page
// escapes them for HTML. Other escapes, and an escaped backslash before
// "u003c", are kept.
func unescapeHTMLEscapes(s string) string {
	if !strings.Contains(s, `\u00`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		if s[i+1] == 'u' && i+6 <= len(s) {
			switch s[i+2 : i+6] {
			case "003c", "003C":
				b.WriteByte('<')
				i += 5
				continue
			case "003e", "003E":
				b.WriteByte('>')
				i += 5
				continue
			case "0026":
				b.WriteByte('&')
				i += 5
				continue
			}
		}
		b.WriteString(s[i : i+2])
		i++
	}
	return b.String()
}

func (c *Console) deadLetter(ec echo.Context) error {
	sess := sessionOf(ec)
	v, err := c.loadDeadLetter(ec, sess)
	if err != nil {
		return c.failed(ec, sess, err)
	}
	switch ec.QueryParam("done") {
	case "replayed":
		v.Notice = "Replayed: the job's message was sent again."
	case "deduplicated":
		v.Notice = "Already replayed: nothing was sent (replay with force to send it again)."
	}
	return c.render(ec, sess, http.StatusOK, "dead-letter", "Dead letter "+v.ID, v)
}

// replay replays the dead letter, with the edited payload when the form
// carries one; a refusal shows the page again with the operator's edit
// kept.
func (c *Console) replay(ec echo.Context) error {
	sess := sessionOf(ec)
	r := ec.Request()
	body := adminapi.ReplayBody{Force: r.PostFormValue("force") == "on"}
	edited := r.PostFormValue("payload")
	if r.PostFormValue("edit") == "1" {
		body.Payload = json.RawMessage(edited)
		if !json.Valid(body.Payload) {
			return c.replayRefused(ec, sess, edited, problem.MalformedJSON.New("the edited payload is not valid JSON"))
		}
	}
	var res deadletterstore.ReplayResult
	if _, err := c.call(ec, sess, http.MethodPost, "/admin/v1/dead-letters/"+url.PathEscape(ec.Param("id"))+"/replay", nil, body, &res); err != nil {
		return c.replayRefused(ec, sess, edited, err)
	}
	done := "replayed"
	if res.Deduplicated {
		done = "deduplicated"
	}
	return ec.Redirect(http.StatusSeeOther, Prefix+"/dead-letters/"+url.PathEscape(ec.Param("id"))+"?done="+done)
}

func (c *Console) replayRefused(ec echo.Context, sess *Session, edited string, err error) error {
	var p *problem.Problem
	if errors.Is(err, ErrNoSession) || !errors.As(err, &p) || p.Status >= 500 || p.Status == http.StatusForbidden || p.Status == http.StatusNotFound {
		return c.failed(ec, sess, err)
	}
	v, lerr := c.loadDeadLetter(ec, sess)
	if lerr != nil {
		return c.failed(ec, sess, lerr)
	}
	v.Edited = edited
	v.Refusal = &errorView{Status: p.Status, Title: p.Title, Detail: p.Detail, Fields: p.Errors}
	return c.render(ec, sess, p.Status, "dead-letter", "Dead letter "+v.ID, v)
}

// archive archives (or, with mode=purge, deletes) the dead letter.
func (c *Console) archive(ec echo.Context) error {
	sess := sessionOf(ec)
	mode := ec.Request().PostFormValue("mode")
	if mode != "purge" {
		mode = "archive"
	}
	if _, err := c.call(ec, sess, http.MethodDelete, "/admin/v1/dead-letters/"+url.PathEscape(ec.Param("id")), url.Values{"mode": {mode}}, nil, nil); err != nil {
		return c.failed(ec, sess, err)
	}
	return ec.Redirect(http.StatusSeeOther, Prefix+"/dead-letters?done=archived")
}

var auditFilters = []string{"actor", "action", "since", "until"}

type auditView struct {
	Query      url.Values
	Filter     map[string]string
	SkipReads  bool
	Items      []deadletterstore.AuditEntry
	NextCursor string
	Notice     string
}

func (c *Console) audit(ec echo.Context) error {
	sess := sessionOf(ec)
	in := ec.QueryParams()
	v := auditView{SkipReads: in.Get("skip_reads") == "on"}
	q := url.Values{"limit": {"100"}}
	v.Filter, v.Query = readFilters(in, auditFilters, q)
	if v.SkipReads {
		v.Query.Set("skip_reads", "on")
		q.Set("skip_reads", "true")
	}
	if cur := in.Get("cursor"); cur != "" {
		q.Set("cursor", cur)
	}
	var page replayapi.Page[deadletterstore.AuditEntry]
	if _, err := c.call(ec, sess, http.MethodGet, "/admin/v1/audit", q, nil, &page); err != nil {
		var p *problem.Problem
		if errors.As(err, &p) && p.Status == http.StatusBadRequest {
			v.Notice = "Filter not accepted: " + p.Detail
			return c.render(ec, sess, http.StatusBadRequest, "audit", "Audit log", v)
		}
		return c.failed(ec, sess, err)
	}
	v.Items, v.NextCursor = page.Items, page.NextCursor
	return c.render(ec, sess, http.StatusOK, "audit", "Audit log", v)
}
