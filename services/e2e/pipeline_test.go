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

// TestTwoThousandJobs submits 2,000 jobs over HTTP from 16 concurrent
// clients, each watching its jobs' status, and checks that every one
// succeeds with its effect applied once.
func TestTwoThousandJobs(t *testing.T) {
	p := startPlatform(t, nil)
	start := time.Now()
	ids := submitAll(t, p, nil)
	t.Logf("submitted %d jobs in %s", len(ids), time.Since(start))
	waitAllSucceeded(t, p, len(ids), 5*time.Minute)
	t.Logf("all %d jobs succeeded %s after the first submission (%.0f jobs/s end to end)",
		len(ids), time.Since(start), float64(len(ids))/time.Since(start).Seconds())
	assertExactlyOnce(t, p, ids)
}

// TestTwoThousandJobsWithCrashes does the same while the relay and then the
// worker are killed with SIGKILL mid-run and restarted: nothing is lost and
// no effect is applied twice.
func TestTwoThousandJobsWithCrashes(t *testing.T) {
	p := startPlatform(t, nil)
	start := time.Now()
	var relayKilled atomic.Bool
	ids := submitAll(t, p, func(submitted int) {
		// Kill the relay a third of the way into the submissions, while the
		// outbox is busy.
		if submitted >= totalJobs/3 && relayKilled.CompareAndSwap(false, true) {
			p.crash("relay")
		}
	})
	// Kill the worker once it is well into the backlog, with messages in
	// flight.
	require.Eventually(t, func() bool {
		return p.count(`SELECT count(*) FROM jobs WHERE status = 'succeeded'`) >= totalJobs/2
	}, 5*time.Minute, 20*time.Millisecond)
	// Aim the kill at a moment with a handler transaction open; a kill
	// between commit and SQS delete (the common case with this fast
	// handler) is a crash worth testing too.
	inFlight := 0
	for deadline := time.Now().Add(5 * time.Second); inFlight == 0 && time.Now().Before(deadline); {
		inFlight = p.count(`SELECT count(*) FROM jobs WHERE status = 'processing'`)
	}
	require.Positive(t, inFlight, "a moment with handlers running, to kill the worker in")
	p.crash("worker")
	t.Logf("worker killed with %d jobs processing", inFlight)

	waitAllSucceeded(t, p, len(ids), 5*time.Minute)
	require.True(t, relayKilled.Load())
	t.Logf("all %d jobs succeeded %s after the first submission, across two crashes", len(ids), time.Since(start))
	assertExactlyOnce(t, p, ids)
	// The kills landed where they matter: some message was delivered
	// again (a relay that died between send and delete re-sends; a worker
	// that died after commit leaves its message to come back) and the
	// inbox recognised it, or some job's attempt was cut and ran again.
	// Without either, exactly-once above proved nothing about crashes.
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
