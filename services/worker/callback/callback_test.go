package callback_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/callbacks"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/jobhandler"
	"github.com/switchyard/switchyard/services/worker/callback"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// receiver is a callback receiver that verifies every delivery with the
// Standard Webhooks library, once per secret it knows.
type receiver struct {
	t       *testing.T
	secrets []string
	status  int

	mu       sync.Mutex
	verified []string // webhook-id of each delivery every secret verified
	bodies   [][]byte
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	require.NoError(r.t, err)
	ok := true
	for _, s := range r.secrets {
		wh, err := standardwebhooks.NewWebhook(s)
		require.NoError(r.t, err)
		if wh.Verify(body, req.Header) != nil {
			ok = false
		}
	}
	r.mu.Lock()
	if ok {
		r.verified = append(r.verified, req.Header.Get("webhook-id"))
	}
	r.bodies = append(r.bodies, body)
	r.mu.Unlock()
	w.WriteHeader(r.status)
}

func setup(t *testing.T, hosts ...string) (*pgxpool.Pool, []string) {
	t.Helper()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	_, err := pool.Exec(ctx, `INSERT INTO oauth_clients (client_id, secret_hash) VALUES ('billing', 'x')`)
	require.NoError(t, err)
	store := callbacks.NewStore(pool)
	require.NoError(t, store.SetHosts(ctx, "billing", hosts))
	old, err := store.RotateSecret(ctx, "billing", 0)
	require.NoError(t, err)
	cur, err := store.RotateSecret(ctx, "billing", 24*time.Hour)
	require.NoError(t, err)
	return pool, []string{old.Value, cur.Value}
}

func deliver(t *testing.T, pool *pgxpool.Pool, url string) (json.RawMessage, error) {
	t.Helper()
	payload, err := json.Marshal(callback.Payload{URL: url,
		Event: json.RawMessage(`{"type": "job.succeeded", "timestamp": "2026-12-05T18:00:00Z", "data": {"id": "j-1", "status": "succeeded"}}`)})
	require.NoError(t, err)
	var result json.RawMessage
	var herr error
	err = pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		result, herr = callback.New(nil).Handle(context.Background(), jobhandler.Task{
			JobID: "cb-1", Type: callbacks.JobType, ClientID: "billing", Attempt: 1, Payload: payload, Tx: tx})
		return nil
	})
	require.NoError(t, err)
	return result, herr
}

// TestDeliveryIsSignedWithEverySecret: during a rotation's overlap a
// receiver that knows either secret verifies the delivery; the body is the
// event, compacted, and webhook-id is the callback job's id.
func TestDeliveryIsSignedWithEverySecret(t *testing.T) {
	t.Parallel()
	pool, secrets := setup(t, "127.0.0.1")
	for _, known := range [][]string{secrets[:1], secrets[1:], secrets} {
		r := &receiver{t: t, secrets: known, status: http.StatusNoContent}
		srv := httptest.NewServer(r)
		result, err := deliver(t, pool, srv.URL+"/hooks?source=switchyard")
		srv.Close()
		require.NoError(t, err)
		require.JSONEq(t, `{"status": 204, "signatures": 2}`, string(result))
		require.Equal(t, []string{"cb-1"}, r.verified)
		require.Equal(t, `{"type":"job.succeeded","timestamp":"2026-12-05T18:00:00Z","data":{"id":"j-1","status":"succeeded"}}`, string(r.bodies[0]))
	}
}

// TestDeliveryFailures: what the receiver answers decides between a retry
// and a permanent failure, and a host taken off the allow-list since the
// submission is never called.
func TestDeliveryFailures(t *testing.T) {
	t.Parallel()
	pool, secrets := setup(t, "127.0.0.1")
	for status, permanent := range map[int]bool{500: false, 429: false, 400: false, 410: true, 302: true} {
		r := &receiver{t: t, secrets: secrets, status: status}
		srv := httptest.NewServer(r)
		_, err := deliver(t, pool, srv.URL+"/hooks")
		srv.Close()
		require.Error(t, err, status)
		require.Equal(t, permanent, jobhandler.IsPermanent(err), "HTTP %d", status)
		require.Len(t, r.verified, 1)
	}

	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close() // down: connection refused
	_, err := deliver(t, pool, srv.URL+"/hooks")
	require.Error(t, err)
	require.False(t, jobhandler.IsPermanent(err), "a receiver that is down is retried")

	r := &receiver{t: t, secrets: secrets, status: 200}
	srv = httptest.NewServer(r)
	defer srv.Close()
	require.NoError(t, callbacks.NewStore(pool).SetHosts(context.Background(), "billing", []string{"hooks.example.com"}))
	_, err = deliver(t, pool, srv.URL+"/hooks")
	require.ErrorIs(t, err, callbacks.ErrHostNotAllowed)
	require.True(t, jobhandler.IsPermanent(err))
	require.Empty(t, r.bodies, "never called")

	_, err = pool.Exec(context.Background(), `DELETE FROM callback_secrets`)
	require.NoError(t, err)
	require.NoError(t, callbacks.NewStore(pool).SetHosts(context.Background(), "billing", []string{"127.0.0.1"}))
	_, err = deliver(t, pool, srv.URL+"/hooks")
	require.ErrorContains(t, err, "no callback signing secret")
	require.True(t, jobhandler.IsPermanent(err))
	require.Empty(t, r.bodies, "an unsigned callback is never sent")
}
