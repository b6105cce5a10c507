package httpserver_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/httpserver"
)

// TestAdmissionShedsBeyondTheLimit: with two requests in flight, a third
// is answered 503 busy with Retry-After and a problem body before the
// handler runs, and counted; once one finishes, the next is served.
func TestAdmissionShedsBeyondTheLimit(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	a, err := httpserver.NewAdmission(2, time.Second, reg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	release := make(chan struct{})
	entered := make(chan struct{}, 4)
	var served sync.WaitGroup
	srv := httptest.NewServer(a.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		if r.URL.Path == "/slow" {
			<-release
		}
		w.WriteHeader(http.StatusNoContent)
	})))
	defer srv.Close()

	for range 2 {
		served.Go(func() {
			resp, err := http.Get(srv.URL + "/slow")
			if err == nil {
				_ = resp.Body.Close()
			}
		})
		<-entered
	}
	require.Equal(t, 2, a.InFlight())

	resp, err := http.Get(srv.URL + "/fast")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	var p map[string]any
	require.NoError(t, json.Unmarshal(body, &p), string(body))
	require.Equal(t, "urn:switchyard:problem:busy", p["type"])
	require.EqualValues(t, 503, p["status"])
	require.Len(t, entered, 0, "the shed request never reached the handler")
	require.InDelta(t, 1, testutil.ToFloat64(a.Shed()), 0)

	close(release)
	served.Wait()
	require.Eventually(t, func() bool { return a.InFlight() == 0 }, 5*time.Second, time.Millisecond)
	resp, err = http.Get(srv.URL + "/fast")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
}

func TestAdmissionRefusesAZeroLimit(t *testing.T) {
	t.Parallel()
	_, err := httpserver.NewAdmission(0, time.Second, nil, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "at least 1")
}

// BenchmarkAdmissionShed is the cost of answering one request beyond the
// limit, net/http's own request and response work left out: under
// overload the gateway does this tens of thousands of times a second, and
// what it allocates is garbage collected beside the admitted requests.
func BenchmarkAdmissionShed(b *testing.B) {
	a, err := httpserver.NewAdmission(1, time.Second, nil, slog.New(slog.DiscardHandler))
	require.NoError(b, err)
	release, entered := make(chan struct{}), make(chan struct{})
	h := a.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		close(entered)
		<-release
	}))
	req := httptest.NewRequestWithContext(b.Context(), http.MethodPost, "/v1/jobs/bench", nil)
	go h.ServeHTTP(&discardWriter{header: http.Header{}}, req)
	<-entered
	defer close(release)
	w := &discardWriter{header: make(http.Header, 4)}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.header)
		h.ServeHTTP(w, req)
	}
	require.Equal(b, http.StatusServiceUnavailable, w.status)
}

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }
