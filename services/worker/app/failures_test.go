package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/deadletter"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/jobhandler"
	"github.com/switchyard/switchyard/libs/jobmessage"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/outbox"
	"github.com/switchyard/switchyard/libs/sqsqueue"
	"github.com/switchyard/switchyard/services/worker/app"
	"github.com/switchyard/switchyard/services/worker/demo"
)

// worker is a running worker with the Postgres and SQS it works on.
type worker struct {
	pool   *pgxpool.Pool
	store  *jobstore.Store
	queues *sqsqueue.Queues
}

// startWorker runs a worker on a fresh database and queue prefix with the
// given job types file and handlers, until the test ends.
func startWorker(t *testing.T, jobsYAML string, reg *jobhandler.Registry, queueCfg sqsqueue.Config) *worker {
	t.Helper()
	ctx := context.Background()
	dbURL := stacktest.NewDatabase(t)
	stacktest.SQSEndpoint(t)
	queueCfg.Prefix = stacktest.QueuePrefix(t)
	jobsFile := filepath.Join(t.TempDir(), "jobs.yaml")
	require.NoError(t, os.WriteFile(jobsFile, []byte(jobsYAML), 0o644))
	cfg := app.Config{
		OpsAddr: "127.0.0.1:0", DatabaseURL: config.NewSecret(dbURL), JobsFile: jobsFile, CloseTimeout: 5 * time.Second,
		Queues: queueCfg, Registry: prometheus.NewRegistry(),
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx, cfg, reg, logger) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("worker did not stop")
		}
	})

	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	awsCfg, err := sqsqueue.LoadAWSConfig(ctx)
	require.NoError(t, err)
	queues, err := sqsqueue.NewQueues(sqs.NewFromConfig(awsCfg), cfg.Queues)
	require.NoError(t, err)
	return &worker{pool: pool, store: jobstore.New(pool), queues: queues}
}

// submit accepts n jobs of jobType and sends their messages to SQS the way
// the relay does (in batches of ten), returning the job ids.
func (w *worker) submit(t *testing.T, jobType string, n int, payload func(i int) string) []string {
	t.Helper()
	ctx := context.Background()
	url, err := w.queues.Ensure(ctx, jobType)
	require.NoError(t, err)
	ids := make([]string, 0, n)
	var batch []types.SendMessageBatchRequestEntry
	flush := func() {
		if len(batch) == 0 {
			return
		}
		out, err := w.queues.Client().SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: batch})
		require.NoError(t, err)
		require.Empty(t, out.Failed)
		batch = nil
	}
	for i := range n {
		body := payload(i)
		sub := jobs.Submission{ID: uuid.NewString(), MessageID: uuid.NewString(), Type: jobType, ClientID: "c", Payload: json.RawMessage(body)}
		_, _, err := w.store.Accept(ctx, sub)
		require.NoError(t, err)
		ids = append(ids, sub.ID)
		batch = append(batch, types.SendMessageBatchRequestEntry{
			Id: aws.String(fmt.Sprint(len(batch))), MessageBody: aws.String(body),
			MessageAttributes: map[string]types.MessageAttributeValue{
				"_watermill_message_uuid": stringAttr(sub.MessageID),
				jobmessage.JobID:          stringAttr(sub.ID),
				jobmessage.ClientID:       stringAttr("c"),
			},
		})
		if len(batch) == 10 {
			flush()
		}
	}
	flush()
	return ids
}

func stringAttr(v string) types.MessageAttributeValue {
	return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
}

