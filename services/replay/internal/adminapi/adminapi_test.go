package adminapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/apikeys"
	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/deadletter"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/jobcatalog"
	"github.com/switchyard/switchyard/libs/jobmessage"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/oauthclients"
	"github.com/switchyard/switchyard/libs/outbox"
	"github.com/switchyard/switchyard/libs/problem"
	"github.com/switchyard/switchyard/libs/retention"
	"github.com/switchyard/switchyard/libs/sqsqueue"
	"github.com/switchyard/switchyard/services/replay/internal/adminapi"
	"github.com/switchyard/switchyard/services/replay/internal/deadletterstore"
	"github.com/switchyard/switchyard/services/replay/internal/drain"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

const catalogDoc = `
job_types:
  text-stats:
    handler: text-stats
    schema:
      type: object
      required: [text]
      properties: {text: {type: string, maxLength: 20}}
`

// headerAuth trusts X-Test-Client (the client id) and X-Test-Scopes.
// (The real authenticator, libs/accesstoken, is tested against the token
// service in its own package and in the e2e tests.)
type headerAuth struct{}

func (headerAuth) Authenticate(r *http.Request) (authn.Identity, error) {
	id := r.Header.Get("X-Test-Client")
	if id == "" {
		return authn.Identity{}, authn.Fail(authn.ErrNoCredentials, "missing", "no client")
	}
	return authn.Identity{ClientID: id, Scopes: strings.Fields(r.Header.Get("X-Test-Scopes"))}, nil
}

type env struct {
	pool   *pgxpool.Pool
	store  *deadletterstore.Store
	queues *sqsqueue.Queues
	drain  *drain.Drain
	srv    *httptest.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	stacktest.SQSEndpoint(t)
	awsCfg, err := sqsqueue.LoadAWSConfig(ctx)
	require.NoError(t, err)
	queues, err := sqsqueue.NewQueues(sqs.NewFromConfig(awsCfg), sqsqueue.Config{Prefix: stacktest.QueuePrefix(t)})
	require.NoError(t, err)
	catalog, err := jobcatalog.Parse([]byte(catalogDoc))
	require.NoError(t, err)
	logger := slog.New(slog.DiscardHandler)
	store := deadletterstore.New(pool)
	dr := drain.New(queues, store, logger, nil)
	dr.WaitTime = time.Second
	e := httpserver.NewEcho(logger)
	api := adminapi.New(store, catalog, 24*time.Hour)
	settings := retention.Settings{Interval: time.Minute, Batch: 100, MaxPass: time.Minute, Jobs: time.Hour, Inbox: 2 * time.Hour,
		Audit: retention.MinAudit, IdempotencyKeys: time.Hour}
	tables := append(retention.JobTables(pool, settings, jobstore.Retention{DeadLetteredAtLeast: time.Hour, KeepSQL: deadletterstore.NamesJobSQL("j.id")}),
		retention.Table{Name: "dead_letters", Trim: store.PurgeExpired, Oldest: store.Oldest})
	jan, err := retention.New(pool, settings, tables, logger, nil)
	require.NoError(t, err)
	api.Retention = jan.Pass
	hasher, err := apikeys.NewHasher([]byte("admin-api-test-pepper"))
	require.NoError(t, err)
	clients, err := oauthclients.New(pool)
	require.NoError(t, err)
	api.Keys = &adminapi.APIKeys{Store: apikeys.NewStore(pool, hasher), ClientScopes: clients.Scopes, CanCreate: true}
	api.Jobs = jobstore.New(pool)
	api.Mount(e.Echo, adminapi.GuardsFor(headerAuth{}, logger, nil))
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return &env{pool: pool, store: store, queues: queues, drain: dr, srv: srv}
}

// call sends a request as the admin "ops-alice" unless headers say
// otherwise, and returns the status and the decoded JSON body.
func (e *env) call(t *testing.T, method, path, body string, headers ...string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("X-Test-Client", "ops-alice")
	req.Header.Set("X-Test-Scopes", adminapi.Scope)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	out := map[string]any{}
	if len(raw) > 0 {
		require.NoError(t, json.Unmarshal(raw, &out), string(raw))
	}
	if resp.StatusCode >= 400 {
		require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"), string(raw))
	}
	return resp.StatusCode, out
}

