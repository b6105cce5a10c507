package sqsqueue_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptrace"
	"testing"
	"time"

	wmsqs "github.com/ThreeDotsLabs/watermill-aws/sqs"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/sqsqueue"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

func newClient(t *testing.T) *sqs.Client {
	t.Helper()
	stacktest.SQSEndpoint(t)
	cfg, err := sqsqueue.LoadAWSConfig(context.Background())
	require.NoError(t, err)
	return sqs.NewFromConfig(cfg)
}

func queueAttrs(t *testing.T, c *sqs.Client, url string) map[string]string {
	t.Helper()
	out, err := c.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: &url, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll},
	})
	require.NoError(t, err)
	return out.Attributes
}

func TestEnsureProvisionsQueueWithDLQ(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClient(t)
	prefix := stacktest.QueuePrefix(t)
	q, err := sqsqueue.NewQueues(c, sqsqueue.Config{Prefix: prefix, VisibilityTimeout: 7 * time.Second, MaxReceiveCount: 3})
	require.NoError(t, err)

	url, err := q.Ensure(ctx, "orders")
	require.NoError(t, err)
	require.Equal(t, prefix+"orders", q.Name("orders"))
	require.Equal(t, prefix+"orders-dlq", q.DLQName("orders"))

	attrs := queueAttrs(t, c, url)
	require.Equal(t, "7", attrs["VisibilityTimeout"])
	var redrive struct {
		Target string `json:"deadLetterTargetArn"`
		Max    any    `json:"maxReceiveCount"`
	}
	require.NoError(t, json.Unmarshal([]byte(attrs["RedrivePolicy"]), &redrive))
	require.Contains(t, redrive.Target, prefix+"orders-dlq")
	require.EqualValues(t, "3", toString(redrive.Max))

	dlq, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(prefix + "orders-dlq")})
	require.NoError(t, err)
	require.Equal(t, "1209600", queueAttrs(t, c, *dlq.QueueUrl)["MessageRetentionPeriod"])

	// Idempotent, also from a fresh Queues with other settings: the
	// existing queue is brought in line.
	q2, err := sqsqueue.NewQueues(c, sqsqueue.Config{Prefix: prefix, VisibilityTimeout: 9 * time.Second, MaxReceiveCount: 3})
	require.NoError(t, err)
	url2, err := q2.Ensure(ctx, "orders")
	require.NoError(t, err)
	require.Equal(t, url, url2)
	require.Equal(t, "9", queueAttrs(t, c, url)["VisibilityTimeout"])

	// The dead-letter topic resolves to the DLQ.
	dlqTopic := sqsqueue.DeadLetterTopic("orders")
	dlqURL, err := q2.Ensure(ctx, dlqTopic)
	require.NoError(t, err)
	require.Equal(t, *dlq.QueueUrl, dlqURL)
	require.Equal(t, prefix+"orders-dlq", q2.Name(dlqTopic))
	jobType, isDLQ := sqsqueue.SplitTopic(dlqTopic)
	require.Equal(t, "orders", jobType)
	require.True(t, isDLQ)
	fresh, err := sqsqueue.NewQueues(c, sqsqueue.Config{Prefix: prefix, VisibilityTimeout: 9 * time.Second, MaxReceiveCount: 3})
	require.NoError(t, err)
	dlqURL, err = fresh.Ensure(ctx, dlqTopic)
	require.NoError(t, err)
	require.Equal(t, *dlq.QueueUrl, dlqURL, "a dead-letter topic first, before its job type, resolves too")
	_, isDLQ = sqsqueue.SplitTopic("orders")
	require.False(t, isDLQ)

	// Watermill's resolver interface provisions the same way.
	res, err := q2.ResolveQueueUrl(ctx, wmsqs.ResolveQueueUrlParams{Topic: "orders"})
	require.NoError(t, err)
	require.Equal(t, url, string(*res.QueueURL))
	require.True(t, *res.Exists)
}

