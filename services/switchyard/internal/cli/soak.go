package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/libs/clock"
	"github.com/switchyard/switchyard/libs/devstack"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/services/worker/demo"
)

// soakOptions size a retention soak.
type soakOptions struct {
	duration time.Duration
	rate     float64
	clients  int
	// jobs and keys are the shortened retention of finished jobs and of
	// Idempotency-Keys; inbox that of inbox rows (above the queues' 60 s).
	jobs, keys, inbox time.Duration
	// interval is the janitor's; sample how often the tables are counted.
	interval, sample time.Duration
	// delay schedules every tenth job that far ahead (past jobs, so that
	// a scheduled job outlives the window it must not be deleted in).
	delay time.Duration
	dir   string
}

func newDevSoakCmd(logger *slog.Logger, dir *string) *cobra.Command {
	opts := soakOptions{}
	var short bool
	cmd := &cobra.Command{
		Use:   "soak-retention",
		Short: "Retention soak: steady traffic on the whole platform with shortened retention windows; every table must level off",
		Long: `Retention soak: run the whole platform (its own Postgres, SQS stand-in and
Vault) with retention windows cut to minutes, under steady traffic (every
tenth job scheduled past the job window, every twentieth cancelled), for
--duration. Prints each table's row count over time and its size at the
start and the end, and exits non-zero when a table keeps growing once its
window has passed, when a job lost its effect or applied it twice (a row
deleted while still needed), or when a message was dead-lettered.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if short {
				opts.duration, opts.jobs, opts.keys, opts.inbox, opts.interval, opts.sample, opts.delay =
					2*time.Minute, 15*time.Second, time.Minute, 65*time.Second, 3*time.Second, 10*time.Second, 25*time.Second
			}
			opts.dir = filepath.Join(*dir, "soak")
			return runSoak(cmd.Context(), logger, opts, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&opts.duration, "duration", 30*time.Minute, "how long the traffic runs")
	fl.Float64Var(&opts.rate, "rate", 10, "steady traffic, jobs per second")
	fl.IntVar(&opts.clients, "clients", 4, "clients sharing the traffic")
	fl.DurationVar(&opts.jobs, "jobs-retention", 2*time.Minute, "SWITCHYARD_RETENTION_JOBS")
	fl.DurationVar(&opts.keys, "key-ttl", 2*time.Minute, "SWITCHYARD_IDEMPOTENCY_KEY_TTL (at least 1m)")
	fl.DurationVar(&opts.inbox, "inbox-retention", 3*time.Minute, "SWITCHYARD_RETENTION_INBOX (the queues keep messages 60 s)")
	fl.DurationVar(&opts.interval, "interval", 10*time.Second, "SWITCHYARD_RETENTION_INTERVAL")
	fl.DurationVar(&opts.sample, "sample", time.Minute, "how often the tables are counted")
	fl.DurationVar(&opts.delay, "delay", 3*time.Minute, "how far ahead every tenth job is scheduled")
	fl.BoolVar(&short, "short", false, "a 2-minute soak for CI (windows of seconds)")
	return cmd
}

// soakTables are the tables the soak counts: each must level off.
var soakTables = []string{"jobs", "job_events", "job_attempts", "inbox", "watermill_outbox", "dead_letters"}

// soakSample is one count of every table.
type soakSample struct {
	at     time.Duration
	counts map[string]int64
}

func runSoak(ctx context.Context, logger *slog.Logger, opts soakOptions, out io.Writer) error {
	ports := make([]int, 4)
	for i := range ports {
		var err error
		if ports[i], err = devstack.FreePort(); err != nil {
			return err
		}
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	logs, err := os.Create(filepath.Join(mustMkdir(opts.dir), "services.log"))
	if err != nil {
		return err
	}
	defer func() { _ = logs.Close() }()
	dp, err := startDevPlatform(ctx, logger, opts.dir, devUpOptions{
		gatewayAddr: addr(0), tokensAddr: addr(1), replayAddr: addr(2), upstreamAddr: addr(3),
		database: "switchyard_soak_" + strconv.FormatInt(time.Now().Unix(), 10), ownServers: true, vault: vaultAuto,
		extraEnv: []string{
			"SWITCHYARD_RETENTION_JOBS=" + opts.jobs.String(), "SWITCHYARD_IDEMPOTENCY_KEY_TTL=" + opts.keys.String(),
			"SWITCHYARD_RETENTION_INBOX=" + opts.inbox.String(), "SWITCHYARD_SQS_RETENTION=60s",
			// Under half the queues' 60 s: a scheduled job's message is held
			// in the outbox until it is due within 20 s.
			"SWITCHYARD_RELAY_MAX_SQS_DELAY=20s",
			"SWITCHYARD_RETENTION_INTERVAL=" + opts.interval.String(), "SWITCHYARD_LOG_FORMAT=json", "SWITCHYARD_LOG_LEVEL=warn",
		},
	}, logs)
	defer func() { _ = dp.stop() }()
	if err != nil {
		return fmt.Errorf("starting the platform (logs: %s): %w", logs.Name(), err)
	}
	pool, err := pgxpool.New(ctx, dp.dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	d := &drill{dp: dp, pool: pool, opts: chaosOptions{rate: opts.rate, clients: opts.clients}, gateway: "http://" + addr(0), out: out, logger: logger}
	if err := d.makeClients(ctx); err != nil {
		return err
	}
	fmt.Fprintf(out, "soak: %g jobs/s for %s; jobs kept %s after finishing, keys %s, inbox rows %s, janitor every %s; logs in %s\n",
		opts.rate, opts.duration, opts.jobs, opts.keys, opts.inbox, opts.interval, logs.Name())
	startSizes, err := tableSizes(ctx, pool)
	if err != nil {
		return err
	}
	s := &soak{drill: d, opts: opts}
	trafficCtx, stopTraffic := context.WithTimeout(ctx, opts.duration)
	defer stopTraffic()
	traffic := s.traffic(trafficCtx)
	var samples []soakSample
	start := time.Now()
	for {
		at := time.Since(start)
		counts, err := countRows(ctx, pool)
		if err != nil {
			stopTraffic()
			traffic.Wait()
			return err
		}
		samples = append(samples, soakSample{at: at.Round(time.Second), counts: counts})
		if !clock.Sleep(trafficCtx, opts.sample) {
			break
		}
	}
	traffic.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// Let everything accepted run, the jobs scheduled last included (they
	// come due up to opts.delay after the traffic stops): the tally is
	// then taken of a platform at rest.
	for deadline := time.Now().Add(s.opts.delay + 30*time.Second); time.Now().Before(deadline); {
		census, err := jobstore.CountCensus(ctx, pool)
		if err != nil {
			return err
		}
		if census.Unfinished+census.Scheduled == 0 || !clock.Sleep(ctx, time.Second) {
			break
		}
	}
	counts, err := countRows(ctx, pool)
	if err != nil {
		return err
	}
	samples = append(samples, soakSample{at: time.Since(start).Round(time.Second), counts: counts})
	endSizes, err := tableSizes(ctx, pool)
	if err != nil {
		return err
	}
	return s.report(ctx, samples, startSizes, endSizes)
}

// soak is one soak run's traffic and bookkeeping.
type soak struct {
	*drill
	opts soakOptions

	mu                             sync.Mutex
	accepted, scheduled, cancelled int
	refused                        map[int]int
}

// traffic submits at the rate until ctx ends: every tenth job scheduled
// opts.delay ahead, every twentieth cancelled right after its 202.
func (s *soak) traffic(ctx context.Context) *sync.WaitGroup {
	var wg sync.WaitGroup
	s.refused = map[int]int{}
	interval := time.Duration(float64(time.Second) * float64(len(s.clients)) / s.opts.rate)
	httpClient := &http.Client{Timeout: 10 * time.Second}
	for id, secret := range s.clients {
		wg.Go(func() {
			c := &chaosClient{id: id, secret: secret, tokenURL: s.dp.issuer + "/oauth2/token", http: httpClient, answered: func(int) {}}
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				s.one(ctx, c, id, n)
			}
		})
	}
	return &wg
}

// one submits job n of client id (scheduled or cancelled as its number
// says) and counts what became of it. A request once sent is answered
// even when the soak ends meanwhile: the tally must know what the platform
// did.
func (s *soak) one(ctx context.Context, c *chaosClient, id string, n int) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	header := map[string]string{"Idempotency-Key": uuid.NewString()}
	if n%10 == 9 {
		header["Switchyard-Delay"] = s.opts.delay.String()
	}
	status, jobID := s.submit(ctx, c, header, fmt.Sprintf(`{"text":"soak job %d of %s"}`, n, id))
	s.mu.Lock()
	switch {
	case jobID == "":
		s.refused[status]++
	case n%10 == 9:
		s.scheduled++
	default:
		s.accepted++
	}
	s.mu.Unlock()
	if jobID != "" && n%20 == 0 && s.cancel(ctx, c, jobID) {
		s.mu.Lock()
		s.cancelled++
		s.mu.Unlock()
	}
}

func (s *soak) submit(ctx context.Context, c *chaosClient, header map[string]string, body string) (int, string) {
	if c.token == "" || time.Since(c.fetched) > tokenLifetime {
		if err := c.fetchToken(ctx); err != nil {
			return noToken, ""
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.gateway+"/v1/jobs/text-stats", strings.NewReader(body))
	if err != nil {
		return 0, ""
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, ""
	}
	defer func() { _ = resp.Body.Close() }()
	var job struct {
		ID string `json:"id"`
	}
	if resp.StatusCode == http.StatusAccepted {
		if err := json.NewDecoder(resp.Body).Decode(&job); err != nil {
			return resp.StatusCode, ""
		}
	}
	return resp.StatusCode, job.ID
}

// cancel cancels job id; it reports whether the job ends cancelled. A
// 409 means it ran already; a 202 means it was running when asked, and it
// ends cancelled only if that attempt failed: its status tells, once it
// has finished.
func (s *soak) cancel(ctx context.Context, c *chaosClient, id string) bool {
	status, _ := s.call(ctx, c, http.MethodPost, "/v1/jobs/"+id+"/cancel")
	if status != http.StatusAccepted {
		return status == http.StatusOK
	}
	for {
		code, job := s.call(ctx, c, http.MethodGet, "/v1/jobs/"+id)
		if code == http.StatusOK && jobs.Status(job).Finished() {
			return job == string(jobs.StatusCancelled)
		}
		if !clock.Sleep(ctx, 50*time.Millisecond) {
			return false
		}
	}
}

// call sends a request without a body as c and returns the answer's
// status code and the job status it names, if any.
func (s *soak) call(ctx context.Context, c *chaosClient, method, path string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, method, s.gateway+path, nil)
	if err != nil {
		return 0, ""
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, ""
	}
	defer func() { _ = resp.Body.Close() }()
	var job struct {
		Status string `json:"status"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&job)
	return resp.StatusCode, job.Status
}

