package e2e_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
)

// The console tests drive Debian's headless Chromium (installed by
// .ci/run) against the replay service's console on the failure-handling
// platform.

// browser starts a headless Chromium for the test and returns its
// context.
func browser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	require.NoError(t, err, "the console tests need Debian's chromium (apt-get install chromium; .ci/run installs it)")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	)
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first action starts the browser, which lives as long as the
	// context it ran with: ctx, not one with a deadline.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("about:blank")))
	return ctx
}

// run runs browser steps with a deadline.
func run(ctx context.Context, t *testing.T, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, chromedp.Do(tctx, steps...))
}

// read runs a browser action that returns a value, with a deadline. An
// action that met a node of a document the page has just replaced (after
// a form post or an htmx swap, before chromedp has seen the new document:
// "No node with given id found") is run again: it queries afresh.
func read[T any](ctx context.Context, t *testing.T, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		v, err := chromedp.Run(tctx, a)
		if err == nil || !staleNode(err) || tctx.Err() != nil {
			require.NoError(t, err)
			return v
		}
		t.Logf("browser action met a replaced document, again: %v", err)
		select {
		case <-tctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// staleNode reports whether err is the browser's answer for a node id of
// a document that is gone.
func staleNode(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "No node with given id found") || strings.Contains(msg, "Could not find node with given id")
}

// screenshotDir is where the console tests save their screenshots
// (git-ignored).
func screenshotDir(t *testing.T) string {
	t.Helper()
	root, err := devstack.ModuleRoot(".")
	require.NoError(t, err)
	dir := filepath.Join(root, ".dev", "screenshots", "console")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// screenshots saves the page at 360 and 1280 CSS pixels wide, and checks
// that neither width scrolls sideways.
func screenshots(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	dir := screenshotDir(t)
	for _, width := range []int64{360, 1280} {
		run(ctx, t, chromedp.EmulateViewport(width, 900))
		scrollWidth := read(ctx, t, chromedp.Evaluate[int64](`document.documentElement.scrollWidth`))
		clientWidth := read(ctx, t, chromedp.Evaluate[int64](`document.documentElement.clientWidth`))
		png := read(ctx, t, chromedp.FullScreenshot(100))
		require.LessOrEqual(t, scrollWidth, clientWidth, "page %s scrolls sideways at %d px", name, width)
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.png", name, width)), png, 0o644))
	}
	run(ctx, t, chromedp.ResetViewport())
	accessible(ctx, t, name)
}

// axeViolation is what the test reads of an axe-core violation.
type axeViolation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target []any `json:"target"`
	} `json:"nodes"`
}

// accessible runs axe-core (vendored in testdata) in the page and fails
// on any serious or critical violation.
func accessible(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", "axe-core", "axe.min.js"))
	require.NoError(t, err)
	read(ctx, t, chromedp.Evaluate[any](string(src)+";0"))
	// Both themes: the page follows the browser's colour scheme.
	for _, scheme := range []string{"light", "dark"} {
		_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		})
		require.NoError(t, err)
		violations := read(ctx, t, chromedp.Evaluate[[]axeViolation](
			`axe.run(document, {resultTypes: ["violations"]}).then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => ({target: n.target}))})))`,
			chromedp.EvalAwaitPromise))
		for _, v := range violations {
			if v.Impact == "serious" || v.Impact == "critical" {
				t.Errorf("page %s (%s): %s violation %s (%s) at %v", name, scheme, v.Impact, v.ID, v.Help, v.Nodes)
			} else {
				t.Logf("page %s (%s): %s accessibility finding %s (%s)", name, scheme, v.Impact, v.ID, v.Help)
			}
		}
	}
	_, err = chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{})
	require.NoError(t, err)
}

const (
	consoleAdmin  = "ops-carol"
	consoleReader = "ops-dave"
	// xssText is a payload text that would run script if rendered as HTML.
	xssText = `<script>window.__xss=1</script><img src=x onerror="window.__xss=2"><b>bold</b>`
)