// TestExistingQueuesAreOnlyLookedUp: with queues managed elsewhere, a
// missing one is an error that names it, and an existing one is used as
// it is (not re-configured), its DLQ too.
func TestExistingQueuesAreOnlyLookedUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClient(t)
	prefix := stacktest.QueuePrefix(t)
	q, err := sqsqueue.NewQueues(c, sqsqueue.Config{Prefix: prefix, VisibilityTimeout: 7 * time.Second, ExistingQueues: true})
	require.NoError(t, err)
	_, err = q.Ensure(ctx, "managed")
	require.ErrorContains(t, err, prefix+"managed")
	_, err = c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(prefix + "managed")})
	require.Error(t, err, "nothing was created")

	_, err = c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(prefix + "managed"), Attributes: map[string]string{"VisibilityTimeout": "42"}})
	require.NoError(t, err)
	// The job queue alone: a worker may look up its queue and not the DLQ.
	url, err := q.Ensure(ctx, "managed")
	require.NoError(t, err)
	require.Equal(t, "42", queueAttrs(t, c, url)["VisibilityTimeout"], "left as it was made")
	require.Empty(t, queueAttrs(t, c, url)["RedrivePolicy"], "no redrive policy added")
	require.NoError(t, q.Ping(ctx), "ready on the queue it uses")
	_, err = q.Ensure(ctx, sqsqueue.DeadLetterTopic("managed"))
	require.ErrorContains(t, err, prefix+"managed-dlq", "the DLQ is looked up on its own")

	_, err = c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(prefix + "managed-dlq")})
	require.NoError(t, err)
	dlq, err := q.Ensure(ctx, sqsqueue.DeadLetterTopic("managed"))
	require.NoError(t, err)
	require.Contains(t, dlq, prefix+"managed-dlq")
}

// TestChangeVisibility hides a received message for a while and then
// shows it again, as the worker does before a retry.
func TestChangeVisibility(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClient(t)
	q, err := sqsqueue.NewQueues(c, sqsqueue.Config{Prefix: stacktest.QueuePrefix(t), VisibilityTimeout: 30 * time.Second})
	require.NoError(t, err)
	url, err := q.Ensure(ctx, "later")
	require.NoError(t, err)
	_, err = c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String(`{}`)})
	require.NoError(t, err)
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 5})
	require.NoError(t, err)
	require.Len(t, out.Messages, 1)

	// 1.2 s rounds up to 2 s: hidden now, visible again well before the
	// queue's 30 s.
	hiddenAt := time.Now()
	require.NoError(t, q.ChangeVisibility(ctx, "later", *out.Messages[0].ReceiptHandle, 1200*time.Millisecond))
	again, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 1})
	require.NoError(t, err)
	require.Empty(t, again.Messages, "hidden")
	require.Eventually(t, func() bool {
		again, err = c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 1})
		return err == nil && len(again.Messages) == 1
	}, 15*time.Second, 10*time.Millisecond)
	require.Less(t, time.Since(hiddenAt), 15*time.Second)

	require.Error(t, q.ChangeVisibility(ctx, "later", "not-a-receipt-handle", time.Second))
}

func TestRedrivePolicyMovesCrashLoopsToDLQ(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClient(t)
	prefix := stacktest.QueuePrefix(t)
	q, err := sqsqueue.NewQueues(c, sqsqueue.Config{Prefix: prefix, MaxReceiveCount: 3})
	require.NoError(t, err)
	url, err := q.Ensure(ctx, "loop")
	require.NoError(t, err)
	_, err = c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String(`{"n":1}`)})
	require.NoError(t, err)

	// Receive without deleting, as a consumer that crashes every time; the
	// message becomes visible again at once instead of after 30 s.
	receives := 0
	for range 6 {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 1})
		require.NoError(t, err)
		for _, m := range out.Messages {
			receives++
			_, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &url, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0})
			require.NoError(t, err)
		}
	}
	require.Equal(t, 3, receives, "delivered maxReceiveCount times, then moved")

	dlq, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(q.DLQName("loop"))})
	require.NoError(t, err)
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: dlq.QueueUrl, WaitTimeSeconds: 1})
	require.NoError(t, err)
	require.Len(t, out.Messages, 1)
	require.JSONEq(t, `{"n":1}`, aws.ToString(out.Messages[0].Body))
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]sqsqueue.Config{
		"bad prefix":      {Prefix: "has space", MaxReceiveCount: 5},
		"long prefix":     {Prefix: "abcdefghijklmnopqrstuvwxyz0123", MaxReceiveCount: 5},
		"low max receive": {Prefix: "p-", MaxReceiveCount: 2},
		"long visibility": {Prefix: "p-", VisibilityTimeout: 13 * time.Hour},
		"short retention": {Prefix: "p-", Retention: time.Second},
		"long dlq retain": {Prefix: "p-", DLQRetention: 15 * 24 * time.Hour},
	} {
		_, err := sqsqueue.NewQueues(nil, cfg)
		require.Error(t, err, name)
	}
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return json.Number(jsonNumber(x)).String()
	default:
		return ""
	}
}