func countRows(ctx context.Context, pool *pgxpool.Pool) (map[string]int64, error) {
	out := map[string]int64{}
	for _, t := range soakTables {
		var n int64
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+t).Scan(&n); err != nil {
			return nil, fmt.Errorf("counting %s: %w", t, err)
		}
		out[t] = n
	}
	census, err := jobstore.CountCensus(ctx, pool)
	if err != nil {
		return nil, err
	}
	out["idempotency keys"] = census.Keyed
	return out, nil
}

// tableSizes is each table's size on disk, indexes included.
func tableSizes(ctx context.Context, pool *pgxpool.Pool) (map[string]int64, error) {
	out := map[string]int64{}
	for _, t := range soakTables {
		var n int64
		if err := pool.QueryRow(ctx, `SELECT pg_total_relation_size($1::regclass)`, t).Scan(&n); err != nil {
			return nil, fmt.Errorf("sizing %s: %w", t, err)
		}
		out[t] = n
	}
	return out, nil
}

// report prints the counts and sizes and checks that every table levelled
// off and that no job lost or doubled its effect.
func (s *soak) report(ctx context.Context, samples []soakSample, startSizes, endSizes map[string]int64) error {
	names := append(append([]string{}, soakTables...), "idempotency keys")
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "elapsed\t")
	for _, n := range names {
		fmt.Fprintf(tw, "%s\t", n)
	}
	fmt.Fprintln(tw)
	for _, sm := range samples {
		fmt.Fprintf(tw, "%s\t", sm.at)
		for _, n := range names {
			fmt.Fprintf(tw, "%d\t", sm.counts[n])
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprint(tw, "size at start\t")
	for _, n := range soakTables {
		fmt.Fprintf(tw, "%s\t", humanBytes(startSizes[n]))
	}
	fmt.Fprint(tw, "\t\nsize at end\t")
	for _, n := range soakTables {
		fmt.Fprintf(tw, "%s\t", humanBytes(endSizes[n]))
	}
	fmt.Fprintln(tw, "\t")
	if err := tw.Flush(); err != nil {
		return err
	}

	var problems []string
	// Levelled: once every window has passed (the longest, the inbox's,
	// plus the scheduled jobs' delay and two janitor passes), a table may
	// still swing by what arrives between two passes and two samples, not
	// grow.
	warmup := max(s.opts.inbox, s.opts.keys, s.opts.jobs+s.opts.delay) + 2*s.opts.interval
	swing := int64(s.opts.rate * (2*s.opts.interval + 2*s.opts.sample + 10*time.Second).Seconds())
	var settled []soakSample
	for _, sm := range samples {
		if sm.at >= warmup {
			settled = append(settled, sm)
		}
	}
	if len(settled) < 2 {
		problems = append(problems, fmt.Sprintf("the soak ended before its windows passed (%s): run it longer", warmup))
	} else {
		first, last := settled[0], settled[len(settled)-1]
		for _, n := range names {
			if grew := last.counts[n] - first.counts[n]; grew > swing {
				problems = append(problems, fmt.Sprintf("%s grew by %d rows between %s and %s, past its window (at most %d expected)", n, grew, first.at, last.at, swing))
			}
		}
	}
	// Nothing still needed was deleted: every job that ran applied its
	// effect once (a job deleted before it ran would have been
	// dead-lettered as unknown, a message redelivered after its inbox row
	// went would have applied twice), and nothing was dead-lettered.
	effects, doubled, err := demo.Effects(ctx, s.pool)
	if err != nil {
		return err
	}
	if doubled > 0 {
		problems = append(problems, fmt.Sprintf("%d jobs applied their effect twice", doubled))
	}
	deadLetters := samples[len(samples)-1].counts["dead_letters"]
	if deadLetters > 0 {
		problems = append(problems, fmt.Sprintf("%d messages were dead-lettered (a job deleted while its message was on its way?)", deadLetters))
	}
	census, err := jobstore.CountCensus(ctx, s.pool)
	if err != nil {
		return err
	}
	pending, unfinished := census.Scheduled, census.Unfinished
	if unfinished > 0 {
		problems = append(problems, fmt.Sprintf("%d jobs are still unfinished 30 s after the last was due", unfinished))
	}
	s.mu.Lock()
	ran := int64(s.accepted+s.scheduled-s.cancelled) - pending
	fmt.Fprintf(s.out, "submitted: %d at once, %d scheduled %s ahead, %d cancelled, %d scheduled still to run; refused: %v\n"+
		"jobs that ran: %d, jobs with their effect: %d, effects applied twice: %d, dead letters: %d\n",
		s.accepted, s.scheduled, s.opts.delay, s.cancelled, pending, s.refused, ran, effects, doubled, deadLetters)
	s.mu.Unlock()
	if effects != ran {
		problems = append(problems, fmt.Sprintf("%d jobs ran but %d have their effect (a job deleted while still needed?)", ran, effects))
	}
	if len(problems) > 0 {
		return errors.New("soak failed:\n  " + strings.Join(problems, "\n  "))
	}
	fmt.Fprintln(s.out, "soak passed: every table levelled off once its window passed; no effect lost or doubled")
	return nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d KiB", n>>10)
	}
}
