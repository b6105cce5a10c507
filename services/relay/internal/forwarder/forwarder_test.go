package forwarder_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	wmsqs "github.com/ThreeDotsLabs/watermill-aws/sqs"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/jobmessage"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/outbox"
	"github.com/switchyard/switchyard/libs/sqsqueue"
	"github.com/switchyard/switchyard/services/relay/internal/forwarder"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

type env struct {
	pool   *pgxpool.Pool
	dbURL  string
	queues *sqsqueue.Queues
	client *sqs.Client
	logger *slog.Logger
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	dbURL := stacktest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	stacktest.SQSEndpoint(t)
	awsCfg, err := sqsqueue.LoadAWSConfig(ctx)
	require.NoError(t, err)
	client := sqs.NewFromConfig(awsCfg)
	queues, err := sqsqueue.NewQueues(client, sqsqueue.Config{Prefix: stacktest.QueuePrefix(t)})
	require.NoError(t, err)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return &env{pool: pool, dbURL: dbURL, queues: queues, client: client, logger: logger}
}

func (e *env) forwarder(t testing.TB, cfg forwarder.Config) *forwarder.Forwarder {
	t.Helper()
	f, err := forwarder.New(e.pool, database.NewDialer(database.Config{URL: e.dbURL}), e.queues, cfg, e.logger, nil)
	require.NoError(t, err)
	return f
}

// accept submits n jobs of jobType through the job store, as the gateway does.
func (e *env) accept(t testing.TB, jobType string, n int) []string {
	t.Helper()
	store := jobstore.New(e.pool)
	ids := make([]string, n)
	for i := range n {
		job, _, err := store.Accept(context.Background(), jobs.Submission{
			ID: uuid.Must(uuid.NewV7()).String(), MessageID: uuid.Must(uuid.NewV7()).String(),
			Type: jobType, ClientID: "c1", Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)),
		})
		require.NoError(t, err)
		ids[i] = job.ID
	}
	return ids
}

// drain receives and deletes everything in topic's queue until nothing
// more arrives, and returns the job ids seen with how often each was
// delivered.
func (e *env) drain(t testing.TB, topic string) map[string]int {
	t.Helper()
	ctx := context.Background()
	url, err := e.queues.Ensure(ctx, topic)
	require.NoError(t, err)
	seen := map[string]int{}
	empty := 0
	// Until the queue stays empty (three empty polls in a row), not until
	// the expected count: a late duplicate must be seen, not left behind.
	for empty < 3 {
		out, err := e.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: &url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"},
		})
		require.NoError(t, err)
		if len(out.Messages) == 0 {
			empty++
			continue
		}
		empty = 0
		var del []types.DeleteMessageBatchRequestEntry
		for i, m := range out.Messages {
			wm, err := wmsqs.DefaultMarshalerUnmarshaler{}.Unmarshal(&m)
			require.NoError(t, err)
			seen[wm.Metadata.Get(jobmessage.JobID)]++
			del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
		}
		_, err = e.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: del})
		require.NoError(t, err)
	}
	return seen
}

func (e *env) backlog(t testing.TB) int64 {
	t.Helper()
	bl, err := outbox.ReadBacklog(context.Background(), e.pool)
	require.NoError(t, err)
	return bl.Pending
}

func TestForwardOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	a := e.accept(t, "alpha", 23)
	b := e.accept(t, "beta", 4)
	f := e.forwarder(t, forwarder.Config{BatchSize: 100})

	n, err := f.ForwardOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, 27, n)
	require.Zero(t, e.backlog(t))

	var queued int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE status = 'queued' AND queued_at IS NOT NULL`).Scan(&queued))
	require.Equal(t, 27, queued)

	for topic, ids := range map[string][]string{"alpha": a, "beta": b} {
		seen := e.drain(t, topic)
		require.Len(t, seen, len(ids), topic)
		for _, id := range ids {
			require.Equal(t, 1, seen[id], "job %s delivered once", id)
		}
	}

	// Message attributes carry what the worker needs.
	e.accept(t, "alpha", 1)
	_, err = f.ForwardOnce(ctx)
	require.NoError(t, err)
	url, err := e.queues.Ensure(ctx, "alpha")
	require.NoError(t, err)
	out, err := e.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 2, MessageAttributeNames: []string{"All"}})
	require.NoError(t, err)
	require.Len(t, out.Messages, 1)
	wm, err := wmsqs.DefaultMarshalerUnmarshaler{}.Unmarshal(&out.Messages[0])
	require.NoError(t, err)
	require.NotEmpty(t, wm.UUID)
	require.Equal(t, "alpha", wm.Metadata.Get(jobmessage.JobType))
	require.Equal(t, "c1", wm.Metadata.Get(jobmessage.ClientID))
	require.JSONEq(t, `{"n":0}`, string(wm.Payload))
}

// TestNotifyWakesTheRelay sets the fallback poll to a minute: only NOTIFY
// can explain a prompt delivery.
func TestNotifyWakesTheRelay(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.forwarder(t, forwarder.Config{PollInterval: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	require.Eventually(t, func() bool { return f.Listening(ctx) == nil }, 10*time.Second, 10*time.Millisecond)

	for round := range 3 {
		start := time.Now()
		e.accept(t, "prompt", 1)
		require.Eventually(t, func() bool { return e.backlog(t) == 0 }, 5*time.Second, 5*time.Millisecond, "round %d", round)
		t.Logf("round %d: forwarded %s after commit", round, time.Since(start))
	}
	seen := e.drain(t, "prompt")
	require.Len(t, seen, 3)
}

// TestConcurrentRelays runs two forwarders (as two relay replicas would)
// while jobs keep arriving: every job reaches SQS exactly once.
func TestConcurrentRelays(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		f := e.forwarder(t, forwarder.Config{Loops: 3, BatchSize: 20})
		wg.Add(1)
		go func() { defer wg.Done(); _ = f.Run(ctx) }()
	}
	var ids []string
	for range 6 {
		ids = append(ids, e.accept(t, "shared", 50)...)
	}
	require.Eventually(t, func() bool { return e.backlog(t) == 0 }, 60*time.Second, 20*time.Millisecond)
	cancel()
	wg.Wait()

	seen := e.drain(t, "shared")
	require.Len(t, seen, len(ids))
	for _, id := range ids {
		require.Equal(t, 1, seen[id], "job %s", id)
	}
}

// TestRefusedChunkStaysInOutbox writes rows for a topic whose queue SQS
// refuses to create (the gateway only accepts valid job type names, so only
// a bug or a hand-written row can do this): rows of other topics are
// forwarded, and the refused ones stay for a later attempt.
func TestRefusedChunkStaysInOutbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	e.accept(t, "fine", 3)
	require.NoError(t, pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		return outbox.Write(ctx, tx, outbox.Message{UUID: "bad", Topic: "not/a queue name", Payload: []byte(`{}`)})
	}))
	e.accept(t, "fine", 3)

	f := e.forwarder(t, forwarder.Config{})
	n, err := f.ForwardOnce(ctx)
	require.Equal(t, 7, n)
	require.ErrorContains(t, err, "not/a queue name")
	require.EqualValues(t, 1, e.backlog(t))
	require.Len(t, e.drain(t, "fine"), 6)
}

// TestEmptyMetadataValuesAreDropped: SQS refuses empty attribute values.
func TestEmptyMetadataValuesAreDropped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	require.NoError(t, pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		return outbox.Write(ctx, tx, outbox.Message{UUID: "m1", Topic: "sparse", Payload: []byte(`{}`),
			Metadata: map[string]string{jobmessage.JobID: "j1", jobmessage.TraceParent: ""}})
	}))
	_, err := e.forwarder(t, forwarder.Config{}).ForwardOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"j1": 1}, e.drain(t, "sparse"))
}

// TestDeadLettersGoToTheDLQ: a message the worker dead-letters is written
// to the outbox under the job type's dead-letter topic; the relay delivers
// it to the job type's DLQ, not its queue, and leaves the job's status
// alone.
func TestDeadLettersGoToTheDLQ(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	ids := e.accept(t, "orders", 1)
	_, err := e.forwarder(t, forwarder.Config{}).ForwardOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{ids[0]: 1}, e.drain(t, "orders"))

	require.NoError(t, pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		if _, err := jobstore.MarkDeadLettered(ctx, tx, ids[0], "attempts_exhausted"); err != nil {
			return err
		}
		return outbox.Write(ctx, tx, outbox.Message{UUID: uuid.NewString(), Topic: sqsqueue.DeadLetterTopic("orders"),
			Payload: []byte(`{"n":0}`), Metadata: map[string]string{jobmessage.JobID: ids[0], "switchyard_dead_letter": `{"reason":"permanent_error"}`}})
	}))
	_, err = e.forwarder(t, forwarder.Config{}).ForwardOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{ids[0]: 1}, e.drain(t, sqsqueue.DeadLetterTopic("orders")))
	require.Empty(t, e.drain(t, "orders"))
	var status string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT status FROM jobs WHERE id = $1`, ids[0]).Scan(&status))
	require.Equal(t, "dead_lettered", status)
}

// TestMaxRatePacesSends: with MaxRate a claimed batch is sent only with
// its share of the rate. The bucket starts full (one claim's worth); the
// next claim would need 20 s at 1 message/s, more than its 2 s context
// allows, so it is released unsent and its rows stay in the outbox. (At
// 4 messages/s a first send slowed to 3 s by a loaded CI machine refilled
// enough for the second claim to pass.) A rate that cannot carry the
// loops' claims is refused at start.
func TestMaxRatePacesSends(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	ids := e.accept(t, "paced", 40)
	// The first send is bounded by SendTimeout (5 s), far below the 18 s
	// that would refill the bucket for the second claim.
	f := e.forwarder(t, forwarder.Config{Loops: 1, BatchSize: 20, MaxRate: 1, SendTimeout: 5 * time.Second, FinishTimeout: 30 * time.Second})
	n, err := f.ForwardOnce(ctx)
	require.NoError(t, err)
	require.Equal(t, 20, n)
	require.EqualValues(t, 20, e.backlog(t))

	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = f.ForwardOnce(short)
	require.ErrorContains(t, err, "waiting for the send rate's share")
	require.EqualValues(t, 20, e.backlog(t), "the claim was released unsent")
	seen := e.drain(t, "paced")
	require.Len(t, seen, 20, "only the first claim reached SQS")
	for _, id := range ids[20:] {
		require.Zero(t, seen[id])
	}

	bad := forwarder.Config{Loops: 4, BatchSize: 50, MaxRate: 10}
	bad.SetDefaults()
	require.ErrorContains(t, bad.Validate(), "cannot send 4 loops' claims of 50 rows")
}
