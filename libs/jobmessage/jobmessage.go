// Package jobmessage owns the job message: the metadata keys it carries
// from the gateway, through the outbox and SQS, to the worker; how it is
// built (at accept, at a replay, as a dead letter); and its SQS form both
// ways (watermill-aws's encoding: the UUID in an attribute, metadata as
// string attributes). The outbox stores it (libs/outbox), the relay sends
// it (ToSQS), the worker reads it (Unmarshaler); none of them knows its
// keys or its encoding.
package jobmessage

import (
	"fmt"
	"strings"

	wmsqs "github.com/ThreeDotsLabs/watermill-aws/sqs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/switchyard/switchyard/libs/outbox"
	"github.com/switchyard/switchyard/libs/sqsqueue"
	"github.com/switchyard/switchyard/libs/tracing"
)

// Metadata keys of a job message.
const (
	JobID     = "job_id"
	JobType   = "job_type"
	ClientID  = "client_id"
	RequestID = "request_id"
	// TraceParent is the W3C trace context the message continues.
	TraceParent = tracing.MetaTraceParent
	// ReplayOf names the dead letter a replayed message was sent for.
	ReplayOf = "replay_of"
)

// JobKeys identify the job a message runs; a dead letter keeps them.
var JobKeys = []string{JobID, JobType, ClientID, RequestID, TraceParent}

// Delivery keys: the worker's Unmarshaler adds them to a received message.
// They describe the delivery, not the job, and never travel on.
const (
	// ReceiptHandle is the handle that changes the message's visibility.
	ReceiptHandle = "_sqs_receipt_handle"
	// SQSMessageID is SQS's own id of the message.
	SQSMessageID = "_sqs_message_id"
	// ReceiveCount is SQS's ApproximateReceiveCount.
	ReceiveCount   = "_sqs_receive_count"
	deliveryPrefix = "_sqs_"
)

// IsDelivery reports whether key is a delivery key (never sent on).
func IsDelivery(key string) bool { return strings.HasPrefix(key, deliveryPrefix) }

// Job is what a job message is built from.
type Job struct {
	ID, Type, ClientID, RequestID, TraceParent string
}

// metadata is j's message metadata; empty values are left out.
func (j Job) metadata() map[string]string {
	meta := map[string]string{}
	for k, v := range map[string]string{JobID: j.ID, JobType: j.Type, ClientID: j.ClientID, RequestID: j.RequestID, TraceParent: j.TraceParent} {
		if v != "" {
			meta[k] = v
		}
	}
	return meta
}

// New is the message that runs j with payload, to be written to the
// outbox in the transaction that accepts the job. messageID identifies
// it end to end (the worker's inbox deduplicates on it).
func New(messageID string, j Job, payload []byte) outbox.Message {
	return outbox.Message{UUID: messageID, Topic: j.Type, Payload: payload, Metadata: j.metadata()}
}

// Replay is the message that runs j again for dead letter deadLetterID,
// with payload (the original or the operator's edit).
func Replay(messageID string, j Job, payload []byte, deadLetterID string) outbox.Message {
	m := New(messageID, j, payload)
	m.Metadata[ReplayOf] = deadLetterID
	return m
}

// DeadLetter is the message bound for the DLQ of jobType: received's
// payload with encodedMeta (deadletter.Metadata, encoded) under
// metaAttribute. A job message keeps the keys that identify its job (the
// caller adds the trace context); a stray one (not a job message) carries
// only the metadata, which holds its own attributes.
func DeadLetter(messageID, jobType string, received *message.Message, metaAttribute, encodedMeta string, stray bool) outbox.Message {
	attrs := map[string]string{metaAttribute: encodedMeta}
	if !stray {
		for _, k := range JobKeys {
			if v := received.Metadata.Get(k); v != "" {
				attrs[k] = v
			}
		}
	}
	return outbox.Message{UUID: messageID, Topic: sqsqueue.DeadLetterTopic(jobType), Payload: received.Payload, Metadata: attrs}
}

// Original returns received's metadata without the delivery keys.
func Original(received *message.Message) map[string]string {
	out := map[string]string{}
	for k, v := range received.Metadata {
		if !IsDelivery(k) {
			out[k] = v
		}
	}
	return out
}

// ToSQS encodes m the way watermill-aws does, so that the worker's
// Watermill subscriber reads the UUID and metadata back. Empty metadata
// values are dropped: SQS refuses empty attribute values, and an absent
// key reads back as "" anyway.
func ToSQS(m outbox.Message) (*types.Message, error) {
	wm := message.NewMessage(m.UUID, m.Payload)
	for k, v := range m.Metadata {
		if v != "" {
			wm.Metadata.Set(k, v)
		}
	}
	sm, err := wmsqs.DefaultMarshalerUnmarshaler{}.Marshal(wm)
	if err != nil {
		return nil, fmt.Errorf("marshaling message %s: %w", m.UUID, err)
	}
	return sm, nil
}

// SQSSize is how many bytes of SQS's 256 KiB message limit m's SQS form
// uses (body and attributes, as SQS counts them).
func SQSSize(m outbox.Message) int {
	n := len(m.Payload) + len(wmsqs.UUIDAttribute) + len(m.UUID)
	for k, v := range m.Metadata {
		n += len(k) + len(v) + len("String")
	}
	return n
}

// Unmarshaler reads SQS messages into Watermill messages the way
// watermill-aws's default does (UUID from the _watermill_message_uuid
// attribute, string and number attributes as metadata), but it never
// fails and never panics on a message someone else sent: a message
// without a usable UUID attribute gets SQS's message id, and attributes of
// unexpected shapes are skipped. It also records the delivery (receipt
// handle, SQS message id, receive count) under the delivery keys, so the
// worker can change the message's visibility.
//
// Failing here would be worse than useless: watermill-aws logs the error
// and leaves the message to be received again and again.
type Unmarshaler struct{}

// Unmarshal implements wmsqs.Unmarshaler.
func (Unmarshaler) Unmarshal(m *types.Message) (*message.Message, error) {
	meta := make(message.Metadata, len(m.MessageAttributes)+3)
	id := ""
	for k, v := range m.MessageAttributes {
		dataType := aws.ToString(v.DataType)
		switch {
		case k == wmsqs.UUIDAttribute:
			if v.StringValue != nil {
				id = *v.StringValue
			}
		case v.StringValue != nil && (dataType == wmsqs.AWSStringDataType || dataType == wmsqs.AWSNumberDataType ||
			strings.HasPrefix(dataType, "String.") || strings.HasPrefix(dataType, "Number.")):
			meta[k] = *v.StringValue
		}
	}
	if id == "" {
		id = aws.ToString(m.MessageId)
	}
	meta[ReceiptHandle] = aws.ToString(m.ReceiptHandle)
	meta[SQSMessageID] = aws.ToString(m.MessageId)
	if n := m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]; n != "" {
		meta[ReceiveCount] = n
	}
	msg := message.NewMessage(id, []byte(aws.ToString(m.Body)))
	msg.Metadata = meta
	return msg, nil
}
