package console

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/libs/usage"
	"github.com/switchyard/switchyard/services/replay/internal/adminapi"
)

// windows are the analytics page's time windows.
var windows = []struct {
	Name string
	Span time.Duration
	Step string
}{
	{"1h", time.Hour, "1m"}, {"6h", 6 * time.Hour, "5m"}, {"24h", 24 * time.Hour, "30m"},
	{"7d", 7 * 24 * time.Hour, "3h"}, {"30d", 30 * 24 * time.Hour, "12h"},
}

type analyticsView struct {
	Window, Client, Route string
	Windows               []string
	Query                 url.Values
	Since, Until          time.Time
	Step                  string
	Rows                  []analyticsRow
	Totals                analyticsRow
	Requests              barChart
	Latency               lineChart
}

// analyticsRow is one client's use of one route.
type analyticsRow struct {
	Client string
	usage.RouteUsage
}

// ClientErrorPct and ServerErrorPct are the shares of the requests that
// were 4xx and 5xx.
func (r analyticsRow) ClientErrorPct() string { return pct(r.ClientErrors, r.Requests) }

// ServerErrorPct is the share of 5xx answers.
func (r analyticsRow) ServerErrorPct() string { return pct(r.ServerErrors, r.Requests) }

func pct(n, of int64) string {
	if of == 0 {
		return "0%"
	}
	return strconv.FormatFloat(100*float64(n)/float64(of), 'f', 1, 64) + "%"
}

// readAnalytics reads the report and the series of the page's query.
func (c *Console) readAnalytics(ec echo.Context, sess *Session) (analyticsView, error) {
	in := ec.QueryParams()
	v := analyticsView{Window: in.Get("window"), Client: strings.TrimSpace(in.Get("client")), Route: strings.TrimSpace(in.Get("route"))}
	span, step := 24*time.Hour, "30m"
	found := false
	for _, w := range windows {
		v.Windows = append(v.Windows, w.Name)
		if w.Name == v.Window {
			span, step, found = w.Span, w.Step, true
		}
	}
	if !found {
		v.Window = "24h"
	}
	v.Until = time.Now().UTC().Truncate(time.Minute).Add(time.Minute)
	v.Since = v.Until.Add(-span)
	v.Step = step
	v.Query = url.Values{"window": {v.Window}}
	q := url.Values{"since": {v.Since.Format(time.RFC3339)}, "until": {v.Until.Format(time.RFC3339)}}
	if v.Client != "" {
		q.Set("client", v.Client)
		v.Query.Set("client", v.Client)
	}
	if v.Route != "" {
		q.Set("route", v.Route)
		v.Query.Set("route", v.Route)
	}
	var rep usage.Report
	if _, err := c.call(ec, sess, http.MethodGet, "/admin/v1/usage", q, nil, &rep); err != nil {
		return v, err
	}
	q.Set("step", step)
	var series adminapi.SeriesAnswer
	if _, err := c.call(ec, sess, http.MethodGet, "/admin/v1/usage/series", q, nil, &series); err != nil {
		return v, err
	}
	v.Totals.Client = "all"
	for _, cl := range rep.Clients {
		for _, r := range cl.Routes {
			v.Rows = append(v.Rows, analyticsRow{Client: cl.ClientID, RouteUsage: r})
			v.Totals.Requests += r.Requests
			v.Totals.ClientErrors += r.ClientErrors
			v.Totals.ServerErrors += r.ServerErrors
			v.Totals.RateLimited += r.RateLimited
			v.Totals.QuotaRefused += r.QuotaRefused
		}
	}
	v.Requests = requestsChart(series.Points)
	v.Latency = latencyChart(series.Points)
	return v, nil
}

func (c *Console) analytics(ec echo.Context) error {
	sess := sessionOf(ec)
	v, err := c.readAnalytics(ec, sess)
	if err != nil {
		return c.failed(ec, sess, err)
	}
	return c.render(ec, sess, http.StatusOK, "analytics", "API analytics", v)
}