func jsonNumber(f float64) string { b, _ := json.Marshal(f); return string(b) }

// TestAbandonedLongPoll shows what SQS does with a long poll whose caller
// gave up (its context cancelled, as a consumer shutting down does): the
// poll still takes the next message and hides it, although nobody gets it.
// With ReleaseAbandonedReceives the poll runs out and hands the message
// back at once.
func TestAbandonedLongPoll(t *testing.T) {
	t.Parallel()
	for _, release := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain client", true: "ReleaseAbandonedReceives"}[release], func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			plain := newClient(t)
			cfg, err := sqsqueue.LoadAWSConfig(ctx)
			require.NoError(t, err)
			client := plain
			if release {
				client = sqs.NewFromConfig(cfg, sqsqueue.ReleaseAbandonedReceives(plain))
			}
			// abandon starts a long poll on a new queue, gives up on it once
			// it is on the wire, then sends one message.
			abandon := func(attempt int) *sqs.CreateQueueOutput {
				q, err := plain.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(fmt.Sprintf("%sabandoned%d", stacktest.QueuePrefix(t), attempt)),
					Attributes: map[string]string{"VisibilityTimeout": "120"}})
				require.NoError(t, err)
				wrote := make(chan struct{})
				pollCtx, cancel := context.WithCancel(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
					WroteRequest: func(httptrace.WroteRequestInfo) { close(wrote) },
				}))
				done := make(chan error, 1)
				go func() {
					_, err := client.ReceiveMessage(pollCtx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, WaitTimeSeconds: 5, MaxNumberOfMessages: 1})
					done <- err
				}()
				<-wrote
				cancel()
				_, err = plain.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String("hello")})
				require.NoError(t, err)
				require.ErrorIs(t, <-done, context.Canceled)
				return q
			}

			if !release {
				// The abandoned poll takes the message: hidden, received by
				// nobody. Under load the send can reach the server before
				// the poll does; the poll then finds nothing and the message
				// stays visible once the poll's 5 s are over. Such an attempt
				// shows nothing either way, and is made again.
				for attempt := range 3 {
					q := abandon(attempt)
					sent := time.Now()
					var a map[string]string
					require.Eventually(t, func() bool {
						a = queueAttrs(t, plain, *q.QueueUrl)
						return a["ApproximateNumberOfMessagesNotVisible"] == "1" ||
							(a["ApproximateNumberOfMessages"] == "1" && time.Since(sent) > 7*time.Second)
					}, 20*time.Second, 50*time.Millisecond)
					if a["ApproximateNumberOfMessagesNotVisible"] == "1" {
						require.Equal(t, "0", a["ApproximateNumberOfMessages"], "hidden, received by nobody")
						return
					}
					t.Logf("attempt %d: the send reached the server before the poll; again", attempt+1)
				}
				t.Fatal("in 3 attempts the abandoned poll never took the message")
			}
			q := abandon(0)
			// The poll ran out before the caller got its error, and the
			// message is visible again: the next receive gets it.
			out, err := plain.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, WaitTimeSeconds: 1,
				MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount}})
			require.NoError(t, err)
			require.Len(t, out.Messages, 1)
			require.Equal(t, "hello", aws.ToString(out.Messages[0].Body))
			require.Equal(t, "2", out.Messages[0].Attributes["ApproximateReceiveCount"], "the abandoned poll's receive, then ours")
		})
	}
}

