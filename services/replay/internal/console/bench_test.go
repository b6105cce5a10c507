package console_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/jobcatalog"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/sqsqueue"
	"github.com/switchyard/switchyard/libs/usage"
	"github.com/switchyard/switchyard/services/replay/internal/adminapi"
	"github.com/switchyard/switchyard/services/replay/internal/console"
	"github.com/switchyard/switchyard/services/replay/internal/deadletterstore"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// benchDeadLetters is how many dead letters the page-load benchmark
// stores (the figure).
const benchDeadLetters = 100_000

// tokenAuth accepts the one token the benchmark's session holds, as the
// operator bench-op with the admin scope. (Sign-in and the real verifier
// are exercised end to end in services/e2e; the benchmark measures pages.)
type tokenAuth struct{}

func (tokenAuth) Authenticate(r *http.Request) (authn.Identity, error) {
	if r.Header.Get("Authorization") != "Bearer bench-token" {
		return authn.Identity{}, authn.Fail(authn.ErrUnauthenticated, "invalid_token", "not the bench token")
	}
	return authn.Identity{ClientID: "bench-op", Scopes: []string{adminapi.Scope}}, nil
}

type benchEnv struct {
	srv    *httptest.Server
	cookie string
	sample string // a dead letter id
	topic  string
	fp     string
}

var (
	benchOnce sync.Once
	bench     *benchEnv
	benchErr  error
)

// seed stores n dead letters over 5 job types and 40 fingerprints, spread
// over the last 7 days, with COPY.
func seed(ctx context.Context, pool *pgxpool.Pool, n int) error {
	now := time.Now().UTC()
	rows := make([][]any, 0, n)
	for i := range n {
		id, err := uuid.NewV7()
		if err != nil {
			return err
		}
		topic := fmt.Sprintf("type-%d", i%5)
		fp := fmt.Sprintf("%016x", i%40)
		at := now.Add(-time.Duration(n-i) * 7 * 24 * time.Hour / time.Duration(n))
		payload := fmt.Appendf(nil, `{"order":%d,"sku":"ABC-%d","note":"seeded for the page-load benchmark"}`, i, i%997)
		rows = append(rows, []any{id.String(), "bench-" + id.String(), "sqs-" + id.String(), topic, uuid.NewString(), fmt.Sprintf("client-%d", i%25),
			"attempts_exhausted", fmt.Sprintf("upstream %s answered 503 after 3 attempts (order %d)", topic, i), fp, 3, topic, at, payload})
	}
	_, err := pool.CopyFrom(ctx, pgx.Identifier{"dead_letters"},
		[]string{"id", "message_id", "sqs_message_id", "topic", "job_id", "client_id", "reason", "error", "fingerprint", "attempts", "handler",
			"dead_lettered_at", "payload"}, pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("seeding dead letters: %w", err)
	}
	_, err = pool.Exec(ctx, `ANALYZE dead_letters`)
	return err
}

