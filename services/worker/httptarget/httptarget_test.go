package httptarget_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/jobcatalog"
	"github.com/switchyard/switchyard/libs/jobhandler"
	"github.com/switchyard/switchyard/services/worker/httptarget"
)

func task() jobhandler.Task {
	return jobhandler.Task{JobID: "job-1", Type: "webhook", Attempt: 2, Payload: json.RawMessage(`{"a":1}`),
		TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
}

func TestDelivery(t *testing.T) {
	t.Parallel()
	var got *http.Request
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		body, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"accepted":true}`))
	}))
	defer srv.Close()

	target := httptarget.New(jobcatalog.HTTPTarget{URL: srv.URL + "/hook", Headers: map[string]string{"X-Team": "blue"}}, nil)
	res, err := target.Handle(context.Background(), task())
	require.NoError(t, err)
	require.JSONEq(t, `{"accepted":true}`, string(res))
	require.Equal(t, http.MethodPost, got.Method)
	require.Equal(t, "/hook", got.URL.Path)
	require.Equal(t, "job-1", got.Header.Get("Idempotency-Key"))
	require.Equal(t, "2", got.Header.Get("X-Switchyard-Attempt"))
	require.Equal(t, "blue", got.Header.Get("X-Team"))
	require.Equal(t, task().TraceParent, got.Header.Get("traceparent"))
	require.Equal(t, "application/json", got.Header.Get("Content-Type"))
	require.JSONEq(t, `{"a":1}`, string(body))
}

func TestOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status    int
		body      string
		wantErr   bool
		permanent bool
		result    string
	}{
		{status: 204, result: `{"status":204}`},
		{status: 200, body: "plain text", result: `{"status":200}`},
		{status: 400, wantErr: true, permanent: true},
		{status: 404, wantErr: true, permanent: true},
		{status: 408, wantErr: true},
		{status: 429, wantErr: true},
		{status: 500, body: "secret stack trace", wantErr: true},
		{status: 503, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			res, err := httptarget.New(jobcatalog.HTTPTarget{URL: srv.URL}, nil).Handle(context.Background(), task())
			if !tt.wantErr {
				require.NoError(t, err)
				require.JSONEq(t, tt.result, string(res))
				return
			}
			require.Error(t, err)
			require.Equal(t, tt.permanent, jobhandler.IsPermanent(err))
			require.NotContains(t, err.Error(), "secret", "response bodies are not copied into job errors")
		})
	}
}

func TestTimeoutAndRefusedConnectionAreRetryable(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	_, err := httptarget.New(jobcatalog.HTTPTarget{URL: srv.URL, Timeout: 50 * time.Millisecond}, nil).Handle(context.Background(), task())
	require.Error(t, err)
	require.False(t, jobhandler.IsPermanent(err))

	closed := httptest.NewServer(http.NotFoundHandler())
	url := closed.URL
	closed.Close()
	_, err = httptarget.New(jobcatalog.HTTPTarget{URL: url}, nil).Handle(context.Background(), task())
	require.Error(t, err)
	require.False(t, jobhandler.IsPermanent(err))
}