func (w *worker) countStatus(t *testing.T, ids []string, status jobs.Status) int {
	t.Helper()
	var n int
	require.NoError(t, w.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[]) AND status = $2`, ids, string(status)).Scan(&n))
	return n
}

// deadLetters returns the dead letters the worker wrote to the outbox for
// jobType's DLQ (no relay runs here to forward them).
func (w *worker) deadLetters(t *testing.T, jobType string) []outbox.Message {
	t.Helper()
	claim, err := outbox.ClaimBatch(context.Background(), w.pool, 1000)
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

// TestBackoffDoesNotBlockTheConsumer gives a job type ONE consumer and
// fails its first message with a 10-minute backoff: the 1,000 messages
// behind it are all processed while it waits in SQS (a consumer sleeping
// through the backoff would process none of them), and it is not tried
// again before its time. One consumer on moto processes roughly ten
// messages a second, so this takes a couple of minutes.
func TestBackoffDoesNotBlockTheConsumer(t *testing.T) {
	t.Parallel()
	var poisonCalls atomic.Int32
	reg := jobhandler.NewRegistry()
	require.NoError(t, reg.Register("picky", jobhandler.Func(func(ctx context.Context, task jobhandler.Task) (json.RawMessage, error) {
		if string(task.Payload) == `{"poison":true}` {
			poisonCalls.Add(1)
			return nil, errors.New("not now")
		}
		return json.RawMessage(`{"ok":true}`), nil
	})))
	w := startWorker(t, `
job_types:
  picky:
    handler: picky
    consumers: 1
    retry: {attempts: 2, base: 10m, max: 10m}
`, reg, sqsqueue.Config{})

	poison := w.submit(t, "picky", 1, func(int) string { return `{"poison":true}` })
	require.Eventually(t, func() bool { return poisonCalls.Load() == 1 }, 30*time.Second, 20*time.Millisecond)
	failedAt := time.Now()
	others := w.submit(t, "picky", 1000, func(i int) string { return fmt.Sprintf(`{"n":%d}`, i) })

	require.Eventually(t, func() bool { return w.countStatus(t, others, jobs.StatusSucceeded) == len(others) },
		5*time.Minute, 100*time.Millisecond, "1,000 messages processed behind a backing-off one")
	took := time.Since(failedAt)
	require.EqualValues(t, 1, poisonCalls.Load(), "the failed message waits out its backoff")
	j, err := w.store.Get(context.Background(), poison[0], "c")
	require.NoError(t, err)
	require.Equal(t, jobs.StatusFailed, j.Status)
	require.Equal(t, jobhandler.ClassHandlerError, j.LastErrorClass)
	require.NotContains(t, j.LastError, "not now", "the handler's own text is for operators")
	require.NotNil(t, j.NextAttemptAt)
	require.True(t, j.NextAttemptAt.After(time.Now()), "still backing off")
	t.Logf("1,000 messages processed by one consumer in %s while one message backed off for 5–10 min", took.Round(time.Millisecond))
}

// TestStrayMessagesDoNotStallTheQueue sends messages that are not job
// messages (no attributes, a binary UUID attribute, a body that is not
// JSON) between good ones: the good ones are processed, the strays are
// dead-lettered and deleted.
func TestStrayMessagesDoNotStallTheQueue(t *testing.T) {
	t.Parallel()
	reg := jobhandler.NewRegistry()
	require.NoError(t, reg.Register("text-stats", demo.TextStats()))
	w := startWorker(t, "job_types:\n  text-stats:\n    handler: text-stats\n    consumers: 1\n", reg, sqsqueue.Config{})
	ctx := context.Background()
	url, err := w.queues.Ensure(ctx, "text-stats")
	require.NoError(t, err)

	good := w.submit(t, "text-stats", 5, func(int) string { return `{"text":"a b"}` })
	strays := []*sqs.SendMessageInput{
		{QueueUrl: &url, MessageBody: aws.String("garbage, not JSON")},
		{QueueUrl: &url, MessageBody: aws.String(`{"text":"x"}`), MessageAttributes: map[string]types.MessageAttributeValue{
			"_watermill_message_uuid": {DataType: aws.String("Binary"), BinaryValue: []byte{0xff, 0x00}},
			"job_id":                  {DataType: aws.String("Binary"), BinaryValue: []byte("x")},
		}},
	}
	var strayIDs []string
	for _, in := range strays {
		out, err := w.queues.Client().SendMessage(ctx, in)
		require.NoError(t, err)
		strayIDs = append(strayIDs, *out.MessageId)
	}
	good = append(good, w.submit(t, "text-stats", 5, func(int) string { return `{"text":"c d e"}` })...)

	require.Eventually(t, func() bool { return w.countStatus(t, good, jobs.StatusSucceeded) == len(good) },
		60*time.Second, 50*time.Millisecond)
	var got []string
	require.Eventually(t, func() bool {
		got = got[:0]
		for _, dl := range w.deadLetters(t, "text-stats") {
			meta, err := deadletter.Decode(dl.Metadata[deadletter.Attribute])
			require.NoError(t, err)
			require.Equal(t, deadletter.ReasonUndecodable, meta.Reason)
			got = append(got, dl.UUID)
		}
		return len(got) == len(strays)
	}, 30*time.Second, 50*time.Millisecond)
	require.ElementsMatch(t, strayIDs, got, "strays are dead-lettered under SQS's message id")

	// And deleted from the queue (the delete follows the commit that
	// dead-lettered them): nothing is left to receive.
	require.Eventually(t, func() bool {
		attrs, err := w.queues.Client().GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
			QueueUrl: &url, AttributeNames: []types.QueueAttributeName{
				types.QueueAttributeNameApproximateNumberOfMessages, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible},
		})
		require.NoError(t, err)
		return attrs.Attributes["ApproximateNumberOfMessages"] == "0" && attrs.Attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
	}, 10*time.Second, 50*time.Millisecond)
}

// TestHeartbeatKeepsSlowHandlersSingle runs a handler for three times the
// queue's 2 s visibility timeout: the heartbeat keeps the message hidden,
// so it is neither delivered twice nor dead-lettered.
func TestHeartbeatKeepsSlowHandlersSingle(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	reg := jobhandler.NewRegistry()
	require.NoError(t, reg.Register("slow", jobhandler.Func(func(ctx context.Context, task jobhandler.Task) (json.RawMessage, error) {
		calls.Add(1)
		select {
		case <-time.After(6 * time.Second): // the work itself, not synchronisation
			return json.RawMessage(`{"done":true}`), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})))
	w := startWorker(t, "job_types:\n  slow:\n    handler: slow\n    consumers: 2\n    timeout: 20s\n", reg,
		sqsqueue.Config{VisibilityTimeout: 2 * time.Second})
	ids := w.submit(t, "slow", 1, func(int) string { return `{}` })
	require.Eventually(t, func() bool { return w.countStatus(t, ids, jobs.StatusSucceeded) == 1 }, 60*time.Second, 50*time.Millisecond)
	require.EqualValues(t, 1, calls.Load(), "the second consumer never received it")
	j, err := w.store.Get(context.Background(), ids[0], "c")
	require.NoError(t, err)
	require.Equal(t, 1, j.Attempts)
}

// TestAttemptsBeyondRedriveAreRefused: a job type that would need more
// receives than the RedrivePolicy allows is a configuration error.
func TestAttemptsBeyondRedriveAreRefused(t *testing.T) {
	t.Parallel()
	jobsFile := filepath.Join(t.TempDir(), "jobs.yaml")
	require.NoError(t, os.WriteFile(jobsFile, []byte("job_types:\n  a:\n    handler: a\n    retry: {attempts: 5}\n"), 0o644))
	reg := jobhandler.NewRegistry()
	require.NoError(t, reg.Register("a", demo.TextStats()))
	err := app.Run(context.Background(), app.Config{
		JobsFile: jobsFile, DatabaseURL: config.NewSecret("postgres://unused"), Queues: sqsqueue.Config{MaxReceiveCount: 5},
	}, reg, slog.New(slog.DiscardHandler))
	require.ErrorIs(t, err, config.ErrInvalid)
	require.ErrorContains(t, err, `job type "a": retry.attempts 5 must be below the queues' max receive count 5`)
}
