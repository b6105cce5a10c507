package bulkreplay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/deadletter"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/replayplan"
	"github.com/switchyard/switchyard/services/replay/internal/bulkreplay"
	"github.com/switchyard/switchyard/services/replay/internal/deadletterstore"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

type env struct {
	t     *testing.T
	pool  *pgxpool.Pool
	store *deadletterstore.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pool := stacktest.NewPool(t)
	return &env{t: t, pool: pool, store: deadletterstore.New(pool)}
}

// deadLetter stores n dead letters of group ("a" or "b"), each of its own
// dead-lettered job, as the drain would, and returns their job ids.
func (e *env) deadLetter(group string, n int) []string {
	e.t.Helper()
	ctx := context.Background()
	js := jobstore.New(e.pool)
	fp := deadletter.Fingerprint("text-stats", true, "group "+group+" is broken")
	var ids []string
	var in []deadletterstore.Incoming
	for i := range n {
		sub := jobs.Submission{ID: uuid.NewString(), MessageID: uuid.NewString(), Type: "text-stats", ClientID: "client-1",
			Payload: json.RawMessage(fmt.Sprintf(`{"text":"%s-%d"}`, group, i))}
		_, _, err := js.Accept(ctx, sub)
		require.NoError(e.t, err)
		_, err = js.MarkProcessing(ctx, sub.ID, sub.MessageID)
		require.NoError(e.t, err)
		tx, err := e.pool.Begin(ctx)
		require.NoError(e.t, err)
		_, err = jobstore.MarkDeadLettered(ctx, tx, sub.ID, "attempts_exhausted")
		require.NoError(e.t, err)
		require.NoError(e.t, tx.Commit(ctx))
		in = append(in, deadletterstore.Incoming{MessageID: sub.MessageID, SQSMessageID: uuid.NewString(), Topic: "text-stats",
			JobID: sub.ID, Payload: sub.Payload, Meta: &deadletter.Metadata{Reason: deadletter.ReasonPermanentError,
				Error: "group " + group + " is broken", Fingerprint: fp, Attempts: 1, Handler: "text-stats", Topic: "text-stats",
				JobID: sub.ID, ClientID: "client-1", DeadLetteredAt: time.Now().UTC()}})
		ids = append(ids, sub.ID)
	}
	stored, err := e.store.Ingest(ctx, in)
	require.NoError(e.t, err)
	require.Equal(e.t, n, stored)
	return ids
}

func (e *env) fingerprint(group string) string {
	return deadletter.Fingerprint("text-stats", true, "group "+group+" is broken")
}

