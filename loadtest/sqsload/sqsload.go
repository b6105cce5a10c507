// Package sqsload is the reference SQS sender the benchmarks compare the
// relay with: SendMessageBatch of 10 from parallel goroutines, with nothing
// else in the way (no outbox, no Watermill). The benchmark harness
// (loadtest/bench) and the relay's benchmark both time it.
package sqsload

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"golang.org/x/sync/errgroup"
)

// Message is one message to send: its body and string attributes.
type Message struct {
	Body       string
	Attributes map[string]string
}

// SendBatches sends messages to the queue at url with SendMessageBatch,
// ten at a time, from concurrency goroutines, and returns messages per
// second from the first send to the last answer. Any refused entry is an
// error.
func SendBatches(ctx context.Context, client *sqs.Client, url string, messages []Message, concurrency int) (float64, error) {
	batches := make(chan []types.SendMessageBatchRequestEntry, len(messages)/10+1)
	for i := 0; i < len(messages); i += 10 {
		var entries []types.SendMessageBatchRequestEntry
		for j := i; j < i+10 && j < len(messages); j++ {
			attrs := make(map[string]types.MessageAttributeValue, len(messages[j].Attributes))
			for k, v := range messages[j].Attributes {
				attrs[k] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
			}
			entries = append(entries, types.SendMessageBatchRequestEntry{
				Id: aws.String(strconv.Itoa(j - i)), MessageBody: aws.String(messages[j].Body), MessageAttributes: attrs,
			})
		}
		batches <- entries
	}
	close(batches)
	start := time.Now()
	var g errgroup.Group
	for range max(concurrency, 1) {
		g.Go(func() error {
			for entries := range batches {
				out, err := client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries})
				if err != nil {
					return fmt.Errorf("sending a batch: %w", err)
				}
				if len(out.Failed) > 0 {
					return fmt.Errorf("%d entries refused", len(out.Failed))
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return float64(len(messages)) / time.Since(start).Seconds(), nil
}