// deadLetterJob accepts a job and dead-letters it as the worker does: the
// job marked dead_lettered, its message in the DLQ with metadata.
func (e *env) deadLetterJob(t *testing.T, text, errText string) (jobID, messageID string) {
	t.Helper()
	ctx := context.Background()
	store := jobstore.New(e.pool)
	sub := jobs.Submission{ID: uuid.NewString(), MessageID: uuid.NewString(), Type: "text-stats", ClientID: "client-7",
		Payload: json.RawMessage(`{"text":"` + text + `"}`), TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	_, _, err := store.Accept(ctx, sub)
	require.NoError(t, err)
	attempt, err := store.MarkProcessing(ctx, sub.ID, sub.MessageID)
	require.NoError(t, err)
	tx, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	fp := deadletter.Fingerprint("text-stats", true, errText)
	tally, err := jobstore.RecordFailure(ctx, tx, jobstore.Failure{JobID: sub.ID, Attempt: attempt, MessageID: sub.MessageID, Error: errText, Fingerprint: fp, Permanent: true})
	require.NoError(t, err)
	_, err = jobstore.MarkDeadLettered(ctx, tx, sub.ID, "attempts_exhausted")
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	meta, err := deadletter.Metadata{Reason: deadletter.ReasonPermanentError, Error: errText, Fingerprint: fp, Attempts: tally.Failures,
		Handler: "text-stats", Topic: "text-stats", JobID: sub.ID, ClientID: "client-7", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
		FirstFailureAt: &tally.FirstFailureAt, LastFailureAt: &tally.LastFailureAt, DeadLetteredAt: time.Now().UTC()}.Encode()
	require.NoError(t, err)
	e.sendDLQ(t, string(sub.Payload), map[string]string{
		"_watermill_message_uuid": sub.MessageID, jobmessage.JobID: sub.ID, jobmessage.ClientID: "client-7", deadletter.Attribute: meta,
	})
	return sub.ID, sub.MessageID
}

func (e *env) sendDLQ(t *testing.T, body string, attrs map[string]string) {
	t.Helper()
	url, err := e.queues.Ensure(context.Background(), sqsqueue.DeadLetterTopic("text-stats"))
	require.NoError(t, err)
	ma := map[string]types.MessageAttributeValue{}
	for k, v := range attrs {
		ma[k] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
	}
	_, err = e.queues.Client().SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &url, MessageBody: &body, MessageAttributes: ma})
	require.NoError(t, err)
}

// drainAll drains the DLQ until it is empty.
func (e *env) drainAll(t *testing.T) {
	t.Helper()
	for {
		n, err := e.drain.Once(context.Background(), "text-stats")
		require.NoError(t, err)
		if n == 0 {
			return
		}
	}
}

func items(t *testing.T, body map[string]any) []map[string]any {
	t.Helper()
	raw, ok := body["items"].([]any)
	require.True(t, ok, "items in %v", body)
	out := make([]map[string]any, len(raw))
	for i, r := range raw {
		out[i] = r.(map[string]any)
	}
	return out
}

