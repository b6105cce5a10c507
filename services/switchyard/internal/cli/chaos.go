package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/libs/clock"
	"github.com/switchyard/switchyard/libs/devstack"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/oauthclients"
	"github.com/switchyard/switchyard/libs/outbox"
	"github.com/switchyard/switchyard/services/worker/demo"
)

// chaosOptions size a fault drill.
type chaosOptions struct {
	// rate is the steady traffic, jobs per second over clients clients.
	rate    float64
	clients int
	// outage is how long SQS is paused, Redis stopped and Vault paused.
	outage time.Duration
	// databaseOutage is how long Postgres stays stopped.
	databaseOutage time.Duration
	// kills is how many SIGKILLs land on relay, worker and replay.
	kills int
	// recovery is the longest the backlog may take to drain after a
	// fault ends (the pipeline back at its full rate).
	recovery time.Duration
	dir      string
}

func newDevChaosCmd(logger *slog.Logger, dir *string) *cobra.Command {
	opts := chaosOptions{}
	var short bool
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Fault drill: run the whole platform under steady traffic and break its dependencies one after another",
		Long: `Fault drill: run the whole platform (its own Postgres, SQS stand-in, Vault
and Redis) under steady traffic and, one after another: pause SQS, restart
Postgres immediately, stop Postgres for --database-outage, stop Redis,
pause Vault, and SIGKILL relay, worker
and replay at random. Prints a table per fault (accepted, lost, duplicated
effects, answers by status, peak backlog, time until the backlog drained)
and exits non-zero on any loss, duplicate, 500 answer, or a backlog that
did not drain within --recovery of its fault's end.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if short {
				opts.outage, opts.databaseOutage, opts.kills = 5*time.Second, 5*time.Second, 12
			}
			opts.dir = filepath.Join(*dir, "chaos")
			return runChaos(cmd.Context(), logger, opts, cmd.OutOrStdout())
		},
	}
	cmd.Flags().Float64Var(&opts.rate, "rate", 20, "steady traffic, jobs per second")
	cmd.Flags().IntVar(&opts.clients, "clients", 5, "clients sharing the traffic")
	cmd.Flags().DurationVar(&opts.outage, "outage", 30*time.Second, "how long SQS, Redis and Vault are down")
	cmd.Flags().DurationVar(&opts.databaseOutage, "database-outage", 3*time.Minute, "how long Postgres stays stopped (past the time a message retried on every receive would take to reach the DLQ)")
	cmd.Flags().IntVar(&opts.kills, "kills", 50, "SIGKILLs of relay, worker and replay")
	cmd.Flags().DurationVar(&opts.recovery, "recovery", 30*time.Second, "longest drain after a fault ends")
	cmd.Flags().BoolVar(&short, "short", false, "a short drill for CI: 5 s outages, 12 kills")
	return cmd
}

// fault is one phase of the drill: inject runs it and returns once the
// fault is over. lag is what the backlog may take to drain on top of the
// drill's recovery bound.
type fault struct {
	name   string
	inject func(ctx context.Context) error
	lag    time.Duration
	// after is steady traffic kept in the phase once its backlog drained.
	after time.Duration
}

// chaosVisibility is the queues' visibility timeout in the drill: a
// message whose worker was killed mid-flight comes back after it, by
// design, so a kill phase's backlog may take that long more to drain
// (the rate is back at once; the stragglers wait out their visibility).
const chaosVisibility = 30 * time.Second

// phaseStats is what one phase saw.
type phaseStats struct {
	name      string
	answers   map[int]int // HTTP status -> count (0: no answer)
	tokens    map[int]int // the token service's answers, likewise
	jobs      []string
	peak      int
	drain     time.Duration
	drained   bool
	inFlight  int // kills that landed with work in flight
	kills     int
	lost, dup int
	// allowed is the longest the backlog may take to drain.
	allowed time.Duration
}

func runChaos(ctx context.Context, logger *slog.Logger, opts chaosOptions, out io.Writer) error {
	redisPort, err := devstack.FreePort()
	if err != nil {
		return err
	}
	ports := make([]int, 4)
	for i := range ports {
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
	redisURL := "redis://127.0.0.1:" + strconv.Itoa(redisPort) + "/0"
	redis, err := startRedis(opts.dir, redisPort, logs)
	if err != nil {
		return err
	}
	defer func() { _ = redis.get().Stop(5 * time.Second) }()

	dp, err := startDevPlatform(ctx, logger, opts.dir, devUpOptions{
		gatewayAddr: addr(0), tokensAddr: addr(1), replayAddr: addr(2), upstreamAddr: addr(3),
		database: "switchyard_chaos_" + strconv.FormatInt(time.Now().Unix(), 10), ownServers: true,
		vault:    vaultRequire, // the drill pauses Vault
		extraEnv: []string{"SWITCHYARD_REDIS_URL=" + redisURL, "SWITCHYARD_SQS_VISIBILITY_TIMEOUT=" + chaosVisibility.String(), "SWITCHYARD_LOG_FORMAT=json", "SWITCHYARD_LOG_LEVEL=warn"},
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

	d := &drill{dp: dp, pool: pool, opts: opts, gateway: "http://" + addr(0), out: out, logger: logger}
	if err := d.makeClients(ctx); err != nil {
		return err
	}
	faults := []fault{
		{"steady traffic, no fault", func(ctx context.Context) error { return pause(ctx, opts.outage) }, 0, 0},
		{fmt.Sprintf("SQS paused %s", opts.outage), d.pauseServer("moto_server"), 0, 0},
		{"Postgres restarted immediately", func(ctx context.Context) error { return dp.stack.RestartPostgres(ctx, 0) }, 0,
			min(10*time.Second, opts.outage)}, // then traffic on the restarted server
		// Long enough that a message retried on every receive would reach
		// the queues' max receive count (10) and be dead-lettered.
		{fmt.Sprintf("Postgres down %s", opts.databaseOutage), d.databaseOutage, 0, min(10*time.Second, opts.outage)},
		{fmt.Sprintf("Redis stopped %s", opts.outage), func(ctx context.Context) error {
			if err := redis.get().Stop(5 * time.Second); err != nil {
				return err
			}
			if err := pause(ctx, opts.outage); err != nil {
				return err
			}
			return redis.restart()
		}, 0, 0},
		{fmt.Sprintf("Vault paused %s", opts.outage), d.pauseServer("vault"), 0, 0},
		{fmt.Sprintf("%d SIGKILLs of relay, worker, replay", opts.kills), d.killAtRandom, chaosVisibility, 0},
	}
	fmt.Fprintf(out, "chaos: %g jobs/s from %d clients; logs in %s\n", opts.rate, opts.clients, logs.Name())
	trafficCtx, stopTraffic := context.WithCancel(ctx)
	traffic := d.startTraffic(trafficCtx)
	for _, f := range faults {
		fmt.Fprintf(out, "fault: %s\n", f.name)
		ps := d.beginPhase(f.name)
		ps.allowed = opts.recovery + f.lag
		stopSampling := d.sampleBacklog(ps)
		if err := f.inject(ctx); err != nil {
			stopTraffic()
			traffic.Wait()
			return fmt.Errorf("%s: %w", f.name, err)
		}
		ended := time.Now()
		ps.drained = d.awaitDrained(ctx, ps.allowed+30*time.Second)
		ps.drain = time.Since(ended)
		if err := pause(ctx, f.after); err != nil {
			stopTraffic()
			traffic.Wait()
			return err
		}
		stopSampling()
		select {
		case p := <-dp.exited:
			stopTraffic()
			traffic.Wait()
			return fmt.Errorf("%s exited on its own during %q: %w", p.Name(), f.name, p.Err())
		default:
		}
	}
	stopTraffic()
	traffic.Wait()
	if !d.awaitDrained(ctx, 2*time.Minute) {
		fmt.Fprintln(out, "the backlog did not drain within 2 minutes of the traffic's end")
	}
	if err := d.count(ctx); err != nil {
		return err
	}
	return d.report()
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	if !clock.Sleep(ctx, d) {
		return ctx.Err()
	}
	return nil
}

func mustMkdir(dir string) string {
	_ = os.MkdirAll(dir, 0o755)
	return dir
}

// restartable is a process that can be started again.
type restartable struct {
	mu    sync.Mutex
	p     *devstack.Process
	start func() (*devstack.Process, error)
}

func (r *restartable) get() *devstack.Process {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.p
}

func (r *restartable) restart() error {
	p, err := r.start()
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.p = p
	r.mu.Unlock()
	return nil
}

// startRedis runs a Redis that keeps nothing on disk on port.
func startRedis(dir string, port int, logs io.Writer) (*restartable, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, fmt.Errorf("the drill stops Redis and needs redis-server (apt-get install redis-server / brew install redis): %w", err)
	}
	r := &restartable{start: func() (*devstack.Process, error) {
		cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
		p, err := devstack.StartProcess("redis", cmd, logs, "redis        | ", syscall.SIGTERM)
		if err != nil {
			return nil, err
		}
		ready := func(ctx context.Context) error { return pingRedis(ctx, "127.0.0.1:"+strconv.Itoa(port)) }
		return p, p.WaitReady(context.Background(), 10*time.Second, ready)
	}}
	return r, r.restart()
}

// pingRedis sends PING and expects +PONG.
func pingRedis(ctx context.Context, addr string) error {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 7)
	n, err := io.ReadAtLeast(conn, buf, 7)
	if err != nil || string(buf[:n]) != "+PONG\r\n" {
		return fmt.Errorf("redis at %s did not answer PING: %q %w", addr, buf[:n], err)
	}
	return nil
}

// drill is one chaos run's traffic and bookkeeping.
type drill struct {
	dp      *devPlatform
	pool    *pgxpool.Pool
	opts    chaosOptions
	gateway string
	out     io.Writer
	logger  *slog.Logger
	clients map[string]string // id -> secret

	mu     sync.Mutex
	phases []*phaseStats
}

func (d *drill) makeClients(ctx context.Context) error {
	store, err := oauthclients.New(d.pool, oauthclients.WithPepper([]byte(d.dp.pepper)))
	if err != nil {
		return err
	}
	d.clients = map[string]string{}
	for i := range d.opts.clients {
		id := fmt.Sprintf("chaos-%d", i)
		_, secret, err := store.Create(ctx, oauthclients.NewClient{ID: id, Name: "chaos drill", Scopes: []string{"jobs:submit", "jobs:read"}})
		if errors.Is(err, oauthclients.ErrExists) {
			_, secret, err = store.RotateSecret(ctx, id, 0)
		}
		if err != nil {
			return fmt.Errorf("creating client %s: %w", id, err)
		}
		d.clients[id] = secret
	}
	return nil
}

func (d *drill) beginPhase(name string) *phaseStats {
	ps := &phaseStats{name: name, answers: map[int]int{}, tokens: map[int]int{}}
	d.mu.Lock()
	d.phases = append(d.phases, ps)
	d.mu.Unlock()
	return ps
}

func (d *drill) current() *phaseStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.phases[len(d.phases)-1]
}

func (d *drill) record(ps *phaseStats, status int, jobID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ps.answers[status]++
	if jobID != "" {
		ps.jobs = append(ps.jobs, jobID)
	}
}

// startTraffic runs the clients until ctx ends: each submits at its share
// of the rate, with an Idempotency-Key per job, and retries a job that got
// no answer or a 503/429 with the same key until it is accepted.
func (d *drill) startTraffic(ctx context.Context) *sync.WaitGroup {
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) * float64(len(d.clients)) / d.opts.rate)
	httpClient := &http.Client{Timeout: 10 * time.Second}
	for id, secret := range d.clients {
		wg.Go(func() {
			c := &chaosClient{id: id, secret: secret, tokenURL: d.dp.issuer + "/oauth2/token", http: httpClient,
				answered: func(status int) {
					d.mu.Lock()
					defer d.mu.Unlock()
					d.phases[len(d.phases)-1].tokens[status]++
				}}
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				key := uuid.NewString()
				body := fmt.Sprintf(`{"text":"chaos job %d of %s: the quick brown fox"}`, n, id)
				for attempt := 1; ; attempt++ {
					ps := d.current()
					status, jobID, retryAfter := c.submit(ctx, d.gateway+"/v1/jobs/text-stats", key, body)
					if ctx.Err() != nil && status <= 0 {
						return
					}
					if status != noToken { // the token service's answers are not the gateway's
						d.record(ps, status, jobID)
					}
					if jobID != "" || (status >= 400 && status < 500 && status != http.StatusTooManyRequests && status != http.StatusUnauthorized) {
						break
					}
					if status == http.StatusInternalServerError {
						break // counted; the drill fails on it
					}
					if !clock.Sleep(ctx, max(retryAfter, clock.FullJitter(100*time.Millisecond, 2*time.Second, attempt))) {
						return
					}
				}
			}
		})
	}
	return &wg
}

// tokenLifetime is how long a traffic client keeps a token before it asks
// for a new one: often, so that every fault also meets token issuance.
const tokenLifetime = 10 * time.Second

// chaosClient is one traffic client: its token, asked for again every
// tokenLifetime and when refused.
type chaosClient struct {
	id, secret, tokenURL string
	http                 *http.Client
	token                string
	fetched              time.Time
	// answered records each answer of the token service (0: none).
	answered func(status int)
}

func (c *chaosClient) fetchToken(ctx context.Context) error {
	cc := clientcredentials.Config{ClientID: c.id, ClientSecret: c.secret, TokenURL: c.tokenURL, AuthStyle: oauth2.AuthStyleInHeader}
	tok, err := cc.Token(context.WithValue(ctx, oauth2.HTTPClient, c.http))
	var refused *oauth2.RetrieveError
	switch {
	case errors.As(err, &refused) && refused.Response != nil:
		c.answered(refused.Response.StatusCode)
		return fmt.Errorf("token service answered %s", refused.Response.Status)
	case err != nil:
		c.answered(0)
		return fmt.Errorf("asking for a token: %w", err)
	}
	c.answered(http.StatusOK)
	c.token, c.fetched = tok.AccessToken, time.Now()
	return nil
}

// noToken is submit's status when no token could be had (the job was not
// sent).
const noToken = -1

// submit sends one job; it returns the answer's status (0: none; noToken),
// the job id when accepted, and the Retry-After asked for.
func (c *chaosClient) submit(ctx context.Context, url, key, body string) (int, string, time.Duration) {
	if c.token == "" || time.Since(c.fetched) > tokenLifetime {
		if err := c.fetchToken(ctx); err != nil {
			return noToken, "", time.Second
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader([]byte(body)))
	if err != nil {
		return 0, "", time.Second
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, "", 0
	}
	defer func() { _ = resp.Body.Close() }()
	var job struct {
		ID string `json:"id"`
	}
	if resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusOK {
		_ = json.NewDecoder(resp.Body).Decode(&job)
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		c.token = ""
	}
	retryAfter, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	return resp.StatusCode, job.ID, time.Duration(retryAfter) * time.Second
}

// settled is how long a job may take from accepted to succeeded and still
// count as flowing, not as backlog.
const settled = 2 * time.Second

// sampleBacklog records the phase's peak backlog until stopped.
func (d *drill) sampleBacklog(ps *phaseStats) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for clock.Sleep(ctx, 500*time.Millisecond) {
			qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
			n, err := jobstore.CountUnfinished(qctx, d.pool, time.Now().Add(time.Hour))
			qcancel()
			if err == nil {
				d.mu.Lock()
				ps.peak = max(ps.peak, n)
				d.mu.Unlock()
			}
		}
	}()
	return func() { cancel(); <-done }
}

// awaitDrained polls until no job accepted over 2 s ago is unfinished.
func (d *drill) awaitDrained(ctx context.Context, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		n, err := jobstore.CountUnfinished(qctx, d.pool, time.Now().Add(-settled))
		cancel()
		if err == nil && n == 0 {
			return true
		}
		if !clock.Sleep(ctx, 100*time.Millisecond) {
			return false
		}
	}
	return false
}

// pauseServer returns a fault that stops the named server with SIGSTOP
// for the outage and resumes it.
func (d *drill) pauseServer(name string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		if err := d.dp.stack.Signal(name, syscall.SIGSTOP); err != nil {
			return err
		}
		err := pause(ctx, d.opts.outage)
		return errors.Join(err, d.dp.stack.Signal(name, syscall.SIGCONT))
	}
}

// databaseOutage stops Postgres for the drill's database outage with
// messages in the worker's hands: the worker is paused first, so that the
// jobs accepted meanwhile wait in SQS, and resumed once Postgres is gone,
// so that it receives them during the outage. A worker that retried such
// a message on every receive would dead-letter it (max receive count)
// long before Postgres came back.
func (d *drill) databaseOutage(ctx context.Context) error {
	if err := d.dp.signal("worker", syscall.SIGSTOP); err != nil {
		return err
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = d.dp.signal("worker", syscall.SIGCONT)
		}
	}()
	if err := pause(ctx, 3*time.Second); err != nil { // 60 jobs at the default rate
		return err
	}
	waiting, err := jobstore.CountUnfinished(ctx, d.pool, time.Now())
	if err != nil {
		return err
	}
	restarted := make(chan error, 1)
	go func() { restarted <- d.dp.stack.RestartPostgres(ctx, d.opts.databaseOutage) }()
	for d.pool.Ping(ctx) == nil {
		if err := pause(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	resumed = true
	if err := d.dp.signal("worker", syscall.SIGCONT); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  Postgres stopped with %d jobs unfinished, the worker resumed to receive them\n", waiting)
	return <-restarted
}

// killAtRandom SIGKILLs relay, worker and replay, chosen at random, and
// starts each again; a worker kill waits (up to 2 s) for a moment with a
// job processing and a relay kill for one with rows unsent, so that kills
// land with work in flight.
func (d *drill) killAtRandom(ctx context.Context) error {
	ps := d.current()
	victims := []string{"relay", "worker", "replay"}
	for range d.opts.kills {
		victim := victims[rand.IntN(len(victims))] //nolint:gosec // choosing a victim needs no cryptographic randomness
		work := map[string]func() (int, error){
			"relay": func() (int, error) {
				b, err := outbox.ReadBacklog(ctx, d.pool)
				return int(b.Pending), err
			},
			"worker": func() (int, error) { return jobstore.CountProcessing(ctx, d.pool) },
		}[victim]
		busy := false
		for deadline := time.Now().Add(2 * time.Second); work != nil && !busy && time.Now().Before(deadline); {
			if n, err := work(); err == nil && n > 0 {
				busy = true
			}
		}
		d.dp.kill(victim)
		d.mu.Lock()
		ps.kills++
		if busy {
			ps.inFlight++
		}
		d.mu.Unlock()
		if err := d.dp.start(ctx, victim); err != nil {
			return fmt.Errorf("starting %s again after a SIGKILL: %w", victim, err)
		}
		if err := pause(ctx, time.Duration(rand.Int64N(int64(time.Second)))); err != nil { //nolint:gosec // jitter
			return err
		}
	}
	return nil
}

// count attributes lost and duplicated jobs to their phases: lost, an
// accepted job that is missing or did not succeed; duplicated, a job with
// more than one effect (demo_text_stats row).
func (d *drill) count(ctx context.Context) error {
	for _, ps := range d.phases {
		if len(ps.jobs) == 0 {
			continue
		}
		var err error
		if ps.lost, err = jobstore.CountNotSucceeded(ctx, d.pool, ps.jobs); err != nil {
			return fmt.Errorf("counting the outcome of %q: %w", ps.name, err)
		}
		if ps.dup, err = demo.AppliedTwice(ctx, d.pool, ps.jobs); err != nil {
			return fmt.Errorf("counting the outcome of %q: %w", ps.name, err)
		}
	}
	return nil
}

// byStatus renders counts by HTTP status, "no answer" for 0.
func byStatus(counts map[int]int) string {
	statuses := make([]int, 0, len(counts))
	for s := range counts {
		statuses = append(statuses, s)
	}
	sort.Ints(statuses)
	parts := make([]string, 0, len(statuses))
	for _, s := range statuses {
		label := strconv.Itoa(s)
		if s == 0 {
			label = "no answer"
		}
		parts = append(parts, fmt.Sprintf("%s: %d", label, counts[s]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// report prints the table and says whether the drill passed.
func (d *drill) report() error {
	tw := tabwriter.NewWriter(d.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "fault\taccepted\tlost\tduplicated\tgateway answers\ttoken answers\tpeak backlog\tdrained after fault\t")
	var failures []string
	for _, ps := range d.phases {

		drained := ps.drain.Round(100 * time.Millisecond).String()
		if !ps.drained || ps.drain > ps.allowed {
			drained += " (too slow)"
			failures = append(failures, fmt.Sprintf("%s: backlog drained after %s (at most %s)", ps.name, ps.drain.Round(time.Second), ps.allowed))
		}
		name := ps.name
		if ps.kills > 0 {
			name += fmt.Sprintf(" (%d with work in flight)", ps.inFlight)
			if ps.inFlight == 0 {
				failures = append(failures, ps.name+": no kill landed with work in flight")
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%d\t%s\t\n", name, len(ps.jobs), ps.lost, ps.dup, byStatus(ps.answers), byStatus(ps.tokens), ps.peak, drained)
		if n := ps.tokens[http.StatusInternalServerError]; n > 0 {
			failures = append(failures, fmt.Sprintf("%s: the token service answered 500 %d times", ps.name, n))
		}
		if ps.lost > 0 || ps.dup > 0 {
			failures = append(failures, fmt.Sprintf("%s: %d lost, %d duplicated", ps.name, ps.lost, ps.dup))
		}
		if n := ps.answers[http.StatusInternalServerError]; n > 0 {
			failures = append(failures, fmt.Sprintf("%s: %d answers of 500", ps.name, n))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(failures) > 0 {
		return fmt.Errorf("the drill failed:\n  %s", strings.Join(failures, "\n  "))
	}
	fmt.Fprintln(d.out, "chaos: every fault passed (0 lost, 0 duplicated, 0 answers of 500, every backlog drained in time)")
	return nil
}