// analyticsCSV exports the page's table.
func (c *Console) analyticsCSV(ec echo.Context) error {
	sess := sessionOf(ec)
	v, err := c.readAnalytics(ec, sess)
	if err != nil {
		return c.failed(ec, sess, err)
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write([]string{"since", "until", "client", "route", "requests", "client_errors", "server_errors",
		"rate_limited", "quota_refused", "mean_ms", "p50_ms", "p95_ms", "p99_ms"})
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	for _, r := range v.Rows {
		_ = w.Write([]string{v.Since.Format(time.RFC3339), v.Until.Format(time.RFC3339), csvSafe(r.Client), csvSafe(r.Route),
			strconv.FormatInt(r.Requests, 10), strconv.FormatInt(r.ClientErrors, 10), strconv.FormatInt(r.ServerErrors, 10),
			strconv.FormatInt(r.RateLimited, 10), strconv.FormatInt(r.QuotaRefused, 10), f(r.MeanMs), f(r.P50Ms), f(r.P95Ms), f(r.P99Ms)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return c.failed(ec, sess, fmt.Errorf("writing the CSV: %w", err))
	}
	ec.Response().Header().Set("Content-Disposition", `attachment; filename="switchyard-usage-`+v.Window+`.csv"`)
	return ec.Blob(http.StatusOK, "text/csv; charset=utf-8", buf.Bytes())
}

// csvSafe keeps a spreadsheet from reading a cell as a formula (a client
// id or route is the caller's text).
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// Charts are drawn on the server as SVG, in a 600 x 200 box that CSS
// scales to the page's width; the table below each holds the same data
// for screen readers and for copying.
const (
	chartW, chartH = 600.0, 200.0
	chartLeft      = 44.0
	chartBottom    = 18.0
)

type barChart struct {
	Label  string
	Bars   []chartBar
	Ticks  []chartTick
	XTicks []chartTick
}

type chartBar struct {
	X, W  float64
	Segs  []chartSeg
	Title string
}

type chartSeg struct {
	Y, H  float64
	Class string
}

type chartTick struct {
	X, Y  float64
	Label string
}

type lineChart struct {
	Label  string
	Lines  []chartLine
	Ticks  []chartTick
	XTicks []chartTick
}

type chartLine struct {
	Class, Name, Points string
	// Dots mark each point (a line of one point draws nothing).
	Dots []chartTick
}

// axisTop is the top of an axis for values up to v: four ticks, each a
// round step (1, 2, 2.5 or 5 times a power of ten).
func axisTop(v float64) float64 { return 4 * niceMax(v/4) }

// niceMax rounds v up to 1, 2, 2.5 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := 1.0
	for p*10 <= v {
		p *= 10
	}
	for p > v {
		p /= 10
	}
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func yTicks(top float64, unit string) []chartTick {
	var out []chartTick
	for i := 0; i <= 4; i++ {
		v := top * float64(i) / 4
		out = append(out, chartTick{X: chartLeft - 4, Y: plotY(v, top), Label: strconv.FormatFloat(v, 'f', -1, 64) + unit})
	}
	return out
}

func plotY(v, top float64) float64 {
	return (chartH - chartBottom) - v/top*(chartH-chartBottom-8)
}

func xTicks(points []usage.Point, x func(i int) float64) []chartTick {
	if len(points) == 0 {
		return nil
	}
	var out []chartTick
	every := max(1, len(points)/4)
	for i := 0; i < len(points); i += every {
		out = append(out, chartTick{X: x(i), Y: chartH - 4, Label: points[i].At.Format("01-02 15:04")})
	}
	return out
}

// requestsChart stacks each step's requests by outcome: succeeded (not
// 4xx or 5xx), refused by a rate limit or quota, other 4xx, 5xx.
func requestsChart(points []usage.Point) barChart {
	ch := barChart{Label: "Requests per step by outcome"}
	var top float64
	for _, p := range points {
		top = max(top, float64(p.Requests))
	}
	top = max(4, axisTop(top))
	ch.Ticks = yTicks(top, "")
	if len(points) == 0 {
		return ch
	}
	slot := (chartW - chartLeft) / float64(len(points))
	x := func(i int) float64 { return chartLeft + float64(i)*slot }
	for i, p := range points {
		refused := p.RateLimited + p.QuotaRefused
		parts := []struct {
			n     int64
			class string
		}{
			{p.Requests - p.ClientErrors - p.ServerErrors, "ok"}, {refused, "refused"},
			{p.ClientErrors - refused, "c4xx"}, {p.ServerErrors, "c5xx"},
		}
		b := chartBar{X: x(i) + slot*0.1, W: slot * 0.8, Title: fmt.Sprintf("%s: %d requests, %d 4xx (%d refused by limits), %d 5xx",
			p.At.Format("2006-01-02 15:04"), p.Requests, p.ClientErrors, refused, p.ServerErrors)}
		base := 0.0
		for _, part := range parts {
			if part.n <= 0 {
				continue
			}
			y0, y1 := plotY(base, top), plotY(base+float64(part.n), top)
			b.Segs = append(b.Segs, chartSeg{Y: y1, H: y0 - y1, Class: part.class})
			base += float64(part.n)
		}
		ch.Bars = append(ch.Bars, b)
	}
	ch.XTicks = xTicks(points, func(i int) float64 { return x(i) + slot/2 })
	return ch
}

// latencyChart draws p50 and p95 per step (steps without requests are
// left out of the lines).
func latencyChart(points []usage.Point) lineChart {
	ch := lineChart{Label: "Latency per step, p50 and p95 (ms)"}
	var top float64
	for _, p := range points {
		top = max(top, p.P95Ms)
	}
	top = axisTop(top)
	ch.Ticks = yTicks(top, "")
	if len(points) == 0 {
		return ch
	}
	slot := (chartW - chartLeft) / float64(len(points))
	x := func(i int) float64 { return chartLeft + float64(i)*slot + slot/2 }
	l50, l95 := chartLine{Class: "p50", Name: "p50"}, chartLine{Class: "p95", Name: "p95"}
	var p50, p95 []string
	for i, p := range points {
		if p.Requests == 0 {
			continue
		}
		p50 = append(p50, fmt.Sprintf("%.1f,%.1f", x(i), plotY(p.P50Ms, top)))
		p95 = append(p95, fmt.Sprintf("%.1f,%.1f", x(i), plotY(p.P95Ms, top)))
		l50.Dots = append(l50.Dots, chartTick{X: x(i), Y: plotY(p.P50Ms, top)})
		l95.Dots = append(l95.Dots, chartTick{X: x(i), Y: plotY(p.P95Ms, top)})
	}
	l50.Points, l95.Points = strings.Join(p50, " "), strings.Join(p95, " ")
	ch.Lines = []chartLine{l50, l95}
	ch.XTicks = xTicks(points, x)
	return ch
}
