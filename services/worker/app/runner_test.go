package app_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsqs "github.com/ThreeDotsLabs/watermill-aws/sqs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/jobcatalog"
	"github.com/switchyard/switchyard/libs/jobhandler"
	"github.com/switchyard/switchyard/libs/jobmessage"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/sqsqueue"
	"github.com/switchyard/switchyard/services/worker/app"
	"github.com/switchyard/switchyard/services/worker/demo"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// TestRunProcessesFromSQS runs the worker against real Postgres and SQS:
// messages published with watermill-aws's own publisher are applied, a
// duplicate is applied once, and an HTTP target receives its delivery.
func TestRunProcessesFromSQS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := stacktest.NewDatabase(t)
	stacktest.SQSEndpoint(t)
	prefix := stacktest.QueuePrefix(t)

	var hookMu sync.Mutex
	hookKeys := map[string]int{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hookMu.Lock()
		hookKeys[r.Header.Get("Idempotency-Key")]++
		hookMu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()

	jobsFile := filepath.Join(t.TempDir(), "jobs.yaml")
	require.NoError(t, os.WriteFile(jobsFile, []byte(`
job_types:
  text-stats:
    handler: text-stats
    consumers: 3
  hook:
    http: {url: "`+hook.URL+`"}
    consumers: 1
`), 0o644))
	cfg := app.Config{
		OpsAddr: "127.0.0.1:0", DatabaseURL: config.NewSecret(dbURL), JobsFile: jobsFile, CloseTimeout: 5 * time.Second,
		Queues: sqsqueue.Config{Prefix: prefix},
	}
	reg := jobhandler.NewRegistry()
	require.NoError(t, reg.Register("text-stats", demo.TextStats()))
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx, cfg, reg, logger) }()

	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	defer pool.Close()
	store := jobstore.New(pool)
	awsCfg, err := sqsqueue.LoadAWSConfig(ctx)
	require.NoError(t, err)
	queues, err := sqsqueue.NewQueues(sqs.NewFromConfig(awsCfg), cfg.Queues)
	require.NoError(t, err)
	pub, err := wmsqs.NewPublisher(wmsqs.PublisherConfig{AWSConfig: awsCfg, QueueUrlResolver: queues}, watermill.NopLogger{})
	require.NoError(t, err)

	publish := func(jobType, payload string, copies int) string {
		sub := jobs.Submission{ID: uuid.NewString(), MessageID: uuid.NewString(), Type: jobType, ClientID: "c", Payload: json.RawMessage(payload)}
		_, _, err := store.Accept(ctx, sub)
		require.NoError(t, err)
		for range copies {
			m := message.NewMessage(sub.MessageID, []byte(payload))
			m.Metadata.Set(jobmessage.JobID, sub.ID)
			m.Metadata.Set(jobmessage.ClientID, "c")
			require.NoError(t, pub.Publish(jobType, m))
		}
		return sub.ID
	}
	var ids []string
	for range 10 {
		ids = append(ids, publish("text-stats", `{"text":"a b c"}`, 1))
	}
	dup := publish("text-stats", `{"text":"twice"}`, 2)
	hookJob := publish("hook", `{"x":1}`, 1)
	ids = append(ids, dup, hookJob)

	require.Eventually(t, func() bool {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE id = ANY($1::uuid[]) AND status = 'succeeded'`, ids).Scan(&n)
		return err == nil && n == len(ids)
	}, 60*time.Second, 50*time.Millisecond)

	var effects, dupEffects int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE job_id = $1) FROM demo_text_stats`, dup).Scan(&effects, &dupEffects))
	require.Equal(t, 11, effects)
	require.Equal(t, 1, dupEffects)
	hookMu.Lock()
	require.Equal(t, map[string]int{hookJob: 1}, hookKeys)
	hookMu.Unlock()

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not stop")
	}
}

func TestBindingsNameMissingHandlers(t *testing.T) {
	t.Parallel()
	catalog, err := jobcatalog.Parse([]byte("job_types:\n  a:\n    handler: nope\n  b:\n    handler: text-stats\n"))
	require.NoError(t, err)
	reg := jobhandler.NewRegistry()
	require.NoError(t, reg.Register("text-stats", demo.TextStats()))
	_, err = app.Bindings(catalog, reg, nil)
	require.ErrorContains(t, err, `job type "a" names handler "nope", which is not registered (registered: [text-stats])`)
}