// TestDrainInspectReplayAudit walks the operator's path: dead letters of
// three kinds are drained from SQS into the store (a redelivered one
// stored once), listed with filters and pages, shown, counted, replayed
// (once, and with an edited payload), archived, and every step is in the
// audit log with its actor.
func TestDrainInspectReplayAudit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()

	jobA, msgA := e.deadLetterJob(t, "a", "target answered 400 for order 17")
	jobB, _ := e.deadLetterJob(t, "b", "target answered 400 for order 18")
	// A crash loop, moved by the RedrivePolicy: no metadata of ours.
	store := jobstore.New(e.pool)
	crash := jobs.Submission{ID: uuid.NewString(), MessageID: uuid.NewString(), Type: "text-stats", ClientID: "client-8", Payload: json.RawMessage(`{"text":"boom"}`)}
	_, _, err := store.Accept(ctx, crash)
	require.NoError(t, err)
	_, err = store.MarkProcessing(ctx, crash.ID, crash.MessageID)
	require.NoError(t, err)
	e.sendDLQ(t, `{"text":"boom"}`, map[string]string{"_watermill_message_uuid": crash.MessageID, jobmessage.JobID: crash.ID})
	// A stray and a redelivery of A's message.
	e.sendDLQ(t, "not json at all", map[string]string{"colour": "red"})
	e.drainAll(t)
	e.deadLetterJobResend(t, msgA, jobA)
	e.drainAll(t)

	status, body := e.call(t, "GET", "/admin/v1/dead-letters", "")
	require.Equal(t, http.StatusOK, status)
	all := items(t, body)
	require.Len(t, all, 4, "four messages, A's redelivery stored once")
	byJob := map[string]map[string]any{}
	for _, it := range all {
		if j, ok := it["job_id"].(string); ok {
			byJob[j] = it
		}
	}
	require.Equal(t, "permanent_error", byJob[jobA]["reason"])
	require.Equal(t, byJob[jobA]["fingerprint"], byJob[jobB]["fingerprint"], "same cause, one fingerprint")
	require.Equal(t, "max_receive_count", byJob[crash.ID]["reason"])
	require.Equal(t, "client-8", byJob[crash.ID]["client_id"], "completed from the job")
	j, err := store.Get(ctx, crash.ID, "client-8")
	require.NoError(t, err)
	require.Equal(t, jobs.StatusDeadLettered, j.Status, "a crash loop's job is dead-lettered by the drain")

	// Filters and paging.
	fp := byJob[jobA]["fingerprint"].(string)
	_, body = e.call(t, "GET", "/admin/v1/dead-letters?fingerprint="+fp+"&limit=1", "")
	page1 := items(t, body)
	require.Len(t, page1, 1)
	cursor, _ := body["next_cursor"].(string)
	require.NotEmpty(t, cursor)
	_, body = e.call(t, "GET", "/admin/v1/dead-letters?fingerprint="+fp+"&limit=1&cursor="+cursor, "")
	page2 := items(t, body)
	require.Len(t, page2, 1)
	require.NotContains(t, body, "next_cursor")
	require.NotEqual(t, page1[0]["id"], page2[0]["id"])
	_, body = e.call(t, "GET", "/admin/v1/dead-letters?client=client-8&reason=max_receive_count", "")
	require.Len(t, items(t, body), 1)
	_, body = e.call(t, "GET", "/admin/v1/dead-letters?since="+time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "")
	require.Empty(t, items(t, body))

	// Stats.
	status, body = e.call(t, "GET", "/admin/v1/dead-letters/stats?type=text-stats", "")
	require.Equal(t, http.StatusOK, status)
	require.EqualValues(t, 4, body["total"])
	counts := map[string]float64{}
	for _, g := range body["groups"].([]any) {
		counts[g.(map[string]any)["reason"].(string)] = g.(map[string]any)["count"].(float64)
	}
	require.Equal(t, map[string]float64{"permanent_error": 2, "max_receive_count": 2}, counts,
		"A and B share a fingerprint; so do the moved crash loop and stray of one topic")

	// Show one: payload, history, job link.
	idA := byJob[jobA]["id"].(string)
	status, body = e.call(t, "GET", "/admin/v1/dead-letters/"+idA, "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, map[string]any{"text": "a"}, body["payload"])
	require.Equal(t, "/v1/jobs/"+jobA, body["job_url"])
	require.EqualValues(t, 1, body["attempts"])
	hist := body["history"].([]any)
	require.Len(t, hist, 1)
	require.Equal(t, "failed", hist[0].(map[string]any)["outcome"])

	// Replay A: through the outbox, job replayed; again: deduplicated.
	status, body = e.call(t, "POST", "/admin/v1/dead-letters/"+idA+"/replay", "")
	require.Equal(t, http.StatusAccepted, status, "%v", body)
	require.Equal(t, false, body["deduplicated"])
	replayMsg := body["message_id"].(string)
	status, body = e.call(t, "POST", "/admin/v1/dead-letters/"+idA+"/replay", "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, true, body["deduplicated"])
	j, err = store.Get(ctx, jobA, "client-7")
	require.NoError(t, err)
	require.Equal(t, jobs.StatusReplayed, j.Status)
	claim, err := outbox.ClaimBatch(ctx, e.pool, 100)
	require.NoError(t, err)
	var sent []outbox.Message
	for _, r := range claim.Rows {
		if r.Message.Metadata[jobmessage.ReplayOf] != "" { // not the jobs' own accept messages
			sent = append(sent, r.Message)
		}
	}
	claim.Release(ctx)
	require.Len(t, sent, 1, "one replay, however often asked")
	require.Equal(t, replayMsg, sent[0].UUID)
	require.Equal(t, "text-stats", sent[0].Topic)
	require.Equal(t, jobA, sent[0].Metadata[jobmessage.JobID])
	require.Equal(t, idA, sent[0].Metadata[jobmessage.ReplayOf])

	// Replay B with an edited payload: invalid first (422), then valid.
	idB := byJob[jobB]["id"].(string)
	status, body = e.call(t, "POST", "/admin/v1/dead-letters/"+idB+"/replay", `{"payload":{"text":"far too long for the schema"}}`)
	require.Equal(t, http.StatusUnprocessableEntity, status, "%v", body)
	status, _ = e.call(t, "POST", "/admin/v1/dead-letters/"+idB+"/replay", `{"payload":{"text":"fixed"}}`)
	require.Equal(t, http.StatusAccepted, status)
	j, err = store.Get(ctx, jobB, "client-7")
	require.NoError(t, err)
	require.JSONEq(t, `{"text":"fixed"}`, string(j.Payload))

	// The stray cannot be replayed; it is archived.
	var strayID string
	for _, it := range all {
		if it["reason"] == "max_receive_count" && it["job_id"] == nil {
			strayID = it["id"].(string)
		}
	}
	require.NotEmpty(t, strayID, "a stray moved without metadata is a max_receive_count dead letter without a job")
	status, body = e.call(t, "POST", "/admin/v1/dead-letters/"+strayID+"/replay", "")
	require.Equal(t, http.StatusConflict, status, "%v", body)
	_, body = e.call(t, "GET", "/admin/v1/dead-letters/"+strayID, "")
	require.Equal(t, "not json at all", body["payload"])
	require.Equal(t, "text", body["payload_encoding"])
	status, body = e.call(t, "DELETE", "/admin/v1/dead-letters/"+strayID, "")
	require.Equal(t, http.StatusOK, status)
	require.NotNil(t, body["purge_after"])
	status, _ = e.call(t, "DELETE", "/admin/v1/dead-letters/"+idA+"?mode=purge", "")
	require.Equal(t, http.StatusOK, status)
	status, _ = e.call(t, "GET", "/admin/v1/dead-letters/"+idA, "")
	require.Equal(t, http.StatusNotFound, status)

	// The audit log has every call, with its actor; the edit with before
	// and after.
	status, body = e.call(t, "GET", "/admin/v1/audit?action=dead_letters.replay&limit=10", "")
	require.Equal(t, http.StatusOK, status)
	replays := items(t, body)
	require.Len(t, replays, 5)
	for _, r := range replays {
		require.Equal(t, "ops-alice", r["actor"])
		require.NotEmpty(t, r["request_id"])
		require.NotEmpty(t, r["source_ip"])
	}
	edit := replays[1]
	require.Equal(t, idB, edit["target"])
	require.Equal(t, map[string]any{"text": "b"}, edit["before"])
	require.Equal(t, map[string]any{"text": "fixed"}, edit["after"])
	require.Equal(t, "refused: 409", replays[0]["outcome"], "the stray's refused replay")
	require.Equal(t, "refused: 422", replays[2]["outcome"], "the invalid edit")
	_, body = e.call(t, "GET", "/admin/v1/audit", "")
	actions := map[string]int{}
	for _, r := range items(t, body) {
		actions[r["action"].(string)]++
	}
	for _, a := range []string{"dead_letters.list", "dead_letters.stats", "dead_letters.get", "dead_letters.replay", "dead_letters.archive", "dead_letters.purge", "audit.list"} {
		require.Positive(t, actions[a], a)
	}
}

// deadLetterJobResend sends A's dead letter again, as a worker that
// crashed between its outbox commit and its delete would.
func (e *env) deadLetterJobResend(t *testing.T, messageID, jobID string) {
	t.Helper()
	meta, err := deadletter.Metadata{Reason: deadletter.ReasonPermanentError, Topic: "text-stats", JobID: jobID, DeadLetteredAt: time.Now().UTC()}.Encode()
	require.NoError(t, err)
	e.sendDLQ(t, `{"text":"a"}`, map[string]string{"_watermill_message_uuid": messageID, jobmessage.JobID: jobID, deadletter.Attribute: meta})
}

func TestAuthAndBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
	}{
		{"no token", "GET", "/admin/v1/dead-letters", "", []string{"X-Test-Client", ""}, 401},
		{"not an admin", "GET", "/admin/v1/dead-letters", "", []string{"X-Test-Scopes", "jobs:submit"}, 403},
		{"unknown filter", "GET", "/admin/v1/dead-letters?colour=red", "", nil, 400},
		{"bad time", "GET", "/admin/v1/dead-letters?since=yesterday", "", nil, 400},
		{"until before since", "GET", "/admin/v1/dead-letters?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "", nil, 400},
		{"negative limit", "GET", "/admin/v1/dead-letters?limit=-1", "", nil, 400},
		{"huge limit", "GET", "/admin/v1/dead-letters?limit=100000", "", nil, 400},
		{"bad cursor", "GET", "/admin/v1/dead-letters?cursor=!!", "", nil, 400},
		{"bad status", "GET", "/admin/v1/dead-letters?status=gone", "", nil, 400},
		{"repeated filter", "GET", "/admin/v1/dead-letters?topic=a&topic=b", "", nil, 400},
		{"topic and type disagree", "GET", "/admin/v1/dead-letters/stats?topic=a&type=b", "", nil, 400},
		{"unknown stats filter", "GET", "/admin/v1/dead-letters/stats?limit=3", "", nil, 400},
		{"not an id", "GET", "/admin/v1/dead-letters/42", "", nil, 404},
		{"unknown id", "GET", "/admin/v1/dead-letters/" + uuid.NewString(), "", nil, 404},
		{"replay unknown", "POST", "/admin/v1/dead-letters/" + uuid.NewString() + "/replay", "", nil, 404},
		{"replay body unknown field", "POST", "/admin/v1/dead-letters/" + uuid.NewString() + "/replay", `{"payload":{},"colour":1}`, nil, 400},
		{"replay body not JSON", "POST", "/admin/v1/dead-letters/" + uuid.NewString() + "/replay", `{"payload":`, nil, 400},
		{"bad delete mode", "DELETE", "/admin/v1/dead-letters/" + uuid.NewString() + "?mode=shred", "", nil, 400},
		{"bad audit cursor", "GET", "/admin/v1/audit?cursor=abc", "", nil, 400},
		{"bulk: unknown field", "POST", "/admin/v1/replays", `{"filter":{"type":"text-stats"},"colour":1}`, nil, 400},
		{"bulk: unknown filter", "POST", "/admin/v1/replays", `{"filter":{"status":"stored"}}`, nil, 400},
		{"bulk: bad time", "POST", "/admin/v1/replays", `{"filter":{"since":"last tuesday"}}`, nil, 400},
		{"bulk: max < 0", "POST", "/admin/v1/replays", `{"filter":{"type":"text-stats"},"max":-1}`, nil, 400},
		{"bulk: max 0", "POST", "/admin/v1/replays", `{"filter":{"type":"text-stats"},"max":0}`, nil, 400},
		{"bulk: no filter", "POST", "/admin/v1/replays", `{"dry_run":true}`, nil, 400},
		{"bulk: rate 0", "POST", "/admin/v1/replays", `{"filter":{"type":"text-stats"},"rate_per_s":0}`, nil, 400},
		{"bulk: rate too high", "POST", "/admin/v1/replays", `{"filter":{"type":"text-stats"},"rate_per_s":1e6}`, nil, 400},
		{"bulk: bad stage", "POST", "/admin/v1/replays", `{"filter":{"type":"text-stats"},"stages":[1,"150%"]}`, nil, 400},
		{"bulk: shrinking stages", "POST", "/admin/v1/replays", `{"filter":{"type":"text-stats"},"stages":[10,5]}`, nil, 400},
		{"bulk: bad ratio", "POST", "/admin/v1/replays", `{"filter":{"type":"text-stats"},"stop_if_failed_ratio":1.5}`, nil, 400},
		{"bulk: bad settle timeout", "POST", "/admin/v1/replays", `{"filter":{"type":"text-stats"},"settle_timeout":"soon"}`, nil, 400},
		{"bulk: not JSON", "POST", "/admin/v1/replays", `{"filter":`, nil, 400},
		{"bulk: not an admin", "POST", "/admin/v1/replays", `{"all":true}`, []string{"X-Test-Scopes", "jobs:submit"}, 403},
		{"operation: unknown", "GET", "/admin/v1/replays/" + uuid.NewString(), "", nil, 404},
		{"operation: not an id", "GET", "/admin/v1/replays/42", "", nil, 404},
		{"operations: bad status", "GET", "/admin/v1/replays?status=paused", "", nil, 400},
		{"operation items: bad state", "GET", "/admin/v1/replays/" + uuid.NewString() + "/items?state=lost", "", nil, 400},
		{"cancel unknown", "POST", "/admin/v1/replays/" + uuid.NewString() + "/cancel", "", nil, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.call(t, tt.method, tt.path, tt.body, tt.headers...)
			require.Equal(t, tt.status, status, "%v", body)
			require.NotEmpty(t, body["type"])
		})
	}
	// Refusals of authenticated callers are audited too.
	var refused int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM admin_audit WHERE outcome LIKE 'refused: %'`).Scan(&refused))
	require.Equal(t, len(tests)-3, refused)
}

// TestBulkReplayAPI: a dry run counts, a bulk replay becomes an operation
// whose progress, items and cancel are served, and each call is audited.
// (The runner that replays the items is tested in bulkreplay and e2e.)
func TestBulkReplayAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := range 3 {
		e.deadLetterJob(t, fmt.Sprintf("n%d", i), fmt.Sprintf("target answered 400 for order %d", i))
	}
	e.drainAll(t)
	_, body := e.call(t, "GET", "/admin/v1/dead-letters/stats", "")
	fp := body["groups"].([]any)[0].(map[string]any)["fingerprint"].(string)

	status, body := e.call(t, "POST", "/admin/v1/replays", `{"filter":{"fingerprint":"`+fp+`"},"dry_run":true,"max":2,"rate_per_s":50,"stages":[1,"100%"]}`)
	require.Equal(t, http.StatusOK, status, "%v", body)
	sel := body["selection"].(map[string]any)
	require.EqualValues(t, 3, sel["matched"])
	require.EqualValues(t, 2, sel["would_replay"])
	require.EqualValues(t, 1, sel["beyond_max"])
	require.Equal(t, []any{1.0, 2.0}, body["stage_targets"])
	require.Equal(t, "0s", body["estimated_send_time"])

	status, body = e.call(t, "POST", "/admin/v1/replays", `{"filter":{"fingerprint":"`+fp+`"},"max":2,"rate_per_s":50,"stages":[1,"100%"]}`)
	require.Equal(t, http.StatusAccepted, status, "%v", body)
	opID := body["id"].(string)
	require.Equal(t, "running", body["status"])
	require.Equal(t, "ops-alice", body["created_by"])
	require.Equal(t, []any{1.0, "100%"}, body["stages"])
	require.EqualValues(t, 2, body["progress"].(map[string]any)["pending"])

	status, body = e.call(t, "GET", "/admin/v1/replays/"+opID+"/items?limit=1", "")
	require.Equal(t, http.StatusOK, status)
	require.Len(t, items(t, body), 1)
	require.Equal(t, "pending", items(t, body)[0]["state"])
	cursor := body["next_cursor"].(string)
	_, body = e.call(t, "GET", "/admin/v1/replays/"+opID+"/items?limit=1&cursor="+cursor, "")
	require.EqualValues(t, 2, items(t, body)[0]["seq"])
	require.NotContains(t, body, "next_cursor")

	_, body = e.call(t, "GET", "/admin/v1/replays?status=running", "")
	require.Len(t, items(t, body), 1)

	status, body = e.call(t, "POST", "/admin/v1/replays/"+opID+"/cancel", "")
	require.Equal(t, http.StatusOK, status, "%v", body)
	require.Equal(t, "cancelled", body["status"])
	status, body = e.call(t, "POST", "/admin/v1/replays/"+opID+"/cancel", "")
	require.Equal(t, http.StatusConflict, status, "%v", body)
	require.Equal(t, "urn:switchyard:problem:replay-operation-finished", body["type"])

	_, body = e.call(t, "GET", "/admin/v1/audit?target="+opID, "")
	actions := []string{}
	for _, r := range items(t, body) {
		require.Equal(t, "ops-alice", r["actor"])
		actions = append(actions, r["action"].(string)+" "+r["outcome"].(string))
	}
	require.Contains(t, actions, "replays.create ok")
	require.Contains(t, actions, "replays.cancel ok")
	require.Contains(t, actions, "replays.cancel refused: 409")
	_, body = e.call(t, "GET", "/admin/v1/audit?action=replays.dry_run", "")
	require.Len(t, items(t, body), 1)
	_, body = e.call(t, "GET", "/admin/v1/audit?action=replays.*&skip_reads=true", "")
	got := []string{}
	for _, r := range items(t, body) {
		got = append(got, r["action"].(string))
	}
	require.Equal(t, []string{"replays.cancel", "replays.cancel", "replays.create", "replays.dry_run"}, got,
		"the replay steps, newest first, without the reads")
	status, _ = e.call(t, "GET", "/admin/v1/audit?skip_reads=maybe", "")
	require.Equal(t, http.StatusBadRequest, status)
}

// TestRoles: each capability scope opens its part of the admin API and
// nothing else; the admin scope opens all of it.
// TestRetentionRun: a dry run counts and deletes nothing; a run deletes
// the finished job past its retention but not the dead-lettered one whose
// dead letter is stored; both are audited with their counts.
func TestRetentionRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	dead, _ := e.deadLetterJob(t, "r", "target answered 400 for order 1")
	e.drainAll(t)
	done := uuid.NewString()
	_, _, err := jobstore.New(e.pool).Accept(ctx, jobs.Submission{ID: done, MessageID: uuid.NewString(), Type: "text-stats", ClientID: "c", Payload: []byte(`{}`)})
	require.NoError(t, err)
	_, err = e.pool.Exec(ctx, `UPDATE jobs SET status = CASE WHEN id = $1 THEN 'succeeded' ELSE status END, finished_at = now() - interval '3 hours'
		WHERE id IN ($1, $2)`, done, dead)
	require.NoError(t, err)

	tableRows := func(body map[string]any) map[string]float64 {
		out := map[string]float64{}
		for _, r := range body["tables"].([]any) {
			out[r.(map[string]any)["table"].(string)] = r.(map[string]any)["rows"].(float64)
		}
		return out
	}
	status, body := e.call(t, "POST", "/admin/v1/retention/run", `{"dry_run":true}`)
	require.Equal(t, http.StatusOK, status, body)
	require.Equal(t, true, body["dry_run"])
	require.InDelta(t, 1, tableRows(body)["jobs"], 0, "only the succeeded job: the dead letter keeps its job")
	status, body = e.call(t, "POST", "/admin/v1/retention/run", `{"dry_run":false}`)
	require.Equal(t, http.StatusOK, status, body)
	require.InDelta(t, 1, tableRows(body)["jobs"], 0)
	var left []string
	rows, err := e.pool.Query(ctx, `SELECT id::text FROM jobs`)
	require.NoError(t, err)
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		left = append(left, id)
	}
	require.Equal(t, []string{dead}, left)

	_, body = e.call(t, "GET", "/admin/v1/audit?action=retention.*", "")
	entries := items(t, body)
	require.Len(t, entries, 2)
	require.Equal(t, "retention.run", entries[0]["action"])
	require.Equal(t, "retention.dry_run", entries[1]["action"])
	require.EqualValues(t, 1, entries[0]["counts"].(map[string]any)["jobs"])

	status, body = e.call(t, "POST", "/admin/v1/retention/run", `{"dry_run":"yes"}`)
	require.Equal(t, http.StatusBadRequest, status, body)
}

// TestBulkArchiveAndPurge removes dead letters by filter: a dry run
// counts and changes nothing, an archive takes the filter's, a purge of
// the archived ones deletes them, the other fingerprint is untouched, and
// each step is audited with its filter and counts.
func TestBulkArchiveAndPurge(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := range 3 {
		e.deadLetterJob(t, fmt.Sprintf("a%d", i), fmt.Sprintf("target answered 400 for order %d", i))
	}
	e.deadLetterJob(t, "b", "connection refused by the target")
	e.drainAll(t)
	_, body := e.call(t, "GET", "/admin/v1/dead-letters/stats", "")
	var fpA string
	for _, g := range body["groups"].([]any) {
		if g.(map[string]any)["count"].(float64) == 3 {
			fpA = g.(map[string]any)["fingerprint"].(string)
		}
	}
	require.NotEmpty(t, fpA, body)
	countWith := func(status string) int {
		var n int
		require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM dead_letters WHERE status = $1`, status).Scan(&n))
		return n
	}
	req := func(mode string, dry bool, filter string) (int, map[string]any) {
		return e.call(t, "POST", "/admin/v1/dead-letters/remove", fmt.Sprintf(`{"mode":%q,"dry_run":%t,"filter":%s}`, mode, dry, filter))
	}
	status, body := req("purge", true, `{"fingerprint":"`+fpA+`"}`)
	require.Equal(t, http.StatusOK, status, body)
	require.EqualValues(t, 3, body["result"].(map[string]any)["matched"])
	require.EqualValues(t, 0, body["result"].(map[string]any)["removed"])
	require.Equal(t, 4, countWith("stored"), "a dry run changes nothing")

	status, body = req("archive", false, `{"fingerprint":"`+fpA+`"}`)
	require.Equal(t, http.StatusOK, status, body)
	require.EqualValues(t, 3, body["result"].(map[string]any)["removed"])
	require.Equal(t, 3, countWith("archived"))
	status, body = req("archive", false, `{"fingerprint":"`+fpA+`"}`)
	require.Equal(t, http.StatusOK, status, body)
	require.EqualValues(t, 0, body["result"].(map[string]any)["matched"], "archiving again: nothing left to archive")

	status, body = e.call(t, "POST", "/admin/v1/dead-letters/remove", `{"mode":"purge","filter":{"status":"archived"},"max":2}`)
	require.Equal(t, http.StatusUnprocessableEntity, status, body)
	require.Equal(t, problem.SelectionTooLarge.Type(), body["type"])
	require.Equal(t, 3, countWith("archived"), "too large: nothing changed")
	status, body = req("purge", false, `{"status":"archived"}`)
	require.Equal(t, http.StatusOK, status, body)
	require.EqualValues(t, 3, body["result"].(map[string]any)["removed"])
	require.Zero(t, countWith("archived"))
	require.Equal(t, 1, countWith("stored"), "the other fingerprint is untouched")

	for _, bad := range []string{`{"mode":"purge","filter":{}}`, `{"mode":"shred","filter":{"type":"text-stats"}}`,
		`{"mode":"purge","filter":{"status":"gone"}}`, `{"mode":"purge","filter":{"type":"text-stats"},"max":0}`} {
		status, body := e.call(t, "POST", "/admin/v1/dead-letters/remove", bad)
		require.Equal(t, http.StatusBadRequest, status, "%s: %v", bad, body)
	}

	_, body = e.call(t, "GET", "/admin/v1/audit?action=dead_letters.*&limit=100", "")
	var actions []string
	for _, it := range items(t, body) {
		actions = append(actions, it["action"].(string))
	}
	require.Contains(t, actions, "dead_letters.purge_bulk_dry_run")
	require.Contains(t, actions, "dead_letters.archive_bulk")
	require.Contains(t, actions, "dead_letters.purge_bulk")
}

