package processor_test

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/jobhandler"
	"github.com/switchyard/switchyard/libs/jobmessage"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/services/worker/demo"
)

func (e *env) cancel(t *testing.T, m *message.Message) (jobstore.CancelOutcome, error) {
	t.Helper()
	return e.store.Cancel(context.Background(), m.Metadata.Get(jobmessage.JobID), "c")
}

// TestCancelBeforeDelivery: a job cancelled before a worker receives its
// message never runs its handler; the message is dropped.
func TestCancelBeforeDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var ran atomic.Bool
	h := jobhandler.Func(func(ctx context.Context, task jobhandler.Task) (json.RawMessage, error) {
		ran.Store(true)
		return demo.TextStats().Handle(ctx, task)
	})
	m := e.job(t, "never")
	outcome, err := e.cancel(t, m)
	require.NoError(t, err)
	require.Equal(t, jobstore.Cancelled, outcome)

	again, err := e.cancel(t, m)
	require.NoError(t, err)
	require.Equal(t, jobstore.AlreadyCancelled, again, "cancelling twice is idempotent")

	require.NoError(t, e.proc.HandlerFunc(binding(h))(m))
	require.False(t, nacked(m), "the message is acknowledged, not retried")
	require.False(t, ran.Load())
	j := e.get(t, m)
	require.Equal(t, jobs.StatusCancelled, j.Status)
	require.Zero(t, j.Attempts)
	require.NotNil(t, j.CancelRequestedAt)
	require.NotNil(t, j.FinishedAt)
	require.Zero(t, e.effects(t, m))

	// Another client cannot cancel it, nor learn that it exists.
	_, err = e.store.Cancel(context.Background(), m.Metadata.Get(jobmessage.JobID), "someone-else")
	require.ErrorIs(t, err, jobs.ErrNotFound)
}

// TestCancelWhileRunning: the running attempt ends as it would have; a
// success stands (and a later cancel is 409), a failure cancels the job
// instead of scheduling a retry.
func TestCancelWhileRunning(t *testing.T) {
	t.Parallel()
	for _, fails := range []bool{false, true} {
		e := newEnv(t)
		m := e.job(t, "running")
		inside, release := make(chan struct{}), make(chan struct{})
		h := jobhandler.Func(func(ctx context.Context, task jobhandler.Task) (json.RawMessage, error) {
			close(inside)
			<-release
			if fails {
				return nil, errors.New("upstream flaked")
			}
			return demo.TextStats().Handle(ctx, task)
		})
		done := make(chan error, 1)
		go func() { done <- e.proc.HandlerFunc(binding(h))(m) }()
		<-inside
		outcome, err := e.cancel(t, m)
		require.NoError(t, err)
		require.Equal(t, jobstore.CancelRequested, outcome)
		again, err := e.cancel(t, m)
		require.NoError(t, err)
		require.Equal(t, jobstore.CancelRequested, again)
		close(release)
		require.NoError(t, <-done)
		j := e.get(t, m)
		require.NotNil(t, j.CancelRequestedAt)
		if fails {
			require.Equal(t, jobs.StatusCancelled, j.Status, "a failed attempt of a job being cancelled is not retried")
			require.False(t, nacked(m))
			require.Nil(t, j.NextAttemptAt)
			require.Empty(t, e.deadLetters(t, "text-stats"))
			require.Zero(t, e.effects(t, m))
			continue
		}
		require.Equal(t, jobs.StatusSucceeded, j.Status, "a success that was running when the cancel came stands")
		require.Equal(t, 1, e.effects(t, m))
		_, err = e.cancel(t, m)
		require.ErrorIs(t, err, jobs.ErrAlreadyFinished)
	}
}

