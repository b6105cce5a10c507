package e2e_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const lifecycleRoutes = routesFile + `
  - {method: GET, path: "/v1/jobs", mode: job-list, scopes: [jobs:read]}
  - {method: POST, path: "/v1/jobs/{id}/cancel", mode: job-cancel, scopes: [jobs:submit]}
  - {method: DELETE, path: "/v1/jobs/{id}", mode: job-cancel, scopes: [jobs:submit]}
`

// jobLifecycle is a client's and an operator's round trip through the
// real services: jobs listed page by page, a job cancelled before a
// worker can run it (the worker stopped) and its message dropped when the
// worker returns, a finished one refused 409, and the retention janitor
// dry-run and run with the CLI through the replay service: finished jobs
// past their (shortened) retention go, everything else stays.
func jobLifecycle(t *testing.T, sqsServer string) {
	p := startPlatformWith(t, platformOptions{
		services:    []string{"tokens", "relay", "worker", "replay", "gateway"},
		routes:      lifecycleRoutes,
		env:         []string{"SWITCHYARD_RETENTION_JOBS=1h", "SWITCHYARD_RETENTION_INTERVAL=1h"},
		sqsEndpoint: sqsServer,
	})
	p.addAdmin()
	client := http.Client{Timeout: 10 * time.Second}
	var ids []string
	for range 25 {
		id, err := p.submit(client, "lister", 3)
		require.NoError(t, err)
		ids = append(ids, id)
	}
	for _, id := range ids {
		require.NoError(t, p.awaitSucceeded(client, "lister", id, time.Minute))
	}

	// Listing: newest first, 10 at a time, following next_url.
	auth := "Bearer " + p.bearer("lister")
	var listed []string
	path := "/v1/jobs?limit=10&status=succeeded"
	for pages := 0; path != ""; pages++ {
		require.Less(t, pages, 3)
		r := p.call("GET", path, auth, "")
		require.Equal(t, http.StatusOK, r.status, r.body)
		for _, j := range r.body["jobs"].([]any) {
			listed = append(listed, j.(map[string]any)["id"].(string))
		}
		path, _ = r.body["next_url"].(string)
	}
	require.Len(t, listed, 25)
	require.Equal(t, ids[24], listed[0], "newest first")
	require.Equal(t, ids[0], listed[24])
	r := p.call("GET", "/v1/jobs", "Bearer "+p.bearer("someone-else"), "")
	require.Equal(t, http.StatusOK, r.status)
	require.Empty(t, r.body["jobs"], "another client sees none of them")

	// A finished job cannot be cancelled.
	r = p.call("POST", "/v1/jobs/"+ids[0]+"/cancel", auth, "")
	require.Equal(t, http.StatusConflict, r.status, r.body)
	require.Equal(t, "urn:switchyard:problem:job-finished", r.body["type"])

	// With the worker stopped, a job waits; cancelled, it never runs.
	p.mu.Lock()
	worker := p.procs["worker"]
	p.mu.Unlock()
	require.NoError(t, worker.Stop(30*time.Second))
	waiting, err := p.submit(client, "lister", 4)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return p.count(`SELECT count(*) FROM jobs WHERE id = '`+waiting+`' AND status = 'queued'`) == 1
	}, 30*time.Second, 50*time.Millisecond, "the relay hands it to SQS")
	r = p.call("DELETE", "/v1/jobs/"+waiting, auth, "")
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Equal(t, "cancelled", r.body["status"])
	p.start("worker")
	require.Eventually(t, func() bool {
		n, _ := value(p.scrape("worker"), "switchyard_worker_messages_total", "job_type=text-stats", "outcome=cancelled")
		return n == 1
	}, 30*time.Second, 100*time.Millisecond, "the worker receives the message and drops it")
	r = p.call("GET", "/v1/jobs/"+waiting, auth, "")
	require.Equal(t, "cancelled", r.body["status"])
	require.EqualValues(t, 0, r.body["attempts"], "its handler never ran")
	require.Zero(t, p.count(`SELECT count(*) FROM demo_text_stats WHERE job_id = '`+waiting+`'`))

	// Retention: ten of the jobs finished two hours ago (past the 1 h
	// window); a dry run counts them, a run deletes them and nothing else.
	_, err = p.pool.Exec(t.Context(), `UPDATE jobs SET finished_at = now() - interval '2 hours' WHERE id = ANY($1::uuid[])`, ids[:10])
	require.NoError(t, err)
	out, stderr, code := p.adminCLI(adminActor, p.adminSecret, "retention", "--dry-run")
	require.Zero(t, code, stderr)
	t.Logf("switchyard retention --dry-run:\n%s", out)
	require.Regexp(t, `(?m)^jobs\s+1h0m0s after finishing \(job types may differ\)\s+10\s`, out)
	require.Equal(t, 26, p.count(`SELECT count(*) FROM jobs`), "a dry run deletes nothing")
	out, stderr, code = p.adminCLI(adminActor, p.adminSecret, "retention")
	require.Zero(t, code, stderr)
	require.Regexp(t, `(?m)^jobs\s+.*\s+10\s`, out)
	require.Equal(t, 16, p.count(`SELECT count(*) FROM jobs`))
	require.Zero(t, p.count(`SELECT count(*) FROM jobs WHERE id = ANY('{`+strings.Join(ids[:10], ",")+`}'::uuid[])`))
	r = p.call("GET", "/v1/jobs/"+ids[0], auth, "")
	require.Equal(t, http.StatusNotFound, r.status)
	r = p.admin("GET", "/admin/v1/audit?action=retention.*", "")
	require.Len(t, r.body["items"], 2, "both runs audited")
}

