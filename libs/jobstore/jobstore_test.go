package jobstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/jobmessage"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/outbox"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

func submission(client, key, payload string) jobs.Submission {
	return jobs.Submission{
		ID: uuid.Must(uuid.NewV7()).String(), MessageID: uuid.Must(uuid.NewV7()).String(),
		Type: "text-stats", ClientID: client, Payload: json.RawMessage(payload), IdempotencyKey: key,
		RequestID: "req-1", TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	}
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func TestAcceptWritesJobAndOutboxMessage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	store := jobstore.New(pool)
	sub := submission("c1", "", `{"text":"hi"}`)

	job, created, err := store.Accept(ctx, sub)
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, sub.ID, job.ID)
	require.Equal(t, jobs.StatusAccepted, job.Status)

	claim, err := outbox.ClaimBatch(ctx, pool, 10)
	require.NoError(t, err)
	defer claim.Release(ctx)
	require.Len(t, claim.Rows, 1)
	m := claim.Rows[0].Message
	require.Equal(t, sub.MessageID, m.UUID)
	require.Equal(t, "text-stats", m.Topic)
	require.JSONEq(t, `{"text":"hi"}`, string(m.Payload))
	require.Equal(t, map[string]string{
		jobmessage.JobID: sub.ID, jobmessage.JobType: "text-stats", jobmessage.ClientID: "c1",
		jobmessage.RequestID: "req-1", jobmessage.TraceParent: sub.TraceParent,
	}, m.Metadata)
}

// TestAcceptIsOneTransaction breaks the outbox table: the job row must not
// be committed without its message.
func TestAcceptIsOneTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	_, err := pool.Exec(ctx, `ALTER TABLE watermill_outbox RENAME TO watermill_outbox_gone`)
	require.NoError(t, err)
	_, _, err = jobstore.New(pool).Accept(ctx, submission("c1", "", `{}`))
	require.Error(t, err)
	require.Zero(t, count(t, pool, `SELECT count(*) FROM jobs`))
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	store := jobstore.New(pool)

	first, created, err := store.Accept(ctx, submission("c1", "key-1", `{"text":"a"}`))
	require.NoError(t, err)
	require.True(t, created)

	again, created, err := store.Accept(ctx, submission("c1", "key-1", `{"text":"a"}`))
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, first.ID, again.ID)

	_, _, err = store.Accept(ctx, submission("c1", "key-1", `{"text":"b"}`))
	require.ErrorIs(t, err, jobs.ErrIdempotencyKeyReused)

	other, created, err := store.Accept(ctx, submission("c2", "key-1", `{"text":"a"}`))
	require.NoError(t, err)
	require.True(t, created, "keys are scoped to the client")
	require.NotEqual(t, first.ID, other.ID)

	require.Equal(t, 2, count(t, pool, `SELECT count(*) FROM jobs`))
	require.Equal(t, 2, count(t, pool, `SELECT count(*) FROM watermill_outbox`))
}

