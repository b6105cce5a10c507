package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/sqsqueue"
)

// The failure-handling platform runs the fault worker (services/e2e/faultworker)
// as its worker, the replay service, and job types that fail on purpose.
const (
	faultJobsFile = `
job_types:
  text-stats:
    handler: text-stats
    consumers: 4
    timeout: 4s
    retry: {attempts: 3, base: 200ms, max: 1s}
    schema: {type: object, required: [text], properties: {text: {type: string}}}
  always-fails:
    handler: always-fails
    consumers: 2
    timeout: 4s
    retry: {attempts: 4, base: 200ms, max: 1s}
  crash:
    handler: crash
    consumers: 1
    timeout: 4s
    retry: {attempts: 2, base: 200ms, max: 1s}
  breakable:
    handler: breakable
    consumers: 8
    timeout: 4s
    retry: {attempts: 3, base: 200ms, max: 1s}
    schema:
      type: object
      required: [text, group]
      properties: {text: {type: string}, group: {enum: [a, b]}}
`
	faultRoutesFile = `
routes:
  - {method: POST, path: "/v1/jobs/text-stats", mode: async, job_type: text-stats, scopes: [jobs:submit]}
  - {method: POST, path: "/v1/jobs/always-fails", mode: async, job_type: always-fails, scopes: [jobs:submit]}
  - {method: POST, path: "/v1/jobs/crash", mode: async, job_type: crash, scopes: [jobs:submit]}
  - {method: POST, path: "/v1/jobs/breakable", mode: async, job_type: breakable, scopes: [jobs:submit]}
  - {method: GET, path: "/v1/jobs/{id}", mode: job-status, scopes: [jobs:read]}
`
	// maxReceives is the queues' RedrivePolicy maxReceiveCount here.
	maxReceives = 5
	adminActor  = "ops-alice"
)

// startFaultPlatform runs the failure-handling platform on the SQS server
// sqsServer (empty: the package's), with env added, and gives it the admin
// client ops-alice.
func startFaultPlatform(t *testing.T, sqsServer string, env ...string) *platform {
	t.Helper()
	p := startPlatformWith(t, platformOptions{
		services: []string{"tokens", "relay", "worker", "replay", "gateway"},
		jobs:     faultJobsFile, routes: faultRoutesFile,
		binaries:    map[string]string{"worker": "faultworker"},
		sqsEndpoint: sqsServer,
		env: append([]string{
			fmt.Sprintf("SWITCHYARD_SQS_MAX_RECEIVE_COUNT=%d", maxReceives),
			// A crashed worker's message comes back this soon.
			"SWITCHYARD_SQS_VISIBILITY_TIMEOUT=3s",
			"SWITCHYARD_REPLAY_DRAIN_WAIT=2s",
		}, env...),
	})
	p.addAdmin()
	return p
}

// addAdmin registers the admin client ops-alice (switchyard:admin) for
// admin and dlq.
func (p *platform) addAdmin() {
	p.t.Helper()
	secret := p.client(adminActor, "switchyard:admin")
	tok, err := p.token(adminActor, secret)
	require.NoError(p.t, err)
	p.mu.Lock()
	p.bearers[adminActor] = tok
	p.adminSecret = secret
	p.mu.Unlock()
}