func TestRoles(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deadLetterJob(t, "r", "target answered 400 for order 1")
	e.drainAll(t)
	_, body := e.call(t, "GET", "/admin/v1/dead-letters", "")
	id := items(t, body)[0]["id"].(string)
	missing := uuid.NewString() // past the guard, a call on it is 404: the guard let it through

	type call struct{ method, path, body string }
	calls := map[string]call{
		"list":       {"GET", "/admin/v1/dead-letters", ""},
		"stats":      {"GET", "/admin/v1/dead-letters/stats", ""},
		"show":       {"GET", "/admin/v1/dead-letters/" + id, ""},
		"operations": {"GET", "/admin/v1/replays", ""},
		"replay":     {"POST", "/admin/v1/dead-letters/" + missing + "/replay", ""},
		"edit":       {"POST", "/admin/v1/dead-letters/" + id + "/replay", `{"payload":{"text":"fixed"}}`},
		"dry run":    {"POST", "/admin/v1/replays", `{"filter":{"type":"text-stats"},"dry_run":true}`},
		"cancel":     {"POST", "/admin/v1/replays/" + missing + "/cancel", ""},
		"purge":      {"DELETE", "/admin/v1/dead-letters/" + missing + "?mode=purge", ""},
		"bulk purge": {"POST", "/admin/v1/dead-letters/remove", `{"mode":"purge","dry_run":true,"filter":{"type":"text-stats"}}`},
		"audit":      {"GET", "/admin/v1/audit", ""},
		"retention":  {"POST", "/admin/v1/retention/run", `{"dry_run":true}`},
	}
	allowed := map[string][]string{
		adminapi.ScopeRead:                              {"list", "stats", "show", "operations"},
		adminapi.ScopeReplay:                            {"replay", "dry run", "cancel"},
		adminapi.ScopeReplay + " " + adminapi.ScopeEdit: {"replay", "edit", "dry run", "cancel"},
		adminapi.ScopePurge:                             {"purge", "bulk purge"},
		adminapi.ScopeAudit:                             {"audit"},
		adminapi.Scope:                                  {"list", "stats", "show", "operations", "replay", "edit", "dry run", "cancel", "purge", "bulk purge", "audit", "retention"},
		"jobs:submit jobs:read":                         {},
	}
	for scopes, ok := range allowed {
		for name, c := range calls {
			status, body := e.call(t, c.method, c.path, c.body, "X-Test-Scopes", scopes)
			if slices.Contains(ok, name) {
				require.NotEqual(t, http.StatusForbidden, status, "%s with %q: %v", name, scopes, body)
				require.Less(t, status, 500, "%s with %q: %v", name, scopes, body)
			} else {
				require.Equal(t, http.StatusForbidden, status, "%s with %q: %v", name, scopes, body)
				require.Equal(t, "urn:switchyard:problem:insufficient-scope", body["type"])
			}
		}
	}
}

