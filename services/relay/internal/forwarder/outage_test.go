package forwarder_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/sqsqueue"
	"github.com/switchyard/switchyard/services/relay/internal/forwarder"
)

// TestRelayFacingAFailingSQSMakesBoundedCalls points a relay with work
// waiting at an SQS endpoint that fails every request for 20 s: one that
// answers 503, and one that is unreachable (it accepts each connection
// and drops it at once, so the calls can be counted). With fixed 1 s
// retries from each of 4 loops and the SDK's 3 attempts per call it made
// about 12 requests a second; with the guard (breaker open after 5
// failures, one probe per 5 s) it makes a handful, and the outbox keeps
// every row.
func TestRelayFacingAFailingSQSMakesBoundedCalls(t *testing.T) {
	for _, tt := range []struct {
		name  string
		serve func(t *testing.T, calls *atomic.Int64) string
	}{
		{"answers 503", func(t *testing.T, calls *atomic.Int64) string {
			failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				w.Header().Set("Content-Type", "application/x-amz-json-1.0")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte(`{"__type":"com.amazonaws.sqs#ServiceUnavailable","message":"down"}`))
			}))
			t.Cleanup(failing.Close)
			return failing.URL
		}},
		{"unreachable", func(t *testing.T, calls *atomic.Int64) string {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			t.Cleanup(func() { _ = l.Close() })
			go func() {
				for {
					conn, err := l.Accept()
					if err != nil {
						return
					}
					calls.Add(1)
					_ = conn.(*net.TCPConn).SetLinger(0) // a reset, as from a host with nothing listening
					_ = conn.Close()
				}
			}()
			return "http://" + l.Addr().String()
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int64
			endpoint := tt.serve(t, &calls)
			e := newEnv(t) // a real Postgres for the outbox
			e.accept(t, "text-stats", 120)
			t.Setenv("AWS_ENDPOINT_URL_SQS", endpoint)
			const openFor = 5 * time.Second
			queues, _, err := sqsqueue.Connect(context.Background(), sqsqueue.Config{Prefix: stacktest.QueuePrefix(t), BreakerOpenFor: openFor}, e.logger, nil)
			require.NoError(t, err)
			f, err := forwarder.New(e.pool, database.NewDialer(database.Config{URL: e.dbURL}), queues, forwarder.Config{Loops: 4, BatchSize: 50, PollInterval: 50 * time.Millisecond}, e.logger, nil)
			require.NoError(t, err)

			const window = 20 * time.Second
			ctx, cancel := context.WithTimeout(context.Background(), window)
			defer cancel()
			require.NoError(t, f.Run(ctx))

			// 5 failures open the breaker; a few more may already be in
			// flight from the other loops; then one probe per openFor.
			bound := int64(5 + 4*3 + int(window/openFor) + 1)
			t.Logf("%d SQS requests in %s (bound %d; %.0f a minute)", calls.Load(), window, bound, float64(calls.Load())*float64(time.Minute)/float64(window))
			require.LessOrEqual(t, calls.Load(), bound)
			require.Positive(t, calls.Load(), "the relay tried")
			require.EqualValues(t, 120, e.backlog(t), "every row stays in the outbox")
		})
	}
}