// scheduledJobsRunWhenDue runs jobs delayed by 5 s, 20 s and two days
// through the real services, with SQS's longest delay stood in for by
// 10 s (SWITCHYARD_RELAY_MAX_SQS_DELAY): the 5 s job goes to SQS at once
// with DelaySeconds, the 20 s one waits in the outbox until it is due
// within 10 s (as a 20-minute job waits for 15 minutes), and the two-day
// one, whose clock is then moved to 3 s ahead, too. Each must start no
// earlier than due and within the relay's poll interval (1 s) plus the
// worker's receive after.
func scheduledJobsRunWhenDue(t *testing.T, sqsServer string) {
	const poll = time.Second
	p := startPlatformWith(t, platformOptions{
		routes:      lifecycleRoutes,
		env:         []string{"SWITCHYARD_RELAY_MAX_SQS_DELAY=10s", "SWITCHYARD_RELAY_POLL_INTERVAL=" + poll.String()},
		sqsEndpoint: sqsServer,
	})
	auth := "Bearer " + p.bearer("scheduler")
	submit := func(delay string) string {
		r := p.call("POST", "/v1/jobs/text-stats", auth, `{"text":"due later"}`, "Switchyard-Delay", delay)
		require.Equal(t, http.StatusAccepted, r.status, r.body)
		require.Equal(t, "scheduled", r.body["status"])
		return r.body["id"].(string)
	}
	five, twenty, twoDays := submit("5s"), submit("20s"), submit("48h")
	require.Eventually(t, func() bool {
		return p.count(`SELECT count(*) FROM watermill_outbox`) == 2
	}, 10*time.Second, 50*time.Millisecond, "the 5 s job's message goes to SQS at once; the others wait in the outbox")
	require.Equal(t, 1, p.count(`SELECT count(*) FROM job_events WHERE type = 'queued' AND job_id = '`+five+`'`))
	// Two days ahead: move its clock to 3 s from now.
	_, err := p.pool.Exec(t.Context(), `
		WITH j AS (UPDATE jobs SET run_at = now() + interval '3 seconds' WHERE id = $1 RETURNING run_at)
		UPDATE watermill_outbox SET deliver_at = (SELECT run_at FROM j) WHERE payload::text LIKE '%' || $1 || '%'`, twoDays)
	require.NoError(t, err)

	for name, id := range map[string]string{"5 s": five, "20 s": twenty, "two days, moved": twoDays} {
		var lag float64
		require.Eventually(t, func() bool {
			return p.count(`SELECT count(*) FROM jobs WHERE id = '`+id+`' AND status = 'succeeded'`) == 1
		}, time.Minute, 100*time.Millisecond, name)
		require.NoError(t, p.pool.QueryRow(t.Context(), `SELECT extract(epoch FROM started_at - run_at) FROM jobs WHERE id = $1`, id).Scan(&lag))
		t.Logf("%s: started %.3f s after it was due", name, lag)
		require.GreaterOrEqual(t, lag, 0.0, "%s ran before it was due", name)
		require.Less(t, lag, (poll + 3*time.Second).Seconds(), "%s ran late", name)
	}
}

// cancellationRacesOnThePlatform submits 1,000 jobs from eight clients
// and cancels each at a random moment (0-300 ms) after its 202, while the
// worker processes them: every job ends exactly one of cancelled (with no
// effect) or succeeded (with one), and every cancel's answer agrees with
// the end: 200 cancelled, 409 succeeded, 202 (the job was processing)
// either: cancelled if the worker had not started its handler yet.
func cancellationRacesOnThePlatform(t *testing.T, sqsServer string) {
	const jobs, submitters = 1000, 8
	p := startPlatformWith(t, platformOptions{routes: lifecycleRoutes, sqsEndpoint: sqsServer})
	type outcome struct {
		id     string
		cancel int
	}
	results := make(chan outcome, jobs)
	var wg sync.WaitGroup
	for s := range submitters {
		client := fmt.Sprintf("racer-%d", s)
		auth := "Bearer " + p.bearer(client)
		wg.Go(func() {
			for i := s; i < jobs; i += submitters {
				r := p.call("POST", "/v1/jobs/text-stats", auth, fmt.Sprintf(`{"text":"race %d"}`, i))
				require.Equal(t, http.StatusAccepted, r.status, r.body)
				id := r.body["id"].(string)
				time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond) //nolint:forbidigo,gosec // the race's random moment, not a wait for a condition
				c := p.call("POST", "/v1/jobs/"+id+"/cancel", auth, "")
				results <- outcome{id, c.status}
			}
		})
	}
	wg.Wait()
	close(results)
	byAnswer := map[int][]string{}
	for o := range results {
		byAnswer[o.cancel] = append(byAnswer[o.cancel], o.id)
	}
	require.Eventually(t, func() bool {
		return p.count(`SELECT count(*) FROM jobs WHERE status NOT IN ('succeeded', 'cancelled')`) == 0
	}, 3*time.Minute, 200*time.Millisecond, "every job ends")
	tally := map[string]int{}
	for answer, ids := range byAnswer {
		list := "'{" + strings.Join(ids, ",") + "}'::uuid[]"
		cancelled := p.count(`SELECT count(*) FROM jobs WHERE status = 'cancelled' AND id = ANY(` + list + `)`)
		succeeded := p.count(`SELECT count(*) FROM jobs WHERE status = 'succeeded' AND id = ANY(` + list + `)`)
		require.Equal(t, len(ids), cancelled+succeeded)
		switch answer {
		case http.StatusOK:
			require.Equal(t, len(ids), cancelled, "a 200 means cancelled")
		case http.StatusConflict:
			require.Equal(t, len(ids), succeeded, "a 409 means the job ran")
		case http.StatusAccepted:
			// Asked while the job was processing: cancelled when the
			// worker had not started the handler yet, else it ran.
		default:
			t.Fatalf("%d cancels answered %d", len(ids), answer)
		}
		tally[fmt.Sprintf("%d -> cancelled", answer)] += cancelled
		tally[fmt.Sprintf("%d -> succeeded", answer)] += succeeded
	}
	require.Zero(t, p.count(`SELECT count(*) FROM demo_text_stats s JOIN jobs j ON j.id = s.job_id WHERE j.status = 'cancelled'`), "a cancelled job has no effect")
	require.Equal(t, p.count(`SELECT count(*) FROM jobs WHERE status = 'succeeded'`), p.count(`SELECT count(DISTINCT job_id) FROM demo_text_stats`))
	require.Equal(t, p.count(`SELECT count(*) FROM jobs WHERE status = 'succeeded'`), p.count(`SELECT count(*) FROM demo_text_stats`), "one effect each")
	t.Logf("cancel answers and ends: %v", tally)
	require.Positive(t, len(byAnswer[http.StatusOK]), "some cancels landed before the worker")
	require.Positive(t, len(byAnswer[http.StatusConflict]), "some came after the end")
}