// settle stands in for the worker: for every replayed job it records an
// attempt with the replay's message and moves the job to succeeded, or to
// dead_lettered when fails says so, until ctx ends.
func (e *env) settle(ctx context.Context, fails func(payload string) bool) {
	go func() {
		for ctx.Err() == nil {
			// The message of the job's latest replay.
			rows, err := e.pool.Query(ctx, `
				SELECT j.id::text, j.payload::text, d.replay_message_id FROM jobs j
				JOIN LATERAL (SELECT replay_message_id FROM dead_letters WHERE job_id = j.id AND replay_message_id IS NOT NULL
					ORDER BY replayed_at DESC LIMIT 1) d ON true
				WHERE j.status = 'replayed'`)
			if err != nil {
				return
			}
			type job struct{ id, payload, message string }
			var js []job
			for rows.Next() {
				var j job
				if rows.Scan(&j.id, &j.payload, &j.message) == nil {
					js = append(js, j)
				}
			}
			rows.Close()
			for _, j := range js {
				status, outcome := jobs.StatusSucceeded, "succeeded"
				if fails(j.payload) {
					status, outcome = jobs.StatusDeadLettered, "failed"
				}
				_, _ = e.pool.Exec(ctx, `
					WITH a AS (INSERT INTO job_attempts (job_id, attempt, message_id, outcome, finished_at)
						SELECT $1, COALESCE(max(attempt), 0) + 1, $3, $4, clock_timestamp() FROM job_attempts WHERE job_id = $1)
					UPDATE jobs SET status = $2, finished_at = clock_timestamp() WHERE id = $1 AND status = 'replayed'`,
					j.id, status, j.message, outcome)
			}
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
}

// run starts a runner until the returned stop is called.
func (e *env) run() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	r := bulkreplay.New(e.store, bulkreplay.Config{ScanInterval: 50 * time.Millisecond, PollInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	var wg sync.WaitGroup
	wg.Go(func() { _ = r.Run(ctx) })
	return func() { cancel(); wg.Wait() }
}

func (e *env) create(req deadletterstore.BulkRequest) deadletterstore.Operation {
	e.t.Helper()
	if req.RatePerS == 0 {
		req.RatePerS = 500
	}
	if req.SettleTimeout == 0 {
		req.SettleTimeout = time.Minute
	}
	if req.StopIfFailedRatio == 0 {
		req.StopIfFailedRatio = 0.1
	}
	req.Audit = deadletterstore.AuditEntry{Actor: "ops-alice", Action: "replays.create", RequestID: "req-1"}
	op, err := e.store.CreateOperation(context.Background(), req)
	require.NoError(e.t, err)
	return op
}

// await polls the operation until it is no longer running.
func (e *env) await(id string) deadletterstore.Operation {
	e.t.Helper()
	var op deadletterstore.Operation
	require.Eventually(e.t, func() bool {
		var err error
		op, err = e.store.GetOperation(context.Background(), id)
		require.NoError(e.t, err)
		return op.Status != deadletterstore.OperationRunning
	}, time.Minute, 10*time.Millisecond)
	return op
}

func (e *env) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func TestDryRunMatchesTheOperation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.deadLetter("a", 12)
	e.deadLetter("b", 5)
	req := deadletterstore.BulkRequest{Filter: deadletterstore.Filter{Fingerprint: e.fingerprint("a")}, Max: 10,
		Stages: []replayplan.Stage{{Count: 1}, {Percent: 50}}, RatePerS: 100,
		Audit: deadletterstore.AuditEntry{Actor: "ops-alice", Action: "replays.dry_run"}}
	sel, targets, err := e.store.Plan(ctx, req)
	require.NoError(t, err)
	require.Equal(t, 12, sel.Matched)
	require.Equal(t, 10, sel.WouldReplay)
	require.Equal(t, 2, sel.BeyondMax)
	require.Equal(t, []int{1, 5, 10}, targets)
	require.Zero(t, e.count(`SELECT count(*) FROM replay_operations`), "a dry run changes nothing")
	require.Equal(t, 1, e.count(`SELECT count(*) FROM admin_audit WHERE action = 'replays.dry_run' AND (counts->>'would_replay')::int = 10`))

	op := e.create(req)
	sel.Replay = nil // the operation keeps the counts; its items are the selection
	require.Equal(t, sel, op.Selection, "the operation selects what the dry run counted")
	require.Equal(t, targets, op.StageTargets)
	require.Equal(t, 10, op.Progress.Total)
	require.Equal(t, 10, op.Progress.Pending)
	require.Equal(t, 1, op.Stage)
}

func TestStagedReleaseWaitsForEachStage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.deadLetter("a", 30)
	e.settle(ctx, func(string) bool { return false })
	stop := e.run()
	defer stop()
	op := e.create(deadletterstore.BulkRequest{Filter: deadletterstore.Filter{Topic: "text-stats"},
		Stages: []replayplan.Stage{{Count: 1}, {Percent: 10}, {Percent: 100}}})
	require.Equal(t, []int{1, 3, 30}, op.StageTargets)
	op = e.await(op.ID)
	require.Equal(t, deadletterstore.OperationCompleted, op.Status, op.StopReason)
	require.Equal(t, 30, op.Progress.Replayed)
	require.Equal(t, 3, op.Stage)
	require.Eventually(t, func() bool {
		op, _ = e.store.GetOperation(context.Background(), op.ID)
		return op.Progress.Succeeded == 30
	}, 10*time.Second, 10*time.Millisecond)
	// Each stage counts its own items: 1, 2 and 27.
	require.Len(t, op.Progress.ByStage, 3)
	for i, n := range []int{1, 2, 27} {
		st := op.Progress.ByStage[i]
		require.Equal(t, [3]int{n, n, n}, [3]int{st.Total, st.Replayed, st.Succeeded}, "stage %d", i+1)
		require.Zero(t, st.FailedAgain+st.Pending+st.InFlight, "stage %d", i+1)
	}

	// Each stage started only after every job of the stages before it had
	// settled.
	for _, cut := range [][2]int{{1, 2}, {3, 4}} {
		var settled, nextStart time.Time
		require.NoError(t, e.pool.QueryRow(context.Background(), `
			SELECT (SELECT max(j.finished_at) FROM replay_operation_items i JOIN jobs j ON j.id = i.job_id WHERE i.operation_id = $1 AND i.seq <= $2),
				(SELECT min(processed_at) FROM replay_operation_items WHERE operation_id = $1 AND seq >= $3)`,
			op.ID, cut[0], cut[1]).Scan(&settled, &nextStart))
		require.True(t, nextStart.After(settled), "item %d replayed at %s, before items up to %d settled at %s", cut[1], nextStart, cut[0], settled)
	}
	require.Equal(t, 30, e.count(`SELECT count(*) FROM dead_letters WHERE status = 'replayed' AND replay_count = 1 AND replayed_by = 'ops-alice'`))
	require.Equal(t, 1, e.count(`SELECT count(*) FROM admin_audit WHERE action = 'replays.completed' AND actor = $1 AND target = $2`,
		deadletterstore.SystemActor, op.ID))
}

func TestGuardStopsAReplayThatFailsAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.deadLetter("b", 20)
	var fixed atomic.Bool
	e.settle(ctx, func(string) bool { return !fixed.Load() }) // still broken
	stop := e.run()
	defer stop()
	op := e.create(deadletterstore.BulkRequest{Filter: deadletterstore.Filter{Fingerprint: e.fingerprint("b")},
		Stages: []replayplan.Stage{{Count: 1}, {Percent: 10}}})
	op = e.await(op.ID)
	require.Equal(t, deadletterstore.OperationStopped, op.Status)
	require.Contains(t, op.StopReason, "1 of 1 settled replays were dead-lettered again")
	require.Equal(t, 1, op.Progress.Replayed, "the canary only")
	require.Equal(t, 1, op.Progress.FailedAgain)
	require.Equal(t, 19, op.Progress.Pending)
	// 1, then 10% of 20 (2 in all), then the rest: only the canary went.
	require.Equal(t, []int{1, 2, 20}, op.StageTargets)
	require.Len(t, op.Progress.ByStage, 3)
	for i, want := range [][3]int{{1, 1, 0}, {1, 0, 1}, {18, 0, 18}} {
		st := op.Progress.ByStage[i]
		require.Equal(t, want, [3]int{st.Total, st.FailedAgain, st.Pending}, "stage %d: total, failed again, pending", i+1)
	}
	require.Equal(t, 1, e.count(`SELECT count(*) FROM admin_audit WHERE action = 'replays.stopped' AND target = $1 AND outcome LIKE '%dead-lettered again%'`, op.ID))

	// A stopped operation cannot be cancelled.
	_, err := e.store.CancelOperation(context.Background(), op.ID, deadletterstore.AuditEntry{Actor: "ops-alice", Action: "replays.cancel"})
	require.ErrorIs(t, err, deadletter.ErrOperationFinished)

	// The canary's job is fixed and replayed again later: the stopped
	// operation's record still says its replay failed.
	fixed.Store(true)
	items, _, err := e.store.OperationItems(context.Background(), op.ID, deadletterstore.ItemReplayed, 10, 0)
	require.NoError(t, err)
	require.Len(t, items, 1)
	_, err = e.store.Replay(context.Background(), deadletterstore.ReplayRequest{ID: items[0].DeadLetterID, Force: true,
		Audit: deadletterstore.AuditEntry{Actor: "ops-alice", Action: "dead_letters.replay"}})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return e.count(`SELECT count(*) FROM jobs WHERE id = $1 AND status = 'succeeded'`, items[0].JobID) == 1
	}, 10*time.Second, 10*time.Millisecond)
	again, err := e.store.GetOperation(context.Background(), op.ID)
	require.NoError(t, err)
	require.Equal(t, 1, again.Progress.FailedAgain, "outcomes belong to the operation's message, not to the job's status now")
	require.Zero(t, again.Progress.Succeeded)
}

func TestCancelStopsAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deadLetter("a", 40)
	stop := e.run()
	defer stop()
	op := e.create(deadletterstore.BulkRequest{Filter: deadletterstore.Filter{Topic: "text-stats"}, RatePerS: 20})
	require.Eventually(t, func() bool {
		return e.count(`SELECT count(*) FROM replay_operation_items WHERE operation_id = $1 AND state = 'replayed'`, op.ID) >= 3
	}, 30*time.Second, 10*time.Millisecond)
	cancelled, err := e.store.CancelOperation(context.Background(), op.ID, deadletterstore.AuditEntry{Actor: "ops-bob", Action: "replays.cancel"})
	require.NoError(t, err)
	require.Equal(t, deadletterstore.OperationCancelled, cancelled.Status)
	require.Equal(t, "ops-bob", cancelled.CancelledBy)
	atCancel := cancelled.Progress.Replayed
	require.Less(t, atCancel, 40)
	stop() // the runner has let go of the operation
	final, err := e.store.GetOperation(context.Background(), op.ID)
	require.NoError(t, err)
	require.Equal(t, atCancel, final.Progress.Replayed, "no item is replayed after the cancel commits")
	require.Equal(t, atCancel, e.count(`SELECT count(*) FROM dead_letters WHERE status = 'replayed'`))
}

