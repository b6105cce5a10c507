package sqsqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/switchyard/switchyard/libs/clock"
)

// SubscriberConfig configures a Subscriber.
type SubscriberConfig struct {
	// Queues resolves (and provisions) each topic's queue.
	Queues *Queues
	// Unmarshaler reads an SQS message into a Watermill message.
	Unmarshaler interface {
		Unmarshal(*types.Message) (*message.Message, error)
	}
	// Concurrency is how many messages of one subscription may be in
	// flight (handed out, not yet acked or nacked) at once; each receive
	// asks for as many as are free, up to SQS's 10.
	Concurrency int
	// Wait is the long poll's wait (at most 20 s).
	Wait time.Duration
	// DeleteDelay is the longest an acked message waits for others to
	// share its DeleteMessageBatch call (default 20 ms); ten acked
	// messages are deleted at once.
	DeleteDelay time.Duration
	// Logger receives receive and delete failures.
	Logger *slog.Logger
	// Gate, when set, holds a topic's receives while it is paused, and
	// cuts a long poll short when the topic is paused during it (its
	// messages handed back at once).
	Gate Gate
}

// Gate holds the receives of paused topics (jobpause.Gate).
type Gate interface {
	// Wait blocks while topic is paused; false when ctx ended first.
	Wait(ctx context.Context, topic string) bool
	// Paused returns a channel closed once topic is paused.
	Paused(topic string) <-chan struct{}
}

// Subscriber is a Watermill subscriber on SQS that receives up to ten
// messages per call and hands them out concurrently, at most Concurrency
// of one subscription in flight; acked messages are deleted in batches
// (DeleteMessageBatch), nacked ones are left to come back when their
// visibility ends, as with watermill-aws's subscriber, whose single
// message per call and one-by-one deletes it replaces. A failed receive is
// retried after a capped exponential backoff with full jitter; a long poll
// abandoned at shutdown hands its messages back (ReleaseAbandonedReceives).
// A message that cannot be unmarshalled is left alone (its queue's
// RedrivePolicy moves it to the DLQ after its receives).
type Subscriber struct {
	cfg     SubscriberConfig
	client  *sqs.Client
	closing chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

// NewSubscriber returns a Subscriber.
func NewSubscriber(cfg SubscriberConfig) (*Subscriber, error) {
	if cfg.Queues == nil || cfg.Unmarshaler == nil || cfg.Logger == nil {
		return nil, errors.New("an SQS subscriber needs queues, an unmarshaler and a logger")
	}
	if cfg.Concurrency < 1 || cfg.Wait < 0 || cfg.Wait > 20*time.Second {
		return nil, fmt.Errorf("an SQS subscriber needs a concurrency of at least 1 (got %d) and a wait of 0 to 20s (got %s)", cfg.Concurrency, cfg.Wait)
	}
	if cfg.DeleteDelay <= 0 {
		cfg.DeleteDelay = 20 * time.Millisecond
	}
	return &Subscriber{cfg: cfg, client: cfg.Queues.Client(), closing: make(chan struct{})}, nil
}

// Subscribe starts receiving from topic's queue until ctx ends or the
// subscriber closes; the channel closes when no message of it is in
// flight any more.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	url, err := s.cfg.Queues.Ensure(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("resolving the queue of %s: %w", topic, err)
	}
	out := make(chan *message.Message)
	ctx, cancel := context.WithCancel(ctx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		<-s.closing
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(out)
		s.receive(ctx, topic, url, out)
	}()
	return out, nil
}

// pollContext is ctx for one long poll, cancelled when topic is paused
// during it (with a Gate).
func (s *Subscriber) pollContext(ctx context.Context, topic string) (context.Context, func()) {
	if s.cfg.Gate == nil {
		return ctx, func() {}
	}
	pollCtx, cancel := context.WithCancel(ctx)
	paused := s.cfg.Gate.Paused(topic)
	done := make(chan struct{})
	go func() {
		select {
		case <-paused:
			cancel()
		case <-done:
		}
	}()
	return pollCtx, func() { close(done); cancel() }
}

