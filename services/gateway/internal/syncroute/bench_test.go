package syncroute_test

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// BenchmarkSyncRoute measures a sync route end to end over loopback TCP:
// clients -> gateway (request id, access log, auth guard, bulkhead,
// timeout, breaker) -> upstream, against the same route with its breaker
// disabled and against calling the upstream directly, at the same
// concurrency. Each iteration runs one block of requests per variant,
// alternating, so the three share the machine's noise. It reports the
// throughput of each, the ratios, and the latency the gateway and the
// breaker add at p50 and p99. Authentication here is a header check;
// token verification is measured on its own in libs/accesstoken.
func BenchmarkSyncRoute(b *testing.B) {
	for _, latency := range []time.Duration{0, 5 * time.Millisecond} {
		b.Run("upstream_latency="+latency.String(), func(b *testing.B) {
			up := newUpstream(b, func(w http.ResponseWriter, r *http.Request) {
				if latency > 0 {
					time.Sleep(latency)
				}
				answer(200, `{"symbol":"ACME","price":"123.45"}`)(w, r)
			})
			route := func(breaker bool) *gateway {
				return newGateway(b, `
method: GET
path: /v1/quotes/{symbol}
mode: sync
upstream: {url: "`+up.srv.URL+`/quotes/{symbol}"}
max_concurrent: 1000
breaker: {enabled: `+strconv.FormatBool(breaker)+`}`)
			}
			withBreaker, without := route(true), route(false)
			const concurrency = 16
			block := 1600
			if latency > 0 {
				block = 800
			}
			transport := &http.Transport{MaxIdleConnsPerHost: concurrency * 2}
			defer transport.CloseIdleConnections()
			client := &http.Client{Transport: transport}
			variants := []struct {
				name, url string
			}{
				{"direct", up.srv.URL + "/quotes/ACME"},
				{"nobreaker", without.srv.URL + "/v1/quotes/ACME"},
				{"breaker", withBreaker.srv.URL + "/v1/quotes/ACME"},
			}
			elapsed := make([]time.Duration, len(variants))
			lat := make([][]time.Duration, len(variants))
			run := func(v int) {
				per := block / concurrency
				var wg sync.WaitGroup
				var mu sync.Mutex
				start := time.Now()
				for range concurrency {
					wg.Go(func() {
						local := make([]time.Duration, 0, per)
						for range per {
							t0 := time.Now()
							req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, variants[v].url, nil)
							req.Header.Set("X-Test-Client", "bench")
							resp, err := client.Do(req)
							if err != nil {
								b.Error(err)
								return
							}
							_, _ = io.Copy(io.Discard, resp.Body)
							_ = resp.Body.Close()
							if resp.StatusCode != http.StatusOK {
								b.Errorf("%s: %d", variants[v].name, resp.StatusCode)
								return
							}
							local = append(local, time.Since(t0))
						}
						mu.Lock()
						lat[v] = append(lat[v], local...)
						mu.Unlock()
					})
				}
				wg.Wait()
				elapsed[v] += time.Since(start)
			}
			for v := range variants { // warm connections and caches
				run(v)
			}
			for v := range variants {
				elapsed[v], lat[v] = 0, nil
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				// Rotate the order so no variant always runs first.
				for k := range variants {
					run((i + k) % len(variants))
				}
			}
			b.StopTimer()
			rps := make([]float64, len(variants))
			p50 := make([]time.Duration, len(variants))
			p99 := make([]time.Duration, len(variants))
			for v := range variants {
				rps[v] = float64(len(lat[v])) / elapsed[v].Seconds()
				slices.Sort(lat[v])
				p50[v] = lat[v][len(lat[v])/2]
				p99[v] = lat[v][len(lat[v])*99/100]
				b.ReportMetric(rps[v], variants[v].name+"_req/s")
			}
			b.ReportMetric(rps[2]/rps[1], "breaker/nobreaker")
			b.ReportMetric(rps[2]/rps[0], "gateway/direct")
			b.ReportMetric(float64(p50[2]-p50[0])/1e3, "gateway_added_p50_µs")
			b.ReportMetric(float64(p99[2]-p99[0])/1e3, "gateway_added_p99_µs")
			b.ReportMetric(float64(p50[2]-p50[1])/1e3, "breaker_added_p50_µs")
			b.ReportMetric(float64(p99[2]-p99[1])/1e3, "breaker_added_p99_µs")
		})
	}
}

// BenchmarkBreakerOverhead isolates what the circuit breaker costs: the
// same in-process route (a Go handler, no sockets, so the breaker's share
// is not drowned in network time) with and without its breaker, in
// alternating blocks. It reports both rates, their ratio and the time the
// breaker adds per request.
func BenchmarkBreakerOverhead(b *testing.B) {
	route := func(breaker bool) *gateway {
		return newGateway(b, `
method: GET
path: /v1/ok
mode: sync
handler: ok
breaker: {enabled: `+strconv.FormatBool(breaker)+`}`)
	}
	withBreaker, without := route(true), route(false)
	const block = 2000
	var with, plain time.Duration
	serve := func(g *gateway) time.Duration {
		start := time.Now()
		for range block {
			if rec := g.serve(http.MethodGet, "/v1/ok", "bench"); rec.Code != http.StatusOK {
				b.Fatalf("%d %s", rec.Code, rec.Body)
			}
		}
		return time.Since(start)
	}
	serve(withBreaker)
	serve(without)
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			with += serve(withBreaker)
			plain += serve(without)
		} else {
			plain += serve(without)
			with += serve(withBreaker)
		}
	}
	n := float64(b.N * block)
	b.ReportMetric(n/with.Seconds(), "breaker_req/s")
	b.ReportMetric(n/plain.Seconds(), "nobreaker_req/s")
	b.ReportMetric(plain.Seconds()/with.Seconds(), "breaker/nobreaker")
	b.ReportMetric(float64(with-plain)/n, "breaker_added_ns")
}

// BenchmarkOpenBreaker times the answer of an open breaker through the
// gateway's whole in-process stack (request id, access log, guard,
// problem rendering), against an upstream that counts its calls: it must
// see none. It reports the median and p99 per answer.
func BenchmarkOpenBreaker(b *testing.B) {
	up := newUpstream(b, answer(500, `{}`))
	g := newGateway(b, `
method: GET
path: /v1/x
mode: sync
upstream: {url: "`+up.srv.URL+`/x"}
breaker: {consecutive_failures: 1, open_for: 1h}`)
	if rec := g.serve(http.MethodGet, "/v1/x", "c"); rec.Code != http.StatusBadGateway {
		b.Fatalf("tripping call: %d", rec.Code)
	}
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		rec := g.serve(http.MethodGet, "/v1/x", "c")
		lat = append(lat, time.Since(start))
		if rec.Code != http.StatusServiceUnavailable {
			b.Fatalf("open breaker answered %d", rec.Code)
		}
	}
	if hits := up.hits.Load(); hits != 1 {
		b.Fatalf("the upstream saw %d calls; an open breaker makes none", hits)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50_µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99_µs")
}
