package sqsqueue_test

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go/middleware"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/sqsqueue"
)

// bodyUnmarshaler reads a message's body as its payload and its SQS id as
// its UUID.
type bodyUnmarshaler struct{}

func (bodyUnmarshaler) Unmarshal(m *types.Message) (*message.Message, error) {
	return message.NewMessage(aws.ToString(m.MessageId), []byte(aws.ToString(m.Body))), nil
}

// TestSubscriberReceivesInBatches: 30 messages reach a subscription of
// concurrency 5 in fewer receives than messages, never more than 5 in
// flight; acked ones are deleted (in batches), a nacked one comes back
// when its visibility ends and is then acked; after Close the queue is
// empty and the channel closed.
func TestSubscriberReceivesInBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	stacktest.SQSEndpoint(t)
	awsCfg, err := sqsqueue.LoadAWSConfig(ctx)
	require.NoError(t, err)
	var receives, deleteBatches atomic.Int64
	c := sqs.NewFromConfig(awsCfg, func(o *sqs.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("count", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				switch in.Parameters.(type) {
				case *sqs.ReceiveMessageInput:
					receives.Add(1)
				case *sqs.DeleteMessageBatchInput:
					deleteBatches.Add(1)
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
		})
	})
	q, err := sqsqueue.NewQueues(c, sqsqueue.Config{Prefix: stacktest.QueuePrefix(t), VisibilityTimeout: 2 * time.Second})
	require.NoError(t, err)
	url, err := q.Ensure(ctx, "batched")
	require.NoError(t, err)
	const total = 30
	for i := 0; i < total; i += 10 {
		var entries []types.SendMessageBatchRequestEntry
		for j := i; j < i+10; j++ {
			entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j)), MessageBody: aws.String(strconv.Itoa(j))})
		}
		_, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries})
		require.NoError(t, err)
	}
	receives.Store(0)

	sub, err := sqsqueue.NewSubscriber(sqsqueue.SubscriberConfig{Queues: q, Unmarshaler: bodyUnmarshaler{}, Concurrency: 5, Wait: time.Second,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	msgs, err := sub.Subscribe(ctx, "batched")
	require.NoError(t, err)

	var inFlight, maxInFlight atomic.Int64
	var mu sync.Mutex
	acked := map[string]bool{}
	nackedOnce := false
	var handlers sync.WaitGroup
	done := make(chan struct{})
	go func() {
		for msg := range msgs {
			handlers.Go(func() {
				n := inFlight.Add(1)
				for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
				}
				time.Sleep(50 * time.Millisecond) // the handler's work
				inFlight.Add(-1)
				mu.Lock()
				defer mu.Unlock()
				if string(msg.Payload) == "7" && !nackedOnce {
					nackedOnce = true
					msg.Nack()
					return
				}
				acked[string(msg.Payload)] = true
				msg.Ack()
				if len(acked) == total {
					close(done)
				}
			})
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("only %d of %d messages acked", len(acked), total)
	}
	require.NoError(t, sub.Close())
	handlers.Wait()
	require.True(t, nackedOnce)
	require.LessOrEqual(t, maxInFlight.Load(), int64(5), "never more in flight than the concurrency")
	require.Greater(t, maxInFlight.Load(), int64(1), "messages are handled concurrently")
	t.Logf("%d messages (one twice) in %d receives, deleted in %d batch calls", total, receives.Load(), deleteBatches.Load())
	// Each receive asks for as many as are free: all five at first, then
	// those whose handlers finished during the previous call (one or two
	// here, where a handler takes longer than a receive), and the empty
	// polls while the nacked message is hidden.
	require.Less(t, receives.Load(), int64(total), "receives carry several messages")
	require.Less(t, deleteBatches.Load(), int64(total), "deletes are batched")
	attrs := queueAttrs(t, c, url)
	require.Equal(t, "0", attrs[string(types.QueueAttributeNameApproximateNumberOfMessages)], "every acked message deleted")
	require.Equal(t, "0", attrs[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
}

// fakeGate is a Gate switched by the test (the real one, jobpause.Gate,
// is tested against Postgres in its package and with a worker end to end).
type fakeGate struct {
	mu      sync.Mutex
	paused  chan struct{} // closed while paused
	resumed chan struct{} // closed while running
}

func newFakeGate(paused bool) *fakeGate {
	g := &fakeGate{paused: make(chan struct{}), resumed: make(chan struct{})}
	if paused {
		close(g.paused)
	} else {
		close(g.resumed)
	}
	return g
}

func (g *fakeGate) set(paused bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if paused {
		close(g.paused)
		g.resumed = make(chan struct{})
	} else {
		close(g.resumed)
		g.paused = make(chan struct{})
	}
}

func (g *fakeGate) Wait(ctx context.Context, _ string) bool {
	g.mu.Lock()
	ch := g.resumed
	g.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

func (g *fakeGate) Paused(string) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.paused
}

// TestSubscriberHoldsPausedTopics: a paused topic's messages stay in SQS
// until it is resumed, and a pause during a long poll hands back what
// that poll received.
func TestSubscriberHoldsPausedTopics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	stacktest.SQSEndpoint(t)
	awsCfg, err := sqsqueue.LoadAWSConfig(ctx)
	require.NoError(t, err)
	c := sqs.NewFromConfig(awsCfg)
	q, err := sqsqueue.NewQueues(c, sqsqueue.Config{Prefix: stacktest.QueuePrefix(t), VisibilityTimeout: 30 * time.Second})
	require.NoError(t, err)
	url, err := q.Ensure(ctx, "pausable")
	require.NoError(t, err)
	send := func(body string) {
		_, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String(body)})
		require.NoError(t, err)
	}
	gate := newFakeGate(true)
	sub, err := sqsqueue.NewSubscriber(sqsqueue.SubscriberConfig{Queues: q, Unmarshaler: bodyUnmarshaler{}, Concurrency: 2, Wait: 2 * time.Second,
		Logger: slog.New(slog.DiscardHandler), Gate: gate})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	send("first")
	msgs, err := sub.Subscribe(ctx, "pausable")
	require.NoError(t, err)
	quiet := func(d time.Duration) {
		t.Helper()
		select {
		case m := <-msgs:
			t.Fatalf("a paused topic delivered %q", m.Payload)
		case <-time.After(d):
		}
	}
	visible := func() int {
		d, err := q.Depth(ctx, "pausable")
		require.NoError(t, err)
		return d.Visible
	}
	quiet(time.Second)
	require.Equal(t, 1, visible(), "the message waits in SQS")

	gate.set(false)
	select {
	case m := <-msgs:
		require.Equal(t, "first", string(m.Payload))
		m.Ack()
	case <-time.After(10 * time.Second):
		t.Fatal("resumed, but nothing was delivered")
	}

	// Paused while a long poll waits: a message sent then is received by
	// that poll and handed back, not delivered.
	require.Eventually(t, func() bool { return visible() == 0 }, 5*time.Second, 50*time.Millisecond)
	gate.set(true)
	send("second")
	quiet(3 * time.Second)
	require.Eventually(t, func() bool { return visible() == 1 }, 5*time.Second, 50*time.Millisecond, "handed back at once, not hidden for the visibility timeout")
	gate.set(false)
	select {
	case m := <-msgs:
		require.Equal(t, "second", string(m.Payload))
		m.Ack()
	case <-time.After(10 * time.Second):
		t.Fatal("resumed, but the second message was not delivered")
	}
}
