package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"golang.org/x/sync/errgroup"

	"github.com/switchyard/switchyard/libs/clock"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/synchandler"
	"github.com/switchyard/switchyard/services/gateway/demo"
)

// overload is what the accept route did under an offered load above its
// saturation rate.
type overload struct {
	OfferedRPS float64 `json:"offered_rps"`
	// AdmittedRPS is the rate of 202s (from the first request to the last
	// answer); ShedShare the share of requests
	// answered 503 with Retry-After; AdmittedP99Ms the p99 latency of the
	// 202s.
	AdmittedRPS   float64 `json:"admitted_rps"`
	ShedShare     float64 `json:"shed_share"`
	AdmittedP99Ms float64 `json:"admitted_p99_ms"`
	// ServerP99Ms is the p99 of the same 202s as the gateway timed them
	// (its access log: from the request's arrival in the handler chain to
	// the answer), without the generator's own waits for the CPU.
	ServerP99Ms float64 `json:"server_p99_ms"`
	// Other counts answers that were neither (errors, other statuses, 503s
	// without Retry-After): each one is a defect.
	Other int64 `json:"other"`
	// OtherKinds says what the other answers were: "status 500",
	// "503 without Retry-After", or the client's error with its addresses
	// left out ("dial: connection refused").
	OtherKinds map[string]int64 `json:"other_kinds,omitempty"`
	// Unsent counts requests the generator could not start on schedule
	// (all its connections busy): the offered rate counts only what was
	// sent.
	Unsent int64 `json:"unsent"`
}