// TestAPIKeysAdmin makes, lists, rotates and revokes API keys through the
// admin API: the key is shown once, bad requests are 400 problems, the
// capability scope is required, and every change is audited with the
// caller.
func TestAPIKeysAdmin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	clients, err := oauthclients.New(e.pool)
	require.NoError(t, err)
	_, _, err = clients.Create(ctx, oauthclients.NewClient{ID: "shop", Scopes: []string{"jobs:submit", "jobs:read"}})
	require.NoError(t, err)

	status, body := e.call(t, "POST", "/admin/v1/api-keys", `{"client_id":"shop","name":"ci","scopes":["jobs:submit"],
		"allowed_cidrs":["203.0.113.0/24"],"plan":{"rate_per_second":5,"quota":1000,"quota_period":"day"}}`)
	require.Equal(t, http.StatusCreated, status, body)
	key := body["key"].(string)
	rec := body["api_key"].(map[string]any)
	id := rec["id"].(string)
	parsed, err := apikeys.Parse(key)
	require.NoError(t, err)
	require.Equal(t, id, parsed)
	require.Equal(t, []any{"jobs:submit"}, rec["scopes"])

	for name, bad := range map[string]string{
		"scope the client lacks": `{"client_id":"shop","scopes":["admin"]}`,
		"unknown client":         `{"client_id":"nobody"}`,
		"quota without period":   `{"client_id":"shop","plan":{"quota":5}}`,
		"bad network":            `{"client_id":"shop","allowed_cidrs":["300.1.1.1/8"]}`,
		"unknown field":          `{"client_id":"shop","secret":"x"}`,
		"no client":              `{}`,
	} {
		status, body := e.call(t, "POST", "/admin/v1/api-keys", bad)
		require.Equal(t, http.StatusBadRequest, status, "%s: %v", name, body)
	}
	status, _ = e.call(t, "POST", "/admin/v1/api-keys", `{"client_id":"shop"}`, "X-Test-Scopes", adminapi.ScopeRead)
	require.Equal(t, http.StatusForbidden, status, "dead-letter readers cannot make keys")
	status, _ = e.call(t, "GET", "/admin/v1/api-keys", "", "X-Test-Scopes", adminapi.ScopeAPIKeys)
	require.Equal(t, http.StatusOK, status, "the capability scope is enough")

	status, body = e.call(t, "GET", "/admin/v1/api-keys?client=shop", "")
	require.Equal(t, http.StatusOK, status)
	require.Len(t, items(t, body), 1)
	require.NotContains(t, fmt.Sprint(body), key, "listing never shows a key")

	status, body = e.call(t, "POST", "/admin/v1/api-keys/"+id+"/rotate", `{"overlap":"1h"}`)
	require.Equal(t, http.StatusCreated, status, body)
	require.Equal(t, id, body["api_key"].(map[string]any)["rotated_from"])
	status, body = e.call(t, "POST", "/admin/v1/api-keys/"+id+"/revoke", "")
	require.Equal(t, http.StatusOK, status, body)
	require.NotNil(t, body["revoked_at"])
	status, _ = e.call(t, "POST", "/admin/v1/api-keys/"+id+"/rotate", `{}`)
	require.Equal(t, http.StatusBadRequest, status, "a revoked key cannot be rotated")
	status, _ = e.call(t, "POST", "/admin/v1/api-keys/aaaaaaaaaaaaaaaa/revoke", "")
	require.Equal(t, http.StatusNotFound, status)
	status, _ = e.call(t, "GET", "/admin/v1/api-keys/not-an-id", "")
	require.Equal(t, http.StatusBadRequest, status)

	_, body = e.call(t, "GET", "/admin/v1/audit?action=api_key.*", "")
	var actions []string
	for _, entry := range items(t, body) {
		actions = append(actions, entry["action"].(string))
		require.Equal(t, "ops-alice", entry["actor"])
	}
	require.ElementsMatch(t, []string{"api_key.create", "api_key.rotate", "api_key.revoke"}, actions)
}

