package jobsapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/jobstore"
)

// BenchmarkListDeep measures GET /v1/jobs over HTTP (the gateway's Echo
// stack, problem handling and JSON; a header stands in for the token
// check) on a database holding a million jobs of one client (and 200,000
// of 40 others), created over 30 days in three types, mostly finished:
// each iteration walks 10 pages of 20 (the default) for three filters
// (none, one type, one rare status), following next_url. Reported: the
// p50 and p99 of a page over all pages and of the 10th page alone, and,
// as the reference measured in the same run, of GET /v1/jobs/{id} (a
// primary-key lookup and the job's timeline). Run it with go tool task
// bench:list.
func BenchmarkListDeep(b *testing.B) {
	ctx := context.Background()
	pool := stacktest.NewPool(b)
	start := time.Now()
	for chunk := range 6 {
		client := "'big-client'"
		if chunk == 5 {
			client = "'other-' || (g % 40)"
		}
		_, err := pool.Exec(ctx, `
			INSERT INTO jobs (id, type, client_id, status, payload, request_hash, created_at, updated_at, finished_at, attempts)
			SELECT gen_random_uuid(), (ARRAY['text-stats', 'webhook', 'report'])[1 + g % 3], `+client+`,
				CASE WHEN g % 100 = 7 THEN 'failed' WHEN g % 100 < 5 THEN 'dead_lettered' ELSE 'succeeded' END,
				'{"text":"lorem ipsum dolor sit amet"}', '\x00', t, t, t, 1
			FROM generate_series(1, 200000) g, LATERAL (SELECT now() - (random() * interval '30 days') AS t) ts`)
		require.NoError(b, err)
	}
	_, err := pool.Exec(ctx, `VACUUM ANALYZE jobs`)
	require.NoError(b, err)
	b.Logf("filled 1,200,000 jobs in %s", time.Since(start).Round(time.Second))
	srv := newServer(b, jobstore.New(pool), "")
	client := srv.Client()
	get := func(path string) (map[string]any, time.Duration) {
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		require.NoError(b, err)
		req.Header.Set(headerClient, "big-client")
		t0 := time.Now()
		resp, err := client.Do(req)
		require.NoError(b, err)
		var body map[string]any
		require.NoError(b, json.NewDecoder(resp.Body).Decode(&body))
		d := time.Since(t0)
		require.NoError(b, resp.Body.Close())
		require.Equal(b, http.StatusOK, resp.StatusCode, body)
		return body, d
	}
	var someIDs []string
	rows, err := pool.Query(ctx, `SELECT id::text FROM jobs WHERE client_id = 'big-client' LIMIT 1000`)
	require.NoError(b, err)
	for rows.Next() {
		var id string
		require.NoError(b, rows.Scan(&id))
		someIDs = append(someIDs, id)
	}
	require.NoError(b, rows.Err())

	filters := []string{"/v1/jobs", "/v1/jobs?type=webhook", "/v1/jobs?status=failed"}
	var pages, tenth, byID []time.Duration
	b.ResetTimer()
	i := 0
	for b.Loop() {
		for _, path := range filters {
			for depth := 1; depth <= 10; depth++ {
				body, d := get(path)
				require.Len(b, body["jobs"], 20)
				pages = append(pages, d)
				if depth == 10 {
					tenth = append(tenth, d)
				}
				path = body["next_url"].(string)
			}
		}
		for range 10 {
			_, d := get("/v1/jobs/" + someIDs[i%len(someIDs)])
			byID = append(byID, d)
			i++
		}
	}
	b.StopTimer()
	ms := func(ds []time.Duration, q float64) float64 {
		slices.Sort(ds)
		return float64(ds[min(len(ds)-1, int(q*float64(len(ds))))].Microseconds()) / 1000
	}
	b.ReportMetric(ms(pages, 0.5), "page-p50-ms")
	b.ReportMetric(ms(pages, 0.99), "page-p99-ms")
	b.ReportMetric(ms(tenth, 0.99), "page10-p99-ms")
	b.ReportMetric(ms(byID, 0.5), "get-p50-ms")
	b.ReportMetric(ms(byID, 0.99), "get-p99-ms")
	b.ReportMetric(ms(pages, 0.99)/ms(byID, 0.99), "page-p99/get-p99")
	b.Logf("%s pages, %s reads by id", fmt.Sprint(len(pages)), fmt.Sprint(len(byID)))
}