// TestIdempotencyKeysExpire: within its window a key names its job; past
// it (the job accepted longer ago) the same key creates a new job, with
// the same payload or another, through a batch too.
func TestIdempotencyKeysExpire(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	store := jobstore.New(pool).ExpireKeysAfter(24 * time.Hour)

	first, created, err := store.Accept(ctx, submission("c1", "key-1", `{"text":"a"}`))
	require.NoError(t, err)
	require.True(t, created)
	_, err = pool.Exec(ctx, `UPDATE jobs SET created_at = now() - interval '23 hours' WHERE id = $1`, first.ID)
	require.NoError(t, err)
	again, created, err := store.Accept(ctx, submission("c1", "key-1", `{"text":"a"}`))
	require.NoError(t, err)
	require.False(t, created, "within 24 h the key names its job")
	require.Equal(t, first.ID, again.ID)

	_, err = pool.Exec(ctx, `UPDATE jobs SET created_at = now() - interval '25 hours' WHERE id = $1`, first.ID)
	require.NoError(t, err)
	fresh, created, err := store.Accept(ctx, submission("c1", "key-1", `{"text":"another request"}`))
	require.NoError(t, err)
	require.True(t, created, "past 24 h the key is free again")
	require.NotEqual(t, first.ID, fresh.ID)
	require.Equal(t, 1, count(t, pool, `SELECT count(*) FROM jobs WHERE idempotency_key = 'key-1'`))
	require.Equal(t, 0, count(t, pool, `SELECT count(*) FROM jobs WHERE id = $1 AND idempotency_key IS NOT NULL`, first.ID))

	// Through a batch: an expired key and a fresh one side by side.
	_, err = pool.Exec(ctx, `UPDATE jobs SET created_at = now() - interval '25 hours' WHERE id = $1`, fresh.ID)
	require.NoError(t, err)
	expired, kept := submission("c1", "key-1", `{"text":"a"}`), submission("c1", "key-2", `{"text":"a"}`)
	require.Equal(t, []error{nil}, store.AcceptBatch(ctx, []jobs.Submission{kept}))
	require.Equal(t, []error{nil, nil}, store.AcceptBatch(ctx, []jobs.Submission{expired, submission("c1", "key-2", `{"text":"a"}`)}))
	require.Equal(t, 1, count(t, pool, `SELECT count(*) FROM jobs WHERE id = $1`, expired.ID), "the expired key made a job")
	require.Equal(t, 1, count(t, pool, `SELECT count(*) FROM jobs WHERE idempotency_key = 'key-2'`), "the fresh key did not")
}

// TestCancelFunctionAgreesWithDomain: the database function the gateway
// cancels through cancels at once exactly the statuses
// jobs.Status.Cancellable names, marks a processing job, and leaves
// finished ones alone.
func TestCancelFunctionAgreesWithDomain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	store := jobstore.New(pool)
	for _, status := range jobs.Statuses() {
		sub := submission("c1", "", `{"text":"a"}`)
		_, _, err := store.Accept(ctx, sub)
		require.NoError(t, err)
		_, err = pool.Exec(ctx, `UPDATE jobs SET status = $2 WHERE id = $1`, sub.ID, string(status))
		require.NoError(t, err)
		outcome, err := store.Cancel(ctx, sub.ID, "c1")
		switch {
		case status.Cancellable():
			require.NoError(t, err, status)
			require.Equal(t, jobstore.Cancelled, outcome, status)
		case status == jobs.StatusProcessing:
			require.Equal(t, jobstore.CancelRequested, outcome)
		case status == jobs.StatusCancelled:
			require.Equal(t, jobstore.AlreadyCancelled, outcome)
		default:
			require.ErrorIs(t, err, jobs.ErrAlreadyFinished, status)
		}
	}
}

func TestIdempotencyUnderConcurrency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	store := jobstore.New(pool)
	const n = 20
	ids := make([]string, n)
	createdCount := 0
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			job, created, err := store.Accept(ctx, submission("c1", "race", `{"text":"same"}`))
			require.NoError(t, err)
			mu.Lock()
			defer mu.Unlock()
			ids[i] = job.ID
			if created {
				createdCount++
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 1, createdCount)
	for _, id := range ids {
		require.Equal(t, ids[0], id)
	}
	require.Equal(t, 1, count(t, pool, `SELECT count(*) FROM jobs`))
	require.Equal(t, 1, count(t, pool, `SELECT count(*) FROM watermill_outbox`))
}

func TestGetIsScopedToOwner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := jobstore.New(stacktest.NewPool(t))
	job, _, err := store.Accept(ctx, submission("owner", "", `{}`))
	require.NoError(t, err)

	got, err := store.Get(ctx, job.ID, "owner")
	require.NoError(t, err)
	require.Equal(t, job.ID, got.ID)
	require.JSONEq(t, `{}`, string(got.Payload))

	_, err = store.Get(ctx, job.ID, "intruder")
	require.ErrorIs(t, err, jobs.ErrNotFound)
	_, err = store.Get(ctx, uuid.NewString(), "owner")
	require.ErrorIs(t, err, jobs.ErrNotFound)
}