// TestResumeWithoutDoubleReplay runs two runners (two replay services) on
// one operation; the one holding it is stopped mid-way, and the other
// resumes: every dead letter is replayed exactly once.
func TestResumeWithoutDoubleReplay(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deadLetter("a", 60)
	stopA := e.run()
	op := e.create(deadletterstore.BulkRequest{Filter: deadletterstore.Filter{Topic: "text-stats"}, RatePerS: 40})
	require.Eventually(t, func() bool {
		return e.count(`SELECT count(*) FROM replay_operation_items WHERE operation_id = $1 AND state = 'replayed'`, op.ID) >= 10
	}, 30*time.Second, 10*time.Millisecond)
	stopB := e.run() // finds the operation held
	defer stopB()
	stopA()
	mid := e.count(`SELECT count(*) FROM replay_operation_items WHERE operation_id = $1 AND state = 'replayed'`, op.ID)
	require.Less(t, mid, 60, "stopped mid-way")
	op = e.await(op.ID)
	require.Equal(t, deadletterstore.OperationCompleted, op.Status)
	require.Equal(t, 60, op.Progress.Replayed)
	require.Equal(t, 60, e.count(`SELECT count(*) FROM dead_letters WHERE status = 'replayed' AND replay_count = 1`))
	require.Equal(t, 60, e.count(`SELECT count(DISTINCT payload->'metadata'->>'replay_of') FROM watermill_outbox WHERE payload->'metadata'->>'replay_of' IS NOT NULL`),
		"one outbox message per dead letter")
	require.Equal(t, 60, e.count(`SELECT count(*) FROM watermill_outbox WHERE payload->'metadata'->>'replay_of' IS NOT NULL`))

	// The same filter again replays nothing: every dead letter was.
	again := e.create(deadletterstore.BulkRequest{Filter: deadletterstore.Filter{Topic: "text-stats"}})
	require.Equal(t, deadletterstore.OperationCompleted, again.Status)
	require.Zero(t, again.Progress.Total)
	require.Equal(t, 60, again.Selection.Deduplicated)
}