// console signs an operator in, finds the dead letter a failing job
// produced, reads it (its HTML-looking payload shown as text), edits and
// replays it and sees the job succeed, finds each action in the audit log
// under the operator's id, and signs out, after which the session is gone.
func console(t *testing.T, sqsServer string) {
	p := startFaultPlatform(t, sqsServer, "SWITCHYARD_E2E_FIXED_GROUPS=b")
	adminSecret := p.client(consoleAdmin, "switchyard:admin")
	console := p.replay + "/console/"

	jobID := p.submitAs("shop", "breakable", fmt.Sprintf(`{"text":%q,"group":"a"}`, xssText))
	dl := p.awaitDeadLetter("breakable", jobID, 30*time.Second)
	dlID := dl["id"].(string)

	ctx := browser(t)
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	text := func(sel string) string { return read(ctx, t, chromedp.Text(css(sel))) }
	run(ctx, t, chromedp.Navigate(console), chromedp.WaitVisible(css(`#client_id`)))
	require.Equal(t, p.replay+"/console/sign-in", read(ctx, t, chromedp.Location()), "an anonymous visit goes to sign-in")
	screenshots(ctx, t, "sign-in")

	// A wrong secret is refused and signs no one in.
	run(ctx, t,
		chromedp.SendKeys(css(`#client_id`), consoleAdmin),
		chromedp.SendKeys(css(`#client_secret`), "not-the-secret"),
		chromedp.Submit(css(`#client_secret`)),
		chromedp.WaitVisible(css(`p.error`)),
	)
	require.Contains(t, text(`p.error`), "not accepted")
	require.Zero(t, p.count(`SELECT count(*) FROM console_sessions`))

	// From a freshly loaded sign-in page: acting on the page the refused
	// post rendered could meet node ids of the document it replaced
	// ("No node with given id found", seen once in CI).
	run(ctx, t,
		chromedp.Navigate(console+"sign-in"),
		chromedp.WaitVisible(css(`#client_id`)),
		chromedp.SetValue(css(`#client_id`), consoleAdmin),
		chromedp.SendKeys(css(`#client_secret`), adminSecret),
		chromedp.Submit(css(`#client_secret`)),
		chromedp.WaitVisible(css(`section.tiles`)),
	)
	require.Contains(t, read(ctx, t, chromedp.Title()), "Overview")
	require.Equal(t, 1, p.count(`SELECT count(*) FROM console_sessions WHERE client_id = 'ops-carol'`))
	overview := text(`main`)
	require.Contains(t, overview, "breakable", "the overview groups the dead letters by job type")
	require.Contains(t, overview, dl["fingerprint"].(string))
	require.Contains(t, read(ctx, t, chromedp.AttributeValue(css(`svg.spark`), "aria-label")).Value, "dead letters per hour: 1 in the last 24 hours",
		"the group's sparkline counts its dead letter")
	require.Equal(t, "0", text(`[data-k="outbox"]`), "the relay keeps the outbox drained")
	require.Contains(t, text(`section.breakers`), "no sync routes", "the gateway's metrics were read (this platform has no sync routes)")
	screenshots(ctx, t, "overview")

	// The list, filtered by job type, links to the dead letter.
	link := css(`a[href="/console/dead-letters/` + dlID + `"]`)
	run(ctx, t, chromedp.Navigate(console+"dead-letters?type=breakable"), chromedp.WaitVisible(link))
	screenshots(ctx, t, "dead-letters")
	run(ctx, t, chromedp.Click(link), chromedp.WaitVisible(css(`pre.payload`)))
	require.Contains(t, text(`pre.payload`), `<script>window.__xss=1</script>`, "the payload's HTML is shown as text")
	require.Equal(t, "none", read(ctx, t, chromedp.Evaluate[string](`window.__xss === undefined ? "none" : String(window.__xss)`)), "no script from the payload ran")
	require.Zero(t, read(ctx, t, chromedp.Evaluate[int](`document.querySelectorAll("main b, main img, main script").length`)), "no element came from the payload")
	screenshots(ctx, t, "dead-letter")

	require.Contains(t, text(`main`), "catalogue rejected", "the page shows the error")
	var requestID string
	require.NoError(t, p.pool.QueryRow(context.Background(), `SELECT request_id FROM jobs WHERE id = $1`, jobID).Scan(&requestID))
	require.NotEmpty(t, requestID)
	require.Equal(t, requestID, text(`[data-k="request_id"]`), "the lineage names the accept's request id")

	// An edit the job type's schema refuses is caught in the browser: the
	// errors are shown and nothing is sent. (The server's own check, with
	// the edit kept in the form, is in TestConsoleSecurity.)
	edited := read(ctx, t, chromedp.Value(css(`#payload`)))
	require.Contains(t, edited, `"group": "a"`)
	refusedBefore := p.count(`SELECT count(*) FROM admin_audit WHERE action = 'dead_letters.replay'`)
	run(ctx, t,
		chromedp.SetValue(css(`#payload`), strings.Replace(edited, `"group": "a"`, `"group": "c"`, 1)),
		chromedp.Click(css(`form.edit button[type="submit"]`)),
		chromedp.WaitVisible(css(`#schema-errors`)),
	)
	require.Contains(t, text(`#schema-errors`), "/group")
	require.Equal(t, "true", read(ctx, t, chromedp.AttributeValue(css(`#payload`), "aria-invalid")).Value)
	require.Equal(t, refusedBefore, p.count(`SELECT count(*) FROM admin_audit WHERE action = 'dead_letters.replay'`), "nothing was sent")
	screenshots(ctx, t, "dead-letter-invalid-edit")

	// Edit and replay: group a is still broken, b is fixed.
	run(ctx, t,
		chromedp.SetValue(css(`#payload`), strings.Replace(edited, `"group": "a"`, `"group": "b"`, 1)),
		chromedp.Click(css(`form.edit button[type="submit"]`)),
		chromedp.WaitVisible(css(`p.notice`)),
	)
	require.Contains(t, text(`p.notice`), "Replayed")
	require.Eventually(t, func() bool {
		return p.count(fmt.Sprintf(`SELECT count(*) FROM jobs WHERE id = '%s' AND status = 'succeeded'`, jobID)) == 1
	}, 30*time.Second, 200*time.Millisecond, "the edited replay succeeds")

	// The job's page, from the dead letter's lineage: its timeline ends in
	// the replay's success, and it lists the job's dead letter.
	run(ctx, t,
		chromedp.Navigate(console+"dead-letters/"+dlID),
		chromedp.Click(css(`a[href="/console/jobs?id=`+jobID+`"]`)),
		chromedp.WaitVisible(css(`#timeline`)),
	)
	require.Equal(t, "succeeded", text(`[data-k="status"]`))
	timeline := text(`#timeline`)
	for _, event := range []string{"accepted", "attempt_failed", "dead_lettered", "replayed", "attempt_succeeded"} {
		require.Contains(t, timeline, event)
	}
	require.Contains(t, timeline, "with an edited payload")
	require.Contains(t, text(`main`), dlID)
	screenshots(ctx, t, "job")
	// And by client and idempotency key.
	keyed := p.call("POST", "/v1/jobs/text-stats", "Bearer "+p.bearer("shop"), `{"text":"keyed"}`, "Idempotency-Key", "order-77")
	require.Equal(t, http.StatusAccepted, keyed.status, keyed.body)
	run(ctx, t,
		chromedp.Navigate(console+"jobs"),
		chromedp.SendKeys(css(`#j-client`), "shop"),
		chromedp.SendKeys(css(`#j-key`), "order-77"),
		chromedp.Submit(css(`#j-key`)),
		chromedp.WaitVisible(css(`#timeline`)),
	)
	require.Contains(t, text(`h1`), keyed.body["id"].(string))

	// A staged bulk replay of the dead letters of a still-broken cause:
	// the preview counts them, the first stage's replay fails again, and
	// the guard stops the operation; the progress page follows it live.
	var broken []string
	for i := range 4 {
		broken = append(broken, p.submitAs("shop", "breakable", fmt.Sprintf(`{"text":"order %d","group":"a"}`, i)))
	}
	for _, id := range broken {
		p.awaitDeadLetter("breakable", id, 30*time.Second)
	}
	fp := dl["fingerprint"].(string)
	run(ctx, t,
		chromedp.Navigate(console+"dead-letters?type=breakable&fingerprint="+fp),
		chromedp.WaitVisible(css(`a.button[href^="/console/replays/new?"]`)),
		chromedp.Click(css(`a.button[href^="/console/replays/new?"]`)),
		chromedp.WaitVisible(css(`#b-stages`)),
	)
	require.Equal(t, fp, read(ctx, t, chromedp.Value(css(`#b-fingerprint`))), "the list's filter carries over")
	run(ctx, t,
		chromedp.SetValue(css(`#b-stages`), "1,100%"),
		chromedp.SetValue(css(`#b-rate`), "20"),
		chromedp.Click(css(`button[value="preview"]`)),
		chromedp.WaitVisible(css(`#preview`)),
	)
	require.Equal(t, "4", text(`dd[data-k="would_replay"]`), "the four stored dead letters; the edited one was replayed already")
	require.Equal(t, "1", text(`dd[data-k="deduplicated"]`))
	screenshots(ctx, t, "replay-new")
	run(ctx, t, chromedp.Click(css(`button[value="start"]`)), chromedp.WaitVisible(css(`#progress`)))
	opURL := read(ctx, t, chromedp.Location())
	require.Contains(t, opURL, "/console/replays/")
	// No navigation from here: the page's script refreshes the progress.
	run(ctx, t, chromedp.WaitVisible(css(`#progress:not([data-refresh])`)))
	require.Equal(t, "stopped", text(`[data-k="status"]`))
	require.Contains(t, text(`#progress`), "Stopped by the guard")
	require.Equal(t, "1", text(`.tiles [data-k="failed_again"]`), "stage one replayed one dead letter, which failed again")
	require.Equal(t, "1", text(`#stages tr[data-stage="1"] [data-k="failed_again"]`), "and the stage's row says so")
	require.Equal(t, "0", text(`#stages tr[data-stage="2"] [data-k="replayed"]`), "stage two was never released")
	require.Contains(t, text(`#stages tr[data-stage="2"]`), "not released")
	require.Equal(t, opURL, read(ctx, t, chromedp.Location()), "the page followed the operation without a reload")
	screenshots(ctx, t, "replay")

	// Another, slow one, cancelled while it runs.
	run(ctx, t,
		chromedp.Navigate(console+"replays/new?type=breakable&fingerprint="+fp),
		chromedp.WaitVisible(css(`#b-rate`)),
		chromedp.SetValue(css(`#b-rate`), "0.1"),
		chromedp.Click(css(`button[value="preview"]`)),
		chromedp.WaitVisible(css(`#preview`)),
		chromedp.Click(css(`button[value="start"]`)),
		chromedp.WaitVisible(css(`#cancel`)),
		chromedp.Click(css(`#cancel`)),
		chromedp.WaitVisible(css(`#progress:not([data-refresh])`)),
	)
	require.Equal(t, "cancelled", text(`[data-k="status"]`))
	require.Contains(t, text(`main`), "Cancelled by "+consoleAdmin)
	run(ctx, t, chromedp.Navigate(console+"replays"), chromedp.WaitVisible(css(`table`)))
	screenshots(ctx, t, "replays")

	// Select two dead letters in the list and archive them, after a
	// confirmation page.
	run(ctx, t, chromedp.Navigate(console+"dead-letters?type=breakable&status=stored"), chromedp.WaitVisible(css(`#select-form`)))
	picked := read(ctx, t, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#select-form input[name="id"]')].slice(0, 2).map(e => e.value)`))
	require.Len(t, picked, 2)
	for _, id := range picked {
		run(ctx, t, chromedp.Click(css(`#sel-`+id)))
	}
	run(ctx, t, chromedp.Click(css(`#select-form button[value="archive"]`)), chromedp.WaitVisible(css(`#confirm`)))
	require.Contains(t, text(`#confirm`), "Archive 2 dead letters")
	require.Zero(t, p.count(`SELECT count(*) FROM dead_letters WHERE status = 'archived'`), "nothing changes before the confirmation")
	run(ctx, t, chromedp.Click(css(`#confirm`)), chromedp.WaitVisible(css(`[data-k="done"]`)))
	require.Equal(t, "2", text(`[data-k="done"]`))
	require.Equal(t, 2, p.count(fmt.Sprintf(`SELECT count(*) FROM dead_letters WHERE status = 'archived' AND id IN ('%s', '%s')`, picked[0], picked[1])))

	// The audit log shows each action under the operator's id.
	run(ctx, t, chromedp.Navigate(console+"audit?actor="+consoleAdmin+"&skip_reads=on"), chromedp.WaitVisible(css(`table`)))
	auditText := text(`table`)
	require.Contains(t, auditText, "console.sign_in")
	require.Contains(t, auditText, "dead_letters.replay")
	require.Contains(t, auditText, "replays.create")
	require.Contains(t, auditText, "replays.cancel")
	require.Contains(t, auditText, "dead_letters.archive")
	require.Contains(t, auditText, dlID)
	screenshots(ctx, t, "audit")

	// API analytics: the requests made above, as charts and a table.
	require.Eventually(t, func() bool {
		run(ctx, t, chromedp.Navigate(console+"analytics?window=1h&client=shop"), chromedp.WaitVisible(css(`section.tiles`)))
		return text(`[data-k="requests"]`) != "0"
	}, 45*time.Second, time.Second, "the gateway's usage counts reach the analytics")
	require.Contains(t, text(`#usage`), "POST /v1/jobs/breakable")
	require.Equal(t, 2, read(ctx, t, chromedp.Evaluate[int](`document.querySelectorAll("figure.chart svg").length`)), "two charts")
	require.Positive(t, read(ctx, t, chromedp.Evaluate[int](`document.querySelectorAll("figure.chart rect.ok").length`)), "bars of the requests")
	screenshots(ctx, t, "analytics")

	// Sign out: the session row is gone, and its cookie signs no one in.
	run(ctx, t, chromedp.Click(css(`form.signout button`)), chromedp.WaitVisible(css(`#client_id`)))
	require.Contains(t, text(`p.notice`), "signed out")
	require.Zero(t, p.count(`SELECT count(*) FROM console_sessions`))
	require.Equal(t, 1, p.count(`SELECT count(*) FROM admin_audit WHERE actor = 'ops-carol' AND action = 'console.sign_out'`))
	run(ctx, t, chromedp.Navigate(console+"dead-letters"), chromedp.WaitVisible(css(`#client_id`)))
	require.Equal(t, p.replay+"/console/sign-in", read(ctx, t, chromedp.Location()))
}

// consoleSession is a console session driven over plain HTTP, for the
// security tests.
type consoleSession struct {
	t      *testing.T
	base   string
	client *http.Client
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signInOverHTTP signs clientID in with a cookie jar and returns the
// session.
func signInOverHTTP(t *testing.T, base, clientID, secret string) *consoleSession {
	t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	s := &consoleSession{t: t, base: base, client: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
	_, page := s.get("/console/sign-in")
	m := csrfField.FindStringSubmatch(page)
	require.NotNil(t, m, page)
	status, body := s.post("/console/sign-in", url.Values{"csrf": {m[1]}, "client_id": {clientID}, "client_secret": {secret}}, nil)
	require.Equal(t, http.StatusOK, status, body) // followed the redirect to the overview
	require.Contains(t, body, "Overview")
	return s
}

func (s *consoleSession) get(path string) (int, string) {
	s.t.Helper()
	resp, err := s.client.Get(s.base + path)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	return resp.StatusCode, string(b)
}

func (s *consoleSession) post(path string, form url.Values, header http.Header) (int, string) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.base+path, strings.NewReader(form.Encode()))
	require.NoError(s.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := s.client.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	return resp.StatusCode, string(b)
}

// csrf reads the session's anti-forgery token off a page.
func (s *consoleSession) csrf() string {
	s.t.Helper()
	_, page := s.get("/console/")
	m := csrfField.FindStringSubmatch(page)
	require.NotNil(s.t, m, page)
	return m[1]
}

// consoleSecurity: forged and cross-site posts are refused, the
// read-only role gets 403 on every action, every page carries the CSP and
// no inline script, and the session cookie is HttpOnly and SameSite=Strict
// (which the browser honours: a form on another site posts without it).
func consoleSecurity(t *testing.T, sqsServer string) {
	p := startFaultPlatform(t, sqsServer)
	adminSecret := p.client(consoleAdmin, "switchyard:admin")
	readerSecret := p.client(consoleReader, "dead-letters:read", "audit:read")
	jobID := p.submitAs("shop", "breakable", `{"text":"x","group":"a"}`)
	dlID := p.awaitDeadLetter("breakable", jobID, 30*time.Second)["id"].(string)
	replays := func() int {
		return p.count(fmt.Sprintf(`SELECT count(*) FROM admin_audit WHERE action = 'dead_letters.replay' AND target = '%s' AND outcome = 'ok'`, dlID))
	}

	// The cookie's attributes.
	resp, err := http.Get(p.replay + "/console/sign-in")
	require.NoError(t, err)
	resp.Body.Close()
	require.Contains(t, resp.Header.Get("Set-Cookie"), "HttpOnly")
	require.Contains(t, resp.Header.Get("Set-Cookie"), "SameSite=Strict")

	admin := signInOverHTTP(t, p.replay, consoleAdmin, adminSecret)
	setCookie := ""
	for _, c := range admin.client.Jar.Cookies(mustURL(t, p.replay+"/console/")) {
		if c.Name == "switchyard_console" {
			setCookie = c.Value
		}
	}
	require.NotEmpty(t, setCookie)

	t.Run("pages carry the CSP and no inline script", func(t *testing.T) {
		scriptTag := regexp.MustCompile(`(?i)<script\b[^>]*>`)
		handlerAttr := regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
		for _, path := range []string{"/console/sign-in", "/console/", "/console/dead-letters", "/console/dead-letters/" + dlID, "/console/audit", "/console/replays",
			"/console/replays/new", "/console/analytics", "/console/jobs", "/console/jobs?id=" + jobID, "/console/job-types", "/console/nope"} {
			req, err := http.NewRequest(http.MethodGet, p.replay+path, http.NoBody)
			require.NoError(t, err)
			resp, err := admin.client.Do(req)
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			csp := resp.Header.Get("Content-Security-Policy")
			require.Contains(t, csp, "script-src 'self'", path)
			require.NotContains(t, csp, "unsafe-inline", path)
			require.Contains(t, csp, "frame-ancestors 'none'", path)
			for _, tag := range scriptTag.FindAllString(string(b), -1) {
				require.Contains(t, tag, "src=", "inline script on %s", path)
			}
			require.NotRegexp(t, handlerAttr, string(b), "inline event handler on %s", path)
			require.NotContains(t, string(b), "style=", "inline style on %s", path)
		}
	})

	t.Run("a post without the CSRF token or from another site is refused", func(t *testing.T) {
		status, body := admin.post("/console/dead-letters/"+dlID+"/replay", url.Values{}, nil)
		require.Equal(t, http.StatusForbidden, status, body)
		status, body = admin.post("/console/dead-letters/"+dlID+"/replay", url.Values{"csrf": {"forged"}}, nil)
		require.Equal(t, http.StatusForbidden, status, body)
		status, body = admin.post("/console/dead-letters/"+dlID+"/replay", url.Values{"csrf": {admin.csrf()}},
			http.Header{"Sec-Fetch-Site": {"cross-site"}})
		require.Equal(t, http.StatusForbidden, status, body)
		status, body = admin.post("/console/dead-letters/"+dlID+"/replay", url.Values{"csrf": {admin.csrf()}},
			http.Header{"Origin": {"http://evil.example"}})
		require.Equal(t, http.StatusForbidden, status, body)
		status, body = admin.post("/console/sign-out", url.Values{}, nil)
		require.Equal(t, http.StatusForbidden, status, body)
		require.Zero(t, replays(), "no refused post replayed anything")
	})

	t.Run("the server checks an edit against the schema and keeps it", func(t *testing.T) {
		status, body := admin.post("/console/dead-letters/"+dlID+"/replay", url.Values{"csrf": {admin.csrf()}, "edit": {"1"},
			"payload": {`{"text":"x","group":"c"}`}}, nil)
		require.Equal(t, http.StatusUnprocessableEntity, status, body)
		require.Contains(t, body, `{&#34;text&#34;:&#34;x&#34;,&#34;group&#34;:&#34;c&#34;}`, "the refused edit is in the form again")
		require.Contains(t, body, "/group")
		require.Zero(t, replays())
	})

	t.Run("analytics export as CSV", func(t *testing.T) {
		resp, err := admin.client.Get(p.replay + "/console/analytics.csv?window=1h")
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
		require.Equal(t, "text/csv; charset=utf-8", resp.Header.Get("Content-Type"))
		require.Contains(t, resp.Header.Get("Content-Disposition"), "attachment")
		require.True(t, strings.HasPrefix(string(b), "since,until,client,route,requests,client_errors,server_errors,rate_limited,quota_refused,"), string(b))
	})

	t.Run("the read-only role gets 403 on every action", func(t *testing.T) {
		reader := signInOverHTTP(t, p.replay, consoleReader, readerSecret)
		_, page := reader.get("/console/dead-letters/" + dlID)
		require.NotContains(t, page, "/replay\"", "the read-only role is offered no replay")
		require.NotContains(t, page, "/archive\"", "the read-only role is offered no archive")
		csrf := reader.csrf()
		for _, action := range []struct {
			path string
			form url.Values
		}{
			{"/console/dead-letters/" + dlID + "/replay", url.Values{}},
			{"/console/dead-letters/" + dlID + "/replay", url.Values{"edit": {"1"}, "payload": {`{"text":"x","group":"b"}`}}},
			{"/console/dead-letters/" + dlID + "/archive", url.Values{"mode": {"archive"}}},
			{"/console/dead-letters/" + dlID + "/archive", url.Values{"mode": {"purge"}}},
			{"/console/dead-letters/remove", url.Values{"mode": {"purge"}, "id": {dlID}, "confirm": {"1"}}},
		} {
			action.form.Set("csrf", csrf)
			status, body := reader.post(action.path, action.form, nil)
			require.Equal(t, http.StatusForbidden, status, "%s %v: %s", action.path, action.form, body)
		}
		for _, path := range []string{"/console/analytics", "/console/analytics.csv", "/console/replays/new"} {
			status, body := reader.get(path)
			require.Equal(t, http.StatusForbidden, status, "%s: %s", path, body)
		}
		status, body := reader.post("/console/replays", url.Values{"csrf": {csrf}, "action": {"start"}, "type": {"breakable"}}, nil)
		require.Equal(t, http.StatusForbidden, status, body)
		require.Zero(t, replays())
		require.Equal(t, 1, p.count(fmt.Sprintf(`SELECT count(*) FROM dead_letters WHERE id = '%s' AND status = 'stored'`, dlID)))
	})

	t.Run("a form on another site posts without the session cookie", func(t *testing.T) {
		// localhost and 127.0.0.1 are different sites: SameSite=Strict
		// keeps the cookie set for 127.0.0.1 off a post from localhost.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		port := l.Addr().(*net.TCPAddr).Port
		evil := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/console/dead-letters/%s/replay">
<input name="csrf" value="guess"></form><script>document.getElementById("f").submit()</script>`, p.replay, dlID)
		})}
		go func() { _ = evil.Serve(l) }()
		t.Cleanup(func() { _ = evil.Close() })

		ctx := browser(t)
		u := mustURL(t, p.replay)
		// The operator's real session cookie, in the browser, as the
		// console set it.
		_, err = chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{
			Name: "switchyard_console", Value: setCookie, Domain: u.Hostname(), Path: "/",
			HTTPOnly: ptr(true), SameSite: network.CookieSameSiteStrict,
		})
		require.NoError(t, err)
		run(ctx, t, chromedp.Navigate(p.replay+"/console/"), chromedp.WaitVisible(chromedp.CSS(`section.tiles`)))
		run(ctx, t, chromedp.Navigate(fmt.Sprintf("http://localhost:%d/", port)), chromedp.WaitVisible(chromedp.CSS(`main`)))
		text := read(ctx, t, chromedp.Text(chromedp.CSS(`main`)))
		require.Contains(t, text, "Your session has ended", "the cross-site post arrived without the cookie")
		require.Zero(t, replays())
	})
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}

func ptr[T any](v T) *T { return &v }

// signInBrowser signs clientID in on the console in the browser of ctx.
func signInBrowser(ctx context.Context, t *testing.T, p *platform, clientID, secret string) {
	t.Helper()
	run(ctx, t,
		chromedp.Navigate(p.replay+"/console/sign-in"),
		chromedp.WaitVisible(chromedp.CSS(`#client_id`)),
		chromedp.SendKeys(chromedp.CSS(`#client_id`), clientID),
		chromedp.SendKeys(chromedp.CSS(`#client_secret`), secret),
		chromedp.Submit(chromedp.CSS(`#client_secret`)),
		chromedp.WaitVisible(chromedp.CSS(`section.tiles`)),
	)
}

// jobTypePause: an operator pauses a job type in the console; a job
// of it is accepted but not processed, its message waiting in SQS (the
// console shows it queued), also across a worker restart; the CLI lists
// the pause and resumes the type, and the job then succeeds. Both
// changes are in the audit log under their operators.
func jobTypePause(t *testing.T, sqsServer string) {
	p := startFaultPlatform(t, sqsServer)
	secret := p.client(consoleAdmin, "switchyard:admin")
	ctx := browser(t)
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	text := func(sel string) string { return read(ctx, t, chromedp.Text(css(sel))) }
	signInBrowser(ctx, t, p, consoleAdmin, secret)

	row := `tr[data-type="text-stats"]`
	run(ctx, t,
		chromedp.Navigate(p.replay+"/console/job-types"),
		chromedp.WaitVisible(css(row)),
		chromedp.SendKeys(css(`#reason-text-stats`), "<b>upstream</b> maintenance"),
		chromedp.Click(css(row+` button[aria-label="Pause text-stats"]`)),
		chromedp.WaitVisible(css(`p.notice`)),
	)
	require.Contains(t, text(row+` [data-k="state"]`), "paused by "+consoleAdmin)
	require.Contains(t, text(row+` [data-k="state"]`), "<b>upstream</b> maintenance", "the reason is text")
	require.Equal(t, 1, p.count(`SELECT count(*) FROM job_type_pauses WHERE job_type = 'text-stats'`))

	jobID := p.submitAs("shop", "text-stats", `{"text":"wait for me"}`)
	stillWaiting := func(d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			require.Zero(t, p.count(fmt.Sprintf(`SELECT count(*) FROM jobs WHERE id = '%s' AND status NOT IN ('accepted', 'queued')`, jobID)),
				"a paused type's job was processed")
			time.Sleep(200 * time.Millisecond) // sampling an absence over a window, not waiting for a condition
		}
	}
	// Queued in SQS, shown in the console.
	require.Eventually(t, func() bool {
		run(ctx, t, chromedp.Navigate(p.replay+"/console/job-types"), chromedp.WaitVisible(css(row)))
		return text(row+` [data-k="queued"]`) == "1"
	}, 30*time.Second, 500*time.Millisecond, "the job's message waits in the queue")
	stillWaiting(4 * time.Second)
	screenshots(ctx, t, "job-types")

	// A restarted worker reads the pause before receiving anything.
	p.restart("worker")
	stillWaiting(4 * time.Second)

	out, errOut, code := p.adminCLI(consoleAdmin, secret, "job-types", "list")
	require.Zero(t, code, errOut)
	require.Regexp(t, `text-stats\s+paused by ops-carol`, out)
	out, errOut, code = p.adminCLI(consoleAdmin, secret, "job-types", "resume", "text-stats")
	require.Zero(t, code, errOut)
	require.Contains(t, out, "resumed text-stats")
	require.Eventually(t, func() bool {
		return p.count(fmt.Sprintf(`SELECT count(*) FROM jobs WHERE id = '%s' AND status = 'succeeded'`, jobID)) == 1
	}, 30*time.Second, 200*time.Millisecond, "resumed: the job runs")
	out, _, code = p.adminCLI(consoleAdmin, secret, "job-types", "resume", "text-stats")
	require.Zero(t, code)
	require.Contains(t, out, "was not paused")
	_, errOut, code = p.adminCLI(consoleAdmin, secret, "job-types", "pause", "no-such-type")
	require.NotZero(t, code)
	require.Contains(t, errOut, "no-such-type")
	require.Equal(t, 1, p.count(`SELECT count(*) FROM admin_audit WHERE action = 'job_types.pause' AND target = 'text-stats' AND actor = 'ops-carol' AND outcome = 'ok'`))
	require.Equal(t, 1, p.count(`SELECT count(*) FROM admin_audit WHERE action = 'job_types.resume' AND target = 'text-stats' AND outcome = 'ok'`))

	// A read-only operator sees no switch and may not pause.
	readerSecret := p.client(consoleReader, "dead-letters:read")
	reader := signInOverHTTP(t, p.replay, consoleReader, readerSecret)
	_, page := reader.get("/console/job-types")
	require.NotContains(t, page, "/pause\"")
	status, body := reader.post("/console/job-types/text-stats/pause", url.Values{"csrf": {reader.csrf()}}, nil)
	require.Equal(t, http.StatusForbidden, status, body)
}

// consoleOverTLS signs in to a console served over HTTPS in the
// browser: the session cookie is Secure, HttpOnly, SameSite=Strict and
// carries the __Host- prefix (host-only, path /), and sign-out ends it.
func consoleOverTLS(t *testing.T) {
	ca := stacktest.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "replay.crt"), filepath.Join(dir, "replay.key")
	issued := ca.Issue(false, "127.0.0.1")
	issued.Write(t, certFile, keyFile)
	p := startPlatformWith(t, platformOptions{services: []string{"tokens", "replay"}, env: []string{
		"SWITCHYARD_REPLAY_TLS_CERT_FILE=" + certFile, "SWITCHYARD_REPLAY_TLS_KEY_FILE=" + keyFile,
	}})
	secret := p.client(consoleAdmin, "switchyard:admin")
	console := strings.Replace(p.replay, "http://", "https://", 1) + "/console/"

	// The browser trusts exactly this certificate's key (the test's CA is
	// not in its store).
	block, _ := pem.Decode(issued.CertPEM)
	require.NotNil(t, block)
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	ctx := browser(t, chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(spki[:])))
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	run(ctx, t,
		chromedp.Navigate(console),
		chromedp.WaitVisible(css(`#client_id`)),
		chromedp.SendKeys(css(`#client_id`), consoleAdmin),
		chromedp.SendKeys(css(`#client_secret`), secret),
		chromedp.Submit(css(`#client_secret`)),
		chromedp.WaitVisible(css(`section.tiles`)),
	)
	cookies := func() []*network.Cookie {
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		res, err := chromedp.Call(tctx, network.GetCookies, network.GetCookiesParams{URLs: []string{console}})
		require.NoError(t, err)
		return res.Cookies
	}
	var session *network.Cookie
	for _, c := range cookies() {
		if c.Name == "__Host-switchyard_console" {
			session = c
		}
		require.NotEqual(t, "switchyard_console", c.Name, "no unprefixed session cookie over TLS")
	}
	require.NotNil(t, session, "the browser holds the __Host- session cookie")
	require.True(t, session.Secure)
	require.True(t, session.HTTPOnly)
	require.Equal(t, network.CookieSameSiteStrict, session.SameSite)
	require.Equal(t, "/", session.Path)
	require.Equal(t, 1, p.count(`SELECT count(*) FROM console_sessions`))

	run(ctx, t, chromedp.Click(css(`form.signout button`)), chromedp.WaitVisible(css(`#client_id`)))
	require.Zero(t, p.count(`SELECT count(*) FROM console_sessions`))
	for _, c := range cookies() {
		require.NotEqual(t, "__Host-switchyard_console", c.Name, "sign-out clears the cookie")
	}
}