// httpRound measures the gateway's cost around a handler: a bare Echo
// server and the gateway's authenticated sync route, each answering with
// the same trivial handler, then each running the demo text-stats handler.
func (p *platform) httpRound(ctx context.Context, cfg config, token string, r *round, logger *slog.Logger) error {
	bare, stop, err := bareServer()
	if err != nil {
		return err
	}
	defer stop()
	measures := []struct {
		into         *float64
		method, url  string
		token, body  string
		name         string
		bareEchoSide bool
	}{
		{&r.HelloRPS, http.MethodGet, bare + "/hello", "", "", "bare hello", true},
		{&r.GatewayHelloRPS, http.MethodGet, p.gateway + "/v1/hello", token, "", "gateway hello", false},
		{&r.BareTextStatsRPS, http.MethodPost, bare + "/text-stats", "", benchText, "bare text-stats", true},
		{&r.SyncRPS, http.MethodPost, p.gateway + "/v1/text-stats", token, benchText, "gateway text-stats", false},
	}
	for _, m := range measures {
		measure := func() error {
			*m.into, err = saturate(ctx, cfg.concurrency, cfg.duration, func(ctx context.Context, c *http.Client) error {
				return call(ctx, c, m.method, m.url, m.token, m.body, http.StatusOK)
			})
			return err
		}
		if m.bareEchoSide {
			err = measure()
		} else {
			err = p.profiled(ctx, cfg, strings.ReplaceAll(m.name, " ", "-"), measure)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
	}
	logger.Info("http", "bare_hello_rps", int(r.HelloRPS), "gateway_hello_rps", int(r.GatewayHelloRPS),
		"bare_text_stats_rps", int(r.BareTextStatsRPS), "gateway_text_stats_rps", int(r.SyncRPS))
	return nil
}

// bareServer serves, on loopback and with nothing around them, the demo
// handlers the gateway's sync routes call: GET /hello and POST
// /text-stats.
func bareServer() (url string, stop func(), err error) {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	serve := func(h synchandler.Handler) echo.HandlerFunc {
		return func(c echo.Context) error {
			body, err := io.ReadAll(c.Request().Body)
			if err != nil {
				return err
			}
			resp, err := h.Serve(c.Request().Context(), synchandler.Request{Method: c.Request().Method, Body: body})
			if err != nil {
				return echo.NewHTTPError(http.StatusBadRequest, err.Error())
			}
			for k, vs := range resp.Header {
				c.Response().Header()[k] = vs
			}
			return c.Blob(resp.Status, resp.Header.Get("Content-Type"), resp.Body)
		}
	}
	e.GET("/hello", serve(demo.Hello()))
	e.POST("/text-stats", serve(demo.TextStats()))
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return "http://" + l.Addr().String(), func() { _ = srv.Close() }, nil
}

// acceptRound measures single-row inserts (and pgbench) against the accept
// route at saturation, with the gateway's memory sampled meanwhile, and
// both latencies at 10 requests per second.
func (p *platform) acceptRound(ctx context.Context, cfg config, token string, r *round, logger *slog.Logger) error {
	var err error
	if r.InsertRPS, err = p.insertRate(ctx, cfg.acceptConcurrency, cfg.duration); err != nil {
		return err
	}
	if tps, ok, err := p.pgbenchRate(ctx, cfg.acceptConcurrency, cfg.duration); err != nil {
		return err
	} else if ok {
		r.PgbenchTPS = tps
	}
	stopSampling := make(chan struct{})
	peak := rss(p.procs["gateway"].Pid(), stopSampling)
	logFrom, err := p.logSize("gateway")
	if err != nil {
		return err
	}
	var (
		mu        sync.Mutex
		saturated []time.Duration
	)
	// The same generator as the overload's (see rawTarget), so that what
	// admitted requests under overload are compared with was measured
	// with the same client cost.
	target, err := newRawTarget(p.gateway+"/v1/jobs/bench", token, benchText, cfg.acceptConcurrency)
	if err != nil {
		return err
	}
	defer target.close()
	// saturateCounting's first acceptConcurrency calls warm the
	// connections up, one at a time: they are not the latency at
	// saturation.
	var calls atomic.Int64
	err = p.profiled(ctx, cfg, "gateway-accept", func() error {
		r.AcceptRPS, r.AcceptShed, err = saturateCounting(ctx, cfg.acceptConcurrency, cfg.duration, func(ctx context.Context, _ *http.Client) error {
			warmUp := calls.Add(1) <= int64(cfg.acceptConcurrency)
			took, err := acceptOnce(ctx, target)
			if err == nil && !warmUp {
				mu.Lock()
				saturated = append(saturated, took)
				mu.Unlock()
			}
			return err
		})
		return err
	})
	close(stopSampling)
	r.GatewayRSSBytes = float64(peak())
	if err != nil {
		return fmt.Errorf("accept route: %w", err)
	}
	warm := cfg.acceptConcurrency
	server, err := p.accessLogged(ctx, "gateway", logFrom, "/v1/jobs/bench", http.StatusAccepted, warm+len(saturated))
	if err != nil {
		return err
	}
	// The log's first lines are the warm-up's (made before any other).
	server = server[min(warm, len(server)):]
	r.SaturatedP99Ms, r.SaturatedServerP99Ms = ms(percentile(saturated, 0.99)), ms(percentile(server, 0.99))

	if err := p.lowLoadLatencies(ctx, token, r, logger); err != nil {
		return err
	}
	logger.Info("postgres", "insert_rps", int(r.InsertRPS), "pgbench_tps", int(r.PgbenchTPS), "accept_rps", int(r.AcceptRPS),
		"gateway_rss_mib", int(r.GatewayRSSBytes/(1<<20)), "saturated_p99_ms", r.SaturatedP99Ms, "saturated_server_p99_ms", r.SaturatedServerP99Ms)
	if _, err := p.pool.Exec(ctx, `TRUNCATE jobs, watermill_outbox, job_attempts, job_events, inbox, demo_text_stats, bench_rows`); err != nil {
		return fmt.Errorf("emptying the tables: %w", err)
	}
	return nil
}

// acceptOnce is one closed-loop client's call of the accept route: the
// latency of a 202, the shed error that saturateCounting waits out for a
// 503 with Retry-After, an error for anything else.
func acceptOnce(ctx context.Context, target *rawTarget) (time.Duration, error) {
	start := time.Now()
	status, retryAfter, err := target.do(ctx)
	switch {
	case err != nil:
		return 0, err
	case status == http.StatusAccepted:
		return time.Since(start), nil
	case status == http.StatusServiceUnavailable && retryAfter != "":
		secs, _ := strconv.Atoi(retryAfter)
		return 0, shed{retryAfter: time.Duration(max(secs, 0)) * time.Second}
	default:
		return 0, fmt.Errorf("the accept route answered %d, not 202", status)
	}
}

// lowLoadLatencies times, one call at a time and 10 per second of each,
// the accept route and its references: a single-row insert; the accept's
// own statement (job + outbox) made from here with the store's code, once
// on the calling goroutine (as before group commit) and once through a
// group-commit batcher of the gateway's default size, which is what the
// window costs at low load; a bare Echo server's hello; and the
// gateway's authenticated hello route, which passes every layer the
// accept does but the store. They take turns in one window, so that a
// pause of the shared machine falls on all alike; with 300 of each, p99
// is the third slowest call, not the slowest. (Emptying the tables first,
// so that no autovacuum of the saturation's rows runs during the window,
// did not help: tried 2026-12-07, p99 +6.9 and +3.1 ms.)
func (p *platform) lowLoadLatencies(ctx context.Context, token string, r *round, logger *slog.Logger) error {
	bare, stop, err := bareServer()
	if err != nil {
		return err
	}
	defer stop()
	client := newClient(1)
	defer client.CloseIdleConnections()
	store := jobstore.New(p.pool)
	batcher, err := jobstore.NewBatcher(store, jobstore.DefaultBatchConfig)
	if err != nil {
		return err
	}
	batching, stopBatching := context.WithCancel(ctx)
	batcherDone := make(chan struct{})
	go func() { batcher.Run(batching); close(batcherDone) }()
	defer func() { stopBatching(); <-batcherDone }()
	submission := func() jobs.Submission {
		return jobs.Submission{ID: uuid.Must(uuid.NewV7()).String(), MessageID: uuid.Must(uuid.NewV7()).String(),
			Type: "bench", ClientID: benchClient, ClientScopes: []string{"jobs:submit", "jobs:read"}, Payload: []byte(benchText)}
	}
	calls := []func(context.Context) error{
		func(ctx context.Context) error {
			_, err := p.pool.Exec(ctx, `INSERT INTO bench_rows (id, payload) VALUES ($1, $2)`, uuid.New(), benchText)
			return err
		},
		func(ctx context.Context) error {
			_, _, err := store.Accept(ctx, submission())
			return err
		},
		func(ctx context.Context) error {
			_, _, err := batcher.Accept(ctx, submission())
			return err
		},
		func(ctx context.Context) error {
			return call(ctx, client, http.MethodGet, bare+"/hello", "", "", http.StatusOK)
		},
		func(ctx context.Context) error {
			return call(ctx, client, http.MethodGet, p.gateway+"/v1/hello", token, "", http.StatusOK)
		},
		func(ctx context.Context) error {
			return call(ctx, client, http.MethodPost, p.gateway+"/v1/jobs/bench", token, benchText, http.StatusAccepted)
		},
	}
	lat, err := takingTurns(ctx, 10, 300, calls...)
	if err != nil {
		return fmt.Errorf("latency at 10/s: %w", err)
	}
	for i, into := range []*lowLoad{&r.InsertAt10, &r.StatementAt10, &r.BatchedAt10, &r.BareHelloAt10, &r.GatewayHelloAt10, &r.AcceptAt10} {
		*into = lowLoad{P50Ms: ms(percentile(lat[i], 0.5)), P99Ms: ms(percentile(lat[i], 0.99))}
	}
	logger.Info("latency at 10/s (p50, p99 ms)", "insert", r.InsertAt10, "accept_statement", r.StatementAt10, "batched", r.BatchedAt10,
		"bare_hello", r.BareHelloAt10, "gateway_hello", r.GatewayHelloAt10, "accept", r.AcceptAt10)
	return nil
}

// takingTurns makes each call n times, one call at a time and each on
// its own schedule: rate turns a second, and within a turn the calls
// evenly spaced (which goes first rotating from one turn to the next),
// so that none runs on the heels of another (a Postgres backend or a
// process that has just answered answers again faster than one that
// has been idle, as every call of a service at this rate has). It
// returns each call's durations.
func takingTurns(ctx context.Context, rate float64, n int, calls ...func(context.Context) error) ([][]time.Duration, error) {
	slot := time.Duration(float64(time.Second) / rate / float64(len(calls)))
	out := make([][]time.Duration, len(calls))
	for i := range out {
		out[i] = make([]time.Duration, 0, n)
	}
	next := time.Now()
	for i := range n {
		for k := range calls {
			if !clock.Sleep(ctx, time.Until(next)) {
				return out, ctx.Err()
			}
			next = next.Add(slot)
			which := (i + k) % len(calls)
			start := time.Now()
			if err := calls[which](ctx); err != nil {
				return out, err
			}
			out[which] = append(out[which], time.Since(start))
		}
	}
	return out, nil
}

// overload offers the accept route rate requests per second for d, open
// loop (requests start on schedule whether or not earlier ones have been
// answered, as independent clients' would), and reports what was admitted
// and what was shed.
func (p *platform) overload(ctx context.Context, token string, rate float64, d time.Duration) (overload, error) {
	target, err := newRawTarget(p.gateway+"/v1/jobs/bench", token, benchText, openLoopConns)
	if err != nil {
		return overload{}, err
	}
	defer target.close()
	var (
		mu       sync.Mutex
		admitted []time.Duration
		shed     atomic.Int64
		other    atomic.Int64
		kinds    = map[string]int64{}
	)
	logFrom, err := p.logSize("gateway")
	if err != nil {
		return overload{}, err
	}
	otherAnswer := func(kind string) {
		other.Add(1)
		mu.Lock()
		kinds[kind]++
		mu.Unlock()
	}
	loop, err := openLoop(ctx, target, rate, d, func(status int, retryAfter string, took time.Duration, err error) {
		switch {
		case err != nil:
			otherAnswer(errorKind(err))
		case status == http.StatusAccepted:
			mu.Lock()
			admitted = append(admitted, took)
			mu.Unlock()
		case status == http.StatusServiceUnavailable && retryAfter != "":
			shed.Add(1)
		case status == http.StatusServiceUnavailable:
			otherAnswer("503 without Retry-After")
		default:
			otherAnswer("status " + strconv.Itoa(status))
		}
	})
	if err != nil {
		return overload{}, err
	}
	server, err := p.accessLogged(ctx, "gateway", logFrom, "/v1/jobs/bench", http.StatusAccepted, len(admitted))
	if err != nil {
		return overload{}, err
	}
	total := float64(loop.sent)
	return overload{
		OfferedRPS: total / d.Seconds(), AdmittedRPS: float64(len(admitted)) / loop.answering.Seconds(),
		ShedShare: float64(shed.Load()) / total, AdmittedP99Ms: ms(percentile(admitted, 0.99)), ServerP99Ms: ms(percentile(server, 0.99)),
		Other: other.Load(), OtherKinds: kinds, Unsent: loop.unsent,
	}, nil
}

// openLoopConns bounds an open loop's requests in flight (and so its
// connections).
const openLoopConns = 2048

// openLoopRun is what an open loop sent: requests started on schedule,
// requests not started because openLoopConns were in flight, and the time
// from the first request to the last answer.
type openLoopRun struct {
	sent, unsent int64
	answering    time.Duration
}

// openLoop sends target's request rate times per second for d, each on
// schedule whether or not earlier ones have been answered, and calls
// answer (from many goroutines) with each outcome and its latency.
func openLoop(ctx context.Context, target *rawTarget, rate float64, d time.Duration, answer func(status int, retryAfter string, took time.Duration, err error)) (openLoopRun, error) {
	var (
		run      openLoopRun
		last     atomic.Int64 // UnixNano of the last answer
		wg       sync.WaitGroup
		inFlight = make(chan struct{}, openLoopConns)
	)
	one := func() {
		defer func() { <-inFlight }()
		start := time.Now()
		status, retryAfter, err := target.do(ctx)
		if err == nil {
			last.Store(time.Now().UnixNano())
		}
		answer(status, retryAfter, time.Since(start), err)
	}
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var due int64
	for time.Since(start) < d {
		select {
		case <-ctx.Done():
			wg.Wait()
			return run, ctx.Err()
		case <-tick.C:
		}
		for target := int64(time.Since(start).Seconds() * rate); due < target; due++ {
			select {
			case inFlight <- struct{}{}:
				run.sent++
				wg.Go(one)
			default:
				run.unsent++
			}
		}
	}
	wg.Wait()
	run.answering = time.Duration(last.Load() - start.UnixNano())
	return run, nil
}

// besideExcess is the overload's control (see serveShedSink): the accept
// route at saturation while the excess of an overload went to the shed
// sink.
type besideExcess struct {
	// ExcessRPS is the rate sent to the shed sink, ExcessShed the share
	// of it answered 503 with Retry-After.
	ExcessRPS  float64 `json:"excess_rps"`
	ExcessShed float64 `json:"excess_shed"`
	// AcceptRPS is the accept route's rate of 202s meanwhile; P99Ms and
	// ServerP99Ms their p99 at the client and as the gateway timed them.
	AcceptRPS   float64 `json:"accept_rps"`
	P99Ms       float64 `json:"p99_ms"`
	ServerP99Ms float64 `json:"server_p99_ms"`
}

// acceptBesideExcess measures the accept route as the accept row does
// (acceptConcurrency closed-loop clients, the warm-up left out) while an
// open loop sends excess requests per second to the shed sink.
func (p *platform) acceptBesideExcess(ctx context.Context, cfg config, token string, excess float64) (besideExcess, error) {
	sinkURL, err := p.startShedSink(ctx)
	if err != nil {
		return besideExcess{}, err
	}
	sink, err := newRawTarget(sinkURL+"/v1/jobs/bench", token, benchText, openLoopConns)
	if err != nil {
		return besideExcess{}, err
	}
	defer sink.close()
	target, err := newRawTarget(p.gateway+"/v1/jobs/bench", token, benchText, cfg.acceptConcurrency)
	if err != nil {
		return besideExcess{}, err
	}
	defer target.close()
	logFrom, err := p.logSize("gateway")
	if err != nil {
		return besideExcess{}, err
	}
	var (
		mu        sync.Mutex
		saturated []time.Duration
		calls     atomic.Int64
		sinkShed  atomic.Int64
		measuring = make(chan struct{})
		loop      openLoopRun
		loopErr   error
		loopDone  = make(chan struct{})
		out       besideExcess
	)
	go func() {
		defer close(loopDone)
		select {
		case <-measuring:
		case <-ctx.Done():
			loopErr = ctx.Err()
			return
		}
		loop, loopErr = openLoop(ctx, sink, excess, cfg.duration, func(status int, retryAfter string, _ time.Duration, err error) {
			if err == nil && status == http.StatusServiceUnavailable && retryAfter != "" {
				sinkShed.Add(1)
			}
		})
	}()
	var shedAtSaturation int64
	out.AcceptRPS, shedAtSaturation, err = saturateCounting(ctx, cfg.acceptConcurrency, cfg.duration, func(ctx context.Context, _ *http.Client) error {
		n := calls.Add(1)
		warmUp := n <= int64(cfg.acceptConcurrency)
		if n == int64(cfg.acceptConcurrency)+1 {
			close(measuring) // the warm-up is over: the excess starts
		}
		took, err := acceptOnce(ctx, target)
		if err == nil && !warmUp {
			mu.Lock()
			saturated = append(saturated, took)
			mu.Unlock()
		}
		return err
	})
	if calls.Load() <= int64(cfg.acceptConcurrency) {
		close(measuring)
	}
	<-loopDone
	if err != nil {
		return besideExcess{}, fmt.Errorf("accept route beside the excess: %w", err)
	}
	if loopErr != nil {
		return besideExcess{}, fmt.Errorf("the excess: %w", loopErr)
	}
	if shedAtSaturation > 0 {
		p.logger.Warn("the accept route shed at saturation beside the excess", "shed", shedAtSaturation)
	}
	warm := cfg.acceptConcurrency
	server, err := p.accessLogged(ctx, "gateway", logFrom, "/v1/jobs/bench", http.StatusAccepted, warm+len(saturated))
	if err != nil {
		return besideExcess{}, err
	}
	server = server[min(warm, len(server)):]
	out.P99Ms, out.ServerP99Ms = ms(percentile(saturated, 0.99)), ms(percentile(server, 0.99))
	out.ExcessRPS = float64(loop.sent) / cfg.duration.Seconds()
	if loop.sent > 0 {
		out.ExcessShed = float64(sinkShed.Load()) / float64(loop.sent)
	}
	return out, nil
}

// errorKind names a client error without what differs between requests
// (addresses and ports), so that equal causes are counted together.
func errorKind(err error) string {
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return opErr.Op + ": " + opErr.Err.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err) {
		return "timeout"
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "connection closed before an answer"
	}
	if inner := errors.Unwrap(err); inner != nil {
		return inner.Error()
	}
	return err.Error()
}

// logSize is the size of svc's log now: where the next lines start.
func (p *platform) logSize(svc string) (int64, error) {
	info, err := os.Stat(filepath.Join(p.dir, svc+".log"))
	if err != nil {
		return 0, fmt.Errorf("reading %s's log: %w", svc, err)
	}
	return info.Size(), nil
}

// accessLogged returns the durations svc's access log recorded, after
// offset from, for requests to path answered with status: want of them,
// waiting up to 10 s for the log to catch up.
func (p *platform) accessLogged(ctx context.Context, svc string, from int64, path string, status, want int) ([]time.Duration, error) {
	var got []time.Duration
	err := waitFor(ctx, 10*time.Second, func() (bool, error) {
		var err error
		got, err = p.readAccessLog(svc, from, path, status)
		return len(got) >= want, err
	})
	if errors.Is(err, errNotYet) {
		return got, nil // the log did not catch up: what it holds
	}
	return got, err
}

// readAccessLog reads svc's access log lines after offset from.
func (p *platform) readAccessLog(svc string, from int64, path string, status int) ([]time.Duration, error) {
	f, err := os.Open(filepath.Join(p.dir, svc+".log")) //nolint:gosec // our own temporary directory
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return nil, err
	}
	var out []time.Duration
	lines := bufio.NewScanner(f)
	lines.Buffer(make([]byte, 64<<10), 1<<20)
	for lines.Scan() {
		var line struct {
			Msg      string `json:"msg"`
			Path     string `json:"path"`
			Status   int    `json:"status"`
			Duration int64  `json:"duration"`
		}
		if json.Unmarshal(lines.Bytes(), &line) != nil || line.Msg != "http request" {
			continue
		}
		if line.Path == path && line.Status == status {
			out = append(out, time.Duration(line.Duration))
		}
	}
	return out, lines.Err()
}

