package runner

import (
	"strings"

	wmsqs "github.com/ThreeDotsLabs/watermill-aws/sqs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/switchyard/switchyard/services/worker/internal/processor"
)

// Unmarshaler reads SQS messages into Watermill messages the way
// watermill-aws's default does (UUID from the _watermill_message_uuid
// attribute, string and number attributes as metadata), but it never
// fails and never panics on a message someone else sent: a message
// without a usable UUID attribute gets SQS's message id, and attributes of
// unexpected shapes are skipped. It also records the delivery (receipt
// handle, SQS message id, receive count) under the processor's Meta*
// keys, so the processor can change the message's visibility.
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
	meta[processor.MetaReceiptHandle] = aws.ToString(m.ReceiptHandle)
	meta[processor.MetaSQSMessageID] = aws.ToString(m.MessageId)
	if n := m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]; n != "" {
		meta[processor.MetaReceiveCount] = n
	}
	msg := message.NewMessage(id, []byte(aws.ToString(m.Body)))
	msg.Metadata = meta
	return msg, nil
}
