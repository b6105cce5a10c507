package e2e_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const drainJobsFile = `
job_types:
  slow:
    handler: slow
    consumers: 8
    timeout: 10s
`

const drainRoutesFile = `
routes:
  - {method: POST, path: "/v1/jobs/slow", mode: async, job_type: slow, scopes: [jobs:submit]}
  - {method: GET, path: "/v1/jobs/{id}", mode: job-status, scopes: [jobs:read]}
`

// drainLoad is a client population submitting jobs through two gateway
// replicas, as a load balancer would spread them: only to replicas its
// health check (watchReadiness) has in the pool, each
// job with its own Idempotency-Key, and a request that finds its replica
// gone (refused or cut connection) sent again, same key, to the other.
type drainLoad struct {
	p        *platform
	accepted atomic.Int64
	// serverErrors counts 5xx answers: a draining gateway must answer the
	// requests it took, not fail them.
	serverErrors atomic.Int64
	// moved counts requests sent again to the other replica.
	moved atomic.Int64
	mu    sync.Mutex
	jobs  map[string]string // idempotency key -> job id
	errs  []error
	// answered records when each replica answered 2xx.
	answered map[string][]time.Time
	// ready says which replicas the health check last saw ready.
	ready [2]atomic.Bool
}

// watchReadiness health-checks each gateway replica's /readyz as a load
// balancer does, until stop closes: every 500 ms; one success puts a
// replica in the pool, two failures in a row take it out (so a draining
// replica keeps getting requests for up to a second: what
// SWITCHYARD_DRAIN_DELAY is for).
func (l *drainLoad) watchReadiness(stop <-chan struct{}) {
	ops := []int{l.p.opsPorts["gateway"], l.p.opsPorts["gateway2"]}
	failures := make([]int, len(ops))
	client := &http.Client{Timeout: time.Second}
	for {
		for i, port := range ops {
			resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
			ok := err == nil && resp.StatusCode == http.StatusOK
			if err == nil {
				_ = resp.Body.Close()
			}
			switch {
			case ok:
				failures[i] = 0
				l.ready[i].Store(true)
			default:
				if failures[i]++; failures[i] >= 2 {
					l.ready[i].Store(false)
				}
			}
		}
		select {
		case <-stop:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// acceptedBetween counts the submissions the given replicas accepted
// strictly between from and to.
func (l *drainLoad) acceptedBetween(from, to time.Time, replicas ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, base := range replicas {
		for _, at := range l.answered[base] {
			if at.After(from) && at.Before(to) {
				n++
			}
		}
	}
	return n
}

func (l *drainLoad) submit(client *http.Client, clientID, key string, first int) error {
	gateways := []string{l.p.gateway, l.p.gateway2}
	body, _ := json.Marshal(map[string]string{"text": "drain " + key})
	for try := 0; try < 400; try++ {
		pick := (first + try) % 2
		if !l.ready[pick].Load() {
			if !l.ready[1-pick].Load() {
				time.Sleep(10 * time.Millisecond) // neither is in the pool right now
				continue
			}
			pick = 1 - pick
		}
		base := gateways[pick]
		req, err := http.NewRequest(http.MethodPost, base+"/v1/jobs/slow", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+l.p.bearer(clientID))
		req.Header.Set("Idempotency-Key", key)
		resp, err := client.Do(req)
		if err != nil {
			l.moved.Add(1)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		var out struct {
			ID string `json:"id"`
		}
		derr := json.NewDecoder(resp.Body).Decode(&out)
		_ = resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusOK:
			if derr == nil && out.ID == "" {
				derr = errors.New("no id in the answer")
			}
			if derr != nil {
				return fmt.Errorf("key %s: %s without a job id: %w", key, resp.Status, derr)
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if prev, ok := l.jobs[key]; ok && prev != out.ID {
				return fmt.Errorf("key %s answered with job %s and then %s", key, prev, out.ID)
			}
			l.jobs[key] = out.ID
			l.answered[base] = append(l.answered[base], time.Now())
			l.accepted.Add(1)
			return nil
		case resp.StatusCode >= 500:
			l.serverErrors.Add(1)
			return fmt.Errorf("key %s: %s from %s", key, resp.Status, base)
		default:
			return fmt.Errorf("key %s: %s from %s", key, resp.Status, base)
		}
	}
	return fmt.Errorf("key %s: no gateway took it", key)
}

// gracefulDrainUnderLoad stops the gateway and then the worker with
// SIGTERM in the middle of a load run (two gateway replicas, slow
// handlers in flight) and starts them again: no accepted request is lost
// or failed, every job runs once, and the stopped worker finished the
// handlers it had started instead of leaving them to a retry.
func gracefulDrainUnderLoad(t *testing.T) {
	p := startPlatformWith(t, platformOptions{
		services: []string{"tokens", "relay", "worker", "gateway", "gateway2"},
		jobs:     drainJobsFile, routes: drainRoutesFile,
		binaries: map[string]string{"worker": "faultworker"},
		env:      []string{"SWITCHYARD_DRAIN_DELAY=1s", "SWITCHYARD_SHUTDOWN_TIMEOUT=20s"},
	})
	// The load runs until both stops are behind it (stopLoad), so that
	// each stop happens under load however long the machine takes for
	// them; maxJobs only bounds a run that goes wrong.
	const clientsN, maxJobs = 12, 2000
	l := &drainLoad{p: p, jobs: map[string]string{}, answered: map[string][]time.Time{}}
	stopWatching := make(chan struct{})
	defer close(stopWatching)
	go l.watchReadiness(stopWatching)
	require.Eventually(t, func() bool { return l.ready[0].Load() && l.ready[1].Load() }, 30*time.Second, 10*time.Millisecond)
	stopLoad := make(chan struct{})
	endLoad := sync.OnceFunc(func() { close(stopLoad) })
	var submitted atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()
	defer endLoad() // also when an assertion below ends the test early
	for c := range clientsN {
		clientID := fmt.Sprintf("drain-%02d", c%3)
		p.bearer(clientID)
		wg.Go(func() {
			client := &http.Client{Timeout: 30 * time.Second}
			// About 24 submissions a second in all.
			pace := time.NewTicker(500 * time.Millisecond)
			defer pace.Stop()
			for {
				select {
				case <-stopLoad:
					return
				case <-pace.C:
				}
				n := submitted.Add(1)
				if n > maxJobs {
					return
				}
				if err := l.submit(client, clientID, fmt.Sprintf("%s-%04d", clientID, n), int(n)); err != nil {
					l.mu.Lock()
					l.errs = append(l.errs, err)
					l.mu.Unlock()
				}
			}
		})
	}

	var drainFrom, drainTo time.Time
	stop := func(svc string) error {
		p.mu.Lock()
		proc := p.procs[svc]
		p.mu.Unlock()
		drainFrom = time.Now()
		err := proc.Stop(30 * time.Second)
		drainTo = time.Now()
		t.Logf("%s stopped with SIGTERM in %s", svc, drainTo.Sub(drainFrom).Round(time.Millisecond))
		return err
	}
	require.Eventually(t, func() bool { return l.accepted.Load() >= 60 }, 2*time.Minute, 10*time.Millisecond)
	require.NoError(t, stop("gateway"), "the gateway drains and exits by itself")
	whileDraining := l.acceptedBetween(drainFrom, drainTo, p.gateway)
	t.Logf("the gateway accepted %d jobs between SIGTERM and its exit", whileDraining)
	require.Positive(t, whileDraining, "a draining gateway keeps serving until its listener closes")
	p.start("gateway")
	// Traffic flows through the restarted pair before the worker stops.
	restarted := l.accepted.Load()
	require.Eventually(t, func() bool { return l.accepted.Load() >= restarted+24 }, 2*time.Minute, 10*time.Millisecond)
	inFlight := 0
	require.Eventually(t, func() bool {
		inFlight = p.count(`SELECT count(*) FROM jobs WHERE status = 'processing'`)
		return inFlight >= 2
	}, time.Minute, 5*time.Millisecond, "handlers in flight when the worker is stopped")
	require.NoError(t, stop("worker"), "the worker finishes its handlers and exits by itself")
	acceptedDuringWorkerStop := l.acceptedBetween(drainFrom, drainTo, p.gateway, p.gateway2)
	t.Logf("worker stopped with %d jobs processing; %d jobs accepted while it stopped", inFlight, acceptedDuringWorkerStop)
	require.Zero(t, p.count(`SELECT count(*) FROM jobs WHERE status = 'processing'`), "nothing left half-done")
	p.start("worker")

	endLoad()
	wg.Wait()
	require.Empty(t, l.errs)
	require.Zero(t, l.serverErrors.Load(), "no 5xx from a replica in the pool: a draining one answers what it took")
	total := int(submitted.Load())
	require.Less(t, total, maxJobs, "the load stopped when told to")
	require.EqualValues(t, total, l.accepted.Load(), "every submission accepted")
	t.Logf("%d jobs accepted through two gateways; %d requests sent again to the other replica (refused or cut connections)", total, l.moved.Load())

	ids := make([]string, 0, total)
	for _, id := range l.jobs {
		ids = append(ids, id)
	}
	require.Len(t, ids, total, "one job per key")
	waitAllSucceeded(t, p, total, 5*time.Minute)
	require.Equal(t, total, p.count(`SELECT count(*) FROM jobs`), "no job created twice")
	require.Equal(t, total, p.count(`SELECT count(*) FROM inbox`), "each applied once")
	require.Equal(t, total, p.count(`SELECT count(DISTINCT job_id) FROM demo_text_stats`))
	require.Equal(t, total, p.count(`SELECT count(*) FROM demo_text_stats`), "one effect per job")
	require.Zero(t, p.count(`SELECT count(*) FROM jobs WHERE attempts <> 1`),
		"every job ran once: the stopped worker finished its handlers rather than leave them to a retry")
	require.Zero(t, p.count(`SELECT count(*) FROM job_attempts WHERE outcome = 'abandoned'`))
}
