package sqsqueue

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go/middleware"
)

// releaseTimeout bounds the call that hands abandoned messages back.
const releaseTimeout = 5 * time.Second

// ReleaseAbandonedReceives is an SQS client option for consumers that long
// poll. When the caller of ReceiveMessage gives up (its context ends: a
// consumer shutting down), the request is not cut on the wire. SQS does not
// notice a closed long poll: it would still hand the next messages to it,
// keep them hidden for the visibility timeout and count a receive against
// their RedrivePolicy, although nobody got them (aws-sdk-go-v2 issue 2068).
// Instead the poll runs to its end (at most its WaitTimeSeconds) and
// whatever it returns is made visible again at once with release (a client
// of the same queues), and the caller gets its context's error. A consumer
// that stops gracefully therefore takes a little longer (up to the poll's
// wait) and orphans nothing. A process that is killed still orphans its
// in-flight polls' messages; the visibility timeout brings them back.
func ReleaseAbandonedReceives(release *sqs.Client) func(*sqs.Options) {
	return func(o *sqs.Options) {
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("switchyard/release-abandoned-receives",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					input, ok := in.Parameters.(*sqs.ReceiveMessageInput)
					if !ok {
						return next.HandleInitialize(ctx, in)
					}
					if err := ctx.Err(); err != nil {
						return middleware.InitializeOutput{}, middleware.Metadata{}, err // given up before it started: no poll
					}
					wait := time.Duration(input.WaitTimeSeconds)*time.Second + 15*time.Second
					poll, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait)
					defer cancel()
					out, md, err := next.HandleInitialize(poll, in)
					if ctx.Err() == nil {
						return out, md, err
					}
					if res, ok := out.Result.(*sqs.ReceiveMessageOutput); ok && err == nil && res != nil && len(res.Messages) > 0 {
						if rerr := releaseMessages(release, input.QueueUrl, res.Messages); rerr != nil {
							return out, md, fmt.Errorf("%w (and %d received messages stay hidden until their visibility timeout: %w)", ctx.Err(), len(res.Messages), rerr)
						}
					}
					return middleware.InitializeOutput{}, md, ctx.Err()
				}), middleware.Before)
		})
	}
}

// releaseMessages makes msgs visible again at once.
func releaseMessages(client *sqs.Client, queueURL *string, msgs []types.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	for start := 0; start < len(msgs); start += 10 {
		batch := msgs[start:min(start+10, len(msgs))]
		entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(batch))
		for i, m := range batch {
			entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0}
		}
		out, err := client.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: queueURL, Entries: entries})
		if err != nil {
			return fmt.Errorf("releasing abandoned messages: %w", err)
		}
		if len(out.Failed) > 0 {
			return fmt.Errorf("releasing abandoned messages: %d of %d refused (%s)", len(out.Failed), len(batch), *out.Failed[0].Code)
		}
	}
	return nil
}
