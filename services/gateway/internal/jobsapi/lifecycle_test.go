package jobsapi_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/callbacks"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/jobcatalog"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/problem"
	"github.com/switchyard/switchyard/services/gateway/internal/jobsapi"
)

func (e *env) submit(t *testing.T, client, jobType string) string {
	t.Helper()
	resp, body := e.do(t, call{"POST", "/v1/jobs/" + jobType, `{"text":"x"}`, map[string]string{headerClient: client}})
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	return body["id"].(string)
}

// pages follows next_url from path to the end and returns the ids, in
// order, and how many pages it took.
func (e *env) pages(t *testing.T, client, path string) (ids []string, pages int) {
	t.Helper()
	for path != "" {
		resp, body := e.do(t, call{"GET", path, ``, map[string]string{headerClient: client}})
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		pages++
		for _, j := range body["jobs"].([]any) {
			job := j.(map[string]any)
			require.Equal(t, "/v1/jobs/"+job["id"].(string), job["status_url"])
			ids = append(ids, job["id"].(string))
		}
		next, _ := body["next_url"].(string)
		if next != "" {
			require.Equal(t, "<"+next+`>; rel="next"`, resp.Header.Get("Link"))
		}
		path = next
	}
	return ids, pages
}

func TestListingPagesNewestFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var mine []string
	for i := range 45 {
		jobType := "text-stats"
		if i%3 == 0 {
			jobType = "open"
		}
		mine = append(mine, e.submit(t, "client-a", jobType))
	}
	other := e.submit(t, "client-b", "text-stats")

	ids, pages := e.pages(t, "client-a", "/v1/jobs?limit=20")
	require.Equal(t, 3, pages)
	newestFirst := make([]string, len(mine))
	for i, id := range mine {
		newestFirst[len(mine)-1-i] = id
	}
	require.Equal(t, newestFirst, ids, "every job once, newest first")
	require.NotContains(t, ids, other, "another client's job is never listed")

	ids, _ = e.pages(t, "client-a", "/v1/jobs?type=open&limit=7")
	require.Len(t, ids, 15)

	// A cancelled one, by status; several statuses comma-separated.
	resp, _ := e.do(t, call{"POST", "/v1/jobs/" + mine[4] + "/cancel", ``, nil})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	ids, _ = e.pages(t, "client-a", "/v1/jobs?status=cancelled")
	require.Equal(t, []string{mine[4]}, ids)
	ids, _ = e.pages(t, "client-a", "/v1/jobs?status=accepted,cancelled&limit=100")
	require.Len(t, ids, 45)

	// A time window: the jobs created from the tenth on.
	var tenth time.Time
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT created_at FROM jobs WHERE id = $1`, mine[9]).Scan(&tenth))
	ids, _ = e.pages(t, "client-a", "/v1/jobs?limit=100&created_after="+url.QueryEscape(tenth.Format(time.RFC3339Nano)))
	require.Subset(t, ids, mine[9:])
	ids, _ = e.pages(t, "client-a", "/v1/jobs?limit=100&created_before="+url.QueryEscape(tenth.Format(time.RFC3339Nano)))
	require.NotContains(t, ids, mine[9])

	// A job that was deleted under a cursor does not break the listing.
	resp, body := e.do(t, call{"GET", "/v1/jobs?limit=5", ``, nil})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	_, err := e.pool.Exec(context.Background(), `DELETE FROM jobs WHERE id = $1`, newestFirst[4])
	require.NoError(t, err)
	ids, _ = e.pages(t, "client-a", body["next_url"].(string))
	require.Equal(t, newestFirst[5:], ids)
}

func TestCancelOverHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.submit(t, "client-a", "text-stats")

	resp, body := e.do(t, call{"POST", "/v1/jobs/" + id + "/cancel", ``, map[string]string{headerClient: "client-b"}})
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "another client's job")
	require.Equal(t, problem.JobNotFound.Type(), body["type"])

	resp, body = e.do(t, call{"POST", "/v1/jobs/" + id + "/cancel", ``, nil})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "cancelled", body["status"])
	require.NotEmpty(t, body["cancel_requested_at"])
	require.NotEmpty(t, body["finished_at"])
	events := body["events"].([]any)
	require.Equal(t, "cancelled", events[len(events)-1].(map[string]any)["type"])

	resp, body = e.do(t, call{"DELETE", "/v1/jobs/" + id, ``, nil})
	require.Equal(t, http.StatusOK, resp.StatusCode, "cancelling twice is idempotent")
	require.Equal(t, "cancelled", body["status"])

	running := e.submit(t, "client-a", "text-stats")
	_, err := e.pool.Exec(context.Background(), `UPDATE jobs SET status = 'processing' WHERE id = $1`, running)
	require.NoError(t, err)
	resp, body = e.do(t, call{"DELETE", "/v1/jobs/" + running, ``, nil})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "a running job is marked")
	require.Equal(t, "processing", body["status"])
	require.NotEmpty(t, body["cancel_requested_at"])

	for _, status := range []string{"succeeded", "dead_lettered"} {
		done := e.submit(t, "client-a", "text-stats")
		_, err := e.pool.Exec(context.Background(), `UPDATE jobs SET status = $2 WHERE id = $1`, done, status)
		require.NoError(t, err)
		resp, body = e.do(t, call{"POST", "/v1/jobs/" + done + "/cancel", ``, nil})
		require.Equal(t, http.StatusConflict, resp.StatusCode, status)
		require.Equal(t, problem.JobFinished.Type(), body["type"])
	}
	resp, _ = e.do(t, call{"POST", "/v1/jobs/" + uuid.NewString() + "/cancel", ``, nil})
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// TestScheduling: a delay or a time schedules the job (202 scheduled, with
// run_at, in the status and the listing); a time in the past runs at
// once; the same Idempotency-Key with other scheduling is refused.
func TestScheduling(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	before := time.Now()
	resp, body := e.do(t, call{"POST", "/v1/jobs/text-stats", `{"text":"later"}`,
		map[string]string{jobsapi.HeaderDelay: "90", "Idempotency-Key": "sched-1"}})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	require.Equal(t, "scheduled", body["status"])
	runAt, err := time.Parse(time.RFC3339Nano, body["run_at"].(string))
	require.NoError(t, err)
	require.WithinDuration(t, before.Add(90*time.Second), runAt, 2*time.Second)
	id := body["id"].(string)

	_, status := e.do(t, call{"GET", "/v1/jobs/" + id, ``, nil})
	require.Equal(t, "scheduled", status["status"])
	require.Equal(t, body["run_at"], status["run_at"])
	_, list := e.do(t, call{"GET", "/v1/jobs?status=scheduled", ``, nil})
	require.Len(t, list["jobs"], 1)

	resp, again := e.do(t, call{"POST", "/v1/jobs/text-stats", `{"text":"later"}`,
		map[string]string{jobsapi.HeaderDelay: "90", "Idempotency-Key": "sched-1"}})
	require.Equal(t, http.StatusOK, resp.StatusCode, "the same request again: the same job")
	require.Equal(t, id, again["id"])
	resp, _ = e.do(t, call{"POST", "/v1/jobs/text-stats", `{"text":"later"}`,
		map[string]string{jobsapi.HeaderDelay: "120", "Idempotency-Key": "sched-1"}})
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "the key with another delay is another request")

	resp, body = e.do(t, call{"POST", "/v1/jobs/text-stats", `{"text":"at"}`,
		map[string]string{jobsapi.HeaderRunAt: "2026-01-01T00:00:00Z"}})
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	require.Equal(t, "accepted", body["status"], "a time in the past runs at once")
	require.Nil(t, body["run_at"])

	resp, body = e.do(t, call{"POST", "/v1/jobs/" + id + "/cancel", ``, nil})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "cancelled", body["status"], "a scheduled job is cancelled at once")
}

// TestCallbackURL: a callback URL on a host of the client's allow-list is
// accepted and shown on the job; any other host is a 422 problem, a
// malformed URL a 400, and neither writes anything; the URL is part of the
// request an Idempotency-Key names.
func TestCallbackURL(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	_, err := e.pool.Exec(ctx, `INSERT INTO oauth_clients (client_id, secret_hash) VALUES ('client-a', 'x')`)
	require.NoError(t, err)
	require.NoError(t, callbacks.NewStore(e.pool).SetHosts(ctx, "client-a", []string{"hooks.example.com"}))

	for raw, want := range map[string]string{
		"https://evil.example.com/steal":  "urn:switchyard:problem:callback-not-allowed",
		"https://hooks.example.com.evil/": "urn:switchyard:problem:callback-not-allowed",
		"ftp://hooks.example.com/":        "urn:switchyard:problem:invalid-parameter",
		"https://u:p@hooks.example.com/":  "urn:switchyard:problem:invalid-parameter",
	} {
		resp, body := e.do(t, call{"POST", "/v1/jobs/text-stats", `{"text":"x"}`, map[string]string{callbacks.Header: raw}})
		require.Equal(t, want, body["type"], raw)
		if strings.HasSuffix(want, "callback-not-allowed") {
			require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
			require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
		} else {
			require.Equal(t, http.StatusBadRequest, resp.StatusCode)
		}
	}
	jobsN, outboxN := e.rows(t)
	require.Zero(t, jobsN+outboxN, "a refused callback writes nothing")

	const cbURL = "https://hooks.example.com/switchyard?tenant=7"
	resp, body := e.do(t, call{"POST", "/v1/jobs/text-stats", `{"text":"x"}`,
		map[string]string{callbacks.Header: cbURL, "Idempotency-Key": "cb-1"}})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	_, status := e.do(t, call{"GET", "/v1/jobs/" + body["id"].(string), ``, nil})
	require.Equal(t, cbURL, status["callback_url"])
	resp, _ = e.do(t, call{"POST", "/v1/jobs/text-stats", `{"text":"x"}`,
		map[string]string{callbacks.Header: "https://hooks.example.com/other", "Idempotency-Key": "cb-1"}})
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "the key with another callback is another request")
	resp, _ = e.do(t, call{"POST", "/v1/jobs/text-stats", `{"text":"x"}`,
		map[string]string{callbacks.Header: cbURL, headerClient: "client-b"}})
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "another client's allow-list is its own")
}

// TestCallbackURLWhenCallbacksAreNotDeclared: a deployment whose job types
// file does not declare switchyard-callback has no worker for callbacks, so
// a submission naming one is refused rather than accepted and never called.
func TestCallbackURLWhenCallbacksAreNotDeclared(t *testing.T) {
	t.Parallel()
	pool := stacktest.NewPool(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `INSERT INTO oauth_clients (client_id, secret_hash) VALUES ('client-a', 'x')`)
	require.NoError(t, err)
	require.NoError(t, callbacks.NewStore(pool).SetHosts(ctx, "client-a", []string{"hooks.example.com"}))
	catalog, err := jobcatalog.Parse([]byte("job_types:\n  text-stats:\n    handler: text-stats\n"))
	require.NoError(t, err)
	e := httpserver.NewEcho(slog.New(slog.NewTextHandler(io.Discard, nil)))
	api := jobsapi.New(jobstore.New(pool), catalog, "")
	api.Callbacks = callbacks.NewHostPolicy(callbacks.NewStore(pool), 0)
	api.Register(e.Echo, authn.Middleware(headerAuth{}, slog.New(slog.NewTextHandler(io.Discard, nil))))
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	env := &env{pool: pool, srv: srv}

	resp, body := env.do(t, call{"POST", "/v1/jobs/text-stats", `{"text":"x"}`,
		map[string]string{callbacks.Header: "https://hooks.example.com/cb"}})
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, body)
	require.Equal(t, "urn:switchyard:problem:callback-not-allowed", body["type"])
	require.Contains(t, body["detail"], "not enabled")
	jobsN, outboxN := env.rows(t)
	require.Zero(t, jobsN+outboxN, "a refused callback writes nothing")

	resp, body = env.do(t, call{"POST", "/v1/jobs/text-stats", `{"text":"x"}`, nil})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "without the header the job is accepted: %v", body)
}
