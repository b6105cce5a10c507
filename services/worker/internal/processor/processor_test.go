package processor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/deadletter"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/jobhandler"
	"github.com/switchyard/switchyard/libs/jobmessage"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/outbox"
	"github.com/switchyard/switchyard/libs/sqsqueue"
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
	return &env{pool: pool, store: jobstore.New(pool), proc: processor.New(processor.Config{Pool: pool, Logger: logger})}
}

// deadLetters returns the messages waiting in the outbox for topic's DLQ.
func (e *env) deadLetters(t *testing.T, jobType string) []outbox.Message {
	t.Helper()
	claim, err := outbox.ClaimBatch(context.Background(), e.pool, 1000)
	require.NoError(t, err)
	defer claim.Release(context.Background())
	var out []outbox.Message
	for _, r := range claim.Rows {
		if r.Message.Topic == sqsqueue.DeadLetterTopic(jobType) {
			out = append(out, r.Message)
		}
	}
	return out
}

func deadLetterMeta(t *testing.T, m outbox.Message) deadletter.Metadata {
	t.Helper()
	meta, err := deadletter.Decode(m.Metadata[deadletter.Attribute])
	require.NoError(t, err)
	return meta
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
	m.Metadata.Set(jobmessage.JobID, sub.ID)
	m.Metadata.Set(jobmessage.ClientID, "c")
	return m
}

func (e *env) get(t *testing.T, m *message.Message) jobs.Job {
	t.Helper()
	j, err := e.store.Get(context.Background(), m.Metadata.Get(jobmessage.JobID), "c")
	require.NoError(t, err)
	return j
}

