package productionpath_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
)

// awsSide is the AWS Terraform would create, on an SQS server of the
// test's own: the queues of the production variables, one IAM user per
// service holding exactly that service's policy document from the .tf
// files (its IRSA role's), and IAM enforced on every call. The services
// reach it through a proxy that records who called what and what SQS
// answered.
type awsSide struct {
	endpoint string
	proxy    *httptest.Server
	// keys are the access keys of the services' users (by service name:
	// relay, worker, replay, init); outsiders' are users with no policy
	// (the gateway's, for the test of a service that must not touch SQS).
	keys, outsiders map[string]accessKey

	mu       sync.Mutex
	recorded []sqsCall
}

type accessKey struct{ id, secret string }

// sqsCall is one SQS request through the proxy.
type sqsCall struct {
	service, action string
	status          int
	errorType       string
}

func newAWS(t *testing.T, tf terraformPlan) *awsSide {
	t.Helper()
	ctx := context.Background()
	a := &awsSide{endpoint: stacktest.NewSQSServer(t), keys: map[string]accessKey{}, outsiders: map[string]accessKey{}}
	setup := aws.Config{Region: region, Credentials: credentials.NewStaticCredentialsProvider("terraform", "terraform", "")}
	// Terraform's queues: the DLQ, then the queue with its redrive policy.
	q := sqs.NewFromConfig(setup, func(o *sqs.Options) { o.BaseEndpoint = &a.endpoint })
	for _, jt := range tf.JobTypes {
		dlq, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: &jt.DLQ})
		require.NoError(t, err)
		attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
		require.NoError(t, err)
		require.Equal(t, jt.DLQARN, attrs.Attributes["QueueArn"], "Terraform's ARNs are the server's")
		_, err = q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: &jt.Queue, Attributes: map[string]string{
			"VisibilityTimeout": strconv.Itoa(jt.VisibilityTimeoutSeconds),
			"RedrivePolicy":     fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":%d}`, jt.DLQARN, jt.MaxReceiveCount),
		}})
		require.NoError(t, err)
	}
	// One user per service with its policy; one with none.
	users := iam.NewFromConfig(setup, func(o *iam.Options) { o.BaseEndpoint = &a.endpoint })
	newUser := func(name string, policy []byte) accessKey {
		_, err := users.CreateUser(ctx, &iam.CreateUserInput{UserName: &name})
		require.NoError(t, err)
		if policy != nil {
			doc := string(policy)
			_, err = users.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: &name, PolicyName: aws.String("switchyard"), PolicyDocument: &doc})
			require.NoError(t, err)
		}
		key, err := users.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: &name})
		require.NoError(t, err)
		return accessKey{id: *key.AccessKey.AccessKeyId, secret: *key.AccessKey.SecretAccessKey}
	}
	for svc, policy := range tf.Policies {
		a.keys[svc] = newUser("switchyard-"+svc, policy)
	}
	a.outsiders["gateway"] = newUser("switchyard-gateway", nil)
	// From now on every call is authenticated and authorised.
	resp, err := http.Post(a.endpoint+"/moto-api/reset-auth", "text/plain", strings.NewReader("0"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	byKey := map[string]string{}
	for svc, k := range a.keys {
		byKey[k.id] = svc
	}
	for svc, k := range a.outsiders {
		byKey[k.id] = svc
	}
	target, err := url.Parse(a.endpoint)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		c := sqsCall{status: resp.StatusCode, action: strings.TrimPrefix(resp.Request.Header.Get("X-Amz-Target"), "AmazonSQS.")}
		if _, cred, ok := strings.Cut(resp.Request.Header.Get("Authorization"), "Credential="); ok {
			id, _, _ := strings.Cut(cred, "/")
			c.service = byKey[id]
		}
		if resp.StatusCode >= 400 {
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			resp.Body = io.NopCloser(bytes.NewReader(body))
			c.errorType = string(body)
		}
		a.mu.Lock()
		a.recorded = append(a.recorded, c)
		a.mu.Unlock()
		return nil
	}
	a.proxy = httptest.NewServer(proxy)
	t.Cleanup(a.proxy.Close)

	// moto enforces IAM as AWS would for the calls the services make
	// (its launcher fixes the two places moto 5 differs): a service's own
	// queue is allowed, GetQueueUrl included; another's is not.
	worker := a.client(t, "worker")
	_, err = worker.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(anyJobType(tf).Queue)})
	require.NoError(t, err, "the worker looks up its queue")
	_, err = worker.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(anyJobType(tf).DLQ)})
	requireDenied(t, err, "the worker may not look up a DLQ")
	a.mu.Lock()
	a.recorded = nil // the check above is not the services' doing
	a.mu.Unlock()
	return a
}

// client is an SQS client with user's keys, through the proxy.
func (a *awsSide) client(t *testing.T, user string) *sqs.Client {
	t.Helper()
	k, ok := a.keys[user]
	if !ok {
		k, ok = a.outsiders[user]
	}
	require.True(t, ok, "no IAM user for %s", user)
	return sqs.NewFromConfig(aws.Config{Region: region, Credentials: credentials.NewStaticCredentialsProvider(k.id, k.secret, "")},
		func(o *sqs.Options) { o.BaseEndpoint = &a.proxy.URL; o.RetryMaxAttempts = 1 })
}

// queueURL is a queue's URL as the services see it (through the proxy).
func (a *awsSide) queueURL(name string) *string {
	u := a.proxy.URL + "/" + accountID + "/" + name
	return &u
}

type recordedCalls []sqsCall

func (a *awsSide) calls() recordedCalls {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.recorded)
}

// actions are the distinct SQS actions svc called.
func (rc recordedCalls) actions(svc string) []string {
	var out []string
	for _, c := range rc {
		if c.service == svc && !slices.Contains(out, c.action) {
			out = append(out, c.action)
		}
	}
	sort.Strings(out)
	return out
}

// denied are the calls refused for want of permission.
func (rc recordedCalls) denied() []string {
	var out []string
	for _, c := range rc {
		if c.status == http.StatusForbidden || strings.Contains(c.errorType, "AccessDenied") {
			out = append(out, fmt.Sprintf("%s %s: %d %s", c.service, c.action, c.status, c.errorType))
		}
	}
	return out
}

// anyJobType is the first of Terraform's job types.
func anyJobType(tf terraformPlan) tfJobType {
	return tf.JobTypes[slices.Sorted(mapsKeys(tf.JobTypes))[0]]
}

// requireDenied asserts that err is SQS refusing a call for want of
// permission: HTTP 403 (moto answers a JSON-protocol call's AccessDenied
// in XML, which the SDK cannot decode, so the status is what it reports).
func requireDenied(t *testing.T, err error, what string) {
	t.Helper()
	require.Error(t, err, what)
	require.Regexp(t, `StatusCode: 403|AccessDenied`, err.Error(), what)
}
