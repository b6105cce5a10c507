package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

const (
	totalJobs = 2000
	clients   = 16
	// window is how many unfinished jobs one client keeps: it submits,
	// and once it has this many outstanding it polls the oldest until it
	// succeeds. Besides being how real clients behave, this keeps the SQS
	// queue shallow: moto (the SQS server here) scans the whole queue on
	// every call, so a 2,000-deep queue would measure moto, not Switchyard.
	window = 4
)

// twoThousandJobs submits 2,000 jobs over HTTP from 16 concurrent
// clients, each watching its jobs' status, and checks that every one
// succeeds with its effect applied once.
func twoThousandJobs(t *testing.T, sqsServer string) {
	p := startPlatformWith(t, platformOptions{sqsEndpoint: sqsServer})
	start := time.Now()
	ids := submitAll(t, p, nil)
	t.Logf("submitted %d jobs in %s", len(ids), time.Since(start))
	waitAllSucceeded(t, p, len(ids), 5*time.Minute)
	t.Logf("all %d jobs succeeded %s after the first submission (%.0f jobs/s end to end)",
		len(ids), time.Since(start), float64(len(ids))/time.Since(start).Seconds())
	assertExactlyOnce(t, p, ids)
}

// fiveThousandConcurrentJobsWithPairsAndCrashes submits 5,000 jobs at
// once from 64 clients, with no window: the accept route's shared commits
// carry many submissions each. 200 Idempotency-Keys are each sent twice at
// the same moment, as a client retrying a request it thinks was lost
// would, so that pairs land in the same commit or in overlapping ones. The
// relay is killed with SIGKILL a third of the way into the submissions and
// the worker once half of the jobs have succeeded. Every 202 must have
// exactly one job and one effect, each pair one job (a 202 and a 200
// naming it), and nothing may be lost.
func fiveThousandConcurrentJobsWithPairsAndCrashes(t *testing.T, sqsServer string) {
	const (
		submissions = 5000
		pairs       = 200
		submitters  = 64
	)
	// The SQS server here (moto) scans a queue on every call, so its calls
	// slow with the queue's depth (a receive of 10 took 2.2 s at 5,000
	// deep, 4 ms when empty) until clients time out and it wedges: the
	// relay is paced below the worker's rate, and the backlog waits in
	// the outbox, where it costs nothing.
	p := startPlatformWith(t, platformOptions{sqsEndpoint: sqsServer, env: []string{"SWITCHYARD_RELAY_MAX_RATE=30", "SWITCHYARD_RELAY_LOOPS=1"}})
	start := time.Now()
	type answer struct {
		id     string
		status int
	}
	answers := make([]answer, submissions)
	var submitted atomic.Int64
	var relayKilled atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, submitters)
	client := http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: submitters}}
	// Submission n < 2*pairs is one of pair n/2 (key pair-<n/2>, the same
	// payload for both); the rest are plain. Submitter c sends n = c, c+64,
	// ...: the two members of a pair go from two submitters at once.
	for c := range submitters {
		wg.Go(func() {
			for n := c; n < submissions; n += submitters {
				clientID, key, text := fmt.Sprintf("client-%02d", n%4), "", fmt.Sprintf("job %d: lorem ipsum dolor sit amet", n)
				if n < 2*pairs {
					clientID, key, text = "client-00", fmt.Sprintf("pair-%d", n/2), fmt.Sprintf("pair %d: lorem ipsum dolor sit amet", n/2)
				}
				id, status, err := p.submitKeyed(client, clientID, key, text)
				if err != nil {
					errs <- fmt.Errorf("submission %d: %w", n, err)
					return
				}
				answers[n] = answer{id, status}
				if submitted.Add(1) >= submissions/3 && relayKilled.CompareAndSwap(false, true) {
					p.crash("relay")
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	t.Logf("%d submissions answered in %s", submissions, time.Since(start))

	ids := map[string]bool{}
	for n := 2 * pairs; n < submissions; n++ {
		require.Equal(t, http.StatusAccepted, answers[n].status, "submission %d", n)
		require.False(t, ids[answers[n].id], "submission %d answered with another submission's job", n)
		ids[answers[n].id] = true
	}
	for k := range pairs {
		a, b := answers[2*k], answers[2*k+1]
		require.Equal(t, a.id, b.id, "pair %d: both submissions name one job", k)
		require.ElementsMatch(t, []int{http.StatusAccepted, http.StatusOK}, []int{a.status, b.status}, "pair %d: one created it, one was answered with it", k)
		require.False(t, ids[a.id])
		ids[a.id] = true
	}
	require.Len(t, ids, submissions-pairs)
	batches := p.scrape("gateway")["switchyard_accept_batch_size"].GetMetric()[0].GetHistogram()
	t.Logf("the gateway accepted %.0f submissions in %d statements (%.1f per commit)", batches.GetSampleSum(), batches.GetSampleCount(),
		batches.GetSampleSum()/float64(max(batches.GetSampleCount(), 1)))

	// Kill the worker once it is well into the backlog, with handlers
	// running.
	require.Eventually(t, func() bool {
		return p.count(`SELECT count(*) FROM jobs WHERE status = 'succeeded'`) >= len(ids)/2
	}, 10*time.Minute, 20*time.Millisecond)
	inFlight := 0
	for deadline := time.Now().Add(5 * time.Second); inFlight == 0 && time.Now().Before(deadline); {
		inFlight = p.count(`SELECT count(*) FROM jobs WHERE status = 'processing'`)
	}
	require.Positive(t, inFlight, "a moment with handlers running, to kill the worker in")
	p.crash("worker")
	t.Logf("worker killed with %d jobs processing", inFlight)

	waitAllSucceeded(t, p, len(ids), 10*time.Minute)
	require.True(t, relayKilled.Load())
	t.Logf("all %d jobs succeeded %s after the first submission, across two crashes", len(ids), time.Since(start))
	list := make([]string, 0, len(ids))
	for id := range ids {
		list = append(list, id)
	}
	assertExactlyOnce(t, p, list)
	retried := p.count(`SELECT count(*) FROM jobs WHERE attempts > 1`)
	duplicates, _ := value(p.scrape("worker"), "switchyard_worker_messages_total", "outcome=duplicate")
	t.Logf("%d jobs needed more than one attempt; the restarted worker recognised %.0f duplicate deliveries", retried, duplicates)
	require.Positive(t, float64(retried)+duplicates, "no job was retried and no delivery repeated: the kills missed the windows they test")
}

// submitAll runs the clients until all totalJobs jobs are submitted,
// calling progress after each submission with the number so far. Each
// client polls GET /v1/jobs/{id} to keep at most window jobs unfinished.
func submitAll(t *testing.T, p *platform, progress func(submitted int)) []string {
	t.Helper()
	var (
		mu        sync.Mutex
		ids       []string
		submitted atomic.Int64
		wg        sync.WaitGroup
		errs      = make(chan error, clients)
	)
	client := http.Client{Timeout: 30 * time.Second}
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			clientID := fmt.Sprintf("client-%02d", c%4)
			var pending []string
			for n := c; n < totalJobs; n += clients {
				for len(pending) >= window {
					if err := p.awaitSucceeded(client, clientID, pending[0], 2*time.Minute); err != nil {
						errs <- err
						return
					}
					pending = pending[1:]
				}
				id, err := p.submit(client, clientID, n)
				if err != nil {
					errs <- err
					return
				}
				pending = append(pending, id)
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
				if progress != nil {
					progress(int(submitted.Add(1)))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Len(t, ids, totalJobs)
	return ids
}

func waitAllSucceeded(t *testing.T, p *platform, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done := p.count(`SELECT count(*) FROM jobs WHERE status = 'succeeded'`)
		if done == n {
			return
		}
		if time.Now().After(deadline) {
			var summary []byte
			rows, _ := p.pool.Query(context.Background(), `SELECT status, count(*) FROM jobs GROUP BY status`)
			for rows.Next() {
				var s string
				var c int
				_ = rows.Scan(&s, &c)
				summary = fmt.Appendf(summary, "%s=%d ", s, c)
			}
			rows.Close()
			t.Fatalf("after %s only %d of %d jobs succeeded (%s)", timeout, done, n, summary)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// assertExactlyOnce checks, from the database, that each job succeeded
// once: one inbox record and one demo_text_stats row per job, none extra,
// the outbox drained, and the result visible over the API.
func assertExactlyOnce(t *testing.T, p *platform, ids []string) {
	t.Helper()
	require.Equal(t, len(ids), p.count(`SELECT count(*) FROM jobs`))
	require.Equal(t, len(ids), p.count(`SELECT count(*) FROM jobs WHERE status = 'succeeded' AND result IS NOT NULL`))
	require.Equal(t, len(ids), p.count(`SELECT count(*) FROM inbox`), "one inbox record per job")
	require.Equal(t, len(ids), p.count(`SELECT count(DISTINCT job_id) FROM inbox`))
	require.Equal(t, len(ids), p.count(`SELECT count(*) FROM demo_text_stats`), "one effect per job")
	require.Zero(t, p.count(`SELECT count(*) FROM (SELECT job_id FROM demo_text_stats GROUP BY job_id HAVING count(*) > 1) d`),
		"no job applied twice")
	require.Zero(t, p.count(`SELECT count(*) FROM demo_text_stats d LEFT JOIN jobs j ON j.id = d.job_id WHERE j.id IS NULL`))
	require.Zero(t, p.count(`SELECT count(*) FROM watermill_outbox`), "outbox drained")

	// A sample, read the way a client would.
	client := http.Client{Timeout: 10 * time.Second}
	for _, id := range ids[:20] {
		var owner string
		require.NoError(t, p.pool.QueryRow(context.Background(), `SELECT client_id FROM jobs WHERE id = $1`, id).Scan(&owner))
		req, _ := http.NewRequest(http.MethodGet, p.gateway+"/v1/jobs/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+p.bearer(owner))
		resp, err := client.Do(req)
		require.NoError(t, err)
		var status struct {
			Status string `json:"status"`
			Result struct {
				Words int `json:"words"`
			} `json:"result"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&status))
		_ = resp.Body.Close()
		require.Equal(t, "succeeded", status.Status)
		require.Equal(t, 7, status.Result.Words, `"job <n> of client-<c>: lorem ipsum dolor"`)
	}
}