// headerSetter sets one header on every request.
type headerSetter struct {
	next        http.RoundTripper
	name, value string
}

func (h headerSetter) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.name, h.value)
	return h.next.RoundTrip(r)
}

// trySignIn posts the console's sign-in form from the loopback address
// local (with X-Forwarded-For: forwardedFor, as a proxy would, when set)
// and returns the answer's status (after redirects).
func trySignIn(t *testing.T, base, local, forwardedFor, clientID, secret string) int {
	t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	client := clientFrom(local)
	client.Jar = jar
	if forwardedFor != "" {
		client.Transport = headerSetter{next: client.Transport, name: "X-Forwarded-For", value: forwardedFor}
	}
	s := &consoleSession{t: t, base: base, client: client}
	_, page := s.get("/console/sign-in")
	m := csrfField.FindStringSubmatch(page)
	require.NotNil(t, m, page)
	status, _ := s.post("/console/sign-in", url.Values{"csrf": {m[1]}, "client_id": {clientID}, "client_secret": {secret}}, nil)
	return status
}

// consoleSignInCannotLockAnOperatorOut (security item 3 through the
// console): the console asks the token service for the operator's token,
// and the token service limits failed secrets per client id and address.
// Attackers who know an operator's client id send wrong secrets through
// the console's sign-in from several addresses; the operator, from an
// address of their own, still signs in, because the console forwards
// each operator's address (the token service trusts the replay service as
// a proxy). Behind a proxy in front of the console (item 2), each client
// address has its own sign-in limit: an attacker spending theirs does not
// spend the operator's.
func consoleSignInCannotLockAnOperatorOut(t *testing.T) {
	p := startPlatformWith(t, platformOptions{
		services: []string{"tokens", "replay"},
		serviceEnv: map[string][]string{
			"tokens": {"SWITCHYARD_TOKENS_TRUSTED_PROXIES=127.0.0.1/32"},
			"replay": {"SWITCHYARD_REPLAY_TRUSTED_PROXIES=127.0.0.1/32"},
		},
	})
	secret := p.client("victim-operator", "dead-letters:read")
	byStatus := map[int]int{}
	// 10 failures: the token service's failure bucket for one client id
	// and address holds 10, and the console's own limit for all sign-ins
	// (20 at once) must leave room for what follows.
	for a := range 5 {
		for i := range 2 {
			byStatus[trySignIn(t, p.replay, fmt.Sprintf("127.0.0.%d", 30+a), "", "victim-operator", fmt.Sprintf("wrong-%d-%d", a, i))]++
		}
	}
	operator := trySignIn(t, p.replay, "127.0.0.40", "", "victim-operator", secret)
	t.Logf("10 wrong secrets for the operator's client id through the console from 5 addresses: %v; then the operator's sign-in: %d", byStatus, operator)
	require.Equal(t, map[int]int{http.StatusUnauthorized: 10}, byStatus, "each was checked as its own address's failure")
	require.Equal(t, http.StatusOK, operator, "the operator signs in from their own address")

	// Through the proxy: one attacker's address spends its 10 sign-ins a
	// minute; the operator's address behind the same proxy has its own.
	behind := map[int]int{}
	for i := range 11 {
		behind[trySignIn(t, p.replay, "127.0.0.1", "198.51.100.7", "victim-operator", fmt.Sprintf("wrong-behind-%d", i))]++
	}
	operator = trySignIn(t, p.replay, "127.0.0.1", "198.51.100.8", "victim-operator", secret)
	t.Logf("behind a proxy: 11 wrong secrets from one client address: %v; then the operator from another: %d", behind, operator)
	require.Equal(t, 1, behind[http.StatusTooManyRequests], "the attacker's address is limited")
	require.Equal(t, http.StatusOK, operator, "the operator's address behind the same proxy is not")
}
