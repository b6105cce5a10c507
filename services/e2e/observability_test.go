package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
)

// hookTarget is an HTTP job target that records the traceparent of each
// call and refuses (400, permanently) payloads saying {"ok": false}.
type hookTarget struct {
	srv *httptest.Server
	mu  sync.Mutex
	// parents maps a job id to the traceparents of the calls for it.
	parents map[string][]string
}

func newHookTarget(t *testing.T) *hookTarget {
	h := &hookTarget{parents: map[string][]string{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		job := r.Header.Get("X-Switchyard-Job-Id")
		h.parents[job] = append(h.parents[job], r.Header.Get("Traceparent"))
		h.mu.Unlock()
		var in struct {
			OK *bool `json:"ok"`
		}
		_ = json.Unmarshal(raw, &in)
		if in.OK != nil && !*in.OK {
			http.Error(w, `{"error":"not ok"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"done":true}`))
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookTarget) calls(job string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.parents[job]...)
}

// traceView indexes one trace's spans.
type traceView struct {
	spans []stacktest.Span
	byID  map[string]stacktest.Span
}

func viewOf(spans []stacktest.Span) traceView {
	v := traceView{spans: spans, byID: map[string]stacktest.Span{}}
	for _, s := range spans {
		v.byID[s.SpanID] = s
	}
	return v
}

// find returns the spans of service whose name starts with prefix.
func (v traceView) find(service, prefix string) []stacktest.Span {
	var out []stacktest.Span
	for _, s := range v.spans {
		if s.Service == service && strings.HasPrefix(s.Name, prefix) {
			out = append(out, s)
		}
	}
	return out
}

// attempts returns the worker's spans of processing a jobType message
// that did the work: SQS delivers at least once, and a message delivered
// again after its job's attempt committed (its visibility ended first on
// a busy machine) is answered from the inbox, in a span of its own with
// the outcome "duplicate".
func (v traceView) attempts(jobType string) []stacktest.Span {
	var out []stacktest.Span
	for _, s := range v.find("switchyard-worker", "process "+jobType) {
		if s.Attributes["switchyard.outcome"] != "duplicate" {
			out = append(out, s)
		}
	}
	return out
}

func (v traceView) String() string {
	var b strings.Builder
	for _, s := range v.spans {
		fmt.Fprintf(&b, "\n  %s %-28s %s parent %s", s.Service, s.Name, s.SpanID, s.ParentSpanID)
	}
	return b.String()
}

// oneTracePerJob: with OTLP export on (to a collector in the test),
// one job's spans from the gateway, the relay, the worker and its HTTP
// target call form one trace, each the child of the one before; a job
// that fails permanently, is dead-lettered and replayed by an operator
// continues its own trace through the replay service, linked to the
// operator's request.
func oneTracePerJob(t *testing.T) {
	collector := stacktest.NewTraceCollector(t)
	target := newHookTarget(t)
	p := startPlatformWith(t, platformOptions{
		services: []string{"tokens", "relay", "worker", "replay", "gateway"},
		jobs: `
job_types:
  hook:
    http: {url: "` + target.srv.URL + `/hook", timeout: 4s}
    consumers: 2
    retry: {attempts: 2, base: 200ms, max: 1s}
`,
		routes: `
routes:
  - {method: POST, path: "/v1/jobs/hook", mode: async, job_type: hook, scopes: [jobs:submit]}
  - {method: GET, path: "/v1/jobs/{id}", mode: job-status, scopes: [jobs:read]}
`,
		env: append(collector.Env(), "SWITCHYARD_REPLAY_DRAIN_WAIT=2s"),
	})
	secret := p.client(adminActor, "switchyard:admin")
	tok, err := p.token(adminActor, secret)
	require.NoError(t, err)
	p.mu.Lock()
	p.bearers[adminActor] = tok
	p.mu.Unlock()

	// A job that succeeds: gateway -> relay -> worker -> target.
	id := p.submitAs("tracer", "hook", `{"ok": true}`)
	client := http.Client{Timeout: 10 * time.Second}
	require.NoError(t, p.awaitSucceeded(client, "tracer", id, time.Minute))
	status := p.call("GET", "/v1/jobs/"+id, "Bearer "+p.bearer("tracer"), "")
	traceID, _ := status.body["trace_id"].(string)
	require.Len(t, traceID, 32, "the job's status names its trace: %v", status.body)

	var v traceView
	require.Eventually(t, func() bool {
		v = viewOf(collector.Trace(traceID))
		return len(v.find("switchyard-gateway", "POST /v1/jobs/hook")) == 1 && len(v.find("switchyard-relay", "send ")) == 1 &&
			len(v.attempts("hook")) == 1 && len(v.find("switchyard-worker", "HTTP POST")) == 1
	}, 30*time.Second, 100*time.Millisecond, "spans of trace %s so far: %v", traceID, &v)
	accept := v.find("switchyard-gateway", "POST /v1/jobs/hook")[0]
	send := v.find("switchyard-relay", "send ")[0]
	process := v.attempts("hook")[0]
	call := v.find("switchyard-worker", "HTTP POST")[0]
	t.Logf("trace %s:%s", traceID, v)
	require.Equal(t, tracepb.Span_SPAN_KIND_SERVER, accept.Kind)
	require.Empty(t, accept.ParentSpanID, "the client sent no traceparent: the gateway starts the trace")
	require.Equal(t, id, accept.Attributes["switchyard.job_id"])
	require.Equal(t, accept.SpanID, send.ParentSpanID, "relay's send is the child of the accepting request")
	require.Equal(t, tracepb.Span_SPAN_KIND_PRODUCER, send.Kind)
	require.Equal(t, send.SpanID, process.ParentSpanID, "worker's processing is the child of the relay's send")
	require.Equal(t, tracepb.Span_SPAN_KIND_CONSUMER, process.Kind)
	require.Equal(t, "succeeded", process.Attributes["switchyard.outcome"])
	require.Equal(t, process.SpanID, call.ParentSpanID, "the target call is the child of the processing")
	require.Equal(t, []string{"00-" + traceID + "-" + call.SpanID + "-01"}, target.calls(id), "the target got the call's span as traceparent")

	// A job that fails permanently, then is replayed with a fixed payload.
	clientTrace := "4bf92f3577b34da6a3ce929d0e0e4736"
	bad := p.submitAs("tracer", "hook", `{"ok": false}`, "traceparent", "00-"+clientTrace+"-00f067aa0ba902b7-01")
	p.awaitDeadLetter("hook", bad, time.Minute)
	dl := p.deadLetters("type=hook")[0]
	require.Equal(t, clientTrace, dl["trace_id"], "the dead letter names the client's trace")
	r := p.admin("POST", "/admin/v1/dead-letters/"+dl["id"].(string)+"/replay", `{"payload": {"ok": true}}`)
	require.Equal(t, http.StatusAccepted, r.status, r.body)
	require.NoError(t, p.awaitSucceeded(client, "tracer", bad, time.Minute))

	// The owner's view of what happened: the job's timeline. The relay
	// records a hand-over in the transaction that claimed the message, which
	// commits after the send: a fast worker can finish the job before that
	// "queued" is visible, so the timeline is read until it is (its time is
	// the claim's, before the attempt's start).
	want := []string{"accepted", "queued", "attempt_started 1", "attempt_failed 1 target_rejected the target answered HTTP 400",
		"dead_lettered permanent_error", "replayed edited", "queued", "attempt_started 2", "attempt_succeeded 2"}
	var timeline []string
	readTimeline := func() bool {
		status := p.call("GET", "/v1/jobs/"+bad, "Bearer "+p.bearer("tracer"), "")
		timeline = nil
		for _, ev := range status.body["events"].([]any) {
			e := ev.(map[string]any)
			entry := e["type"].(string)
			if n, ok := e["attempt"].(float64); ok {
				entry += fmt.Sprintf(" %d", int(n))
			}
			for _, k := range []string{"reason", "error_class", "error"} {
				if v, ok := e[k].(string); ok {
					entry += " " + v
				}
			}
			if e["edited"] == true {
				entry += " edited"
			}
			timeline = append(timeline, entry)
		}
		return len(timeline) >= len(want)
	}
	require.Eventually(t, readTimeline, 10*time.Second, 50*time.Millisecond, "the timeline of job %s has %d entries: %q", bad, len(timeline), timeline)
	t.Logf("timeline of job %s: %q", bad, timeline)
	// The owner sees the failure as written for clients (the detail is
	// the operators', in the admin API).
	require.Equal(t, want, timeline)
	require.Eventually(t, func() bool {
		v = viewOf(collector.Trace(clientTrace))
		return len(v.find("switchyard-replay", "replay hook")) == 1 && len(v.attempts("hook")) == 2 &&
			len(v.find("switchyard-replay", "store dead letter hook")) == 1 &&
			len(v.find("switchyard-relay", "send ")) >= 3 // the job, its dead letter, the replay
	}, 30*time.Second, 100*time.Millisecond, "spans of trace %s so far: %v", clientTrace, &v)
	t.Logf("trace %s:%s", clientTrace, v)
	accept = v.find("switchyard-gateway", "POST /v1/jobs/hook")[0]
	require.Equal(t, "00f067aa0ba902b7", accept.ParentSpanID, "the gateway continues the client's trace")
	stored := v.find("switchyard-replay", "store dead letter hook")
	require.Len(t, stored, 1)
	dlqSend := v.byID[stored[0].ParentSpanID]
	require.Equal(t, "switchyard-relay", dlqSend.Service, "stored from the relay's send to the DLQ")
	failed := v.byID[dlqSend.ParentSpanID]
	require.Equal(t, "process hook", failed.Name, "dead-lettered by the failed attempt")
	require.Equal(t, "dead_lettered", failed.Attributes["switchyard.outcome"])
	require.True(t, failed.Error)
	replay := v.find("switchyard-replay", "replay hook")[0]
	require.Equal(t, bad, replay.Attributes["switchyard.job_id"])
	require.Len(t, replay.Links, 1, "linked to the operator's request")
	// The operator's request span ends after its response is written, so
	// it may reach the collector after the replay's spans: poll for it.
	var admin stacktest.Span
	require.Eventually(t, func() bool {
		for _, s := range collector.Trace(replay.Links[0].TraceID) {
			if s.SpanID == replay.Links[0].SpanID {
				admin = s
				return true
			}
		}
		return false
	}, 30*time.Second, 100*time.Millisecond, "the linked span was exported")
	require.Equal(t, "switchyard-replay", admin.Service)
	require.Equal(t, "POST /admin/v1/dead-letters/:id/replay", admin.Name)
	var replayed []stacktest.Span
	for _, s := range v.attempts("hook") {
		if send, ok := v.byID[s.ParentSpanID]; ok && v.byID[send.ParentSpanID].SpanID == replay.SpanID {
			replayed = append(replayed, s)
		}
	}
	require.Len(t, replayed, 1, "the replayed attempt descends from the replay: replay -> relay send -> worker")
	require.Equal(t, "succeeded", replayed[0].Attributes["switchyard.outcome"])
}

// scrape reads a service's /metrics into its families.
func (p *platform) scrape(svc string) map[string]*dto.MetricFamily {
	p.t.Helper()
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(p.opsPorts[svc]) + "/metrics")
	require.NoError(p.t, err)
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(p.t, err, "%s /metrics is valid exposition text", svc)
	return families
}

