package sqsqueue

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"
)

func responseError(status int, err error) error {
	var resp *smithyhttp.Response
	if status != 0 {
		resp = &smithyhttp.Response{Response: &http.Response{StatusCode: status}}
	}
	return fmt.Errorf("operation error SQS: %w", &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{Response: resp, Err: err}})
}

// TestWhatCountsAsAnSQSFailure: the breaker counts what says SQS (or the
// way to it) is failing, not a request SQS refused for its own sake.
func TestWhatCountsAsAnSQSFailure(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		err    error
		failed bool
	}{
		{"no answer within the caller's deadline", responseError(0, &smithy.CanceledError{Err: context.DeadlineExceeded}), true},
		{"connection refused", responseError(0, errors.New("dial tcp 127.0.0.1:4566: connect: connection refused")), true},
		{"503", responseError(503, &smithy.GenericAPIError{Code: "ServiceUnavailable"}), true},
		{"throttled", responseError(400, &smithy.GenericAPIError{Code: "RequestThrottled"}), true},
		{"no such queue", responseError(400, &smithy.GenericAPIError{Code: "AWS.SimpleQueueService.NonExistentQueue"}), false},
		{"access denied", responseError(403, &smithy.GenericAPIError{Code: "AccessDenied"}), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.failed, sqsFailed(tt.err))
		})
	}
}
