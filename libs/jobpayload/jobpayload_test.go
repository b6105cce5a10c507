package jobpayload_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/jobcatalog"
	"github.com/switchyard/switchyard/libs/jobpayload"
	"github.com/switchyard/switchyard/libs/problem"
)

const catalog = `
job_types:
  order:
    max_body_bytes: 64
    max_json_depth: 3
    handler: noop
    schema:
      type: object
      required: [id]
      properties:
        id: {type: string, maxLength: 8}
`

// TestCheck: a payload is held to what the gateway holds a submission to,
// each refusal with its status and a detail that says what is wrong.
func TestCheck(t *testing.T) {
	c, err := jobcatalog.Parse([]byte(catalog))
	require.NoError(t, err)
	jt, ok := c.Lookup("order")
	require.True(t, ok)
	require.NoError(t, jobpayload.Check(jt, []byte(`{"id": "o-1"}`)))

	tests := []struct {
		name, body string
		status     int
		detail     string
	}{
		{"empty", ``, http.StatusBadRequest, "the body is empty"},
		{"too large", `{"id": "` + strings.Repeat("x", 70) + `"}`, http.StatusRequestEntityTooLarge, "at most 64"},
		{"too deep", `{"a": [[[1]]]}`, http.StatusBadRequest, "nest"},
		{"not UTF-8", "{\"id\": \"\xff\"}", http.StatusBadRequest, "not valid UTF-8"},
		{"syntax", `{"id": }`, http.StatusBadRequest, "invalid JSON at byte"},
		{"two values", `{"id": "a"} {"id": "b"}`, http.StatusBadRequest, "more than one JSON value"},
		{"a character SQS refuses", "{\"id\": \"a\uFFFE\"}", http.StatusBadRequest, "U+FFFE"},
		{"an escaped NUL, which jsonb cannot store", `{"id": "a\u0000"}`, http.StatusBadRequest, `\u0000 at byte 9`},
		{"an escaped NUL as a key", `{"\u0000": 1, "id": "a"}`, http.StatusBadRequest, `\u0000 at byte 2`},
		{"schema: missing field", `{"other": 1}`, http.StatusUnprocessableEntity, `does not satisfy the schema of job type "order"`},
		{"schema: too long", `{"id": "0123456789"}`, http.StatusUnprocessableEntity, "schema"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := jobpayload.Check(jt, []byte(tt.body))
			p, ok := errors.AsType[*problem.Problem](err)
			require.True(t, ok, "a problem, not %v", err)
			require.Equal(t, tt.status, p.Status)
			require.Contains(t, p.Detail, tt.detail)
		})
	}

	require.NoError(t, jobpayload.Check(jt, []byte(`{"id": "a\\u0000"}`)), "an escaped backslash followed by u0000 is text")
	require.NoError(t, jobpayload.Check(jt, []byte(`{"id": "\u0001"}`)))

	err = jobpayload.Check(jt, []byte(`{"other": 1}`))
	p, _ := errors.AsType[*problem.Problem](err)
	require.NotEmpty(t, p.Errors, "schema violations name their fields")
}
