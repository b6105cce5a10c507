package devstack

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// impatientClient gives up on a request after timeout and never retries:
// the callers of a paused server, who hang up and leave their requests
// behind.
func impatientClient(endpoint string, timeout time.Duration) *sqs.Client {
	return sqs.New(sqs.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
		Credentials:      credentials.NewStaticCredentialsProvider("test", "test", ""),
		RetryMaxAttempts: 1,
		HTTPClient:       awshttp.NewBuildableClient().WithTimeout(timeout),
	})
}

// TestMotoRecoversFromAPauseWithAbandonedRequests pauses the SQS stand-in
// (SIGSTOP) while 400 callers each send ten 20 KiB messages and give up after a
// second, as the relay and workers did in the outage that wedged it; once
// resumed it must answer a new caller within seconds instead of first
// working through 400 requests nobody waits for. The same stand-in also
// refuses (503) what exceeds its bound of waiting requests instead of
// queueing it.
func TestMotoRecoversFromAPauseWithAbandonedRequests(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testStack(t)
	require.NoError(t, s.startMoto(ctx, t.TempDir()))
	client := sqsClient(s.SQSEndpoint)
	q, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("paused")})
	require.NoError(t, err)
	require.NoError(t, s.Signal("moto_server", syscall.SIGSTOP))
	resumed := false
	defer func() {
		if !resumed {
			_ = s.Signal("moto_server", syscall.SIGCONT)
		}
	}()
	const callers = 400
	// Ten 20 KiB messages: what costs the stand-in tens of ms to store.
	batch := make([]types.SendMessageBatchRequestEntry, 10)
	for i := range batch {
		batch[i] = types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(strings.Repeat("x", 20<<10))}
	}
	impatient := impatientClient(s.SQSEndpoint, time.Second)
	var wg sync.WaitGroup
	var gaveUp atomic.Int64
	for range callers {
		wg.Go(func() {
			_, err := impatient.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: q.QueueUrl, Entries: batch})
			if err != nil {
				gaveUp.Add(1)
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, callers, gaveUp.Load(), "a paused server answers nobody")
	require.NoError(t, s.Signal("moto_server", syscall.SIGCONT))
	resumed = true

	// A new caller, patient for 3 s per attempt, is answered within 5 s.
	resumedAt := time.Now()
	patient := impatientClient(s.SQSEndpoint, 3*time.Second)
	for {
		_, err := patient.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl})
		if err == nil {
			break
		}
		require.Less(t, time.Since(resumedAt), 5*time.Second, "the stand-in still answers nobody %s after it was resumed: %v", time.Since(resumedAt), err)
	}
	t.Logf("answered %s after the pause ended", time.Since(resumedAt).Round(time.Millisecond))

	// More callers at once than it lets wait: the excess is refused with
	// 503 at once (the SDK's retryable ServiceUnavailable), the rest sent.
	var refused, sent atomic.Int64
	// 300 connections at once also overflow the server's listen backlog
	// (128) on a loaded machine: the kernel resets some, which is a
	// refusal too (the SDKs retry it), not a request left waiting.
	var reset atomic.Int64
	burst := impatientClient(s.SQSEndpoint, 30*time.Second)
	for range 300 {
		wg.Go(func() {
			_, err := burst.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String("burst")})
			var resp *awshttp.ResponseError
			switch {
			case err == nil:
				sent.Add(1)
			case errors.As(err, &resp) && resp.HTTPStatusCode() == http.StatusServiceUnavailable:
				refused.Add(1)
			case errors.Is(err, syscall.ECONNRESET):
				reset.Add(1)
			default:
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	t.Logf("burst of 300: %d sent, %d refused, %d connections reset", sent.Load(), refused.Load(), reset.Load())
	require.Positive(t, refused.Load(), "what exceeds the waiting bound is refused")
	require.Positive(t, sent.Load())
}
