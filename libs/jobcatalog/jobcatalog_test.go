package jobcatalog_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/jobcatalog"
	"github.com/switchyard/switchyard/libs/jobs"
)

const sample = `
job_types:
  text-stats:
    description: counts words
    max_body_bytes: 1024
    max_json_depth: 4
    handler: text-stats
    consumers: 2
    timeout: 5s
    retry: {attempts: 3, base: 1s, max: 10s}
    schema:
      $id: ignored-by-expansion
      type: object
      required: [text]
      additionalProperties: false
      properties:
        text: {type: string, maxLength: 10}
  webhook:
    http:
      url: ${TEST_WEBHOOK_URL:-http://127.0.0.1:9999/hook}
      headers: {X-Team: blue}
`

func TestParse(t *testing.T) {
	t.Parallel()
	c, err := jobcatalog.Parse([]byte(sample))
	require.NoError(t, err)
	require.Equal(t, []string{"text-stats", "webhook"}, c.Names())
	require.False(t, c.CallbacksEnabled(), "callbacks are on only when the file declares their type")

	ts, ok := c.Lookup("text-stats")
	require.True(t, ok)
	require.EqualValues(t, 1024, ts.MaxBodyBytes)
	require.Equal(t, 4, ts.MaxJSONDepth)
	require.Equal(t, 2, ts.Consumers)
	require.Equal(t, 5*time.Second, ts.Timeout)
	require.Equal(t, jobs.RetryPolicy{Attempts: 3, Base: time.Second, Max: 10 * time.Second}, ts.Retry)

	wh, ok := c.Lookup("webhook")
	require.True(t, ok)
	require.Equal(t, "http://127.0.0.1:9999/hook", wh.HTTP.URL)
	require.Equal(t, jobcatalog.DefaultTimeout, wh.HTTP.Timeout)
	require.EqualValues(t, jobcatalog.DefaultMaxBodyBytes, wh.MaxBodyBytes)
	require.Equal(t, jobcatalog.DefaultMaxJSONDepth, wh.MaxJSONDepth)
	require.Equal(t, jobs.DefaultRetryPolicy(), wh.Retry)

	_, ok = c.Lookup("nope")
	require.False(t, ok)
}

func TestValidate(t *testing.T) {
	t.Parallel()
	c, err := jobcatalog.Parse([]byte(sample))
	require.NoError(t, err)
	ts, _ := c.Lookup("text-stats")

	v, err := ts.Validate([]byte(`{"text":"hello"}`))
	require.NoError(t, err)
	require.Empty(t, v)

	v, err = ts.Validate([]byte(`{"text":"far too long a text","extra":1}`))
	require.NoError(t, err)
	require.NotEmpty(t, v)
	pointers := map[string]bool{}
	for _, x := range v {
		pointers[x.Pointer] = true
	}
	require.True(t, pointers["/text"] || pointers[""], "violations point into the payload: %+v", v)

	// A type without a schema takes any JSON object, and only objects.
	wh, _ := c.Lookup("webhook")
	v, err = wh.Validate([]byte(`{"any":[1,2]}`))
	require.NoError(t, err)
	require.Empty(t, v)
	v, err = wh.Validate([]byte(`[1,2]`))
	require.NoError(t, err)
	require.NotEmpty(t, v)
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]struct{ doc, want string }{
		"bad yaml":         {"job_types: [", "parsing YAML"},
		"unknown field":    {"job_types:\n  a:\n    handler: x\n    colour: red\n", "colour"},
		"no types":         {"job_types: {}\n", "no job types"},
		"bad name":         {"job_types:\n  Bad.Name:\n    handler: x\n", "must match"},
		"no target":        {"job_types:\n  a: {}\n", "exactly one of handler"},
		"both targets":     {"job_types:\n  a:\n    handler: x\n    http: {url: http://h/}\n", "exactly one of handler"},
		"relative url":     {"job_types:\n  a:\n    http: {url: /hook}\n", "absolute http(s) URL"},
		"huge body":        {"job_types:\n  a:\n    handler: x\n    max_body_bytes: 10000000\n", "max_body_bytes"},
		"deep json":        {"job_types:\n  a:\n    handler: x\n    max_json_depth: 5000\n", "max_json_depth"},
		"negative timeout": {"job_types:\n  a:\n    handler: x\n    timeout: -1s\n", "timeout"},
		"no attempts":      {"job_types:\n  a:\n    handler: x\n    retry: {attempts: -1}\n", "retry.attempts"},
		"max below base":   {"job_types:\n  a:\n    handler: x\n    retry: {base: 1m, max: 1s}\n", "retry.max"},
		"bad schema":       {"job_types:\n  a:\n    handler: x\n    schema: {type: 12}\n", "schema"},
		"unset env":        {"# ${NOT_IN_COMMENTS}\njob_types:\n  a:\n    http: {url: '${SWITCHYARD_SURELY_UNSET_VAR}'}\n", "line 4: environment variable SWITCHYARD_SURELY_UNSET_VAR"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := jobcatalog.Parse([]byte(tt.doc))
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// TestCallbackTypeMayBeTunedNotReplaced: declaring the callback type turns
// callbacks on and tunes its retries; it cannot send callbacks elsewhere.
func TestCallbackTypeMayBeTunedNotReplaced(t *testing.T) {
	t.Parallel()
	c, err := jobcatalog.Parse([]byte(`job_types:
  switchyard-callback:
    handler: switchyard-callback
    retry: {attempts: 4, base: 1s, max: 5s}
`))
	require.NoError(t, err)
	cb, _ := c.Lookup("switchyard-callback")
	require.Equal(t, 4, cb.Retry.Attempts)
	require.True(t, c.CallbacksEnabled())

	_, err = jobcatalog.Parse([]byte(`job_types:
  switchyard-callback:
    http: {url: "http://127.0.0.1:9/x"}
`))
	require.ErrorContains(t, err, "its handler must be")
}
