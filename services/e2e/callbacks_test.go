package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack"
)

// callbackJobs declares the callback delivery with retries that outlast a
// one-minute outage quickly: nine attempts 4 s to 30 s apart (at least
// 89 s in all with the jitter's shortest waits).
const callbackJobs = jobsFile + `
  switchyard-callback:
    handler: switchyard-callback
    timeout: 5s
    retry: {attempts: 9, base: 4s, max: 30s}
`

// callbackReceiver verifies every delivery with the Standard Webhooks
// library, with each secret it knows, and counts the deliveries that
// verify with all of them by webhook-id.
type callbackReceiver struct {
	t       *testing.T
	secrets []string

	mu        sync.Mutex
	events    map[string]map[string]any // webhook-id -> event
	refused   int                       // deliveries that failed to verify
	delivered int
}

func (r *callbackReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delivered++
	for _, s := range r.secrets {
		wh, err := standardwebhooks.NewWebhook(s)
		require.NoError(r.t, err)
		if err := wh.Verify(body, req.Header); err != nil {
			r.refused++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
	}
	if req.URL.Path == "/gone" {
		w.WriteHeader(http.StatusGone)
		return
	}
	var event map[string]any
	require.NoError(r.t, json.Unmarshal(body, &event))
	r.events[req.Header.Get("webhook-id")] = event
	w.WriteHeader(http.StatusNoContent)
}

func (r *callbackReceiver) received() (events map[string]map[string]any, refused, delivered int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]map[string]any, len(r.events))
	for k, v := range r.events {
		out[k] = v
	}
	return out, r.refused, r.delivered
}

// completionCallbacks: a client's callbacks through the real
// services. A host not on the client's allow-list is refused at
// submission (422). With the receiver down for a minute, eleven jobs
// finish (ten succeed, one is cancelled while scheduled); every callback
// is retried until the receiver is back and then arrives, once per
// webhook-id, signed with both secrets of a rotation in its overlap
// (verified with the Standard Webhooks library). A callback the receiver
// answers 410 Gone ends dead-lettered, like any job that cannot succeed.
func completionCallbacks(t *testing.T) {
	p := startPlatformWith(t, platformOptions{
		services: []string{"tokens", "relay", "worker", "gateway"},
		routes:   lifecycleRoutes,
		jobs:     callbackJobs,
	})
	auth := "Bearer " + p.bearer("hooked")
	port, err := devstack.FreePort()
	require.NoError(t, err)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	p.cli("clients", "callbacks", "set-hosts", "hooked", "127.0.0.1:"+strconv.Itoa(port))
	secretOf := func(out string) string {
		var v struct {
			Secrets []struct {
				Secret string `json:"secret"`
			} `json:"secrets"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &v), out)
		require.NotEmpty(t, v.Secrets[0].Secret, out)
		return v.Secrets[0].Secret
	}
	oldSecret := secretOf(p.cli("clients", "callbacks", "rotate-secret", "hooked", "-o", "json"))
	newSecret := secretOf(p.cli("clients", "callbacks", "rotate-secret", "hooked", "--overlap", "1h", "-o", "json"))
	require.NotEqual(t, oldSecret, newSecret)

	r := p.call("POST", "/v1/jobs/text-stats", auth, `{"text":"x"}`, "Switchyard-Callback-Url", "http://127.0.0.1:1/hooks")
	require.Equal(t, http.StatusUnprocessableEntity, r.status, r.body)
	require.Equal(t, "urn:switchyard:problem:callback-not-allowed", r.body["type"])
	r = p.call("POST", "/v1/jobs/text-stats", "Bearer "+p.bearer("other"), `{"text":"x"}`, "Switchyard-Callback-Url", base+"/hooks")
	require.Equal(t, http.StatusUnprocessableEntity, r.status, "another client's list is its own")

	// The receiver is down (nothing listens on its port) while the jobs
	// finish and the first attempts fail.
	down := time.Now()
	want := map[string]string{}
	for i := range 10 {
		r := p.call("POST", "/v1/jobs/text-stats", auth, fmt.Sprintf(`{"text":"job %d"}`, i), "Switchyard-Callback-Url", base+"/hooks")
		require.Equal(t, http.StatusAccepted, r.status, r.body)
		want[r.body["id"].(string)] = "job.succeeded"
	}
	r = p.call("POST", "/v1/jobs/text-stats", auth, `{"text":"later"}`, "Switchyard-Callback-Url", base+"/hooks", "Switchyard-Delay", "1h")
	require.Equal(t, http.StatusAccepted, r.status, r.body)
	cancelled := r.body["id"].(string)
	want[cancelled] = "job.cancelled"
	r = p.call("DELETE", "/v1/jobs/"+cancelled, auth, "")
	require.Equal(t, http.StatusOK, r.status, r.body)
	r = p.call("POST", "/v1/jobs/text-stats", auth, `{"text":"gone"}`, "Switchyard-Callback-Url", base+"/gone")
	require.Equal(t, http.StatusAccepted, r.status, r.body)
	gone := r.body["id"].(string)

	require.Eventually(t, func() bool {
		return p.count(`SELECT count(*) FROM jobs WHERE type = 'switchyard-callback' AND attempts >= 1 AND status <> 'processing'`) == 12
	}, time.Minute, 200*time.Millisecond, "every callback has been tried against the receiver that is down")
	require.Zero(t, p.count(`SELECT count(*) FROM jobs WHERE type = 'switchyard-callback' AND status = 'succeeded'`))

	// A one-minute outage, then the receiver is back on its port.
	time.Sleep(time.Until(down.Add(time.Minute))) // the outage's length is the scenario, not a wait for a condition
	recv := &callbackReceiver{t: t, secrets: []string{oldSecret, newSecret}, events: map[string]map[string]any{}}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	require.NoError(t, err)
	srv := &http.Server{Handler: recv, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	back := time.Now()

	require.Eventually(t, func() bool {
		events, _, _ := recv.received()
		return len(events) == len(want)
	}, 2*time.Minute, 200*time.Millisecond, "every callback arrives after the receiver returns")
	t.Logf("all %d callbacks arrived %.1f s after the receiver returned", len(want), time.Since(back).Seconds())
	events, refused, _ := recv.received()
	require.Zero(t, refused, "every delivery verifies with the old and the new secret")
	got := map[string]string{}
	for id, ev := range events {
		data := ev["data"].(map[string]any)
		got[data["id"].(string)] = ev["type"].(string)
		require.Equal(t, "hooked", p.jobClient(id), "webhook-id is the callback job, the client's own")
	}
	require.Equal(t, want, got, "one callback per finished job, with its final status")

	require.Eventually(t, func() bool {
		return p.count(`SELECT count(*) FROM jobs WHERE type = 'switchyard-callback' AND status = 'dead_lettered'
			AND payload->'event'->'data'->>'id' = '`+gone+`'`) == 1
	}, 30*time.Second, 200*time.Millisecond, "a receiver that answers 410 Gone gets no more attempts")
	require.Equal(t, len(want), p.count(`SELECT count(*) FROM jobs WHERE type = 'switchyard-callback' AND status = 'succeeded'`))
	_, refused, delivered := recv.received()
	require.Zero(t, refused)
	t.Logf("%d deliveries for %d callbacks", delivered, len(want)+1)
}

// jobClient returns the client of job id, as the database has it.
func (p *platform) jobClient(id string) string {
	p.t.Helper()
	var client string
	require.NoError(p.t, p.pool.QueryRow(p.t.Context(), `SELECT client_id FROM jobs WHERE id = $1`, id).Scan(&client))
	return client
}
