// Package sqsqueue connects to SQS and provisions Switchyard's queues: for
// every job type (Watermill topic) one queue, with its own dead-letter queue
// and a RedrivePolicy so that a message received too often without being
// deleted (a crash loop) ends in the DLQ. It also resolves topics to queue
// URLs for watermill-aws, so that every component names queues one way.
package sqsqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	wmsqs "github.com/ThreeDotsLabs/watermill-aws/sqs"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/libs/config"
)

// Config describes how queues are named and created. The conf tags let
// services embed it in their configuration under the same variable names.
type Config struct {
	// Prefix is prepended to every queue name, e.g. "switchyard-" gives
	// "switchyard-text-stats" and "switchyard-text-stats-dlq".
	Prefix string `conf:"default:switchyard-,env:SWITCHYARD_QUEUE_PREFIX,help:prefix of every SQS queue name"`
	// VisibilityTimeout is how long a received message stays hidden from
	// other consumers. Default 30 s.
	VisibilityTimeout time.Duration `conf:"default:30s,env:SWITCHYARD_SQS_VISIBILITY_TIMEOUT,help:SQS visibility timeout of job queues"`
	// MaxReceiveCount is how many receives without a delete move a message
	// to the DLQ (the RedrivePolicy): the safety net for a worker that
	// crashes on a message. Every retry is a receive too, so it must
	// exceed the retry attempts of every job type. Default 10; at least 3.
	MaxReceiveCount int `conf:"default:10,env:SWITCHYARD_SQS_MAX_RECEIVE_COUNT,help:receives before SQS moves a message to the DLQ (must exceed every job type's retry attempts)"`
	// Retention is how long the main queue keeps a message. Default 4 days.
	Retention time.Duration `conf:"default:96h,env:SWITCHYARD_SQS_RETENTION,help:message retention of job queues"`
	// DLQRetention is how long the DLQ keeps a message. Default 14 days
	// (the SQS maximum), so operators have time to look.
	DLQRetention time.Duration `conf:"default:336h,env:SWITCHYARD_SQS_DLQ_RETENTION,help:message retention of dead-letter queues"`
	// AccessKeyID and SecretAccessKey, when both are set, are the SQS
	// credentials (for example vault:secret/switchyard/shared/sqs#...);
	// otherwise the AWS SDK's chain finds them (environment, shared
	// files, an instance or pod role, which production should prefer).
	AccessKeyID     config.Secret `conf:"mask,env:SWITCHYARD_SQS_ACCESS_KEY_ID,help:SQS access key id or vault:<mount>/<path>#<key> (default: the AWS SDK's chain)"`
	SecretAccessKey config.Secret `conf:"mask,env:SWITCHYARD_SQS_SECRET_ACCESS_KEY,help:SQS secret access key or vault:<mount>/<path>#<key>"`
	// ExistingQueues says the queues are managed elsewhere (Terraform:
	// deployments/terraform): they are only looked up, never created or
	// changed, so the services need no sqs:CreateQueue or
	// sqs:SetQueueAttributes. The settings above are then Terraform's.
	// MaxInFlight, BreakerOpenFor and RetryAttempts bound what one
	// process asks of SQS (GuardConfig).
	MaxInFlight    int           `conf:"default:64,env:SWITCHYARD_SQS_MAX_IN_FLIGHT,help:most SQS requests one process has in flight (long polls included); more wait"`
	BreakerOpenFor time.Duration `conf:"default:5s,env:SWITCHYARD_SQS_BREAKER_OPEN_FOR,help:how long SQS calls are answered at once as unavailable after 5 consecutive failures (then one probe tests SQS again)"`
	RetryAttempts  int           `conf:"default:3,env:SWITCHYARD_SQS_RETRY_ATTEMPTS,help:attempts per SQS call (the AWS SDK retryer with full-jitter pauses and a retry budget)"`
	ExistingQueues bool          `conf:"default:false,env:SWITCHYARD_SQS_EXISTING_QUEUES,help:only look queues up; they are created and configured elsewhere (Terraform)"`
}

// DLQSuffix ends the name of every dead-letter queue.
const DLQSuffix = "-dlq"

// deadLetterTopicPrefix marks a topic that names a job type's dead-letter
// queue. Job type names cannot contain ':', so it never collides.
const deadLetterTopicPrefix = "dead-letter:"

