package forwarder_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsqs "github.com/ThreeDotsLabs/watermill-aws/sqs"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/jobmessage"
	"github.com/switchyard/switchyard/libs/outbox"
	"github.com/switchyard/switchyard/loadtest/sqsload"
	relay "github.com/switchyard/switchyard/services/relay/internal/forwarder"
)

// Messages per measurement. Every measurement starts on a new, empty queue:
// moto's cost per call grows with queue depth, so each variant must see the
// same depth profile for the ratios to mean anything.
const (
	benchMessages      = 300
	benchStockMessages = benchMessages
)

// BenchmarkForwarding reports, for each round, the forwarding rate of the
// relay next to references measured in the same round against the same SQS
// endpoint: a bare SendMessageBatch loop (serial, and with the relay's own
// concurrency) and Watermill's stock forwarder on the same outbox. Run it
// with -benchtime 1x -count N and read the medians (go tool task
// bench:relay does both).
func BenchmarkForwarding(b *testing.B) {
	e := newEnv(b)
	var cfg relay.Config
	cfg.SetDefaults()
	concurrency := cfg.Loops * ((cfg.BatchSize + 9) / 10)
	var bare, serial, rel, stock []float64
	round := 0
	for b.Loop() {
		round++
		serial = append(serial, e.bareLoop(b, fmt.Sprintf("bare1-%d", round), 1))
		bare = append(bare, e.bareLoop(b, fmt.Sprintf("bare-%d", round), concurrency))
		rel = append(rel, e.relayRate(b, fmt.Sprintf("relay-%d", round), cfg))
		stock = append(stock, e.stockRate(b, fmt.Sprintf("stock-%d", round)))
	}
	last := len(rel) - 1
	b.ReportMetric(rel[last], "relay-msg/s")
	b.ReportMetric(bare[last], "bare-msg/s")
	b.ReportMetric(serial[last], "bare-serial-msg/s")
	b.ReportMetric(stock[last], "stock-msg/s")
	b.ReportMetric(rel[last]/bare[last], "relay/bare")
	b.ReportMetric(rel[last]/serial[last], "relay/bare-serial")
	b.ReportMetric(rel[last]/stock[last], "relay/stock")
	b.ReportMetric(0, "ns/op") // rounds are not comparable operations
}

func benchPayload(i int) string {
	return fmt.Sprintf(`{"n":%d,"text":"the quick brown fox jumps over the lazy dog"}`, i)
}

// bareLoop sends benchMessages messages shaped like the relay's (same body
// size, same attributes) with SendMessageBatch from concurrency goroutines,
// and returns messages per second.
func (e *env) bareLoop(b *testing.B, topic string, concurrency int) float64 {
	b.Helper()
	ctx := context.Background()
	url, err := e.queues.Ensure(ctx, topic)
	require.NoError(b, err)
	messages := make([]sqsload.Message, benchMessages)
	for j := range messages {
		messages[j] = sqsload.Message{Body: benchPayload(j), Attributes: map[string]string{
			wmsqs.UUIDAttribute:  fmt.Sprintf("01900000-0000-7000-8000-%012d", j),
			jobmessage.JobID:     fmt.Sprintf("01900000-0000-7000-9000-%012d", j),
			jobmessage.JobType:   topic,
			jobmessage.ClientID:  "bench",
			jobmessage.RequestID: "0123456789abcdef0123456789abcdef",
		}}
	}
	rate, err := sqsload.SendBatches(ctx, e.client, url, messages, concurrency)
	require.NoError(b, err)
	return rate
}

// relayRate fills the outbox with benchMessages jobs, then times the relay
// from start until the outbox is empty.
func (e *env) relayRate(b *testing.B, topic string, cfg relay.Config) float64 {
	b.Helper()
	_, err := e.queues.Ensure(context.Background(), topic)
	require.NoError(b, err)
	e.accept(b, topic, benchMessages)
	f := e.forwarder(b, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = f.Run(ctx) }()
	e.awaitEmptyOutbox(b)
	elapsed := time.Since(start)
	cancel()
	wg.Wait()
	return benchMessages / elapsed.Seconds()
}

// stockRate times Watermill's stock forwarder (watermill-sql subscriber on
// the same outbox table, watermill-aws publisher) draining
// benchStockMessages jobs.
func (e *env) stockRate(b *testing.B, topic string) float64 {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	awsCfg := e.client.Options()
	_, err := e.queues.Ensure(ctx, topic)
	require.NoError(b, err)
	e.accept(b, topic, benchStockMessages)
	logger := watermill.NopLogger{}
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromPgx(e.pool), wsql.SubscriberConfig{
		SchemaAdapter: outbox.SchemaAdapter(), OffsetsAdapter: outbox.OffsetsAdapter(), PollInterval: 10 * time.Millisecond,
	}, logger)
	require.NoError(b, err)
	pub, err := wmsqs.NewPublisher(wmsqs.PublisherConfig{
		AWSConfig:        aws.Config{Region: awsCfg.Region, Credentials: awsCfg.Credentials, BaseEndpoint: awsCfg.BaseEndpoint},
		QueueUrlResolver: e.queues,
	}, logger)
	require.NoError(b, err)
	fwd, err := forwarder.NewForwarder(sub, pub, logger, forwarder.Config{ForwarderTopic: outbox.Topic})
	require.NoError(b, err)
	start := time.Now()
	go func() { _ = fwd.Run(ctx) }()
	e.awaitEmptyOutbox(b)
	elapsed := time.Since(start)
	require.NoError(b, fwd.Close())
	return benchStockMessages / elapsed.Seconds()
}

func (e *env) awaitEmptyOutbox(b *testing.B) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for e.backlog(b) > 0 {
		if time.Now().After(deadline) {
			b.Fatal("outbox not drained within 5 minutes")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
