package drain_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	wmsqs "github.com/ThreeDotsLabs/watermill-aws/sqs"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/deadletter"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/jobmessage"
	"github.com/switchyard/switchyard/libs/sqsqueue"
	"github.com/switchyard/switchyard/services/replay/internal/deadletterstore"
	"github.com/switchyard/switchyard/services/replay/internal/drain"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

func attr(v string) types.MessageAttributeValue {
	return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
}

// TestOnceStoresThenDeletes: one round receives what the DLQ holds (a
// dead letter the worker wrote, with its metadata, and one SQS's redrive
// moved, with none), stores both, and empties the queue; the same message
// delivered again is received, recognised and deleted without a second
// row.
func TestOnceStoresThenDeletes(t *testing.T) {
	ctx := context.Background()
	stacktest.SQSEndpoint(t)
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	require.NoError(t, err)
	client := sqs.NewFromConfig(awsCfg)
	queues, err := sqsqueue.NewQueues(client, sqsqueue.Config{Prefix: stacktest.QueuePrefix(t)})
	require.NoError(t, err)
	dlq, err := queues.Ensure(ctx, sqsqueue.DeadLetterTopic("orders"))
	require.NoError(t, err)
	store := deadletterstore.New(stacktest.NewPool(t))
	d := drain.New(queues, store, slog.New(slog.DiscardHandler), nil)
	d.WaitTime = time.Second

	meta, err := deadletter.Metadata{Reason: deadletter.ReasonPermanentError, Error: "target answered 400", Attempts: 1,
		Topic: "orders", DeadLetteredAt: time.Now().UTC()}.Encode()
	require.NoError(t, err)
	worker := &sqs.SendMessageInput{QueueUrl: &dlq, MessageBody: aws.String(`{"order": 1}`), MessageAttributes: map[string]types.MessageAttributeValue{
		wmsqs.UUIDAttribute: attr("01900000-0000-7000-8000-000000000001"), deadletter.Attribute: attr(meta),
		jobmessage.JobType: attr("orders"),
	}}
	stray := &sqs.SendMessageInput{QueueUrl: &dlq, MessageBody: aws.String(`{"order": 2}`)}
	for _, m := range []*sqs.SendMessageInput{worker, stray} {
		_, err := client.SendMessage(ctx, m)
		require.NoError(t, err)
	}
	received := 0
	require.Eventually(t, func() bool {
		n, err := d.Once(ctx, "orders")
		require.NoError(t, err)
		received += n
		return received == 2
	}, 30*time.Second, 10*time.Millisecond)
	page, _, err := store.List(ctx, deadletterstore.Filter{Topic: "orders"}, 10, "")
	require.NoError(t, err)
	require.Len(t, page, 2)
	reasons := map[deadletter.Reason]bool{}
	for _, dl := range page {
		reasons[dl.Reason] = true
	}
	require.Equal(t, map[deadletter.Reason]bool{deadletter.ReasonPermanentError: true, deadletter.ReasonMaxReceiveCount: true}, reasons,
		"the worker's reason, and the redrive's for the message without metadata")
	n, err := d.Once(ctx, "orders")
	require.NoError(t, err)
	require.Zero(t, n, "the queue was emptied after the store committed")
	require.NoError(t, d.Ready(ctx))

	// The same message again (as after a crash between commit and delete).
	_, err = client.SendMessage(ctx, worker)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		n, err := d.Once(ctx, "orders")
		require.NoError(t, err)
		return n == 1
	}, 30*time.Second, 10*time.Millisecond)
	page, _, err = store.List(ctx, deadletterstore.Filter{Topic: "orders"}, 10, "")
	require.NoError(t, err)
	require.Len(t, page, 2, "a redelivered dead letter is stored once")
	n, err = d.Once(ctx, "orders")
	require.NoError(t, err)
	require.Zero(t, n, "and deleted from the DLQ")
}

// TestParse reads SQS's attributes and a message's own: the Watermill id
// is the message id, binary attributes are kept as base64, the receive
// count and sent time come from SQS, and bad metadata is kept for the
// operator rather than trusted.
func TestParse(t *testing.T) {
	in := drain.Parse(types.Message{
		MessageId: aws.String("sqs-1"), Body: aws.String(`{}`),
		MessageAttributes: map[string]types.MessageAttributeValue{
			wmsqs.UUIDAttribute:  attr("wm-1"),
			jobmessage.JobID:     attr("01900000-0000-7000-8000-000000000009"),
			"blob":               {DataType: aws.String("Binary"), BinaryValue: []byte{0xff, 0x00}},
			deadletter.Attribute: attr("not json"),
		},
		Attributes: map[string]string{"ApproximateReceiveCount": "7", "SentTimestamp": "1700000000123"},
	}, "orders")
	require.Equal(t, "wm-1", in.MessageID)
	require.Equal(t, "sqs-1", in.SQSMessageID)
	require.Equal(t, "01900000-0000-7000-8000-000000000009", in.JobID)
	require.Equal(t, "base64:/wA=", in.Attributes["blob"])
	require.Nil(t, in.Meta, "unreadable metadata is not trusted")
	require.Equal(t, "not json", in.Attributes[deadletter.Attribute], "and kept for the operator")
	require.Equal(t, 7, in.ReceiveCount)
	require.Equal(t, time.UnixMilli(1700000000123).UTC(), in.SentAt)
	require.NotContains(t, in.Attributes, wmsqs.UUIDAttribute)
}
