package jobstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/jobstore"
)

// outcome is what one Accept call answered.
type outcome struct {
	job     jobs.Job
	created bool
	err     error
}

// startBatcher runs a batcher with cfg on a fresh database until the test
// ends, and returns it with its metrics' registry.
func startBatcher(t *testing.T, cfg jobstore.BatchConfig) (*jobstore.Batcher, *prometheus.Registry, *pgxpool.Pool) {
	t.Helper()
	pool := stacktest.NewPool(t)
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	b, err := jobstore.NewBatcher(jobstore.New(pool), cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { b.Run(ctx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped })
	require.Eventually(t, func() bool {
		_, _, err := b.Accept(context.Background(), submission("warm-up", "", `{}`))
		return err == nil
	}, 5*time.Second, 5*time.Millisecond)
	_, err = pool.Exec(context.Background(), `DELETE FROM jobs; DELETE FROM watermill_outbox`)
	require.NoError(t, err)
	return b, reg, pool
}

// holdJobsTable locks the jobs table against inserts until the returned
// function is called: the batcher's writer then blocks on its statement and
// submissions queue behind it, so that a test knows what one batch holds.
func holdJobsTable(t *testing.T, pool *pgxpool.Pool) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE`)
	require.NoError(t, err)
	var once sync.Once
	release = func() { once.Do(func() { require.NoError(t, tx.Rollback(ctx)) }) }
	t.Cleanup(release)
	return release
}

// submitAll submits each of subs on its own goroutine and returns a
// function that waits for all their outcomes.
func submitAll(b *jobstore.Batcher, subs []jobs.Submission) (wait func() []outcome) {
	out := make([]outcome, len(subs))
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Go(func() {
			job, created, err := b.Accept(context.Background(), s)
			out[i] = outcome{job, created, err}
		})
	}
	return func() []outcome { wg.Wait(); return out }
}

// blockWriter submits one job that the writer takes and then blocks on
// (the table is held), and waits until the writer's statement waits for
// the lock: the next submissions wait together for the same batch.
func blockWriter(t *testing.T, b *jobstore.Batcher, pool *pgxpool.Pool) (wait func() []outcome) {
	t.Helper()
	wait = submitAll(b, []jobs.Submission{submission("first", "", `{}`)})
	require.Eventually(t, func() bool {
		return count(t, pool, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) == 1
	}, 5*time.Second, time.Millisecond)
	return wait
}

// TestBatchKeepsEverySubmissionsOwnOutcome: submissions that wait together
// are written with one statement, and each still gets exactly the answer
// it would get alone: plain ones a job of their own, two with one key and
// the same request one job (created once, the other answered with it), two
// with one key and different requests one job and a 422 for the second,
// and a row the database refuses (a NUL in jsonb) fails alone.
func TestBatchKeepsEverySubmissionsOwnOutcome(t *testing.T) {
	t.Parallel()
	b, reg, pool := startBatcher(t, jobstore.BatchConfig{Writers: 1, MaxBatch: 100, MaxQueue: 100, MaxWait: time.Minute})
	warmUps, warmUpRows := histogram(t, reg, "switchyard_accept_batch_size")
	release := holdJobsTable(t, pool)
	first := blockWriter(t, b, pool)

	var subs []jobs.Submission
	for i := range 20 {
		subs = append(subs, submission("c", "", fmt.Sprintf(`{"n": %d}`, i)))
	}
	for i := range 5 {
		key := fmt.Sprintf("same-%d", i)
		subs = append(subs, submission("c", key, `{"same": true}`), submission("c", key, `{"same": true}`))
	}
	for i := range 5 {
		key := fmt.Sprintf("differ-%d", i)
		subs = append(subs, submission("c", key, `{"v": 1}`), submission("c", key, `{"v": 2}`))
	}
	bad := submission("c", "", `{"text": "\u0000"}`)
	subs = append(subs, bad)
	wait := submitAll(b, subs)
	require.Eventually(t, func() bool { return b.Waiting() == len(subs) }, 5*time.Second, time.Millisecond)
	release()

	require.NoError(t, first()[0].err)
	got := wait()
	created := 1
	for i := range 20 {
		require.NoError(t, got[i].err)
		require.True(t, got[i].created)
		require.Equal(t, subs[i].ID, got[i].job.ID)
		created++
	}
	for i := 20; i < 30; i += 2 {
		a, c := got[i], got[i+1]
		require.NoError(t, a.err)
		require.NoError(t, c.err)
		require.True(t, a.created != c.created, "exactly one of a pair creates the job")
		require.Equal(t, a.job.ID, c.job.ID, "both answer with the same job")
		created++
	}
	for i := 30; i < 40; i += 2 {
		a, c := got[i], got[i+1]
		winner, loser := a, c
		if c.err == nil {
			winner, loser = c, a
		}
		require.NoError(t, winner.err)
		require.True(t, winner.created)
		require.ErrorIs(t, loser.err, jobs.ErrIdempotencyKeyReused)
		created++
	}
	require.Error(t, got[40].err, "the row Postgres refuses fails")
	require.NotErrorIs(t, got[40].err, jobs.ErrStoreUnavailable)
	require.Equal(t, created, count(t, pool, `SELECT count(*) FROM jobs`))
	require.Equal(t, created, count(t, pool, `SELECT count(*) FROM watermill_outbox`), "one outbox message per job")
	require.Zero(t, count(t, pool, `SELECT count(*) FROM jobs WHERE id = $1`, bad.ID))

	count, sum := histogram(t, reg, "switchyard_accept_batch_size")
	require.Equal(t, uint64(2), count-warmUps, "the blocked submission alone, then everything that queued behind it")
	require.Equal(t, float64(1+len(subs)), sum-warmUpRows)
}

// TestBatcherRefusesWhatItCannotTakeInTime: beyond MaxQueue waiting
// submissions the next one is refused at once, and one that waited longer
// than MaxWait is refused rather than written late; neither leaves a job.
func TestBatcherRefusesWhatItCannotTakeInTime(t *testing.T) {
	t.Parallel()
	t.Run("queue full", func(t *testing.T) {
		t.Parallel()
		b, _, pool := startBatcher(t, jobstore.BatchConfig{Writers: 1, MaxBatch: 100, MaxQueue: 5, MaxWait: time.Minute})
		release := holdJobsTable(t, pool)
		first := blockWriter(t, b, pool)
		admitted := submitAll(b, []jobs.Submission{submission("c", "", `{}`), submission("c", "", `{}`), submission("c", "", `{}`),
			submission("c", "", `{}`), submission("c", "", `{}`)})
		require.Eventually(t, func() bool { return b.Waiting() == 5 }, 5*time.Second, time.Millisecond)
		extra := submission("c", "", `{}`)
		_, _, err := b.Accept(context.Background(), extra)
		require.ErrorIs(t, err, jobs.ErrOverloaded)
		release()
		require.NoError(t, first()[0].err)
		for _, o := range admitted() {
			require.NoError(t, o.err)
		}
		require.Equal(t, 6, count(t, pool, `SELECT count(*) FROM jobs`))
		require.Zero(t, count(t, pool, `SELECT count(*) FROM jobs WHERE id = $1`, extra.ID))
	})
	t.Run("waited too long", func(t *testing.T) {
		t.Parallel()
		const maxWait = 50 * time.Millisecond
		b, _, pool := startBatcher(t, jobstore.BatchConfig{Writers: 1, MaxBatch: 100, MaxQueue: 100, MaxWait: maxWait})
		release := holdJobsTable(t, pool)
		first := blockWriter(t, b, pool)
		late := submitAll(b, []jobs.Submission{submission("c", "", `{}`), submission("c", "", `{}`)})
		require.Eventually(t, func() bool { return b.Waiting() == 2 }, 5*time.Second, time.Millisecond)
		time.Sleep(2 * maxWait) // the condition under test is the passing of time
		release()
		require.NoError(t, first()[0].err)
		for _, o := range late() {
			require.ErrorIs(t, o.err, jobs.ErrOverloaded)
		}
		require.Equal(t, 1, count(t, pool, `SELECT count(*) FROM jobs`))
	})
}

// TestBatcherDropsASubmissionWhoseCallerLeft: a caller that gives up while
// its submission waits gets its context's error, and the job is never
// written (a writer that already took it would have committed it).
func TestBatcherDropsASubmissionWhoseCallerLeft(t *testing.T) {
	t.Parallel()
	b, _, pool := startBatcher(t, jobstore.BatchConfig{Writers: 1, MaxBatch: 100, MaxQueue: 100, MaxWait: time.Minute})
	release := holdJobsTable(t, pool)
	first := blockWriter(t, b, pool)
	ctx, cancel := context.WithCancel(context.Background())
	gone := submission("c", "", `{}`)
	errc := make(chan error, 1)
	go func() { _, _, err := b.Accept(ctx, gone); errc <- err }()
	require.Eventually(t, func() bool { return b.Waiting() == 1 }, 5*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	release()
	require.NoError(t, first()[0].err)
	_, _, err := b.Accept(context.Background(), submission("c", "", `{}`))
	require.NoError(t, err)
	require.Equal(t, 2, count(t, pool, `SELECT count(*) FROM jobs`))
	require.Zero(t, count(t, pool, `SELECT count(*) FROM jobs WHERE id = $1`, gone.ID))
}

// TestOutagesAreUnavailable: a batcher that is not running and a database
// that cannot be reached both answer jobs.ErrStoreUnavailable (a 503 to
// the client), never a bare error.
func TestOutagesAreUnavailable(t *testing.T) {
	t.Parallel()
	pool := stacktest.NewPool(t)
	store := jobstore.New(pool)
	b, err := jobstore.NewBatcher(store, jobstore.DefaultBatchConfig)
	require.NoError(t, err)
	_, _, err = b.Accept(context.Background(), submission("c", "", `{}`))
	require.ErrorIs(t, err, jobs.ErrStoreUnavailable, "not running")

	closed := stacktest.NewPool(t)
	closed.Close()
	_, _, err = jobstore.New(closed).Accept(context.Background(), submission("c", "", `{}`))
	require.ErrorIs(t, err, jobs.ErrStoreUnavailable, "closed pool")
	_, err = jobstore.New(closed).Get(context.Background(), submission("c", "", `{}`).ID, "c")
	require.ErrorIs(t, err, jobs.ErrStoreUnavailable, "closed pool")
}

// histogram returns the sample count and sum of the histogram name.
func histogram(t *testing.T, reg *prometheus.Registry, name string) (uint64, float64) {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			h := f.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0, 0
}

// TestBatchesWithOneKeysInOppositeOrderDoNotDeadlock: two batches that
// carry the same idempotency keys in opposite orders (two clients
// retrying pairs of requests, say) run at once. Each insert waits for the
// other transaction's row with its key; in submission order they would
// wait for each other and Postgres would kill one with a deadlock (500s
// in the e2e crash drill). Both must succeed, with one job per key.
func TestBatchesWithOneKeysInOppositeOrderDoNotDeadlock(t *testing.T) {
	t.Parallel()
	pool := stacktest.NewPool(t)
	store := jobstore.New(pool)
	const keys = 300
	for round := range 5 {
		var forward, backward []jobs.Submission
		for i := range keys {
			key := fmt.Sprintf("round-%d-key-%03d", round, i)
			forward = append(forward, submission("c", key, `{"same": true}`))
			backward = append([]jobs.Submission{submission("c", key, `{"same": true}`)}, backward...)
		}
		var wg sync.WaitGroup
		results := make([][]error, 2)
		for i, batch := range [][]jobs.Submission{forward, backward} {
			wg.Go(func() { results[i] = store.AcceptBatch(context.Background(), batch) })
		}
		wg.Wait()
		for _, errs := range results {
			for _, err := range errs {
				require.NoError(t, err, "round %d", round)
			}
		}
	}
	require.Equal(t, 5*keys, count(t, pool, `SELECT count(*) FROM jobs`))
	require.Equal(t, 5*keys, count(t, pool, `SELECT count(*) FROM watermill_outbox`))
}
