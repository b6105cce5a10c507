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
	"github.com/stretchr/testify/assert"
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

// TestShedDelayBoundsAHammeringClient performs the flood: four
// connections send again the moment each answer arrives, for a second,
// to a server at its limit. Answered at once they get as many answers as
// the machine can make (each one a read, a parse and a write the
// admitted requests are short of); with a 100 ms shed delay at most one
// per connection every 100 ms, each still a 503 with Retry-After. The
// bounds follow from the delay alone (every answer waits for it), not
// from how fast this machine is.
func TestShedDelayBoundsAHammeringClient(t *testing.T) {
	t.Parallel()
	const conns, delay, flood = 4, 100 * time.Millisecond, time.Second
	hammer := func(opts ...httpserver.AdmissionOption) (answers int, fastest time.Duration) {
		a, err := httpserver.NewAdmission(1, time.Second, nil, slog.New(slog.DiscardHandler), opts...)
		require.NoError(t, err)
		release, entered := make(chan struct{}), make(chan struct{})
		srv := httptest.NewServer(a.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			close(entered)
			<-release
		})))
		defer srv.Close()
		defer close(release)
		go func() {
			if resp, err := http.Get(srv.URL); err == nil {
				_ = resp.Body.Close()
			}
		}()
		<-entered // the only slot is taken from here on

		var mu sync.Mutex
		var wg sync.WaitGroup
		fastest = flood
		end := time.Now().Add(flood)
		for range conns {
			wg.Go(func() {
				client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
				defer client.CloseIdleConnections()
				for time.Now().Before(end) {
					start := time.Now()
					resp, err := client.Get(srv.URL)
					if !assert.NoError(t, err) {
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					took := time.Since(start)
					assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
					assert.Equal(t, "1", resp.Header.Get("Retry-After"))
					mu.Lock()
					answers++
					fastest = min(fastest, took)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return answers, fastest
	}

	bound := conns * (int(flood/delay) + 1) // every answer waits for the delay
	atOnce, _ := hammer()
	t.Logf("answered at once: %d answers in %s from %d connections", atOnce, flood, conns)
	require.Greater(t, atOnce, bound, "answered at once, the flood gets more than one answer per connection per delay")
	delayed, fastest := hammer(httpserver.WithShedDelay(delay))
	t.Logf("with a %s shed delay: %d answers", delay, delayed)
	require.LessOrEqual(t, delayed, bound, "at most one answer per connection per delay")
	require.GreaterOrEqual(t, delayed, conns, "every connection was answered")
	require.GreaterOrEqual(t, fastest, delay, "no answer came before the delay")
}

// TestShedDelayMustBeShorterThanRetryAfter: a client that honours
// Retry-After must never be the one waiting for the delay.
func TestShedDelayMustBeShorterThanRetryAfter(t *testing.T) {
	t.Parallel()
	_, err := httpserver.NewAdmission(8, time.Second, nil, slog.New(slog.DiscardHandler), httpserver.WithShedDelay(time.Second))
	require.ErrorContains(t, err, "shorter than Retry-After")
	_, err = httpserver.NewAdmission(8, time.Second, nil, slog.New(slog.DiscardHandler), httpserver.WithShedDelay(-time.Millisecond))
	require.ErrorContains(t, err, "must not be negative")
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