// value is the sum of the samples of family name (counter, gauge, or a
// histogram's count) whose labels include want ("k=v" pairs); ok is false
// when the family or every matching series is absent.
func value(families map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	mf, found := families[name]
	if !found {
		return 0, false
	}
	var sum float64
	matched := false
series:
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			if labels[k] != v {
				continue series
			}
		}
		matched = true
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.GetUntyped() != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum, matched
}

// metricsAfterTraffic scrapes every service after real traffic (jobs
// that succeed, jobs that dead-letter, refused requests) and checks that
// the series an operator alerts and builds dashboards on are there, with
// values that follow from the traffic.
func metricsAfterTraffic(t *testing.T) {
	p := startFaultPlatform(t, "", "SWITCHYARD_RELAY_SAMPLE_INTERVAL=300ms", "SWITCHYARD_REPLAY_STATS_INTERVAL=300ms", "SWITCHYARD_USAGE_FLUSH=200ms")
	client := http.Client{Timeout: 10 * time.Second}
	const jobsN, failing = 20, 2
	ids := make([]string, 0, jobsN)
	for i := range jobsN {
		ids = append(ids, p.submitAs("metered", "text-stats", fmt.Sprintf(`{"text":"job %d"}`, i)))
	}
	var poison []string
	for range failing {
		poison = append(poison, p.submitAs("metered", "always-fails", `{}`))
	}
	require.Equal(t, http.StatusUnauthorized, p.call("POST", "/v1/jobs/text-stats", "", `{"text":"x"}`).status)
	require.Equal(t, http.StatusUnauthorized, p.call("POST", "/v1/jobs/text-stats", "Bearer not-a-token", `{"text":"x"}`).status)
	for _, id := range ids {
		require.NoError(t, p.awaitSucceeded(client, "metered", id, time.Minute))
	}
	for _, id := range poison {
		p.awaitDeadLetter("always-fails", id, 2*time.Minute)
	}

	gw := p.scrape("gateway")
	mustAtLeast := func(families map[string]*dto.MetricFamily, min float64, name string, labels ...string) float64 {
		t.Helper()
		v, ok := value(families, name, labels...)
		require.True(t, ok, "series %s%v is exported", name, labels)
		require.GreaterOrEqual(t, v, min, "%s%v", name, labels)
		return v
	}
	mustAtLeast(gw, jobsN, "switchyard_http_requests_total", "route=/v1/jobs/text-stats", "method=POST", "status=202")
	mustAtLeast(gw, 2, "switchyard_http_requests_total", "route=/v1/jobs/text-stats", "method=POST", "status=401")
	mustAtLeast(gw, jobsN, "switchyard_http_requests_total", "route=/v1/jobs/:id", "method=GET", "status=200")
	mustAtLeast(gw, jobsN+2, "switchyard_http_request_duration_seconds", "route=/v1/jobs/text-stats", "method=POST")
	mustAtLeast(gw, 1, "switchyard_auth_failures_total", "issuer=switchyard")
	mustAtLeast(gw, 1, "switchyard_pgxpool_total_conns")
	mustAtLeast(gw, jobsN, "switchyard_pgxpool_acquire_count")
	mustAtLeast(gw, 1, "go_goroutines")
	mustAtLeast(gw, 1<<20, "process_resident_memory_bytes")
	_, ok := value(gw, "switchyard_ratelimit_shared_up")
	require.False(t, ok, "no Redis configured: no shared-limit gauge")

	tokens := p.scrape("tokens")
	mustAtLeast(tokens, 2, "switchyard_tokens_issued_total")
	mustAtLeast(tokens, 2, "switchyard_http_requests_total", "route=/oauth2/token", "method=POST", "status=200")

	relay := p.scrape("relay")
	// The job messages and the dead letters went through the outbox.
	mustAtLeast(relay, jobsN+2*failing, "switchyard_relay_forwarded_total")
	mustAtLeast(relay, 1, "switchyard_relay_send_seconds")
	require.Eventually(t, func() bool {
		relay = p.scrape("relay")
		pending, ok1 := value(relay, "switchyard_outbox_backlog_messages")
		age, ok2 := value(relay, "switchyard_outbox_oldest_age_seconds")
		dlq, ok3 := value(relay, "switchyard_sqs_messages", "job_type=always-fails", "queue=dlq")
		jobs, ok4 := value(relay, "switchyard_sqs_messages", "job_type=text-stats", "queue=jobs")
		return ok1 && ok2 && ok3 && ok4 && pending == 0 && age == 0 && dlq == 0 && jobs == 0
	}, 30*time.Second, 200*time.Millisecond, "backlog and queues drain to 0 in the sampled gauges")

	worker := p.scrape("worker")
	mustAtLeast(worker, jobsN, "switchyard_worker_messages_total", "job_type=text-stats", "outcome=succeeded")
	mustAtLeast(worker, failing, "switchyard_worker_messages_total", "job_type=always-fails", "outcome=dead_lettered")
	mustAtLeast(worker, failing, "switchyard_worker_messages_total", "job_type=always-fails", "outcome=retrying")
	mustAtLeast(worker, failing, "switchyard_worker_dead_letters_total", "job_type=always-fails")
	mustAtLeast(worker, failing, "switchyard_worker_retry_delay_seconds", "job_type=always-fails")
	mustAtLeast(worker, jobsN, "switchyard_worker_message_seconds", "job_type=text-stats", "outcome=succeeded")
	mustAtLeast(worker, 1, "switchyard_pgxpool_total_conns")

	replay := p.scrape("replay")
	mustAtLeast(replay, failing, "switchyard_replay_dlq_received_total")
	require.Eventually(t, func() bool {
		v, ok := value(p.scrape("replay"), "switchyard_dead_letters", "job_type=always-fails", "status=stored")
		return ok && v == failing
	}, 30*time.Second, 200*time.Millisecond, "the stored dead letters by fingerprint")
	replay = p.scrape("replay")
	fingerprints := map[string]bool{}
	for _, m := range replay["switchyard_dead_letters"].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == "fingerprint" {
				fingerprints[lp.GetValue()] = true
			}
		}
	}
	require.Len(t, fingerprints, 1, "one cause, one fingerprint")
	mustAtLeast(replay, 1, "switchyard_http_requests_total", "route=/admin/v1/dead-letters", "method=GET", "status=200")

	// Usage analytics: the same traffic, per client and route, with the
	// jobs by outcome.
	type routeUsage struct {
		Route        string  `json:"route"`
		Requests     int64   `json:"requests"`
		ClientErrors int64   `json:"client_errors"`
		ServerErrors int64   `json:"server_errors"`
		P95Ms        float64 `json:"p95_ms"`
	}
	type clientUsage struct {
		ClientID string `json:"client_id"`
		Routes   []routeUsage
		Jobs     map[string]map[string]int64
	}
	usageOf := func(client string) (clientUsage, bool) {
		r := p.admin("GET", "/admin/v1/usage?client="+client, "")
		require.Equal(t, http.StatusOK, r.status, r.body)
		raw, err := json.Marshal(r.body["clients"])
		require.NoError(t, err)
		var cs []clientUsage
		require.NoError(t, json.Unmarshal(raw, &cs))
		if len(cs) != 1 {
			return clientUsage{}, false
		}
		return cs[0], true
	}
	routeOf := func(c clientUsage, route string) routeUsage {
		for _, r := range c.Routes {
			if r.Route == route {
				return r
			}
		}
		return routeUsage{}
	}
	var metered clientUsage
	require.Eventually(t, func() bool {
		var ok bool
		metered, ok = usageOf("metered")
		return ok && routeOf(metered, "POST /v1/jobs/text-stats").Requests == jobsN
	}, 10*time.Second, 100*time.Millisecond, "usage counts are flushed")
	t.Logf("usage of client metered: %+v", metered)
	require.EqualValues(t, failing, routeOf(metered, "POST /v1/jobs/always-fails").Requests)
	require.GreaterOrEqual(t, routeOf(metered, "GET /v1/jobs/:id").Requests, int64(jobsN))
	require.Positive(t, routeOf(metered, "POST /v1/jobs/text-stats").P95Ms)
	require.Equal(t, map[string]map[string]int64{"text-stats": {"succeeded": jobsN}, "always-fails": {"dead_lettered": failing}}, metered.Jobs)
	anonymous, ok := usageOf("-")
	require.True(t, ok)
	require.Equal(t, routeUsage{Route: "POST /v1/jobs/text-stats", Requests: 2, ClientErrors: 2}, func() routeUsage {
		r := routeOf(anonymous, "POST /v1/jobs/text-stats")
		r.P95Ms = 0
		return r
	}(), "the refused requests count against no client")
	require.Equal(t, http.StatusBadRequest, p.admin("GET", "/admin/v1/usage?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "").status)

	// The same traffic over time: the series adds up to the report.
	var total int64
	for _, r := range metered.Routes {
		total += r.Requests
	}
	series := p.admin("GET", "/admin/v1/usage/series?client=metered&step=1m&since="+url.QueryEscape(time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)), "")
	require.Equal(t, http.StatusOK, series.status, series.body)
	var sum float64
	for _, pt := range series.body["points"].([]any) {
		sum += pt.(map[string]any)["requests"].(float64)
	}
	require.GreaterOrEqual(t, int64(sum), total, "every request of the report is in a step of the series")
	require.Equal(t, "1m0s", series.body["step"])
	require.Equal(t, http.StatusBadRequest, p.admin("GET", "/admin/v1/usage/series?step=90s", "").status)
	require.Equal(t, http.StatusBadRequest, p.admin("GET", "/admin/v1/usage/series?step=1m", "").status, "24 hours in minutes: too many points")
}
