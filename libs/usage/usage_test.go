package usage

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/authn"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/httpserver"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/problem"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

func TestQuantile(t *testing.T) {
	t.Parallel()
	counts := func(pairs ...int64) []int64 { // bucket index, count
		b := make([]int64, len(Buckets)+1)
		for i := 0; i+1 < len(pairs); i += 2 {
			b[pairs[i]] = pairs[i+1]
		}
		return b
	}
	tests := []struct {
		name    string
		q       float64
		buckets []int64
		want    float64
	}{
		{"no requests", 0.95, counts(), 0},
		{"all in the first bucket", 0.5, counts(0, 10), 2.5},
		{"p95 of 100 split 90/10 over (10,25] and (25,50]", 0.95, counts(2, 90, 3, 10), 37.5},
		{"p50 at a bucket's top", 0.5, counts(1, 50, 2, 50), 10},
		{"slower than the last bound reports the last bound", 0.99, counts(11, 3), 10000},
	}
	for _, tt := range tests {
		require.InDelta(t, tt.want, Quantile(tt.q, tt.buckets), 0.01, tt.name)
	}
}

// TestRecordFlushRead: two gateways count requests, flush into the same
// minutes, and the report adds them up per client and route, with
// percentiles from the summed buckets and the clients' jobs by status.
func TestRecordFlushRead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	logger := slog.New(slog.DiscardHandler)
	base := time.Date(2026, 11, 30, 10, 0, 30, 0, time.UTC)
	clock := base
	a, b := NewRecorder(pool, 0, nil, logger), NewRecorder(pool, 0, nil, logger)
	a.now, b.now = func() time.Time { return clock }, func() time.Time { return clock }
	as := func(client string) context.Context {
		if client == "" {
			return ctx
		}
		return authn.WithIdentity(ctx, authn.Identity{ClientID: client})
	}
	for range 90 {
		a.ObserveRequest(as("billing"), "POST", "/v1/jobs/:type", 202, 20*time.Millisecond)
	}
	for range 10 {
		b.ObserveRequest(as("billing"), "POST", "/v1/jobs/:type", 503, 40*time.Millisecond)
	}
	b.ObserveRequest(as(""), "POST", "/v1/jobs/:type", 401, time.Millisecond)
	b.ObserveRequest(as(""), "GET", "", 404, time.Millisecond)
	require.NoError(t, a.Flush(ctx))
	require.NoError(t, b.Flush(ctx))
	clock = base.Add(time.Minute) // the next minute: another row, same report
	for i := range 5 {
		ctx := as("billing")
		if i < 3 { // with an API key: counted by key as well
			ctx = authn.WithIdentity(ctx, authn.Identity{ClientID: "billing", KeyID: "k1"})
		}
		a.ObserveRequest(ctx, "GET", "/v1/jobs/:id", 200, 3*time.Millisecond)
	}
	a.ObserveRequest(as("search"), "GET", "/v1/jobs/:id", 404, 3*time.Millisecond)

	// A failed flush keeps its counts for the next one.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	require.Error(t, a.Flush(cancelled))
	require.NoError(t, a.Flush(ctx))
	require.NoError(t, a.Flush(ctx), "nothing pending: nothing written")

	store := jobstore.New(pool)
	for i, status := range []string{"succeeded", "succeeded", "dead_lettered"} {
		id := uuid.NewString()
		_, _, err := store.Accept(ctx, jobs.Submission{ID: id, MessageID: uuid.NewString(), Type: "text-stats", ClientID: "billing",
			Payload: json.RawMessage(`{"n":` + string(rune('0'+i)) + `}`)})
		require.NoError(t, err)
		_, err = pool.Exec(ctx, `UPDATE jobs SET status = $2 WHERE id = $1`, id, status)
		require.NoError(t, err)
	}

	rep, err := Read(ctx, pool, Query{Since: base.Add(-time.Hour), Until: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	require.Len(t, rep.Clients, 3)
	billing := rep.Clients[0]
	require.Equal(t, "billing", billing.ClientID, "busiest first")
	require.EqualValues(t, 105, billing.Requests)
	require.Len(t, billing.Routes, 2)
	post := billing.Routes[0]
	require.Equal(t, "POST /v1/jobs/:type", post.Route)
	require.EqualValues(t, 100, post.Requests, "both gateways' counts")
	require.EqualValues(t, 10, post.ServerErrors)
	require.Zero(t, post.ClientErrors)
	require.InDelta(t, 22, post.MeanMs, 0.01)
	require.InDelta(t, 37.5, post.P95Ms, 0.01, "95th of 90 at 20 ms and 10 at 40 ms: inside (25,50]")
	require.InDelta(t, 18.33, post.P50Ms, 0.01, "the 50th of 90 in (10,25]")
	require.Equal(t, "GET /v1/jobs/:id", billing.Routes[1].Route)
	require.EqualValues(t, 5, billing.Routes[1].Requests, "counted across the failed flush, once")
	require.Equal(t, map[string]map[string]int64{"text-stats": {"succeeded": 2, "dead_lettered": 1}}, billing.Jobs)
	require.Equal(t, map[string]int64{"k1": 3}, billing.APIKeys, "requests per API key id")

	anon := rep.Clients[1]
	require.Equal(t, Anonymous, anon.ClientID)
	require.EqualValues(t, 2, anon.Requests)
	require.ElementsMatch(t, []string{"POST /v1/jobs/:type", "GET unmatched"}, []string{anon.Routes[0].Route, anon.Routes[1].Route})

	// Filters.
	rep, err = Read(ctx, pool, Query{Since: base.Truncate(time.Minute).Add(time.Minute), Until: base.Add(2 * time.Minute), ClientID: "billing"})
	require.NoError(t, err)
	require.Len(t, rep.Clients, 1)
	require.Len(t, rep.Clients[0].Routes, 1, "only the second minute")
	require.EqualValues(t, 5, rep.Clients[0].Requests)
	rep, err = Read(ctx, pool, Query{Since: base.Add(-time.Hour), Until: base.Add(time.Hour), Route: "GET /v1/jobs/:id"})
	require.NoError(t, err)
	require.Len(t, rep.Clients, 2, "billing and search used that route")
	for _, c := range rep.Clients {
		require.Empty(t, c.Jobs, "a route filter leaves jobs out")
	}
	_, err = Read(ctx, pool, Query{Since: base, Until: base})
	require.Error(t, err)
}

// TestRefusalsAndSeries: requests answered through a real Echo server
// with the gateway's two 429 problems (and a bare 429) are counted by
// cause, and the series spreads them over steps, empty steps included.
func TestRefusalsAndSeries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	logger := slog.New(slog.DiscardHandler)
	base := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	clock := base
	rec := NewRecorder(pool, 0, nil, logger)
	rec.now = func() time.Time { return clock }
	e := httpserver.NewEcho(logger, httpserver.WithObserver(rec))
	e.GET("/x/:what", func(c echo.Context) error {
		switch c.Param("what") {
		case "rate":
			return problem.RateLimited.New("spent")
		case "quota":
			return problem.QuotaExceeded.New("used up")
		case "bare":
			return echo.NewHTTPError(http.StatusTooManyRequests)
		case "slow":
			return c.String(http.StatusOK, "ok")
		}
		return c.NoContent(http.StatusOK)
	})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	get := func(what string, n int) {
		for range n {
			resp, err := http.Get(srv.URL + "/x/" + what)
			require.NoError(t, err)
			resp.Body.Close()
		}
	}
	get("ok", 4)
	get("rate", 3)
	get("quota", 2)
	get("bare", 1)
	clock = base.Add(10 * time.Minute) // two empty 5-minute steps between
	get("ok", 5)
	require.NoError(t, rec.Flush(ctx))

	rep, err := Read(ctx, pool, Query{Since: base, Until: base.Add(time.Hour)})
	require.NoError(t, err)
	require.Len(t, rep.Clients, 1)
	var rate, quota RouteUsage
	for _, r := range rep.Clients[0].Routes {
		rate.RateLimited += r.RateLimited
		quota.QuotaRefused += r.QuotaRefused
		rate.ClientErrors += r.ClientErrors
	}
	require.EqualValues(t, 3, rate.RateLimited, "rate-limited problems")
	require.EqualValues(t, 2, quota.QuotaRefused, "quota problems")
	require.EqualValues(t, 6, rate.ClientErrors, "every 429 is a client error too")

	points, err := Series(ctx, pool, Query{Since: base, Until: base.Add(15 * time.Minute)}, 5*time.Minute)
	require.NoError(t, err)
	require.Len(t, points, 3)
	require.Equal(t, base, points[0].At)
	require.EqualValues(t, 10, points[0].Requests)
	require.EqualValues(t, 3, points[0].RateLimited)
	require.EqualValues(t, 2, points[0].QuotaRefused)
	require.EqualValues(t, 6, points[0].ClientErrors)
	require.Zero(t, points[1].Requests, "an empty step is a zero point")
	require.EqualValues(t, 5, points[2].Requests)
	require.Positive(t, points[2].P95Ms)

	_, err = Series(ctx, pool, Query{Since: base, Until: base.Add(time.Hour)}, 90*time.Second)
	require.Error(t, err, "steps are whole minutes")
	_, err = Series(ctx, pool, Query{Since: base, Until: base.Add(MaxSeriesPoints * time.Minute)}, time.Minute)
	require.Error(t, err, "too many points")
}