// profiled runs measure while, when cfg.profileDir is set, the gateway's
// CPU profile and allocation profile (both for the measurement's length
// less a second) are written to <dir>/<name>-cpu.pprof and
// <name>-allocs.pprof, for `go tool pprof`.
func (p *platform) profiled(ctx context.Context, cfg config, name string, measure func() error) error {
	if cfg.profileDir == "" {
		return measure()
	}
	if err := os.MkdirAll(cfg.profileDir, 0o750); err != nil {
		return err
	}
	seconds := max(int(cfg.duration.Seconds())-1, 1)
	var g errgroup.Group
	for _, kind := range []string{"profile", "allocs"} {
		g.Go(func() error {
			suffix := map[string]string{"profile": "cpu", "allocs": "allocs"}[kind]
			return p.saveOps(ctx, fmt.Sprintf("/debug/pprof/%s?seconds=%d", kind, seconds), filepath.Join(cfg.profileDir, name+"-"+suffix+".pprof"))
		})
	}
	err := measure()
	return errors.Join(err, g.Wait())
}

// saveMetrics writes the gateway's metrics as they stand to
// <dir>/<name>-metrics.txt when cfg.profileDir is set (what the accept
// batcher's queue waits and refusals were, next to the profiles).
func (p *platform) saveMetrics(ctx context.Context, cfg config, name string) error {
	if cfg.profileDir == "" {
		return nil
	}
	return p.saveOps(ctx, "/metrics", filepath.Join(cfg.profileDir, name+"-metrics.txt"))
}

// saveOps writes what the gateway's ops listener answers at path to file.
func (p *platform) saveOps(ctx context.Context, path, file string) error {
	u := fmt.Sprintf("http://127.0.0.1:%d%s", p.ops["gateway"], path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("reading the gateway's %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reading the gateway's ops listener: %s answered %s", u, resp.Status)
	}
	f, err := os.Create(file) //nolint:gosec // the operator's -profile directory
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