func (e *env) effects(t *testing.T, m *message.Message) int {
	t.Helper()
	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM demo_text_stats WHERE job_id = $1`,
		m.Metadata.Get(jobmessage.JobID)).Scan(&n))
	return n
}

// nacked reports whether the processor nacked m itself.
func nacked(m *message.Message) bool {
	select {
	case <-m.Nacked():
		return true
	default:
		return false
	}
}

func binding(h jobhandler.Handler) processor.Binding {
	return processor.Binding{JobType: "text-stats", HandlerName: "text-stats", Handler: h, Timeout: 5 * time.Second,
		Retry: jobs.RetryPolicy{Attempts: 3, Base: time.Second, Max: time.Minute}}
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

	before := time.Now()
	require.NoError(t, handle(m))
	require.True(t, nacked(m), "a failed attempt is nacked, to come back after its backoff")
	j := e.get(t, m)
	require.Equal(t, jobs.StatusFailed, j.Status)
	require.Equal(t, jobhandler.ClassHandlerError, j.LastErrorClass)
	require.NotContains(t, j.LastError, "upstream flaked", "the detail is the operators'")
	require.NotNil(t, j.NextAttemptAt)
	require.WithinRange(t, *j.NextAttemptAt, before.Add(500*time.Millisecond), time.Now().Add(time.Second), "half to all of the 1 s base")
	require.Zero(t, e.effects(t, m))

	require.NoError(t, handle(m.Copy()))
	j = e.get(t, m)
	require.Equal(t, jobs.StatusSucceeded, j.Status)
	require.Equal(t, 2, j.Attempts)
	require.Empty(t, j.LastError)
	require.Nil(t, j.NextAttemptAt)
	require.Equal(t, 1, e.effects(t, m))
	require.Empty(t, e.deadLetters(t, "text-stats"))
}

// TestLastAttemptDeadLettersWithMetadata fails a job on each of its three
// attempts, with errors that differ only in their variable parts.
func TestLastAttemptDeadLettersWithMetadata(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := jobhandler.Func(func(_ context.Context, task jobhandler.Task) (json.RawMessage, error) {
		return nil, fmt.Errorf("upstream answered 503 for job %s on attempt %d", task.JobID, task.Attempt)
	})
	handle := e.proc.HandlerFunc(binding(h))
	m := e.job(t, "doomed")
	m.Metadata.Set(jobmessage.TraceParent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	m.Metadata.Set(jobmessage.RequestID, "req-1")

	for range 2 {
		c := m.Copy()
		require.NoError(t, handle(c))
		require.True(t, nacked(c))
	}
	require.Equal(t, jobs.StatusFailed, e.get(t, m).Status)
	require.Empty(t, e.deadLetters(t, "text-stats"), "not before the last attempt")
	last := m.Copy()
	require.NoError(t, handle(last))
	require.False(t, nacked(last), "the last attempt's message is acknowledged: it lives on in the DLQ")

	j := e.get(t, m)
	require.Equal(t, jobs.StatusDeadLettered, j.Status)
	require.Equal(t, 3, j.Attempts)
	require.Equal(t, jobhandler.ClassHandlerError, j.LastErrorClass)
	require.NotContains(t, j.LastError, "upstream answered 503")
	require.NotNil(t, j.FinishedAt)

	dls := e.deadLetters(t, "text-stats")
	require.Len(t, dls, 1)
	dl := dls[0]
	require.Equal(t, m.UUID, dl.UUID, "dead letters keep the message id")
	require.JSONEq(t, string(m.Payload), string(dl.Payload))
	require.Equal(t, j.ID, dl.Metadata[jobmessage.JobID])
	require.Equal(t, "c", dl.Metadata[jobmessage.ClientID])
	require.Equal(t, "req-1", dl.Metadata[jobmessage.RequestID])
	meta := deadLetterMeta(t, dl)
	require.Equal(t, deadletter.ReasonAttemptsExhausted, meta.Reason)
	require.Equal(t, 3, meta.Attempts)
	require.Equal(t, "text-stats", meta.Handler)
	require.Equal(t, "text-stats", meta.Topic)
	require.Equal(t, j.ID, meta.JobID)
	require.Equal(t, "c", meta.ClientID)
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", meta.TraceID)
	require.Contains(t, meta.Error, "on attempt 3")
	require.NotNil(t, meta.FirstFailureAt)
	require.NotNil(t, meta.LastFailureAt)
	require.True(t, meta.LastFailureAt.After(*meta.FirstFailureAt))
	require.False(t, meta.DeadLetteredAt.IsZero())

	history, err := e.store.Attempts(context.Background(), j.ID)
	require.NoError(t, err)
	require.Len(t, history, 3)
	for _, a := range history {
		require.Equal(t, "failed", a.Outcome)
		require.Equal(t, meta.Fingerprint, a.Fingerprint, "one fingerprint across attempts")
	}

	// A late duplicate of the message is dropped, not run again.
	require.NoError(t, handle(m.Copy()))
	require.Equal(t, 3, e.get(t, m).Attempts)
	require.Len(t, e.deadLetters(t, "text-stats"), 1)
}

func TestPermanentErrorSkipsRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := jobhandler.Func(func(context.Context, jobhandler.Task) (json.RawMessage, error) {
		return nil, jobhandler.Permanent(errors.New("target answered 400"))
	})
	m := e.job(t, "bad")
	require.NoError(t, e.proc.HandlerFunc(binding(h))(m))
	j := e.get(t, m)
	require.Equal(t, jobs.StatusDeadLettered, j.Status)
	require.Equal(t, 1, j.Attempts)
	dls := e.deadLetters(t, "text-stats")
	require.Len(t, dls, 1)
	meta := deadLetterMeta(t, dls[0])
	require.Equal(t, deadletter.ReasonPermanentError, meta.Reason)
	require.Equal(t, 1, meta.Attempts)
	require.Equal(t, "permanent: target answered 400", meta.Error)
}

// TestStrayMessagesAreDeadLettered covers messages that are not job
// messages: they go to the DLQ with their attributes and are acknowledged,
// so they never come back to the consumer.
func TestStrayMessagesAreDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	handle := e.proc.HandlerFunc(binding(demo.TextStats()))

	garbage := message.NewMessage("not-a-uuid", []byte("hello, not JSON"))
	garbage.Metadata.Set("colour", "red")
	sqsID := uuid.NewString()
	garbage.Metadata.Set(jobmessage.SQSMessageID, sqsID)
	garbage.Metadata.Set(jobmessage.ReceiptHandle, "rh")
	require.NoError(t, handle(garbage))

	badID := message.NewMessage(uuid.NewString(), []byte(`{}`))
	badID.Metadata.Set(jobmessage.JobID, "123")
	require.NoError(t, handle(badID))

	orphan := message.NewMessage(uuid.NewString(), []byte(`{"text":"x"}`))
	orphan.Metadata.Set(jobmessage.JobID, uuid.NewString())
	require.NoError(t, handle(orphan))

	byID := map[string]deadletter.Metadata{}
	payloads := map[string]string{}
	for _, dl := range e.deadLetters(t, "text-stats") {
		byID[dl.UUID] = deadLetterMeta(t, dl)
		payloads[dl.UUID] = string(dl.Payload)
		require.Len(t, dl.Metadata, 1, "a stray's attributes travel inside the metadata")
	}
	require.Len(t, byID, 3)
	g := byID[sqsID]
	require.Equal(t, deadletter.ReasonUndecodable, g.Reason, "a stray without a UUID keeps SQS's message id")
	require.Equal(t, map[string]string{"colour": "red"}, g.OriginalAttributes, "delivery details are not the message's")
	require.Equal(t, "hello, not JSON", payloads[sqsID])
	require.NotEmpty(t, g.Fingerprint)
	require.Equal(t, deadletter.ReasonUndecodable, byID[badID.UUID].Reason)
	require.Equal(t, deadletter.ReasonUnknownJob, byID[orphan.UUID].Reason)
	require.Equal(t, orphan.Metadata.Get(jobmessage.JobID), byID[orphan.UUID].JobID)
}

func TestBadResultIsPermanent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := jobhandler.Func(func(context.Context, jobhandler.Task) (json.RawMessage, error) {
		return json.RawMessage(`{not json`), nil
	})
	m := e.job(t, "x")
	require.NoError(t, e.proc.HandlerFunc(binding(h))(m))
	require.Equal(t, jobs.StatusDeadLettered, e.get(t, m).Status)
	require.Equal(t, deadletter.ReasonPermanentError, deadLetterMeta(t, e.deadLetters(t, "text-stats")[0]).Reason)
}

// visibilityLog records the visibility changes the processor asks for.
type visibilityLog struct {
	mu    sync.Mutex
	calls []time.Duration
}

func (v *visibilityLog) ChangeVisibility(_ context.Context, topic, receipt string, d time.Duration) error {
	if topic != "text-stats" || receipt != "rh-1" {
		return fmt.Errorf("unexpected topic %q or receipt handle %q", topic, receipt)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls = append(v.calls, d)
	return nil
}

func (v *visibilityLog) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.calls)
}

// TestBackoffAndHeartbeatGoToTheQueue checks what the processor asks of
// SQS (the real calls are tested in the runner): a running handler's
// message is renewed every third of the visibility timeout, and a failed
// attempt's message is hidden for exactly its backoff.
func TestBackoffAndHeartbeatGoToTheQueue(t *testing.T) {
	t.Parallel()
	pool := stacktest.NewPool(t)
	vis := &visibilityLog{}
	proc := processor.New(processor.Config{
		Pool: pool, Logger: slog.New(slog.DiscardHandler), Queue: vis, VisibilityTimeout: 1500 * time.Millisecond,
		Jitter: func() float64 { return 0.5 },
	})
	e := &env{pool: pool, store: jobstore.New(pool), proc: proc}
	h := jobhandler.Func(func(ctx context.Context, _ jobhandler.Task) (json.RawMessage, error) {
		// A slow handler: it returns once two heartbeats went out.
		for vis.count() < 2 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
		return nil, errors.New("slow and then failed")
	})
	b := binding(h)
	b.Retry = jobs.RetryPolicy{Attempts: 3, Base: 4 * time.Second, Max: time.Minute}
	m := e.job(t, "slow")
	m.Metadata.Set(jobmessage.ReceiptHandle, "rh-1")
	require.NoError(t, proc.HandlerFunc(b)(m))
	require.True(t, nacked(m))

	vis.mu.Lock()
	defer vis.mu.Unlock()
	require.Len(t, vis.calls, 3)
	require.Equal(t, []time.Duration{1500 * time.Millisecond, 1500 * time.Millisecond, 3 * time.Second}, vis.calls,
		"two heartbeats renewing the visibility timeout, then the backoff: 4 s base, jitter 0.5 -> 3 s")
}

// TestMessagesWaitOutADatabaseOutage cuts the worker's connection to a
// real Postgres while it holds a message: the consumer waits for the
// database instead of failing the message (the message stays hidden by
// its heartbeat, so an outage adds nothing to its receive count and
// cannot move it to the DLQ), and once Postgres answers again the message
// is processed in place: the job succeeds once, nothing is nacked.
func TestMessagesWaitOutADatabaseOutage(t *testing.T) {
	t.Parallel()
	o := newOutage(t)
	m := o.job(t, "one two")
	o.proxy.Cut()
	done := make(chan error, 1)
	go func() { done <- o.proc.HandlerFunc(binding(demo.TextStats()))(m) }()
	require.Eventually(t, func() bool { return o.waiting(t) == 1 }, 10*time.Second, 10*time.Millisecond,
		"the consumer waits for the database")
	require.Eventually(t, func() bool { return o.vis.count() >= 2 }, 10*time.Second, 50*time.Millisecond,
		"the waiting message's heartbeat keeps it hidden")
	o.proxy.Restore()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the message was not processed after the database came back")
	}
	require.Equal(t, jobs.StatusSucceeded, o.get(t, m).Status)
	require.Equal(t, 1, o.effects(t, m), "applied once")
	require.False(t, nacked(m))
	require.Zero(t, o.waiting(t))
	o.vis.mu.Lock()
	defer o.vis.mu.Unlock()
	for _, d := range o.vis.calls {
		require.Equal(t, o.visibility, d, "only heartbeats: the message was never hidden for less")
	}
}

// TestShutdownEndsTheWaitForTheDatabase: a worker that shuts down while
// its consumers wait for Postgres does not hang; the message's handler
// returns its error (the message comes back when its visibility ends) and
// nothing was applied.
func TestShutdownEndsTheWaitForTheDatabase(t *testing.T) {
	t.Parallel()
	o := newOutage(t)
	m := o.job(t, "one two")
	ctx, shutdown := context.WithCancel(context.Background())
	m.SetContext(ctx)
	o.proxy.Cut()
	done := make(chan error, 1)
	go func() { done <- o.proc.HandlerFunc(binding(demo.TextStats()))(m) }()
	require.Eventually(t, func() bool { return o.waiting(t) == 1 }, 10*time.Second, 10*time.Millisecond)
	shutdown()
	select {
	case err := <-done:
		require.Error(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the handler kept waiting after shutdown")
	}
	require.Zero(t, o.waiting(t))
	o.proxy.Restore()
	require.NotEqual(t, jobs.StatusSucceeded, o.get(t, m).Status, "nothing applied")
	require.Zero(t, o.effects(t, m))
}

// outage is a processor whose connections to a real Postgres go through
// a proxy the test can cut, and a direct pool to set up and check jobs.
type outage struct {
	*env
	proxy      *stacktest.Proxy
	vis        *visibilityLog
	reg        *prometheus.Registry
	visibility time.Duration
}

func newOutage(t *testing.T) *outage {
	t.Helper()
	url := stacktest.NewDatabase(t)
	direct := stacktest.NewPoolURL(t, url)
	u, err := neturl.Parse(url)
	require.NoError(t, err)
	proxy := stacktest.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	proxied := stacktest.NewPoolURL(t, u.String())
	o := &outage{proxy: proxy, vis: &visibilityLog{}, reg: prometheus.NewRegistry(), visibility: 1500 * time.Millisecond}
	o.env = &env{pool: direct, store: jobstore.New(direct), proc: processor.New(processor.Config{
		Pool: proxied, Logger: slog.New(slog.DiscardHandler), Metrics: processor.NewMetrics(o.reg),
		Queue: o.vis, VisibilityTimeout: o.visibility,
	})}
	return o
}

// job is env.job for a message with a receipt handle (so that it has a
// heartbeat).
func (o *outage) job(t *testing.T, text string) *message.Message {
	t.Helper()
	m := o.env.job(t, text)
	m.Metadata.Set(jobmessage.ReceiptHandle, "rh-1")
	return m
}

// waiting reads switchyard_worker_waiting_for_database.
func (o *outage) waiting(t *testing.T) float64 {
	t.Helper()
	families, err := o.reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == "switchyard_worker_waiting_for_database" {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("switchyard_worker_waiting_for_database is not registered")
	return 0
}