// TestAbandonedBeforeStart: a receive whose context has already ended
// does not start a poll at all (a consumer loop that comes round once
// more while closing must not wait out another long poll).
func TestAbandonedBeforeStart(t *testing.T) {
	t.Parallel()
	plain := newClient(t)
	cfg, err := sqsqueue.LoadAWSConfig(context.Background())
	require.NoError(t, err)
	client := sqs.NewFromConfig(cfg, sqsqueue.ReleaseAbandonedReceives(plain))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sent := false
	traced := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { sent = true }})
	_, err = client.ReceiveMessage(traced, &sqs.ReceiveMessageInput{QueueUrl: aws.String("http://127.0.0.1:1/000000000000/none"), WaitTimeSeconds: 20})
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, sent, "no request went out")
}

// TestConnectWithConfiguredCredentials: credentials in the configuration
// (from Vault in production set-ups) replace the SDK chain's, and one
// without the other is refused.
func TestConnectWithConfiguredCredentials(t *testing.T) {
	stacktest.SQSEndpoint(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "from-the-environment")
	q, awsCfg, err := sqsqueue.Connect(context.Background(), sqsqueue.Config{Prefix: stacktest.QueuePrefix(t),
		AccessKeyID: config.NewSecret("AKIDFROMVAULT"), SecretAccessKey: config.NewSecret("s3cr3t")}, nil, nil)
	require.NoError(t, err)
	creds, err := awsCfg.Credentials.Retrieve(context.Background())
	require.NoError(t, err)
	require.Equal(t, "AKIDFROMVAULT", creds.AccessKeyID)
	require.ErrorIs(t, q.Ping(context.Background()), sqsqueue.ErrNoQueueYet, "not ready before it has a queue")
	_, err = q.Ensure(context.Background(), "creds")
	require.NoError(t, err)
	require.NoError(t, q.Ping(context.Background()), "the SQS server answers requests signed with them")

	_, _, err = sqsqueue.Connect(context.Background(), sqsqueue.Config{AccessKeyID: config.NewSecret("only-the-id")}, nil, nil)
	require.ErrorIs(t, err, config.ErrInvalid)
}

// TestDepthSampler reads visible, in-flight and delayed messages of a
// queue and its DLQ from a real SQS server into the gauges.
func TestDepthSampler(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newClient(t)
	q, err := sqsqueue.NewQueues(c, sqsqueue.Config{Prefix: stacktest.QueuePrefix(t), VisibilityTimeout: 30 * time.Second})
	require.NoError(t, err)
	url, err := q.Ensure(ctx, "deep")
	require.NoError(t, err)
	dlq, err := q.Ensure(ctx, sqsqueue.DeadLetterTopic("deep"))
	require.NoError(t, err)
	for range 3 {
		_, err = c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String(`{}`)})
		require.NoError(t, err)
	}
	_, err = c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String(`{}`), DelaySeconds: 60})
	require.NoError(t, err)
	_, err = c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &dlq, MessageBody: aws.String(`{}`)})
	require.NoError(t, err)
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 1})
	require.NoError(t, err)
	require.Len(t, out.Messages, 1)

	reg := prometheus.NewRegistry()
	s := sqsqueue.NewDepthSampler(q, []string{"deep"}, time.Minute, reg, slog.New(slog.DiscardHandler))
	s.SampleOnce(ctx)
	got := map[string]float64{}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "switchyard_sqs_messages" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			require.Equal(t, "deep", l["job_type"])
			got[l["queue"]+"/"+l["state"]] = m.GetGauge().GetValue()
		}
	}
	require.Equal(t, map[string]float64{
		"jobs/visible": 2, "jobs/in_flight": 1, "jobs/delayed": 1,
		"dlq/visible": 1, "dlq/in_flight": 0, "dlq/delayed": 0,
	}, got)
}
