// Package callout classifies the outcome of a job handler's call to
// somebody else's HTTP endpoint (a job type's target, a completion
// callback's receiver) into the jobhandler errors that decide whether the
// job is retried: one place that says which answers are worth another
// attempt, with a policy per kind of endpoint.
package callout

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/switchyard/switchyard/libs/jobhandler"
)

// Policy says which non-2xx answers are final.
type Policy int

const (
	// Request is for an endpoint that does the job's work: a 4xx other
	// than 408 and 429 says the request is wrong and will stay wrong, so it
	// is permanent.
	Request Policy = iota
	// Webhook is for a receiver of notifications (Standard Webhooks'
	// advice): only 410 Gone is permanent, since a receiver being deployed
	// or misconfigured for a while answers 404 or 401 and recovers.
	Webhook
)

// TransportError classifies a call that got no answer: a timeout when ctx
// ended (the handler's own deadline), otherwise an unreachable endpoint.
// Both are retried. who names the endpoint for the submitter ("the
// target"); err's own text, which may hold the URL, stays with operators.
func TransportError(ctx context.Context, who string, err error) error {
	if ctx.Err() != nil {
		return jobhandler.ForClient(jobhandler.ClassTimeout, who+" did not answer in time", fmt.Errorf("calling %s: %w", who, err))
	}
	return jobhandler.ForClient(jobhandler.ClassTargetUnreachable, who+" could not be reached", fmt.Errorf("calling %s: %w", who, err))
}

// Answer classifies resp's status under policy: nil for 2xx, a permanent
// error for a redirect (never followed: the request and its secret headers
// go to the configured URL only) and for what policy calls final, and a
// retryable error for everything else.
func Answer(resp *http.Response, who string, policy Policy) error {
	code := resp.StatusCode
	answered := who + " answered HTTP " + strconv.Itoa(code)
	cause := fmt.Errorf("%s answered %s", who, resp.Status)
	switch {
	case code >= 200 && code < 300:
		return nil
	case code >= 300 && code < 400:
		return jobhandler.Permanent(jobhandler.ForClient(jobhandler.ClassTargetRedirected,
			answered+" (a redirect, which is not followed: configure the final URL)", cause))
	case code == http.StatusGone:
		return jobhandler.Permanent(jobhandler.ForClient(jobhandler.ClassTargetRejected, answered+" (gone: no more attempts)", cause))
	case policy == Request && code >= 400 && code < 500 &&
		code != http.StatusRequestTimeout && code != http.StatusTooManyRequests:
		return jobhandler.Permanent(jobhandler.ForClient(jobhandler.ClassTargetRejected, answered, cause))
	default:
		return jobhandler.ForClient(jobhandler.ClassTargetFailed, answered, cause)
	}
}