func TestLifecycleNeverMovesBackwards(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	store := jobstore.New(pool)
	job, _, err := store.Accept(ctx, submission("c", "", `{}`))
	require.NoError(t, err)

	inTx := func(fn func(pgx.Tx) error) error {
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		defer tx.Rollback(ctx) //nolint:errcheck
		if err := fn(tx); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	status := func() jobs.Status {
		j, err := store.Get(ctx, job.ID, "c")
		require.NoError(t, err)
		return j.Status
	}

	fail := func(attempt int, msg, text string) jobstore.Tally {
		var tally jobstore.Tally
		require.NoError(t, inTx(func(tx pgx.Tx) error {
			var err error
			tally, err = jobstore.RecordFailure(ctx, tx, jobstore.Failure{JobID: job.ID, Attempt: attempt, MessageID: msg, Error: text, Fingerprint: "fp",
				ErrorClass: "handler_error", ClientError: "for the client: " + msg})
			return err
		}))
		return tally
	}

	// The worker can be faster than the relay's bookkeeping.
	attempt, err := store.MarkProcessing(ctx, job.ID, "m1")
	require.NoError(t, err)
	require.Equal(t, 1, attempt)
	require.NoError(t, inTx(func(tx pgx.Tx) error { return jobstore.MarkQueued(ctx, tx, []string{job.ID}) }))
	require.Equal(t, jobs.StatusProcessing, status(), "a late 'queued' does not regress processing")

	tally := fail(1, "m1", "boom")
	require.Equal(t, 1, tally.Failures)
	require.Equal(t, jobs.StatusFailed, status())
	next := time.Now().Add(time.Minute).Truncate(time.Microsecond)
	require.NoError(t, inTx(func(tx pgx.Tx) error { return jobstore.ScheduleRetry(ctx, tx, job.ID, 1, next) }))
	j, err := store.Get(ctx, job.ID, "c")
	require.NoError(t, err)
	require.True(t, next.Equal(*j.NextAttemptAt))

	// Attempt 2 starts; its worker dies; attempt 3 (same message) starts,
	// abandoning 2, fails, and the tally counts failures only.
	_, err = store.MarkProcessing(ctx, job.ID, "m1")
	require.NoError(t, err)
	attempt, err = store.MarkProcessing(ctx, job.ID, "m1")
	require.NoError(t, err)
	require.Equal(t, 3, attempt)
	j, err = store.Get(ctx, job.ID, "c")
	require.NoError(t, err)
	require.Nil(t, j.NextAttemptAt, "a new attempt clears the schedule")
	tally = fail(3, "m1", "boom again")
	require.Equal(t, 2, tally.Failures)
	require.False(t, tally.LastFailureAt.Before(tally.FirstFailureAt))

	// A new message (a replay) starts a fresh tally.
	attempt, err = store.MarkProcessing(ctx, job.ID, "m2")
	require.NoError(t, err)
	require.Equal(t, 4, attempt)
	require.NoError(t, inTx(func(tx pgx.Tx) error {
		return jobstore.Complete(ctx, tx, job.ID, attempt, json.RawMessage(`{"ok":true}`))
	}))
	j, err = store.Get(ctx, job.ID, "c")
	require.NoError(t, err)
	require.Equal(t, jobs.StatusSucceeded, j.Status)
	require.Empty(t, j.LastError)
	require.JSONEq(t, `{"ok":true}`, string(j.Result))
	require.NotNil(t, j.FinishedAt)

	history, err := store.Attempts(ctx, job.ID)
	require.NoError(t, err)
	var outcomes []string
	for _, a := range history {
		outcomes = append(outcomes, a.Outcome)
	}
	require.Equal(t, []string{"failed", "abandoned", "failed", "succeeded"}, outcomes)
	require.Equal(t, "boom", history[0].Error)

	// The timeline, as the owner reads it.
	var timeline []string
	for _, e := range j.Events {
		timeline = append(timeline, fmt.Sprintf("%s %d", e.Type, e.Attempt))
	}
	require.Equal(t, []string{"accepted 0", "attempt_started 1", "queued 0", "attempt_failed 1", "retry_scheduled 1",
		"attempt_started 2", "attempt_abandoned 2", "attempt_started 3", "attempt_failed 3", "attempt_started 4", "attempt_succeeded 4"}, timeline)
	require.Equal(t, "for the client: m1", j.Events[3].Error, "the owner reads the client's message, not the detail")
	require.Equal(t, "handler_error", j.Events[3].ErrorClass)
	require.True(t, next.Equal(*j.Events[4].NextAttemptAt))
	for i := 1; i < len(j.Events); i++ {
		require.False(t, j.Events[i].At.Before(j.Events[i-1].At), "oldest first")
	}
	require.Equal(t, "fp", history[0].Fingerprint)
	require.Equal(t, "m2", history[3].MessageID)

	_, err = store.MarkProcessing(ctx, job.ID, "m2")
	require.ErrorIs(t, err, jobstore.ErrFinished)
	require.Error(t, inTx(func(tx pgx.Tx) error { return jobstore.Complete(ctx, tx, job.ID, 5, nil) }))
	fail(4, "m2", "late")
	require.Equal(t, jobs.StatusSucceeded, status(), "a late failure does not regress success")
	var moved bool
	require.NoError(t, inTx(func(tx pgx.Tx) (err error) {
		moved, err = jobstore.MarkDeadLettered(ctx, tx, job.ID, "attempts_exhausted")
		return err
	}))
	require.False(t, moved, "a succeeded job is never dead-lettered")

	_, err = store.MarkProcessing(ctx, uuid.NewString(), "m")
	require.ErrorIs(t, err, jobs.ErrNotFound)

	// Crash loops are dead-lettered from wherever the job stopped.
	other, _, err := store.Accept(ctx, submission("c", "", `{}`))
	require.NoError(t, err)
	_, err = store.MarkProcessing(ctx, other.ID, "m3")
	require.NoError(t, err)
	require.NoError(t, inTx(func(tx pgx.Tx) (err error) {
		moved, err = jobstore.MarkDeadLettered(ctx, tx, other.ID, "attempts_exhausted")
		return err
	}))
	require.True(t, moved)
	j, err = store.Get(ctx, other.ID, "c")
	require.NoError(t, err)
	require.Equal(t, jobs.StatusDeadLettered, j.Status)
	_, err = store.MarkProcessing(ctx, other.ID, "m3")
	require.ErrorIs(t, err, jobstore.ErrFinished, "a dead-lettered job is not run again until replayed")
}

// TestScheduledJobIsHeldUntilDue accepts a job for two days ahead, then
// moves the clock (the job's and its message's times, by the database's
// clock): the outbox holds the message until it is due within SQS's 15
// minutes, hands it over with the delay left, and a worker that gets it
// early is told when it is due, not given an attempt.
func TestScheduledJobIsHeldUntilDue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	store := jobstore.New(pool)
	sub := submission("c1", "", `{"text":"later"}`)
	due := time.Now().Add(48 * time.Hour)
	sub.RunAt = &due
	job, created, err := store.Accept(ctx, sub)
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, jobs.StatusScheduled, job.Status)
	require.WithinDuration(t, due, *job.RunAt, time.Millisecond)

	claimOne := func() (outbox.Row, bool) {
		claim, err := outbox.ClaimBatch(ctx, pool, 10)
		require.NoError(t, err)
		defer claim.Release(ctx)
		if len(claim.Rows) == 0 {
			return outbox.Row{}, false
		}
		return claim.Rows[0], true
	}
	_, claimed := claimOne()
	require.False(t, claimed, "two days ahead: held in the outbox")
	_, err = store.MarkProcessing(ctx, sub.ID, sub.MessageID)
	var notDue *jobstore.NotDueError
	require.ErrorAs(t, err, &notDue, "a message that came early is not an attempt")
	require.InDelta(t, (48 * time.Hour).Seconds(), notDue.In.Seconds(), 5)

	move := func(to string) {
		t.Helper()
		_, err := pool.Exec(ctx, `UPDATE jobs SET run_at = now() + $1::interval WHERE id = $2`, to, sub.ID)
		require.NoError(t, err)
		_, err = pool.Exec(ctx, `UPDATE watermill_outbox SET deliver_at = now() + $1::interval`, to)
		require.NoError(t, err)
	}
	move("20 minutes")
	_, claimed = claimOne()
	require.False(t, claimed, "20 minutes ahead: still held")
	move("10 minutes")
	row, claimed := claimOne()
	require.True(t, claimed, "within 15 minutes: handed to SQS")
	require.InDelta(t, 600, row.Delay.Seconds(), 2, "with the delay left")
	require.Equal(t, sub.MessageID, row.Message.UUID)

	move("-1 second")
	attempt, err := store.MarkProcessing(ctx, sub.ID, sub.MessageID)
	require.NoError(t, err, "due: it runs")
	require.Equal(t, 1, attempt)
}