// admin calls the replay service's admin API as ops-alice (or with the
// given Authorization when auth is not "").
func (p *platform) admin(method, path, body string, auth ...string) reply {
	p.t.Helper()
	req, err := http.NewRequest(method, p.replay+path, strings.NewReader(body))
	require.NoError(p.t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if len(auth) > 0 {
		if auth[0] != "" {
			req.Header.Set("Authorization", auth[0])
		}
	} else {
		req.Header.Set("Authorization", "Bearer "+p.bearer(adminActor))
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(p.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(p.t, err)
	out := map[string]any{}
	if len(raw) > 0 {
		require.NoError(p.t, json.Unmarshal(raw, &out), string(raw))
	}
	return reply{resp.StatusCode, resp.Header, out}
}

// dlq runs `switchyard dlq ARGS` as an operator would, authenticated with
// ops-alice's client credentials, and returns its output and exit code.
func (p *platform) dlq(args ...string) (stdout, stderr string, code int) {
	p.t.Helper()
	return p.dlqAs(adminActor, p.adminSecret, args...)
}

// dlqAs runs `switchyard dlq ARGS` with another client's credentials.
func (p *platform) dlqAs(clientID, secret string, args ...string) (stdout, stderr string, code int) {
	p.t.Helper()
	return p.adminCLI(clientID, secret, append([]string{"dlq"}, args...)...)
}

// adminCLI runs `switchyard ARGS` with clientID's credentials for the admin
// API.
func (p *platform) adminCLI(clientID, secret string, args ...string) (stdout, stderr string, code int) {
	p.t.Helper()
	cmd := exec.Command(filepath.Join(p.bin, "switchyard"), args...)
	cmd.Env = append(slices.Clone(p.env), "SWITCHYARD_ADMIN_URL="+p.replay, "SWITCHYARD_TOKEN_URL="+p.tokens+"/oauth2/token",
		"SWITCHYARD_ADMIN_CLIENT_ID="+clientID, "SWITCHYARD_ADMIN_CLIENT_SECRET="+secret)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), errb.String(), ee.ExitCode()
	}
	require.NoError(p.t, err)
	return out.String(), errb.String(), 0
}

// submitAs POSTs a job of jobType as clientID, with headers, and returns
// its id.
func (p *platform) submitAs(clientID, jobType, body string, header ...string) string {
	p.t.Helper()
	r := p.call("POST", "/v1/jobs/"+jobType, "Bearer "+p.bearer(clientID), body, header...)
	require.Equal(p.t, http.StatusAccepted, r.status, r.body)
	return r.body["id"].(string)
}

// deadLetters lists the stored dead letters of a filter (query string).
func (p *platform) deadLetters(query string) []map[string]any {
	p.t.Helper()
	r := p.admin("GET", "/admin/v1/dead-letters?limit=500&"+query, "")
	require.Equal(p.t, http.StatusOK, r.status, r.body)
	var out []map[string]any
	for _, it := range r.body["items"].([]any) {
		out = append(out, it.(map[string]any))
	}
	return out
}

// awaitDeadLetter polls until the store holds a dead letter of job id.
func (p *platform) awaitDeadLetter(jobType, jobID string, timeout time.Duration) map[string]any {
	p.t.Helper()
	var found map[string]any
	require.Eventually(p.t, func() bool {
		for _, d := range p.deadLetters("type=" + jobType) {
			if d["job_id"] == jobID {
				found = d
				return true
			}
		}
		return false
	}, timeout, 100*time.Millisecond, "no dead letter for job %s", jobID)
	return found
}

// poisonMessages: a job that always fails, a message that is not ours
// and a handler that crashes its worker all end in the store, each with
// what an operator needs, while the messages around them are processed;
// and the admin API refuses callers without the admin scope.
func poisonMessages(t *testing.T, sqsServer string) {
	p := startFaultPlatform(t, sqsServer)

	t.Run("a job that always fails is dead-lettered after its configured attempts", func(t *testing.T) {
		const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		id := p.submitAs("client-7", "always-fails", `{"n":1}`, "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
		d := p.awaitDeadLetter("always-fails", id, 2*time.Minute)
		require.Equal(t, "attempts_exhausted", d["reason"])
		require.EqualValues(t, 4, d["attempts"], "exactly the configured retry.attempts")
		require.Contains(t, d["error"], "inventory service timed out after")
		require.Len(t, d["fingerprint"], 16)
		require.Equal(t, "always-fails", d["handler"])
		require.Equal(t, "always-fails", d["topic"])
		require.Equal(t, "client-7", d["client_id"])
		require.Equal(t, traceID, d["trace_id"])
		first, err := time.Parse(time.RFC3339Nano, d["first_failure_at"].(string))
		require.NoError(t, err)
		last, err := time.Parse(time.RFC3339Nano, d["last_failure_at"].(string))
		require.NoError(t, err)
		require.True(t, last.After(first), "first %s, last %s", first, last)
		require.NotEmpty(t, d["dead_lettered_at"])

		detail := p.admin("GET", "/admin/v1/dead-letters/"+d["id"].(string), "")
		require.Equal(t, http.StatusOK, detail.status)
		hist := detail.body["history"].([]any)
		require.Len(t, hist, 4)
		for _, h := range hist {
			require.Equal(t, "failed", h.(map[string]any)["outcome"])
			require.Equal(t, d["fingerprint"], h.(map[string]any)["fingerprint"], "one fingerprint for every attempt")
		}
		require.Equal(t, "/v1/jobs/"+id, detail.body["job_url"])

		job := p.call("GET", "/v1/jobs/"+id, "Bearer "+p.bearer("client-7"), "")
		require.Equal(t, "dead_lettered", job.body["status"])
		require.EqualValues(t, 4, job.body["attempts"])
		// Security item 14: the owner sees a class and a message written
		// for it; the handler's own text (here naming a service, timings
		// and the job) stays with the operators (the dead letter above).
		require.Equal(t, "handler_error", job.body["last_error_class"])
		raw, err := json.Marshal(job.body)
		require.NoError(t, err)
		require.NotContains(t, string(raw), "inventory service", "the detail never reaches the client")
	})

	// Security item 18: a client's payload holds terminal controls (an
	// 8-bit CSI that clears the screen, a bidi override, and ESC sequences
	// that set the window title, as JSON escapes); an operator who shows
	// the dead letter sees them as text, and their terminal does nothing.
	t.Run("terminal controls in a dead letter reach the operator as text", func(t *testing.T) {
		payload := "{\"text\":\"\u009b2J\u202eevil\",\"esc\":\"\\u001b]0;pwned\\u0007\"}"
		id := p.submitAs("client-7", "always-fails", payload)
		d := p.awaitDeadLetter("always-fails", id, 2*time.Minute)
		for _, args := range [][]string{{"show", d["id"].(string)}, {"show", d["id"].(string), "--json"}, {"list", "--type", "always-fails"}} {
			out, errOut, code := p.dlq(args...)
			require.Zero(t, code, errOut)
			for _, bad := range []string{"\x1b", "\u009b", "\u202e", "\x07"} {
				require.NotContains(t, out, bad, "dlq %v printed a raw %q", args, bad)
			}
			if args[0] == "show" {
				require.Contains(t, out, `\u009b2J`, "shown as an escape")
			}
		}
	})

	t.Run("a message that is not ours is stored; the ones around it are processed", func(t *testing.T) {
		ctx := context.Background()
		queues := p.queues(t)
		var ids []string
		for i := range 5 {
			ids = append(ids, p.submitAs("client-7", "text-stats", fmt.Sprintf(`{"text":"before %d"}`, i)))
		}
		url, err := queues.Ensure(ctx, "text-stats")
		require.NoError(t, err)
		garbage := "this is not a Switchyard envelope {"
		_, err = queues.Client().SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: &garbage})
		require.NoError(t, err)
		for i := range 5 {
			ids = append(ids, p.submitAs("client-7", "text-stats", fmt.Sprintf(`{"text":"after %d"}`, i)))
		}
		for _, id := range ids {
			require.NoError(t, p.awaitSucceededWith("Bearer "+p.bearer("client-7"), id, time.Minute))
		}
		var stray map[string]any
		require.Eventually(t, func() bool {
			for _, d := range p.deadLetters("type=text-stats&reason=undecodable") {
				stray = d
				return true
			}
			return false
		}, time.Minute, 100*time.Millisecond)
		require.Nil(t, stray["job_id"])
		detail := p.admin("GET", "/admin/v1/dead-letters/"+stray["id"].(string), "")
		require.Equal(t, garbage, detail.body["payload"])
		require.Equal(t, "text", detail.body["payload_encoding"])
	})

	t.Run("a handler that crashes its worker ends in the DLQ through the RedrivePolicy", func(t *testing.T) {
		crashes := p.supervise("worker")
		id := p.submitAs("client-8", "crash", `{}`)
		d := p.awaitDeadLetter("crash", id, 3*time.Minute)
		n := crashes()
		require.Equal(t, "max_receive_count", d["reason"])
		require.Equal(t, "client-8", d["client_id"], "completed from the job")
		require.Contains(t, d["error"], "crash loop")
		require.Equal(t, maxReceives, n, "the worker died once per receive until SQS moved the message")
		job := p.call("GET", "/v1/jobs/"+id, "Bearer "+p.bearer("client-8"), "")
		require.Equal(t, "dead_lettered", job.body["status"])
		t.Logf("worker crashed %d times; dead letter %s, reason %s", n, d["id"], d["reason"])
		// The platform still works after the loop.
		ok := p.submitAs("client-8", "text-stats", `{"text":"after the crash loop"}`)
		require.NoError(t, p.awaitSucceededWith("Bearer "+p.bearer("client-8"), ok, time.Minute))
	})

	t.Run("the admin API wants an admin token and refuses bad filters", func(t *testing.T) {
		r := p.admin("GET", "/admin/v1/dead-letters", "", "")
		require.Equal(t, http.StatusUnauthorized, r.status)
		require.Contains(t, r.header.Get("WWW-Authenticate"), "Bearer")
		require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
		r = p.admin("GET", "/admin/v1/dead-letters", "", "Bearer "+p.bearer("client-7"))
		require.Equal(t, http.StatusForbidden, r.status)
		require.Contains(t, r.header.Get("WWW-Authenticate"), "insufficient_scope")
		// A role narrower than admin: read and replay, not purge nor audit.
		oncall := p.client("oncall", "dead-letters:read", "dead-letters:replay")
		out, errOut, code := p.dlqAs("oncall", oncall, "stats")
		require.Zero(t, code, errOut)
		require.Contains(t, out, "always-fails")
		_, errOut, code = p.dlqAs("oncall", oncall, "audit")
		require.Equal(t, 1, code)
		require.Contains(t, errOut, "403 Insufficient scope")
		first := p.deadLetters("type=always-fails")[0]["id"].(string)
		out, errOut, code = p.dlqAs("oncall", oncall, "list", "--type", "always-fails", "--all", "--limit", "1")
		require.Zero(t, code, errOut)
		require.Contains(t, out, first)
		require.Contains(t, out, "attempts_exhausted")
		out, errOut, code = p.dlqAs("oncall", oncall, "list", "--type", "always-fails", "--json")
		require.Zero(t, code, errOut)
		var listed struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &listed))
		require.Equal(t, first, listed.Items[0].ID)
		_, errOut, code = p.dlqAs("oncall", oncall, "purge", first)
		require.Equal(t, 1, code)
		require.Contains(t, errOut, "dead-letters:purge")
		for _, bad := range []struct{ method, path, body string }{
			{"GET", "/admin/v1/dead-letters?colour=red", ""},
			{"GET", "/admin/v1/dead-letters?since=yesterday", ""},
			{"POST", "/admin/v1/replays", `{"filter":{"type":"crash"},"max":-1}`},
			{"POST", "/admin/v1/replays", `{"filter":{"type":"crash","colour":"red"}}`},
			{"POST", "/admin/v1/replays", `{"filter":{"since":"last week"}}`},
		} {
			r := p.admin(bad.method, bad.path, bad.body)
			require.Equal(t, http.StatusBadRequest, r.status, "%s %s %s: %v", bad.method, bad.path, bad.body, r.body)
			require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
			require.NotEmpty(t, r.body["detail"])
			require.NotEmpty(t, r.body["request_id"])
		}
	})
}

