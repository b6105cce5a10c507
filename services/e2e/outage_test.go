package e2e_test

import (
	"context"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack"
)

// pipelineRecoversFromAnSQSPause runs steady traffic (5 clients, 20
// jobs/s) through a platform on an SQS server of its own, pauses that
// server (SIGSTOP) for 30 s and resumes it. The gateway keeps accepting
// (the outbox holds the backlog), the relay's and worker's SQS breakers
// open instead of piling calls onto the paused server, and once it is
// back the backlog drains by itself: every job succeeds exactly once.
// Before the guard and the shedding stand-in, the same pause left the
// server wedged and the pipeline stalled until restart.
func pipelineRecoversFromAnSQSPause(t *testing.T) {
	const (
		clients  = 5
		interval = 250 * time.Millisecond // per client: 20 jobs/s in all
		before   = 8 * time.Second
		pause    = 30 * time.Second
		after    = 5 * time.Second
	)
	ctx := context.Background()
	sqsStack, err := devstack.Start(ctx, devstack.Config{Dir: t.TempDir(), Components: []devstack.Component{devstack.SQS}, NewSQS: true})
	require.NoError(t, err)
	paused := false
	t.Cleanup(func() {
		if paused {
			_ = sqsStack.Signal("moto_server", syscall.SIGCONT)
		}
		require.NoError(t, sqsStack.Stop())
	})
	p := startPlatformWith(t, platformOptions{sqsEndpoint: sqsStack.SQSEndpoint})

	var (
		mu   sync.Mutex
		ids  []string
		errs []error
		wg   sync.WaitGroup
	)
	stop := make(chan struct{})
	client := http.Client{Timeout: 10 * time.Second}
	for c := range clients {
		clientID := []string{"client-00", "client-01", "client-02", "client-03", "client-04"}[c]
		wg.Go(func() {
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				start := time.Now()
				id, err := p.submit(client, clientID, n)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					ids = append(ids, id)
				}
				mu.Unlock()
				if d := time.Since(start); d > time.Second {
					t.Logf("an accept took %s", d)
				}
			}
		})
	}
	time.Sleep(before) // traffic before the fault, by the clock on purpose
	require.NoError(t, sqsStack.Signal("moto_server", syscall.SIGSTOP))
	paused = true
	t.Logf("SQS paused")
	time.Sleep(pause) // the outage's length is the point of the test
	require.NoError(t, sqsStack.Signal("moto_server", syscall.SIGCONT))
	paused = false
	resumed := time.Now()
	mu.Lock()
	acceptedSoFar := len(ids)
	mu.Unlock()
	t.Logf("SQS resumed; %d jobs accepted so far, %d unsent in the outbox", acceptedSoFar,
		p.count(`SELECT count(*) FROM watermill_outbox WHERE NOT acked`))
	time.Sleep(after)
	close(stop)
	wg.Wait()
	require.Empty(t, errs, "every submission was accepted while SQS was down")

	shortCircuited := 0.0
	for _, m := range p.scrape("relay")["switchyard_sqs_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "outcome" && l.GetValue() == "short_circuited" {
				shortCircuited += m.GetCounter().GetValue()
			}
		}
	}
	require.Positive(t, shortCircuited, "the relay's breaker opened: calls during the pause were answered without reaching SQS")

	waitAllSucceeded(t, p, len(ids), 2*time.Minute)
	t.Logf("%d jobs, all succeeded %s after SQS was resumed (%.0f calls short-circuited by the relay's breaker)",
		len(ids), time.Since(resumed).Round(100*time.Millisecond), shortCircuited)
	assertExactlyOnce(t, p, ids)
}