// TestJobLookup: an operator looks a job of any client up by id or by
// its client and idempotency key, and gets its timeline, its attempts
// with the error detail, and its dead letters; the lookup is audited.
func TestJobLookup(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	jobID, _ := e.deadLetterJob(t, "lookup", "db down: connection refused")
	e.drainAll(t)
	keyed := jobs.Submission{ID: uuid.NewString(), MessageID: uuid.NewString(), Type: "text-stats", ClientID: "client-9",
		Payload: json.RawMessage(`{"text":"k"}`), IdempotencyKey: "order-42"}
	_, _, err := jobstore.New(e.pool).Accept(ctx, keyed)
	require.NoError(t, err)

	status, body := e.call(t, "GET", "/admin/v1/jobs/"+jobID, "")
	require.Equal(t, http.StatusOK, status, body)
	require.Equal(t, "client-7", body["client_id"])
	require.Equal(t, "dead_lettered", body["status"])
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", body["trace_id"])
	require.Equal(t, map[string]any{"text": "lookup"}, body["payload"])
	var types []string
	for _, ev := range body["timeline"].([]any) {
		types = append(types, ev.(map[string]any)["type"].(string))
	}
	require.Equal(t, "accepted", types[0])
	require.Contains(t, types, "dead_lettered")
	history := body["history"].([]any)
	require.Len(t, history, 1)
	require.Equal(t, "db down: connection refused", history[0].(map[string]any)["error"], "the operators' detail")
	require.Len(t, body["dead_letters"].([]any), 1)

	status, body = e.call(t, "GET", "/admin/v1/jobs?client=client-9&idempotency_key=order-42", "")
	require.Equal(t, http.StatusOK, status, body)
	require.Equal(t, keyed.ID, body["id"])
	require.Equal(t, "order-42", body["idempotency_key"])
	require.Empty(t, body["dead_letters"])

	for path, want := range map[string]int{
		"/admin/v1/jobs/" + uuid.NewString():                  http.StatusNotFound,
		"/admin/v1/jobs/not-a-uuid":                           http.StatusNotFound,
		"/admin/v1/jobs?client=client-9&idempotency_key=nope": http.StatusNotFound,
		"/admin/v1/jobs?client=client-9":                      http.StatusBadRequest,
		"/admin/v1/jobs?idempotency_key=order-42&extra=1":     http.StatusBadRequest,
		"/admin/v1/dead-letters?job=not-a-uuid":               http.StatusBadRequest,
	} {
		status, body := e.call(t, "GET", path, "")
		require.Equal(t, want, status, "%s: %v", path, body)
	}
	status, body = e.call(t, "GET", "/admin/v1/dead-letters?job="+jobID, "")
	require.Equal(t, http.StatusOK, status, body)
	require.Len(t, items(t, body), 1, "the job's dead letters")
	status, _ = e.call(t, "GET", "/admin/v1/jobs/"+jobID, "", "X-Test-Scopes", adminapi.ScopeAudit)
	require.Equal(t, http.StatusForbidden, status, "the lookup needs dead-letters:read")
	require.Equal(t, 1, countRows(t, e, `SELECT count(*) FROM admin_audit WHERE action = 'jobs.get' AND target = '`+keyed.ID+`' AND outcome = 'ok'`))
}

func countRows(t *testing.T, e *env, query string) int {
	t.Helper()
	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(), query).Scan(&n))
	return n
}