// queues returns an SQS client on the platform's queues.
func (p *platform) queues(t *testing.T) *sqsqueue.Queues {
	t.Helper()
	prefix := ""
	for _, kv := range p.env {
		if v, ok := strings.CutPrefix(kv, "SWITCHYARD_QUEUE_PREFIX="); ok {
			prefix = v
		}
	}
	awsCfg, err := sqsqueue.LoadAWSConfig(context.Background())
	require.NoError(t, err)
	client := sqs.NewFromConfig(awsCfg, func(o *sqs.Options) { o.BaseEndpoint = &p.sqsEndpoint })
	q, err := sqsqueue.NewQueues(client, sqsqueue.Config{Prefix: prefix})
	require.NoError(t, err)
	return q
}

// supervise restarts svc whenever it dies, as an orchestrator would, until
// the test ends, and returns how many times it died so far.
func (p *platform) supervise(svc string) (deaths func() int) {
	var n atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			p.mu.Lock()
			proc := p.procs[svc]
			p.mu.Unlock()
			select {
			case <-stop:
				return
			case <-proc.Done():
			}
			n.Add(1)
			p.t.Logf("%s died (%v); restarting it", svc, proc.Err())
			if err := p.startE(svc); err != nil {
				p.t.Errorf("restarting %s: %v", svc, err)
				return
			}
		}
	})
	p.t.Cleanup(func() { close(stop); wg.Wait() })
	return func() int { return int(n.Load()) }
}

