package problem_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/problem"
)

type statusErr int

func (s statusErr) Error() string   { return "status" }
func (s statusErr) StatusCode() int { return int(s) }

func TestFrom(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		err    error
		status int
		typ    string
	}{
		{"problem kept", problem.PayloadTooLarge.New("x"), 413, problem.PayloadTooLarge.Type()},
		{"wrapped not found", fmt.Errorf("get: %w", jobs.ErrNotFound), 404, problem.JobNotFound.Type()},
		{"key reused", jobs.ErrIdempotencyKeyReused, 422, problem.IdempotencyKeyReused.Type()},
		{"unknown type", jobs.ErrUnknownType, 404, problem.UnknownJobType.Type()},
		{"405 from router", statusErr(405), 405, problem.MethodNotAllowed.Type()},
		{"other 4xx", statusErr(418), 418, "about:blank"},
		{"anything else", errors.New("db exploded: password=hunter2"), 500, problem.Internal.Type()},
		{"postgres unreachable", fmt.Errorf("checking client: %w", &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}), 503, problem.Unavailable.Type()},
		{"postgres statement fault", fmt.Errorf("insert: %w", &pgconn.PgError{Code: "23505"}), 500, problem.Internal.Type()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := problem.From(tt.err)
			require.Equal(t, tt.status, p.Status)
			require.Equal(t, tt.typ, p.Type)
			require.NotContains(t, p.Detail, "hunter2", "causes are never sent")
			if p.Status == http.StatusServiceUnavailable {
				rec := httptest.NewRecorder()
				require.NoError(t, problem.Write(rec, p))
				require.NotEmpty(t, rec.Header().Get("Retry-After"), "an outage says when to come back")
			}
		})
	}
}

func TestWrite(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	p := problem.ValidationFailed.New("bad").WithErrors([]problem.FieldError{{Pointer: "/text", Detail: "required"}}).
		WithHeader("Retry-After", "3")
	p.RequestID = "r1"
	require.NoError(t, problem.Write(rec, p))
	require.Equal(t, http.StatusUnprocessableEntity, rec.Code)
	require.Equal(t, problem.ContentType, rec.Header().Get("Content-Type"))
	require.Equal(t, "3", rec.Header().Get("Retry-After"))
	var got map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
	require.Equal(t, "urn:switchyard:problem:validation-failed", got["type"])
	require.EqualValues(t, 422, got["status"])
	require.Equal(t, "r1", got["request_id"])
	require.Len(t, got["errors"], 1)
}