// TestFinishingAJobWritesItsCallback: a job submitted with a callback URL
// that finishes (here: cancelled) gets, in the same transaction, a
// callback job of its client and that job's outbox message, which the
// relay reads like any other; a job without one gets nothing.
func TestFinishingAJobWritesItsCallback(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	store := jobstore.New(pool)
	drain := func() []outbox.Row {
		claim, err := outbox.ClaimBatch(ctx, pool, 10)
		require.NoError(t, err)
		rows := claim.Rows
		ids := make([]int64, len(rows))
		for i, r := range rows {
			ids[i] = r.Offset
		}
		require.NoError(t, claim.Complete(ctx, ids))
		return rows
	}

	plain := submission("c1", "", `{"text":"no callback"}`)
	_, _, err := store.Accept(ctx, plain)
	require.NoError(t, err)
	sub := submission("c1", "k-cb", `{"text":"call me"}`)
	sub.CallbackURL = "https://hooks.example.com/switchyard?x=1"
	job, _, err := store.Accept(ctx, sub)
	require.NoError(t, err)
	require.Equal(t, sub.CallbackURL, job.CallbackURL)
	require.Len(t, drain(), 2)

	out, err := store.Cancel(ctx, plain.ID, "c1")
	require.NoError(t, err)
	require.Equal(t, jobstore.Cancelled, out)
	require.Empty(t, drain(), "no callback URL, no callback")

	out, err = store.Cancel(ctx, sub.ID, "c1")
	require.NoError(t, err)
	require.Equal(t, jobstore.Cancelled, out)
	rows := drain()
	require.Len(t, rows, 1)
	m := rows[0].Message
	require.Equal(t, "switchyard-callback", m.Topic)
	callbackID := m.Metadata[jobmessage.JobID]
	require.Equal(t, map[string]string{jobmessage.JobID: callbackID, jobmessage.JobType: "switchyard-callback",
		jobmessage.ClientID: "c1", jobmessage.RequestID: "req-1", jobmessage.TraceParent: sub.TraceParent}, m.Metadata)

	var payload struct {
		URL   string `json:"url"`
		Event struct {
			Type      string         `json:"type"`
			Timestamp time.Time      `json:"timestamp"`
			Data      map[string]any `json:"data"`
		} `json:"event"`
	}
	require.NoError(t, json.Unmarshal(m.Payload, &payload))
	require.Equal(t, sub.CallbackURL, payload.URL)
	require.Equal(t, "job.cancelled", payload.Event.Type)
	require.WithinDuration(t, time.Now(), payload.Event.Timestamp, time.Minute)
	require.Equal(t, sub.ID, payload.Event.Data["id"])
	require.Equal(t, "cancelled", payload.Event.Data["status"])
	require.Equal(t, "k-cb", payload.Event.Data["idempotency_key"])

	cb, err := store.Get(ctx, callbackID, "c1")
	require.NoError(t, err, "the callback is a job of the same client")
	require.Equal(t, "switchyard-callback", cb.Type)
	require.Equal(t, jobs.StatusAccepted, cb.Status)
	require.JSONEq(t, string(m.Payload), string(cb.Payload), "the message carries the job's payload")
	require.Empty(t, cb.CallbackURL, "a callback calls nobody back")
}