// breakAll submits n breakable jobs of each group from 8 concurrent
// clients and waits until all 2n are in the store; it returns each
// group's fingerprint.
func (p *platform) breakAll(t *testing.T, groups []string, n int) map[string]string {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for c := range 8 {
		wg.Go(func() {
			client := fmt.Sprintf("client-%d", c)
			for i := c; i < n*len(groups); i += 8 {
				g := groups[i%len(groups)]
				r := p.call("POST", "/v1/jobs/breakable", "Bearer "+p.bearer(client), fmt.Sprintf(`{"text":"order %d","group":"%s"}`, i, g))
				if r.status != http.StatusAccepted {
					errs <- fmt.Errorf("submit answered %d: %v", r.status, r.body)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	fps := map[string]string{}
	require.Eventually(t, func() bool {
		r := p.admin("GET", "/admin/v1/dead-letters/stats?type=breakable&status=stored", "")
		if r.status != http.StatusOK || r.body["total"].(float64) < float64(n*len(groups)) {
			return false
		}
		for _, g := range r.body["groups"].([]any) {
			grp := g.(map[string]any)
			group := "b"
			if strings.Contains(grp["sample_error"].(string), "catalogue") {
				group = "a"
			}
			require.EqualValues(t, n, grp["count"], "group %s: %v", group, grp)
			fps[group] = grp["fingerprint"].(string)
		}
		return true
	}, 5*time.Minute, 500*time.Millisecond)
	require.Len(t, fps, len(groups), "one fingerprint per cause")
	return fps
}

// replayJSON runs `dlq replay-bulk ARGS --json` and decodes its output.
func (p *platform) replayJSON(t *testing.T, wantCode int, args ...string) map[string]any {
	t.Helper()
	out, errOut, code := p.dlq(append([]string{"replay-bulk", "--json"}, args...)...)
	require.Equal(t, wantCode, code, "stdout: %s\nstderr: %s", out, errOut)
	var v map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &v), out)
	return v
}

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}

// bulkReplayFlow is the operator's day: a handler breaks and 500 jobs
// are dead-lettered with two causes; the fix for one cause is deployed;
// the operator dry-runs a bulk replay of that fingerprint with the CLI,
// runs it at 50/s in stages 1 → 10% → 100%, and every job of that group
// succeeds (its effect applied once) while the other group stays put.
// Replaying again does nothing; replaying the still-broken group stops by
// itself after the first stage; the audit log shows every step and who
// took it.
func bulkReplayFlow(t *testing.T, sqsServer string) {
	p := startFaultPlatform(t, sqsServer)
	start := time.Now()
	fps := p.breakAll(t, []string{"a", "b"}, 250)
	t.Logf("500 jobs dead-lettered and stored %s after the first submission", time.Since(start).Round(time.Millisecond))

	p.restart("worker", "SWITCHYARD_E2E_FIXED_GROUPS=a") // the fix for cause a is deployed
	args := []string{"--fingerprint", fps["a"], "--rate", "50", "--stages", "1,10%,100%"}

	dry := p.replayJSON(t, 0, append(args, "--dry-run")...)
	sel := dry["selection"].(map[string]any)
	require.Equal(t, 250, num(sel["matched"]))
	require.Equal(t, 250, num(sel["would_replay"]))
	require.Equal(t, 0, num(sel["deduplicated"]))
	require.Equal(t, []any{1.0, 25.0, 250.0}, dry["stage_targets"])
	require.Zero(t, p.count(`SELECT count(*) FROM replay_operations`), "a dry run changes nothing")
	table, _, code := p.dlq(append([]string{"replay-bulk"}, append(args, "--dry-run")...)...)
	require.Zero(t, code)
	t.Logf("switchyard dlq replay-bulk --dry-run:\n%s", table)

	started := time.Now()
	op := p.replayJSON(t, 0, args...)
	require.Equal(t, "completed", op["status"], op)
	opID := op["id"].(string)
	prog := op["progress"].(map[string]any)
	require.Equal(t, 250, num(prog["replayed"]))
	require.Equal(t, 0, num(prog["deduplicated"]))
	t.Logf("bulk replay of 250 sent in %s", time.Since(started).Round(time.Millisecond))

	require.Eventually(t, func() bool {
		return p.count(`SELECT count(*) FROM jobs WHERE type = 'breakable' AND payload->>'group' = 'a' AND status = 'succeeded'`) == 250
	}, 3*time.Minute, 200*time.Millisecond, "every job of the fixed group succeeds")
	t.Logf("all 250 replayed jobs succeeded %s after the replay started", time.Since(started).Round(time.Millisecond))
	require.Equal(t, 250, p.count(`SELECT count(*) FROM demo_text_stats s JOIN jobs j ON j.id = s.job_id WHERE j.payload->>'group' = 'a'`),
		"each effect once")
	require.Equal(t, 250, p.count(`SELECT count(*) FROM jobs WHERE type = 'breakable' AND payload->>'group' = 'b' AND status = 'dead_lettered'`),
		"the other group stays dead-lettered")
	require.Equal(t, 250, p.count(`SELECT count(*) FROM dead_letters WHERE fingerprint = '`+fps["b"]+`' AND status = 'stored'`))

	// The stages: each released only after the one before it settled, and
	// the last one paced at 50/s (225 items: at least 224/50 s apart).
	for _, cut := range [][2]int{{1, 2}, {25, 26}} {
		settled := p.count(fmt.Sprintf(`SELECT (
			(SELECT min(processed_at) FROM replay_operation_items WHERE operation_id = '%[1]s' AND seq = %[2]d) >
			(SELECT max(j.finished_at) FROM replay_operation_items i JOIN jobs j ON j.id = i.job_id WHERE i.operation_id = '%[1]s' AND i.seq <= %[3]d))::int`,
			opID, cut[1], cut[0]))
		require.Equal(t, 1, settled, "stage starting at item %d began before items up to %d had settled", cut[1], cut[0])
	}
	var span float64
	require.NoError(t, p.pool.QueryRow(context.Background(), `
		SELECT extract(epoch FROM max(processed_at) - min(processed_at)) FROM replay_operation_items
		WHERE operation_id = $1 AND seq >= 26`, opID).Scan(&span))
	require.GreaterOrEqual(t, span, 224.0/50*0.98, "225 items at 50/s")
	t.Logf("last stage: 225 replays over %.2f s (%.1f/s; asked 50/s)", span, 224/span)

	// Again: nothing to replay.
	attemptsBefore := p.count(`SELECT count(*) FROM job_attempts`)
	again := p.replayJSON(t, 0, "--fingerprint", fps["a"], "--rate", "50")
	require.Equal(t, "completed", again["status"])
	require.Equal(t, 0, num(again["progress"].(map[string]any)["total"]))
	require.Equal(t, 250, num(again["selection"].(map[string]any)["deduplicated"]))
	require.Equal(t, 250, p.count(`SELECT count(*) FROM dead_letters WHERE fingerprint = '`+fps["a"]+`' AND replay_count = 1`),
		"each dead letter of the group replayed exactly once")
	require.Equal(t, attemptsBefore, p.count(`SELECT count(*) FROM job_attempts`), "no job ran again")

	// The still-broken group: the canary fails again and the operation stops.
	guarded := p.replayJSON(t, 1, "--fingerprint", fps["b"], "--rate", "50", "--stages", "1,10%,100%")
	require.Equal(t, "stopped", guarded["status"])
	require.Contains(t, guarded["stop_reason"], "dead-lettered again")
	gp := guarded["progress"].(map[string]any)
	require.Equal(t, 1, num(gp["replayed"]), "only the canary")
	require.Equal(t, 1, num(gp["failed_again"]))
	require.Equal(t, 249, num(gp["pending"]))

	// The audit log: each step, and who took it (reads left out).
	r := p.admin("GET", "/admin/v1/audit?skip_reads=true&limit=100", "")
	require.Equal(t, http.StatusOK, r.status)
	var steps []string
	for _, it := range r.body["items"].([]any) {
		e := it.(map[string]any)
		steps = append([]string{e["actor"].(string) + " " + e["action"].(string)}, steps...) // oldest first
		if e["actor"] == adminActor {
			require.NotEmpty(t, e["request_id"])
			require.NotEmpty(t, e["source_ip"])
		}
	}
	require.Equal(t, []string{
		"ops-alice replays.dry_run", "ops-alice replays.dry_run",
		"ops-alice replays.create", "switchyard-replay replays.completed",
		"ops-alice replays.create", // again: nothing to do
		"ops-alice replays.create", "switchyard-replay replays.stopped",
	}, steps)
	log, _, code := p.dlq("audit", "--skip-reads")
	require.Zero(t, code)
	t.Logf("switchyard dlq audit --skip-reads:\n%s", log)
	show, _, code := p.dlq("operation", opID)
	require.Zero(t, code)
	t.Logf("switchyard dlq operation %s:\n%s", opID, show)
	stats, _, code := p.dlq("stats", "--type", "breakable")
	require.Zero(t, code)
	t.Logf("switchyard dlq stats --type breakable:\n%s", stats)

	// The still-broken group, given up on: archived by its fingerprint
	// with the CLI, after a dry run; the fixed group's (replayed) stay.
	groupB := p.count(`SELECT count(*) FROM dead_letters WHERE fingerprint = '` + fps["b"] + `'`) // the canary's second failure too
	require.GreaterOrEqual(t, groupB, 250)
	out, stderr, code := p.dlq("archive", "--fingerprint", fps["b"], "--dry-run")
	require.Zero(t, code, stderr)
	require.Contains(t, out, fmt.Sprintf("dry run: %d dead letters match and would be archived", groupB))
	require.Zero(t, p.count(`SELECT count(*) FROM dead_letters WHERE status = 'archived'`), "a dry run changes nothing")
	out, stderr, code = p.dlq("archive", "--fingerprint", fps["b"])
	require.Zero(t, code, stderr)
	require.Contains(t, out, fmt.Sprintf("archived %d dead letters", groupB))
	require.Equal(t, groupB, p.count(`SELECT count(*) FROM dead_letters WHERE fingerprint = '`+fps["b"]+`' AND status = 'archived'`))
	require.Equal(t, 250, p.count(`SELECT count(*) FROM dead_letters WHERE fingerprint = '`+fps["a"]+`' AND status = 'replayed'`))
}

// bulkReplayResumesAfterSIGKILL kills the replay service with SIGKILL
// in the middle of a bulk replay and starts it again: the operation
// resumes where it was, and no dead letter is replayed twice.
func bulkReplayResumesAfterSIGKILL(t *testing.T, sqsServer string) {
	p := startFaultPlatform(t, sqsServer)
	fps := p.breakAll(t, []string{"b"}, 150)
	p.restart("worker", "SWITCHYARD_E2E_FIXED_GROUPS=b")
	op := p.replayJSON(t, 0, "--fingerprint", fps["b"], "--rate", "20", "--detach")
	opID := op["id"].(string)
	require.Eventually(t, func() bool {
		return p.count(`SELECT count(*) FROM replay_operation_items WHERE operation_id = '`+opID+`' AND state = 'replayed'`) >= 40
	}, time.Minute, 10*time.Millisecond)
	p.crash("replay") // SIGKILL, then started again
	atKill := p.count(`SELECT count(*) FROM replay_operation_items WHERE operation_id = '` + opID + `' AND state = 'replayed'`)
	require.Less(t, atKill, 150, "killed mid-operation")
	t.Logf("replay service killed with %d of 150 replayed", atKill)

	final, _, code := p.dlq("operation", opID, "--follow", "--json")
	require.Zero(t, code)
	var done map[string]any
	require.NoError(t, json.Unmarshal([]byte(final), &done))
	require.Equal(t, "completed", done["status"])
	prog := done["progress"].(map[string]any)
	require.Equal(t, 150, num(prog["replayed"]))
	require.Equal(t, 0, num(prog["skipped"]))
	require.Equal(t, 0, num(prog["deduplicated"]))
	require.Equal(t, 150, p.count(`SELECT count(*) FROM dead_letters WHERE fingerprint = '`+fps["b"]+`' AND replay_count = 1`),
		"every dead letter replayed exactly once")
	require.Zero(t, p.count(`SELECT count(*) FROM dead_letters WHERE replay_count > 1`))
	require.Eventually(t, func() bool {
		return p.count(`SELECT count(*) FROM jobs WHERE type = 'breakable' AND status = 'succeeded'`) == 150
	}, 3*time.Minute, 200*time.Millisecond)
	require.Equal(t, 150, p.count(`SELECT count(*) FROM demo_text_stats`), "each effect once")
	require.Equal(t, 0, p.count(`SELECT count(*) FROM (SELECT job_id FROM job_attempts GROUP BY job_id HAVING count(*) <> 2) x`),
		"every job: its failed attempt and one replayed attempt")
}
