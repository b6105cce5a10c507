package processor_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/jobhandler"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/outbox"
	"github.com/switchyard/switchyard/libs/textstats"
	"github.com/switchyard/switchyard/services/worker/demo"
	"github.com/switchyard/switchyard/services/worker/internal/processor"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

type env struct {
	pool  *pgxpool.Pool
	store *jobstore.Store
	proc  *processor.Processor
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pool := stacktest.NewPool(t)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	return &env{pool: pool, store: jobstore.New(pool), proc: processor.New(pool, logger, nil)}
}

// job accepts a text-stats job and returns the message the relay would
// deliver for it.
func (e *env) job(t *testing.T, text string) *message.Message {
	t.Helper()
	payload, _ := json.Marshal(map[string]string{"text": text})
	sub := jobs.Submission{ID: uuid.NewString(), MessageID: uuid.NewString(), Type: "text-stats", ClientID: "c", Payload: payload}
	_, _, err := e.store.Accept(context.Background(), sub)
	require.NoError(t, err)
	m := message.NewMessage(sub.MessageID, payload)
	m.Metadata.Set(outbox.MetaJobID, sub.ID)
	m.Metadata.Set(outbox.MetaClientID, "c")
	return m
}

func (e *env) get(t *testing.T, m *message.Message) jobs.Job {
	t.Helper()
	j, err := e.store.Get(context.Background(), m.Metadata.Get(outbox.MetaJobID), "c")
	require.NoError(t, err)
	return j
}

func (e *env) effects(t *testing.T, m *message.Message) int {
	t.Helper()
	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM demo_text_stats WHERE job_id = $1`,
		m.Metadata.Get(outbox.MetaJobID)).Scan(&n))
	return n
}

func binding(h jobhandler.Handler) processor.Binding {
	return processor.Binding{JobType: "text-stats", HandlerName: "text-stats", Handler: h, Timeout: 5 * time.Second}
}

func TestSuccessAndRedelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	handle := e.proc.HandlerFunc(binding(demo.TextStats()))
	m := e.job(t, "one two\nthree")

	require.NoError(t, handle(m))
	j := e.get(t, m)
	require.Equal(t, jobs.StatusSucceeded, j.Status)
	require.Equal(t, 1, j.Attempts)
	require.JSONEq(t, `{"words":3,"lines":2,"sha256":"`+textstats.Analyse("one two\nthree").SHA256+`"}`, string(j.Result))
	require.Equal(t, 1, e.effects(t, m))

	// SQS delivers it again: acknowledged, nothing applied, no new attempt.
	require.NoError(t, handle(m.Copy()))
	require.Equal(t, 1, e.effects(t, m))
	require.Equal(t, 1, e.get(t, m).Attempts)
}

// TestConcurrentDuplicatesApplyOnce delivers one message to eight
// consumers at once, each past the early inbox check (the handler waits
// until all eight are inside it).
func TestConcurrentDuplicatesApplyOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var inside atomic.Int32
	var allBlocked atomic.Bool
	release := make(chan struct{})
	h := jobhandler.Func(func(ctx context.Context, task jobhandler.Task) (json.RawMessage, error) {
		if inside.Add(1) == 1 {
			go func() {
				// Only the first transaction gets here: the others wait
				// on its inbox row. Let it finish once they are all
				// blocked behind it (or after 10 s, and the test fails).
				defer close(release)
				deadline := time.Now().Add(10 * time.Second)
				for time.Now().Before(deadline) {
					var waiting int
					_ = e.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
						WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
					if waiting == 7 {
						allBlocked.Store(true)
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			}()
		}
		<-release
		return demo.TextStats().Handle(ctx, task)
	})
	handle := e.proc.HandlerFunc(binding(h))
	m := e.job(t, "race")
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); require.NoError(t, handle(m.Copy())) }()
	}
	wg.Wait()
	require.True(t, allBlocked.Load(), "all seven duplicates waited on the first delivery's inbox row")
	require.EqualValues(t, 1, inside.Load(), "the handler ran once")
	require.Equal(t, 1, e.effects(t, m))
	require.Equal(t, jobs.StatusSucceeded, e.get(t, m).Status)
}

func TestFailureIsRecordedAndRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var calls atomic.Int32
	h := jobhandler.Func(func(ctx context.Context, task jobhandler.Task) (json.RawMessage, error) {
		if calls.Add(1) == 1 {
			// Effects written before the failure roll back with it.
			if _, err := task.Tx.Exec(ctx, `INSERT INTO demo_text_stats (job_id, words, lines, sha256) VALUES ($1, 0, 0, 'x')`, task.JobID); err != nil {
				return nil, err
			}
			return nil, errors.New("upstream flaked")
		}
		return demo.TextStats().Handle(ctx, task)
	})
	handle := e.proc.HandlerFunc(binding(h))
	m := e.job(t, "retry me")

	require.ErrorContains(t, handle(m), "upstream flaked", "an error nacks the message")
	j := e.get(t, m)
	require.Equal(t, jobs.StatusFailed, j.Status)
	require.Equal(t, "upstream flaked", j.LastError)
	require.Zero(t, e.effects(t, m))

	require.NoError(t, handle(m.Copy()))
	j = e.get(t, m)
	require.Equal(t, jobs.StatusSucceeded, j.Status)
	require.Equal(t, 2, j.Attempts)
	require.Empty(t, j.LastError)
	require.Equal(t, 1, e.effects(t, m))
}

func TestInvalidMessagesAreNacked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	handle := e.proc.HandlerFunc(binding(demo.TextStats()))
	require.Error(t, handle(message.NewMessage(uuid.NewString(), []byte(`{}`))), "no job id")

	m := message.NewMessage(uuid.NewString(), []byte(`{"text":"x"}`))
	m.Metadata.Set(outbox.MetaJobID, uuid.NewString())
	require.Error(t, handle(m), "a job that does not exist")
}

func TestBadResultFailsTheAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := jobhandler.Func(func(context.Context, jobhandler.Task) (json.RawMessage, error) {
		return json.RawMessage(`{not json`), nil
	})
	m := e.job(t, "x")
	err := e.proc.HandlerFunc(binding(h))(m)
	require.True(t, jobhandler.IsPermanent(err))
	require.Equal(t, jobs.StatusFailed, e.get(t, m).Status)
}