// DeadLetterTopic is the topic whose queue is jobType's DLQ: messages the
// worker dead-letters are written to the outbox under it, and the relay
// delivers them like any other.
func DeadLetterTopic(jobType string) string { return deadLetterTopicPrefix + jobType }

// SplitTopic returns the job type a topic belongs to and whether the topic
// is that type's dead-letter topic.
func SplitTopic(topic string) (jobType string, deadLetter bool) {
	if t, ok := strings.CutPrefix(topic, deadLetterTopicPrefix); ok {
		return t, true
	}
	return topic, false
}

var prefixPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{0,26}$`)

func (c *Config) setDefaults() {
	if c.VisibilityTimeout == 0 {
		c.VisibilityTimeout = 30 * time.Second
	}
	if c.MaxReceiveCount == 0 {
		c.MaxReceiveCount = 10
	}
	if c.Retention == 0 {
		c.Retention = 4 * 24 * time.Hour
	}
	if c.DLQRetention == 0 {
		c.DLQRetention = 14 * 24 * time.Hour
	}
}

// Validate reports settings SQS would refuse; zero values stand for their
// defaults, as NewQueues reads them.
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	if !prefixPattern.MatchString(c.Prefix) {
		errs = append(errs, fmt.Errorf("queue prefix %q must match %s", c.Prefix, prefixPattern))
	}
	if c.VisibilityTimeout < time.Second || c.VisibilityTimeout > 12*time.Hour {
		errs = append(errs, fmt.Errorf("visibility timeout %s must be between 1s and 12h", c.VisibilityTimeout))
	}
	if c.MaxReceiveCount < 3 || c.MaxReceiveCount > 1000 {
		errs = append(errs, fmt.Errorf("max receive count %d must be between 3 and 1000", c.MaxReceiveCount))
	}
	if c.MaxInFlight < 0 || c.RetryAttempts < 0 || c.BreakerOpenFor < 0 {
		errs = append(errs, fmt.Errorf("SQS max in flight (%d), retry attempts (%d) and breaker open time (%s) must not be negative", c.MaxInFlight, c.RetryAttempts, c.BreakerOpenFor))
	}
	if c.RetryAttempts > 10 {
		errs = append(errs, fmt.Errorf("SQS retry attempts %d must be at most 10", c.RetryAttempts))
	}
	for name, d := range map[string]time.Duration{"retention": c.Retention, "DLQ retention": c.DLQRetention} {
		if d < time.Minute || d > 14*24*time.Hour {
			errs = append(errs, fmt.Errorf("%s %s must be between 1m and 14 days", name, d))
		}
	}
	return errors.Join(errs...)
}

// LoadAWSConfig loads the AWS configuration the standard way (environment,
// shared files, instance roles). AWS_ENDPOINT_URL_SQS points the SQS client
// at LocalStack or moto.
func LoadAWSConfig(ctx context.Context) (aws.Config, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return aws.Config{}, fmt.Errorf("loading AWS configuration: %w", err)
	}
	return cfg, nil
}

// Connect loads the AWS configuration (see LoadAWSConfig), with cfg's
// credentials when it has some, and returns Queues on an SQS client built
// from it, with that configuration. Every request of that client is
// guarded (GuardConfig): bounded in number, retried on purpose, and
// answered at once with ErrUnavailable while SQS is failing. logger
// receives the breaker's state changes; reg, when not nil, the guard's
// metrics.
func Connect(ctx context.Context, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Queues, aws.Config, error) {
	awsCfg, err := LoadAWSConfig(ctx)
	if err != nil {
		return nil, aws.Config{}, err
	}
	id, secret := cfg.AccessKeyID.Value(), cfg.SecretAccessKey.Value()
	switch {
	case id != "" && secret != "":
		awsCfg.Credentials = aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(id, secret, ""))
	case id != "" || secret != "":
		return nil, aws.Config{}, config.Invalid(errors.New("set both SWITCHYARD_SQS_ACCESS_KEY_ID and SWITCHYARD_SQS_SECRET_ACCESS_KEY, or neither"))
	}
	g := newGuard(GuardConfig{
		MaxInFlight: cfg.MaxInFlight, OpenFor: cfg.BreakerOpenFor, RetryAttempts: cfg.RetryAttempts,
		Logger: logger, Registerer: reg,
	})
	client := sqs.NewFromConfig(awsCfg, func(o *sqs.Options) {
		o.Retryer = g.retryer()
		o.APIOptions = append(o.APIOptions, g.install)
	})
	q, err := NewQueues(client, cfg)
	if err != nil {
		return nil, aws.Config{}, err
	}
	q.guard = g
	return q, awsCfg, nil
}

// ErrNoQueueYet is Ping's answer before the process has resolved any queue.
var ErrNoQueueYet = errors.New("no queue resolved yet")

// Ping checks that SQS answers for a queue this process uses (a readiness
// check): one GetQueueAttributes call on the first queue it has resolved,
// which its IAM policy allows (unlike ListQueues, which no service's
// policy grants). Before any is resolved it reports ErrNoQueueYet.
func (q *Queues) Ping(ctx context.Context) error {
	q.mu.Lock()
	var name, url string
	for topic, u := range q.urls {
		if n := q.Name(topic); name == "" || n < name {
			name, url = n, u
		}
	}
	q.mu.Unlock()
	if url == "" {
		return ErrNoQueueYet
	}
	_, err := q.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: &url, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages},
	})
	if err != nil {
		return fmt.Errorf("reading attributes of SQS queue %s: %w", name, err)
	}
	return nil
}

// Queues provisions and resolves the queues of job types. It is safe for
// concurrent use and remembers URLs it has resolved.
type Queues struct {
	client *sqs.Client
	cfg    Config

	// guard is the client's SQS guard when Connect built it.
	guard *guard

	mu   sync.Mutex
	urls map[string]string
}

// Reprobe is how long the client's circuit breaker stays open before it
// lets one call test SQS again: the longest a loop that met
// ErrUnavailable should wait before asking again (its own backoff may
// be longer after other failures; after this one, waiting longer only
// delays the recovery).
func (q *Queues) Reprobe() time.Duration {
	if q.guard == nil {
		return 5 * time.Second
	}
	return q.guard.cfg.OpenFor
}

// Available reports ErrUnavailable while the client's circuit breaker is
// open (a call now would be answered at once, unsent), nil otherwise.
func (q *Queues) Available() error {
	if q.guard == nil {
		return nil
	}
	return q.guard.Available()
}

// NewQueues returns a Queues that talks to SQS through client.
func NewQueues(client *sqs.Client, cfg Config) (*Queues, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid queue config: %w", err)
	}
	return &Queues{client: client, cfg: cfg, urls: map[string]string{}}, nil
}

// Client returns the SQS client the queues use.
func (q *Queues) Client() *sqs.Client { return q.client }

// Config returns the configuration, defaults applied.
func (q *Queues) Config() Config { return q.cfg }

// Name returns the queue name of topic (a dead-letter topic's is its DLQ's).
func (q *Queues) Name(topic string) string {
	if jobType, dl := SplitTopic(topic); dl {
		return q.DLQName(jobType)
	}
	return q.cfg.Prefix + topic
}

// DLQName returns the dead-letter queue name of topic.
func (q *Queues) DLQName(topic string) string { return q.cfg.Prefix + topic + DLQSuffix }

// Ensure creates topic's DLQ and queue (with its RedrivePolicy) when they
// do not exist, brings their attributes in line with the config when they
// do, and returns the queue's URL; for a dead-letter topic (see
// DeadLetterTopic) it does the same for the job type and returns the DLQ's
// URL. It is idempotent and cached.
func (q *Queues) Ensure(ctx context.Context, topic string) (string, error) {
	q.mu.Lock()
	url, ok := q.urls[topic]
	q.mu.Unlock()
	if ok {
		return url, nil
	}
	if q.cfg.ExistingQueues {
		return q.lookUp(ctx, topic)
	}
	jobType, deadLetter := SplitTopic(topic)
	if deadLetter {
		if _, err := q.Ensure(ctx, jobType); err != nil {
			return "", err
		}
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.urls[topic], nil
	}
	dlqURL, err := q.createOrUpdate(ctx, q.DLQName(topic), map[string]string{
		string(types.QueueAttributeNameMessageRetentionPeriod): seconds(q.cfg.DLQRetention),
	})
	if err != nil {
		return "", err
	}
	attrs, err := q.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       &dlqURL,
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", fmt.Errorf("reading ARN of %s: %w", q.DLQName(topic), err)
	}
	redrive, err := json.Marshal(map[string]any{
		"deadLetterTargetArn": attrs.Attributes[string(types.QueueAttributeNameQueueArn)],
		"maxReceiveCount":     q.cfg.MaxReceiveCount,
	})
	if err != nil {
		return "", fmt.Errorf("encoding redrive policy: %w", err)
	}
	url, err = q.createOrUpdate(ctx, q.Name(topic), map[string]string{
		string(types.QueueAttributeNameVisibilityTimeout):      seconds(q.cfg.VisibilityTimeout),
		string(types.QueueAttributeNameMessageRetentionPeriod): seconds(q.cfg.Retention),
		string(types.QueueAttributeNameRedrivePolicy):          string(redrive),
	})
	if err != nil {
		return "", err
	}
	q.mu.Lock()
	q.urls[topic] = url
	q.urls[DeadLetterTopic(topic)] = dlqURL
	q.mu.Unlock()
	return url, nil
}

// ChangeVisibility hides a received message of topic for d from now
// (rounded up to whole seconds, as SQS counts): the worker extends it while
// a handler runs and sets it to the backoff before a retry.
func (q *Queues) ChangeVisibility(ctx context.Context, topic, receiptHandle string, d time.Duration) error {
	url, err := q.Ensure(ctx, topic)
	if err != nil {
		return err
	}
	d = min(max(d, 0), 12*time.Hour)                   // SQS's range
	secs := int32((d + time.Second - 1) / time.Second) //nolint:gosec // at most 43200 after the clamp above
	_, err = q.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: &url, ReceiptHandle: &receiptHandle, VisibilityTimeout: secs,
	})
	if err != nil {
		return fmt.Errorf("changing visibility of a message on %s to %ds: %w", q.Name(topic), secs, err)
	}
	return nil
}

// lookUp finds topic's queue (a dead-letter topic's DLQ), which must
// exist, and caches its URL. Only that queue: a worker may look up its job
// queue and a replay service its DLQ, and neither the other's.
func (q *Queues) lookUp(ctx context.Context, topic string) (string, error) {
	name := q.Name(topic)
	out, err := q.client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: &name})
	if err != nil {
		return "", fmt.Errorf("looking up queue %s (SWITCHYARD_SQS_EXISTING_QUEUES: it must exist already): %w", name, err)
	}
	url := aws.ToString(out.QueueUrl)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.urls[topic] = url
	return url, nil
}

// createOrUpdate creates a queue, or, when one of that name exists with
// other attributes, sets them.
func (q *Queues) createOrUpdate(ctx context.Context, name string, attrs map[string]string) (string, error) {
	out, err := q.client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: &name, Attributes: attrs})
	if err == nil {
		return aws.ToString(out.QueueUrl), nil
	}
	var exists *types.QueueNameExists
	if !errors.As(err, &exists) {
		return "", fmt.Errorf("creating queue %s: %w", name, err)
	}
	got, err := q.client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: &name})
	if err != nil {
		return "", fmt.Errorf("looking up queue %s: %w", name, err)
	}
	if _, err := q.client.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: got.QueueUrl, Attributes: attrs}); err != nil {
		return "", fmt.Errorf("updating attributes of queue %s: %w", name, err)
	}
	return aws.ToString(got.QueueUrl), nil
}

// ResolveQueueUrl implements watermill-aws's QueueUrlResolver: a topic's
// queue is provisioned (with its DLQ) on first use, so a Watermill
// publisher or subscriber never creates a queue without a RedrivePolicy.
func (q *Queues) ResolveQueueUrl( //nolint:revive // the name is watermill-aws's interface method
	ctx context.Context, params wmsqs.ResolveQueueUrlParams) (wmsqs.QueueUrlResolverResult, error) {
	url, err := q.Ensure(ctx, params.Topic)
	if err != nil {
		return wmsqs.QueueUrlResolverResult{}, err
	}
	u := wmsqs.QueueURL(url)
	exists := true
	return wmsqs.QueueUrlResolverResult{QueueName: wmsqs.QueueName(q.Name(params.Topic)), QueueURL: &u, Exists: &exists}, nil
}

func seconds(d time.Duration) string { return strconv.Itoa(int(d / time.Second)) }