// receive is one subscription's loop.
func (s *Subscriber) receive(ctx context.Context, topic, url string, out chan<- *message.Message) {
	log := s.cfg.Logger.With("queue", url)
	slots := make(chan struct{}, s.cfg.Concurrency)
	deletes := newDeleter(s.client, url, s.cfg.DeleteDelay, log)
	var inFlight sync.WaitGroup
	giveUp := make(chan struct{})
	defer func() {
		// Handlers still running finish (the router waits for them, up
		// to its close timeout); their acks are deleted before the
		// channel closes. One that outlives settleTimeout is left to
		// come back when its visibility ends.
		settled := make(chan struct{})
		go func() { inFlight.Wait(); close(settled) }()
		select {
		case <-settled:
		case <-time.After(settleTimeout):
			log.Warn("messages still in flight at shutdown; they will be delivered again", "after", settleTimeout)
			close(giveUp)
		}
		deletes.close()
	}()
	failures := 0
	for {
		if s.cfg.Gate != nil && !s.cfg.Gate.Wait(ctx, topic) {
			return
		}
		// Wait for one free slot, then take every other free one.
		select {
		case <-ctx.Done():
			return
		case slots <- struct{}{}:
		}
		want := 1
		for want < min(s.cfg.Concurrency, 10) {
			select {
			case slots <- struct{}{}:
				want++
				continue
			default:
			}
			break
		}
		pollCtx, endPoll := s.pollContext(ctx, topic)
		res, err := s.client.ReceiveMessage(pollCtx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(url),
			MaxNumberOfMessages:         int32(want),                     //nolint:gosec // at most 10
			WaitTimeSeconds:             int32(s.cfg.Wait / time.Second), //nolint:gosec // at most 20
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
		}, ReleaseAbandonedReceives(s.client))
		endPoll()
		got := 0
		if res != nil && err == nil {
			got = len(res.Messages)
		}
		for range want - got {
			<-slots
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if pollCtx.Err() != nil {
				// Paused during the poll: its messages were handed back.
				continue
			}
			failures++
			ceiling := 10 * time.Second
			if errors.Is(err, ErrUnavailable) {
				ceiling = min(ceiling, s.cfg.Queues.Reprobe())
			}
			delay := clock.FullJitter(100*time.Millisecond, ceiling, failures)
			if errors.Is(err, ErrUnavailable) {
				// Said once by the breaker's state change, not per loop.
				log.Debug("SQS unavailable; receiving again later", "retry_in", delay)
			} else {
				log.Error("receiving messages failed; trying again", "error", err, "retry_in", delay)
			}
			if !clock.Sleep(ctx, delay) {
				return
			}
			continue
		}
		failures = 0
		for i := range res.Messages {
			sqsMsg := res.Messages[i]
			msg, err := s.cfg.Unmarshaler.Unmarshal(&sqsMsg)
			if err != nil {
				log.Error("cannot read a received message; it stays in the queue", "error", err, "message_id", aws.ToString(sqsMsg.MessageId))
				<-slots
				continue
			}
			msgCtx, cancelMsg := context.WithCancel(ctx)
			msg.SetContext(msgCtx)
			select {
			case out <- msg:
			case <-ctx.Done():
				// Never handed out: it comes back when its visibility ends.
				cancelMsg()
				<-slots
				continue
			}
			inFlight.Go(func() {
				defer func() { <-slots }()
				defer cancelMsg()
				select {
				case <-msg.Acked():
					deletes.add(aws.ToString(sqsMsg.ReceiptHandle))
				case <-msg.Nacked():
					// Left in the queue: back when its visibility ends.
				case <-giveUp:
				}
			})
		}
	}
}

// Close stops receiving; it returns when every subscription's in-flight
// messages are settled and their acks deleted.
func (s *Subscriber) Close() error {
	s.once.Do(func() { close(s.closing) })
	s.wg.Wait()
	return nil
}

// settleTimeout bounds how long a closing subscription waits for its
// in-flight messages to be acked or nacked.
const settleTimeout = 30 * time.Second

// deleter deletes acked messages of one queue in batches of up to ten,
// each waiting at most its delay for company.
type deleter struct {
	client *sqs.Client
	url    string
	delay  time.Duration
	log    *slog.Logger
	in     chan string
	done   chan struct{}

	mu     sync.Mutex
	closed bool
}

func newDeleter(client *sqs.Client, url string, delay time.Duration, log *slog.Logger) *deleter {
	d := &deleter{client: client, url: url, delay: delay, log: log, in: make(chan string, 10), done: make(chan struct{})}
	go d.run()
	return d
}

// add queues receipt for deletion; after close it is dropped (the message
// comes back and is recognised as a duplicate).
func (d *deleter) add(receipt string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.closed {
		d.in <- receipt
	}
}

// close deletes what is pending and stops.
func (d *deleter) close() {
	d.mu.Lock()
	d.closed = true
	close(d.in)
	d.mu.Unlock()
	<-d.done
}

func (d *deleter) run() {
	defer close(d.done)
	var pending []string
	var timer <-chan time.Time
	for {
		select {
		case r, ok := <-d.in:
			if !ok {
				d.flush(pending)
				return
			}
			pending = append(pending, r)
			if len(pending) == 10 {
				d.flush(pending)
				pending, timer = nil, nil
			} else if timer == nil {
				timer = time.After(d.delay)
			}
		case <-timer:
			d.flush(pending)
			pending, timer = nil, nil
		}
	}
}

// flush deletes receipts with one call. A message whose delete fails
// comes back when its visibility ends, and the consumer's inbox knows it.
func (d *deleter) flush(receipts []string) {
	if len(receipts) == 0 {
		return
	}
	entries := make([]types.DeleteMessageBatchRequestEntry, len(receipts))
	for i, r := range receipts {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(r)}
	}
	// Not the subscription's context: an acked message is deleted even
	// while shutting down.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := d.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(d.url), Entries: entries})
	if err != nil {
		d.log.Error("deleting acked messages failed; they will be delivered again and recognised as duplicates", "error", err, "messages", len(receipts))
		return
	}
	for _, f := range out.Failed {
		d.log.Error("deleting an acked message failed; it will be delivered again and recognised as a duplicate",
			"code", aws.ToString(f.Code), "message", aws.ToString(f.Message))
	}
}
