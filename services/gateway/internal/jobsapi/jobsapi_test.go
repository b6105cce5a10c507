package jobsapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/callbacks"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/jobcatalog"
	"github.com/switchyard/switchyard/libs/jobmessage"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/outbox"
	"github.com/switchyard/switchyard/libs/problem"
	"github.com/switchyard/switchyard/services/gateway/internal/jobsapi"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

const catalogDoc = `
job_types:
  switchyard-callback:
    handler: switchyard-callback
  text-stats:
    handler: text-stats
    max_body_bytes: 1024
    schema:
      type: object
      required: [text]
      additionalProperties: false
      properties:
        text: {type: string, maxLength: 100}
  open:
    handler: open
`

func testCatalog(t testing.TB) *jobcatalog.Catalog {
	t.Helper()
	c, err := jobcatalog.Parse([]byte(catalogDoc))
	require.NoError(t, err)
	return c
}

// headerClient is the header headerAuth trusts.
const headerClient = "X-Test-Client"

// headerAuth is a test authenticator: the caller is whoever the
// X-Test-Client header names. (The real one, libs/accesstoken, is tested
// against the token service in its own package and the e2e tests.)
type headerAuth struct{}

func (headerAuth) Authenticate(r *http.Request) (authn.Identity, error) {
	id := r.Header.Get(headerClient)
	if id == "" {
		return authn.Identity{}, authn.Fail(authn.ErrNoCredentials, "missing", "no "+headerClient)
	}
	if strings.ContainsAny(id, " \t") {
		return authn.Identity{}, authn.Fail(authn.ErrUnauthenticated, "malformed", "bad "+headerClient)
	}
	return authn.Identity{ClientID: id, Scopes: []string{"jobs:submit"}}, nil
}

// newServer runs the gateway's HTTP stack (shared middleware, problem
// errors, a header authenticator, jobs API) over store.
func newServer(t testing.TB, store jobsapi.Store, publicURL string, configure ...func(*jobsapi.API)) *httptest.Server {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	e := httpserver.NewEcho(logger)
	api := jobsapi.New(store, testCatalog(t), publicURL)
	for _, fn := range configure {
		fn(api)
	}
	api.Register(e.Echo, authn.Middleware(headerAuth{}, logger))
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv
}

type env struct {
	pool *pgxpool.Pool
	srv  *httptest.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pool := stacktest.NewPool(t)
	return &env{pool: pool, srv: newServer(t, jobstore.New(pool), "", func(a *jobsapi.API) {
		a.Callbacks = callbacks.NewHostPolicy(callbacks.NewStore(pool), 0)
	})}
}

type call struct {
	method, path, body string
	header             map[string]string
}