func newBenchEnv(tb testing.TB) (*benchEnv, error) {
	ctx := context.Background()
	pool := stacktest.NewPool(tb)
	stacktest.SQSEndpoint(tb)
	if err := seed(ctx, pool, benchDeadLetters); err != nil {
		return nil, err
	}
	awsCfg, err := sqsqueue.LoadAWSConfig(ctx)
	if err != nil {
		return nil, err
	}
	queues, err := sqsqueue.NewQueues(sqs.NewFromConfig(awsCfg), sqsqueue.Config{Prefix: stacktest.QueuePrefix(tb)})
	if err != nil {
		return nil, err
	}
	doc := "job_types:\n"
	for i := range 5 {
		doc += fmt.Sprintf("  type-%d:\n    handler: text-stats\n", i)
	}
	catalog, err := jobcatalog.Parse([]byte(doc))
	if err != nil {
		return nil, err
	}
	logger := slog.New(slog.DiscardHandler)
	store := deadletterstore.New(pool)
	e := httpserver.NewEcho(logger)
	api := adminapi.New(store, catalog, 24*time.Hour)
	api.Jobs = jobstore.New(pool)
	api.JobTypes = &adminapi.JobTypes{Pool: pool, Depth: queues.Depth}
	api.Usage = func(ctx context.Context, q usage.Query) (usage.Report, error) { return usage.Read(ctx, pool, q) }
	api.UsageSeries = func(ctx context.Context, q usage.Query, step time.Duration) ([]usage.Point, error) {
		return usage.Series(ctx, pool, q, step)
	}
	api.Mount(e.Echo, adminapi.GuardsFor(tokenAuth{}, logger, nil))
	sessions := console.NewSessions(pool, time.Hour, 8*time.Hour)
	con, err := console.New(console.Settings{Enabled: true, SessionIdle: time.Hour, SessionMax: 8 * time.Hour},
		console.Deps{Sessions: sessions, API: e, Store: store, Authenticator: tokenAuth{}, Issuer: "http://unused", Logger: logger})
	if err != nil {
		return nil, err
	}
	con.Mount(e.Echo)
	cookie, _, err := sessions.Create(ctx, console.NewSession{ClientID: "bench-op", ClientSecret: "unused", Scopes: []string{adminapi.Scope},
		Token: "bench-token", TokenExpiry: time.Now().Add(24 * time.Hour)})
	if err != nil {
		return nil, err
	}
	env := &benchEnv{srv: httptest.NewServer(e), cookie: cookie, topic: "type-3", fp: fmt.Sprintf("%016x", 13)}
	if err := pool.QueryRow(ctx, `SELECT id::text FROM dead_letters ORDER BY id LIMIT 1 OFFSET 50000`).Scan(&env.sample); err != nil {
		return nil, err
	}
	return env, nil
}

// BenchmarkConsolePages loads each console page, signed in, with 100,000
// dead letters stored: each page's admin API calls (and so its audit
// rows), queries and template, over real HTTP, Postgres and SQS (moto).
// It reports the median and p95 of the loads (ms) besides ns/op; the
// target is p95 < 200 ms.
//
//	go run ./services/switchyard dev exec -- go test -run '^$' -bench ConsolePages -benchtime 50x ./services/replay/internal/console/
func BenchmarkConsolePages(b *testing.B) {
	benchOnce.Do(func() { bench, benchErr = newBenchEnv(b) })
	require.NoError(b, benchErr)
	client := &http.Client{Timeout: 30 * time.Second}
	pages := []struct{ name, path string }{
		{"overview", "/console/"},
		{"dead-letters", "/console/dead-letters"},
		{"dead-letters-filtered", "/console/dead-letters?type=" + bench.topic + "&fingerprint=" + bench.fp},
		{"dead-letters-stored-since", "/console/dead-letters?status=stored&since=2020-01-01T00:00"},
		{"dead-letter", "/console/dead-letters/" + bench.sample},
		{"job-types", "/console/job-types"},
		{"audit", "/console/audit"},
		{"analytics", "/console/analytics?window=24h"},
		{"replays", "/console/replays"},
		{"replay-preview-form", "/console/replays/new?type=" + bench.topic},
	}
	for _, pg := range pages {
		b.Run(pg.name, func(b *testing.B) {
			var took []time.Duration
			for b.Loop() {
				start := time.Now()
				req, err := http.NewRequest(http.MethodGet, bench.srv.URL+pg.path, http.NoBody)
				require.NoError(b, err)
				req.Header.Set("Cookie", "switchyard_console="+bench.cookie)
				resp, err := client.Do(req)
				require.NoError(b, err)
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.NoError(b, err)
				took = append(took, time.Since(start))
				require.Equal(b, http.StatusOK, resp.StatusCode, "%s: %s", pg.path, body)
				require.True(b, strings.Contains(string(body), "</html>"))
			}
			slices.Sort(took)
			b.ReportMetric(ms(took[len(took)/2]), "p50-ms")
			b.ReportMetric(ms(took[min(len(took)-1, len(took)*95/100)]), "p95-ms")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
