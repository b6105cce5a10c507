package jobmessage_test

import (
	"testing"

	wmsqs "github.com/ThreeDotsLabs/watermill-aws/sqs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/jobmessage"
	"github.com/switchyard/switchyard/libs/tracing"
)

// TestRoundTrip: a message built at accept, encoded for SQS as the relay
// sends it and read back as the worker receives it, carries its id, payload
// and job metadata, plus the delivery keys the worker needs; empty values
// are not sent.
func TestRoundTrip(t *testing.T) {
	m := jobmessage.New("msg-1", jobmessage.Job{ID: "job-1", Type: "orders", ClientID: "shop", TraceParent: "00-abc-def-01"}, []byte(`{"n":1}`))
	require.Equal(t, "orders", m.Topic)
	sm, err := jobmessage.ToSQS(m)
	require.NoError(t, err)
	require.NotContains(t, sm.MessageAttributes, jobmessage.RequestID, "an empty value is not sent")
	sm.MessageId, sm.ReceiptHandle = aws.String("sqs-1"), aws.String("rh-1")
	sm.Attributes = map[string]string{string(types.MessageSystemAttributeNameApproximateReceiveCount): "2"}
	got, err := jobmessage.Unmarshaler{}.Unmarshal(sm)
	require.NoError(t, err)
	require.Equal(t, "msg-1", got.UUID)
	require.JSONEq(t, `{"n":1}`, string(got.Payload))
	for k, v := range map[string]string{jobmessage.JobID: "job-1", jobmessage.JobType: "orders", jobmessage.ClientID: "shop",
		jobmessage.TraceParent: "00-abc-def-01", jobmessage.ReceiptHandle: "rh-1", jobmessage.SQSMessageID: "sqs-1", jobmessage.ReceiveCount: "2"} {
		require.Equal(t, v, got.Metadata.Get(k), k)
	}
	require.Equal(t, tracing.MetaTraceParent, jobmessage.TraceParent, "the trace context travels under the W3C name tracing reads")

	// What the job carries on: no delivery keys.
	original := jobmessage.Original(got)
	for k := range original {
		require.False(t, jobmessage.IsDelivery(k), k)
	}
	require.Equal(t, "job-1", original[jobmessage.JobID])
	require.GreaterOrEqual(t, jobmessage.SQSSize(m), len(m.Payload)+len(m.UUID))
}

// TestUnmarshalNeverFails: a message someone else sent (no UUID, binary
// attributes) is read, not refused: SQS's id stands in for the UUID.
func TestUnmarshalNeverFails(t *testing.T) {
	got, err := jobmessage.Unmarshaler{}.Unmarshal(&types.Message{MessageId: aws.String("sqs-9"), Body: aws.String("x"),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"blob":              {DataType: aws.String("Binary"), BinaryValue: []byte{1}},
			wmsqs.UUIDAttribute: {DataType: aws.String("Binary"), BinaryValue: []byte{2}},
		}})
	require.NoError(t, err)
	require.Equal(t, "sqs-9", got.UUID)
	require.Empty(t, got.Metadata.Get("blob"))
}

// TestReplayAndDeadLetter: a replay names its dead letter; a dead letter of
// a job message keeps the job's keys and drops the delivery, one of a
// stray carries only its metadata.
func TestReplayAndDeadLetter(t *testing.T) {
	r := jobmessage.Replay("msg-2", jobmessage.Job{ID: "job-1", Type: "orders", ClientID: "shop"}, []byte(`{}`), "dl-1")
	require.Equal(t, "dl-1", r.Metadata[jobmessage.ReplayOf])

	received := message.NewMessage("msg-1", []byte(`{"n":1}`))
	received.Metadata = message.Metadata{jobmessage.JobID: "job-1", jobmessage.JobType: "orders", jobmessage.ReceiptHandle: "rh", "other": "x"}
	dl := jobmessage.DeadLetter("dl-msg", "orders", received, "switchyard_dead_letter", "{}", false)
	require.Equal(t, map[string]string{"switchyard_dead_letter": "{}", jobmessage.JobID: "job-1", jobmessage.JobType: "orders"}, dl.Metadata)
	require.Equal(t, []byte(`{"n":1}`), dl.Payload)
	stray := jobmessage.DeadLetter("dl-msg", "orders", received, "switchyard_dead_letter", "{}", true)
	require.Equal(t, map[string]string{"switchyard_dead_letter": "{}"}, stray.Metadata)
	require.NotEqual(t, "orders", dl.Topic, "bound for the DLQ's topic, not the job queue's")
}