func (e *env) do(t *testing.T, c call) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(c.method, e.srv.URL+c.path, strings.NewReader(c.body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(headerClient, "client-a")
	for k, v := range c.header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var body map[string]any
	if len(raw) > 0 {
		require.NoError(t, json.Unmarshal(raw, &body), string(raw))
	}
	return resp, body
}

func (e *env) rows(t *testing.T) (jobsN, outboxN int) {
	t.Helper()
	require.NoError(t, e.pool.QueryRow(context.Background(),
		`SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM watermill_outbox)`).Scan(&jobsN, &outboxN))
	return jobsN, outboxN
}

func TestBadInputIsRefusedAndNothingIsWritten(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	big := `{"text":"` + strings.Repeat("a", 2<<20) + `"}`
	tests := []struct {
		name   string
		call   call
		status int
		kind   problem.Kind
	}{
		{"malformed JSON", call{"POST", "/v1/jobs/text-stats", `{"text": "x"`, nil}, 400, problem.MalformedJSON},
		{"trailing garbage", call{"POST", "/v1/jobs/text-stats", `{"text":"x"} {}`, nil}, 400, problem.MalformedJSON},
		{"empty body", call{"POST", "/v1/jobs/text-stats", ``, nil}, 400, problem.MalformedJSON},
		{"invalid UTF-8", call{"POST", "/v1/jobs/text-stats", "{\"text\":\"\xff\"}", nil}, 400, problem.MalformedJSON},
		{"character SQS cannot carry", call{"POST", "/v1/jobs/open", "{\"x\":\"\uffff\"}", nil}, 400, problem.MalformedJSON},
		{"wrong content type", call{"POST", "/v1/jobs/text-stats", `{"text":"x"}`, map[string]string{"Content-Type": "text/plain"}}, 415, problem.UnsupportedMedia},
		{"no content type", call{"POST", "/v1/jobs/text-stats", `{"text":"x"}`, map[string]string{"Content-Type": ""}}, 415, problem.UnsupportedMedia},
		{"unknown job type", call{"POST", "/v1/jobs/nope", `{}`, nil}, 404, problem.UnknownJobType},
		{"nested 33 deep", call{"POST", "/v1/jobs/open", `{"x":` + strings.Repeat("[", 32) + strings.Repeat("]", 32) + `}`, nil}, 400, problem.JSONTooDeep},
		{"2 MiB body", call{"POST", "/v1/jobs/text-stats", big, nil}, 413, problem.PayloadTooLarge},
		{"schema violation", call{"POST", "/v1/jobs/text-stats", `{"txt":"x"}`, nil}, 422, problem.ValidationFailed},
		{"not an object", call{"POST", "/v1/jobs/open", `[1,2]`, nil}, 422, problem.ValidationFailed},
		{"bad idempotency key", call{"POST", "/v1/jobs/text-stats", `{"text":"x"}`, map[string]string{"Idempotency-Key": "has space"}}, 400, problem.InvalidParameter},
		{"non-UUID job id", call{"GET", "/v1/jobs/not-a-uuid", ``, nil}, 400, problem.InvalidParameter},
		{"braced UUID", call{"GET", "/v1/jobs/{" + uuid.NewString() + "}", ``, nil}, 400, problem.InvalidParameter},
		{"unknown job", call{"GET", "/v1/jobs/" + uuid.NewString(), ``, nil}, 404, problem.JobNotFound},
		{"no identity", call{"POST", "/v1/jobs/text-stats", `{"text":"x"}`, map[string]string{headerClient: ""}}, 401, problem.Unauthorized},
		{"bad identity", call{"POST", "/v1/jobs/text-stats", `{"text":"x"}`, map[string]string{headerClient: "a b"}}, 401, problem.InvalidToken},
		{"unknown path", call{"GET", "/v2/anything", ``, nil}, 404, problem.NotFound},
		{"wrong method", call{"PUT", "/v1/jobs/" + uuid.NewString(), ``, nil}, 405, problem.MethodNotAllowed},
		{"delay and time", call{"POST", "/v1/jobs/text-stats", `{"text":"x"}`, map[string]string{jobsapi.HeaderDelay: "5", jobsapi.HeaderRunAt: "2030-01-01T00:00:00Z"}}, 400, problem.InvalidParameter},
		{"bad delay", call{"POST", "/v1/jobs/text-stats", `{"text":"x"}`, map[string]string{jobsapi.HeaderDelay: "soon"}}, 400, problem.InvalidParameter},
		{"negative delay", call{"POST", "/v1/jobs/text-stats", `{"text":"x"}`, map[string]string{jobsapi.HeaderDelay: "-5m"}}, 400, problem.InvalidParameter},
		{"delay beyond the horizon", call{"POST", "/v1/jobs/text-stats", `{"text":"x"}`, map[string]string{jobsapi.HeaderDelay: "721h"}}, 400, problem.InvalidParameter},
		{"seconds beyond the horizon", call{"POST", "/v1/jobs/text-stats", `{"text":"x"}`, map[string]string{jobsapi.HeaderDelay: "2592001"}}, 400, problem.InvalidParameter},
		{"bad time", call{"POST", "/v1/jobs/text-stats", `{"text":"x"}`, map[string]string{jobsapi.HeaderRunAt: "tomorrow"}}, 400, problem.InvalidParameter},
		{"time beyond the horizon", call{"POST", "/v1/jobs/text-stats", `{"text":"x"}`, map[string]string{jobsapi.HeaderRunAt: "2099-01-01T00:00:00Z"}}, 400, problem.InvalidParameter},
		{"cancel a non-UUID", call{"POST", "/v1/jobs/nope/cancel", ``, nil}, 400, problem.InvalidParameter},
		{"cancel an unknown job", call{"DELETE", "/v1/jobs/" + uuid.NewString(), ``, nil}, 404, problem.JobNotFound},
		{"unknown listing filter", call{"GET", "/v1/jobs?colour=red", ``, nil}, 400, problem.InvalidParameter},
		{"repeated listing filter", call{"GET", "/v1/jobs?type=open&type=text-stats", ``, nil}, 400, problem.InvalidParameter},
		{"unknown status", call{"GET", "/v1/jobs?status=done", ``, nil}, 400, problem.InvalidParameter},
		{"bad type name", call{"GET", "/v1/jobs?type=Not%20A%20Type", ``, nil}, 400, problem.InvalidParameter},
		{"limit too large", call{"GET", "/v1/jobs?limit=101", ``, nil}, 400, problem.InvalidParameter},
		{"limit zero", call{"GET", "/v1/jobs?limit=0", ``, nil}, 400, problem.InvalidParameter},
		{"bad time", call{"GET", "/v1/jobs?created_after=yesterday", ``, nil}, 400, problem.InvalidParameter},
		{"forged cursor", call{"GET", "/v1/jobs?cursor=bm90LWEtY3Vyc29y", ``, nil}, 400, problem.InvalidParameter},
		{"cursor not base64", call{"GET", "/v1/jobs?cursor=%25%25", ``, nil}, 400, problem.InvalidParameter},
	}
	for _, tt := range tests {
		resp, body := e.do(t, tt.call)
		require.Equal(t, tt.status, resp.StatusCode, tt.name)
		require.Equal(t, problem.ContentType, resp.Header.Get("Content-Type"), tt.name)
		require.Equal(t, tt.kind.Type(), body["type"], tt.name)
		require.EqualValues(t, tt.status, body["status"], tt.name)
		require.NotEmpty(t, body["request_id"], tt.name)
		require.Equal(t, resp.Header.Get(httpserver.HeaderRequestID), body["request_id"], tt.name)
		if tt.kind == problem.Unauthorized {
			require.Equal(t, `Bearer realm="switchyard"`, resp.Header.Get("WWW-Authenticate"), tt.name)
		}
		if tt.kind == problem.InvalidToken {
			require.Equal(t, `Bearer realm="switchyard", error="invalid_token"`, resp.Header.Get("WWW-Authenticate"), tt.name)
		}
	}
	jobsN, outboxN := e.rows(t)
	require.Zero(t, jobsN, "no job written")
	require.Zero(t, outboxN, "no message written")

	_, body := e.do(t, call{"POST", "/v1/jobs/text-stats", `{"txt":"x"}`, nil})
	require.NotEmpty(t, body["errors"], "schema violations are listed")
}

func TestAcceptAndStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tp := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	resp, body := e.do(t, call{"POST", "/v1/jobs/text-stats", `{"text":"hello"}`,
		map[string]string{httpserver.HeaderRequestID: "my-request-1", "traceparent": tp}})
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	id, _ := body["id"].(string)
	_, err := uuid.Parse(id)
	require.NoError(t, err)
	require.Equal(t, "accepted", body["status"])
	require.Equal(t, "/v1/jobs/"+id, body["status_url"])
	require.Equal(t, "/v1/jobs/"+id, resp.Header.Get("Location"))
	require.Equal(t, "my-request-1", resp.Header.Get(httpserver.HeaderRequestID), "a sane request id is echoed")

	var rid, trace string
	var scopes []string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT request_id, traceparent, client_scopes FROM jobs WHERE id = $1`, id).Scan(&rid, &trace, &scopes))
	require.Equal(t, "my-request-1", rid)
	require.Equal(t, []string{"jobs:submit"}, scopes, "the caller's scopes are recorded on the job")
	require.Equal(t, tp, trace)
	claim, err := outbox.ClaimBatch(context.Background(), e.pool, 10)
	require.NoError(t, err)
	require.Len(t, claim.Rows, 1)
	require.Equal(t, tp, claim.Rows[0].Message.Metadata[jobmessage.TraceParent], "trace context travels with the message")
	claim.Release(context.Background())

	resp, body = e.do(t, call{"GET", "/v1/jobs/" + id, ``, nil})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	require.Equal(t, "text-stats", body["type"])
	require.Equal(t, "accepted", body["status"])
	require.EqualValues(t, 0, body["attempts"])
	require.NotContains(t, body, "next_attempt_at")
	require.Len(t, body["events"], 1)
	require.Equal(t, "accepted", body["events"].([]any)[0].(map[string]any)["type"])

	// A worker's failed attempt shows: attempts, the error, the next try.
	store := jobstore.New(e.pool)
	attempt, err := store.MarkProcessing(context.Background(), id, "m")
	require.NoError(t, err)
	next := time.Now().Add(time.Minute).UTC().Truncate(time.Second)
	tx, err := e.pool.Begin(context.Background())
	require.NoError(t, err)
	_, err = jobstore.RecordFailure(context.Background(), tx, jobstore.Failure{JobID: id, Attempt: attempt, MessageID: "m",
		Error:      `calling target: Post "http://10.1.2.3:8080/hook?token=internal": connection refused`,
		ErrorClass: "target_unreachable", ClientError: "the target could not be reached"})
	require.NoError(t, err)
	require.NoError(t, jobstore.ScheduleRetry(context.Background(), tx, id, 1, next))
	require.NoError(t, tx.Commit(context.Background()))
	_, body = e.do(t, call{"GET", "/v1/jobs/" + id, ``, nil})
	require.Equal(t, "failed", body["status"])
	require.EqualValues(t, 1, body["attempts"])
	// The client sees the message written for it, never the detail
	// (an internal address and a token in the target's URL).
	require.Equal(t, "the target could not be reached", body["last_error"])
	require.Equal(t, "target_unreachable", body["last_error_class"])
	require.Equal(t, next.Format(time.RFC3339), body["next_attempt_at"])
	var timeline []string
	for _, ev := range body["events"].([]any) {
		timeline = append(timeline, ev.(map[string]any)["type"].(string))
	}
	require.Equal(t, []string{"accepted", "attempt_started", "attempt_failed", "retry_scheduled"}, timeline)
	failed := body["events"].([]any)[2].(map[string]any)
	require.Equal(t, "the target could not be reached", failed["error"])
	require.Equal(t, "target_unreachable", failed["error_class"])
	require.EqualValues(t, 1, failed["attempt"])
	require.Equal(t, next.Format(time.RFC3339), body["events"].([]any)[3].(map[string]any)["next_attempt_at"])

	resp, _ = e.do(t, call{"GET", "/v1/jobs/" + id, ``, map[string]string{headerClient: "client-b"}})
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "a client sees only its own jobs")

	resp, _ = e.do(t, call{"POST", "/v1/jobs/open", `{}`, map[string]string{httpserver.HeaderRequestID: "bad id with spaces"}})
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	require.Len(t, resp.Header.Get(httpserver.HeaderRequestID), 32, "an insane request id is replaced")
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key := map[string]string{"Idempotency-Key": "order-42"}
	resp, first := e.do(t, call{"POST", "/v1/jobs/text-stats", `{"text":"a"}`, key})
	require.Equal(t, http.StatusAccepted, resp.StatusCode)

	resp, again := e.do(t, call{"POST", "/v1/jobs/text-stats", `{"text":"a"}`, key})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "true", resp.Header.Get("Idempotent-Replayed"))
	require.Equal(t, first["id"], again["id"])

	resp, body := e.do(t, call{"POST", "/v1/jobs/text-stats", `{"text":"b"}`, key})
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
	require.Equal(t, problem.IdempotencyKeyReused.Type(), body["type"])

	resp, other := e.do(t, call{"POST", "/v1/jobs/text-stats", `{"text":"a"}`,
		map[string]string{"Idempotency-Key": "order-42", headerClient: "client-b"}})
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	require.NotEqual(t, first["id"], other["id"])

	jobsN, outboxN := e.rows(t)
	require.Equal(t, 2, jobsN)
	require.Equal(t, 2, outboxN)
}

func TestAbsoluteStatusURL(t *testing.T) {
	t.Parallel()
	pool := stacktest.NewPool(t)
	e := &env{pool: pool, srv: newServer(t, jobstore.New(pool), "https://api.example.com/")}
	resp, body := e.do(t, call{"POST", "/v1/jobs/open", `{}`, nil})
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	require.Equal(t, "https://api.example.com/v1/jobs/"+body["id"].(string), body["status_url"])
}