// TestCancelAfterMarkedProcessing: the owner's request lands between the
// worker marking the job processing and running the handler: the handler
// does not run.
func TestCancelAfterMarkedProcessing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.job(t, "late")
	_, err := e.store.MarkProcessing(context.Background(), m.Metadata.Get(jobmessage.JobID), "an-earlier-delivery")
	require.NoError(t, err)
	outcome, err := e.cancel(t, m)
	require.NoError(t, err)
	require.Equal(t, jobstore.CancelRequested, outcome)
	// The earlier delivery's worker died; the message comes again.
	var ran atomic.Bool
	h := jobhandler.Func(func(ctx context.Context, task jobhandler.Task) (json.RawMessage, error) {
		ran.Store(true)
		return demo.TextStats().Handle(ctx, task)
	})
	require.NoError(t, e.proc.HandlerFunc(binding(h))(m))
	require.False(t, ran.Load())
	j := e.get(t, m)
	require.Equal(t, jobs.StatusCancelled, j.Status)
	var types []string
	for _, ev := range j.Events {
		types = append(types, string(ev.Type))
	}
	require.Equal(t, []string{"accepted", "attempt_started", "cancel_requested", "attempt_abandoned", "cancelled"}, types)
}

// TestCancellationRaces cancels 1,000 jobs while eight consumers process
// them (a handler that fails a fifth of first attempts, so that retries
// race too): every job ends exactly one of succeeded or cancelled, a
// cancelled job has no effects and a succeeded one exactly one, and
// every cancel's answer agrees with the end.
func TestCancellationRaces(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 1000
	var flaky sync.Map
	h := jobhandler.Func(func(ctx context.Context, task jobhandler.Task) (json.RawMessage, error) {
		if _, failedOnce := flaky.LoadOrStore(task.JobID, true); !failedOnce && rand.IntN(5) == 0 { //nolint:gosec // test jitter
			return nil, errors.New("upstream flaked")
		}
		return demo.TextStats().Handle(ctx, task)
	})
	b := binding(h)
	b.Retry = jobs.RetryPolicy{Attempts: 5, Base: time.Millisecond, Max: time.Millisecond}
	handle := e.proc.HandlerFunc(b)

	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = e.job(t, "race")
	}
	deliveries := make(chan *message.Message, n)
	for _, m := range msgs {
		deliveries <- m
	}
	var pending sync.WaitGroup
	pending.Add(n)
	var consumers sync.WaitGroup
	for range 8 {
		consumers.Add(1)
		go func() {
			defer consumers.Done()
			for m := range deliveries {
				require.NoError(t, handle(m))
				if nacked(m) {
					deliveries <- m.Copy() // SQS delivers it again after its backoff
					continue
				}
				pending.Done()
			}
		}()
	}
	answers := make([]jobstore.CancelOutcome, n)
	errs := make([]error, n)
	var cancellers sync.WaitGroup
	for w := range 4 {
		cancellers.Add(1)
		go func() {
			defer cancellers.Done()
			for i := w; i < n; i += 4 {
				answers[i], errs[i] = e.cancel(t, msgs[i])
			}
		}()
	}
	cancellers.Wait()
	pending.Wait()
	close(deliveries)
	consumers.Wait()

	tally := map[string]int{}
	for i, m := range msgs {
		j := e.get(t, m)
		effects := e.effects(t, m)
		switch j.Status {
		case jobs.StatusCancelled:
			require.Zero(t, effects, "cancelled job %s has effects", j.ID)
			require.NoError(t, errs[i])
			require.Contains(t, []jobstore.CancelOutcome{jobstore.Cancelled, jobstore.CancelRequested}, answers[i])
			tally["cancelled/"+string(answers[i])]++
		case jobs.StatusSucceeded:
			require.Equal(t, 1, effects, "succeeded job %s", j.ID)
			if errs[i] != nil {
				require.ErrorIs(t, errs[i], jobs.ErrAlreadyFinished)
				tally["succeeded/already_finished"]++
			} else {
				require.Equal(t, jobstore.CancelRequested, answers[i], "job %s succeeded though its cancel said %s", j.ID, answers[i])
				tally["succeeded/cancel_requested"]++
			}
		default:
			t.Fatalf("job %s ended %s", j.ID, j.Status)
		}
	}
	t.Logf("outcomes: %v", tally)
	require.Positive(t, tally["cancelled/cancelled"], "some cancels landed before the handler")
	require.Positive(t, tally["succeeded/already_finished"], "some cancels came after the end")
}
