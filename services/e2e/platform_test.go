package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/oauthclients"
	"github.com/switchyard/switchyard/libs/signingkeys"
)

// build is one build of the services for the test binary.
type build struct {
	once sync.Once
	dir  string
	err  error
}

// builds are the services built with the race detector when the tests
// run with it (binaries), and without it (plainBinary).
var builds = map[bool]*build{false: {}, true: {}}

// servicePackages are the main packages the tests run.
var servicePackages = []string{"./services/tokens", "./services/gateway", "./services/relay", "./services/worker", "./services/replay",
	"./services/switchyard", "./services/demoupstream", "./services/e2e/faultworker"}

// builtServices builds the services once per test binary and race mode,
// and returns the directory holding them.
func builtServices(t *testing.T, race bool) string {
	t.Helper()
	b := builds[race]
	b.once.Do(func() {
		root, err := devstack.ModuleRoot(".")
		if err != nil {
			b.err = err
			return
		}
		if b.dir, b.err = os.MkdirTemp("", "switchyard-e2e-bin-"); b.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		b.err = devstack.Build(ctx, root, b.dir, race, servicePackages...)
	})
	require.NoError(t, b.err)
	return b.dir
}

// binaries builds the services and the CLI once per test binary.
func binaries(t *testing.T) string {
	t.Helper()
	return builtServices(t, raceEnabled)
}

// plainBinary is a service built without the race detector, for tests
// that measure a process's memory (the detector multiplies it).
func plainBinary(t *testing.T, name string) string {
	t.Helper()
	return filepath.Join(builtServices(t, false), name)
}

// platform is one running Switchyard: its own database, queues and
// signing keys, with the services as separate processes.
type platform struct {
	t       *testing.T
	bin     string
	env     []string
	logDir  string
	pool    *pgxpool.Pool
	gateway string
	// gateway2 is the second gateway's URL (when the platform runs one).
	gateway2 string
	tokens   string
	keysFile string
	opsPorts map[string]int
	services []string
	// replay is the replay service's admin API.
	replay string
	// sqsEndpoint is the SQS server the platform's services use.
	sqsEndpoint string
	// binaries maps a service to the binary that runs it, when not its own.
	binaries map[string]string
	// adminSecret is the secret of the admin client ops-alice, when the
	// platform has one.
	adminSecret string
	// storeOpts are the client store's options for clients the test
	// registers (the pepper, when the token service has one).
	storeOpts []oauthclients.Option

	mu     sync.Mutex
	procs  map[string]*devstack.Process
	svcEnv map[string][]string
	// fixedEnv is a service's own environment that restarts keep.
	fixedEnv map[string][]string
	bearers  map[string]string
}

// allServices is what a platform runs unless told otherwise.
var allServices = []string{"tokens", "relay", "worker", "gateway"}

// knownServices are the services a platform can run (each gets ports).
// gateway2 is a second replica of the gateway, on its own ports.
var knownServices = []string{"tokens", "relay", "worker", "gateway", "replay", "gateway2"}

// platformOptions change what startPlatformWith runs.
type platformOptions struct {
	services []string
	env      []string
	// jobs and routes replace the job types and routes files.
	jobs, routes string
	// binaries maps a service to another binary to run it with, e.g.
	// "worker" to "faultworker".
	binaries map[string]string
	// databaseURL is a database made beforehand (default: a new one).
	databaseURL string
	// serviceEnv adds environment to one service.
	serviceEnv map[string][]string
	// opsOnAllInterfaces binds the ops listeners to 0.0.0.0 (as in a
	// container) rather than 127.0.0.1.
	opsOnAllInterfaces bool
	// sqsEndpoint is an SQS server other than the test binary's (default:
	// stacktest's, shared by the package's tests).
	sqsEndpoint string
}

const routesFile = `
routes:
  - {method: POST, path: "/v1/jobs/text-stats", mode: async, job_type: text-stats, scopes: [jobs:submit]}
  - {method: GET, path: "/v1/jobs/{id}", mode: job-status, scopes: [jobs:read]}
  - {method: POST, path: "/v1/jobs/closed", mode: async, job_type: text-stats}
  - {method: GET, path: "/admin/v1/jobs/{id}", mode: job-status, scopes: [switchyard:admin]}
`

const jobsFile = `
job_types:
  text-stats:
    handler: text-stats
    consumers: 8
    timeout: 4s
    schema:
      type: object
      required: [text]
      properties:
        text: {type: string}
`

// startPlatform runs services (default allServices) with env added to
// the defaults.
func startPlatform(t *testing.T, services []string, env ...string) *platform {
	t.Helper()
	return startPlatformWith(t, platformOptions{services: services, env: env})
}

// startPlatformWith runs a platform as opts say.
func startPlatformWith(t *testing.T, opts platformOptions) *platform {
	t.Helper()
	services := opts.services
	if services == nil {
		services = allServices
	}
	jobs, routes := jobsFile, routesFile
	if opts.jobs != "" {
		jobs = opts.jobs
	}
	if opts.routes != "" {
		routes = opts.routes
	}
	bin := binaries(t)
	dbURL := opts.databaseURL
	if dbURL == "" {
		dbURL = stacktest.NewDatabase(t)
	}
	sqsEndpoint := stacktest.SQSEndpoint(t)
	if opts.sqsEndpoint != "" {
		sqsEndpoint = opts.sqsEndpoint
	}
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "jobs.yaml"), []byte(jobs), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "routes.yaml"), []byte(routes), 0o644))
	ring, _, err := signingkeys.Ring{}.Rotate(signingkeys.ES256, time.Now(), 0, time.Hour)
	require.NoError(t, err)
	keysFile := filepath.Join(dir, "signing-keys.json")
	require.NoError(t, signingkeys.WriteFile(keysFile, ring))
	gatewayPort, err := devstack.FreePort()
	require.NoError(t, err)
	tokensPort, err := devstack.FreePort()
	require.NoError(t, err)
	replayPort, err := devstack.FreePort()
	require.NoError(t, err)
	gateway2Port, err := devstack.FreePort()
	require.NoError(t, err)
	p := &platform{t: t, bin: bin, logDir: dir, gateway: "http://127.0.0.1:" + strconv.Itoa(gatewayPort),
		tokens: "http://127.0.0.1:" + strconv.Itoa(tokensPort), replay: "http://127.0.0.1:" + strconv.Itoa(replayPort),
		keysFile: keysFile, services: services, binaries: opts.binaries, opsPorts: map[string]int{}, sqsEndpoint: sqsEndpoint,
		procs: map[string]*devstack.Process{}, svcEnv: map[string][]string{}, bearers: map[string]string{}}
	for _, svc := range knownServices {
		port, err := devstack.FreePort()
		require.NoError(t, err)
		p.opsPorts[svc] = port
	}
	opsHost := "127.0.0.1:"
	if opts.opsOnAllInterfaces {
		opsHost = "0.0.0.0:"
	}
	p.gateway2 = "http://127.0.0.1:" + strconv.Itoa(gateway2Port)
	p.fixedEnv = map[string][]string{}
	p.fixedEnv["gateway2"] = []string{"SWITCHYARD_GATEWAY_ADDR=127.0.0.1:" + strconv.Itoa(gateway2Port),
		"SWITCHYARD_GATEWAY_OPS_ADDR=" + opsHost + strconv.Itoa(p.opsPorts["gateway2"])}
	for svc, env := range opts.serviceEnv {
		p.svcEnv[svc] = append(p.svcEnv[svc], env...)
	}
	p.env = append(os.Environ(), stacktest.Env(t, devstack.SQS)...)
	p.env = append(p.env,
		devstack.EnvSQSEndpoint+"="+sqsEndpoint,
		"DATABASE_URL="+dbURL,
		"SWITCHYARD_JOBS_FILE="+filepath.Join(dir, "jobs.yaml"),
		"SWITCHYARD_QUEUE_PREFIX="+stacktest.QueuePrefix(t),
		// A worker killed mid-message gets it back after this long.
		"SWITCHYARD_SQS_VISIBILITY_TIMEOUT=10s",
		// Stopping a worker waits for its polls in flight; keep them short.
		"SWITCHYARD_WORKER_RECEIVE_WAIT=2s",
		"SWITCHYARD_GATEWAY_ADDR=127.0.0.1:"+strconv.Itoa(gatewayPort),
		"SWITCHYARD_GATEWAY_OPS_ADDR="+opsHost+strconv.Itoa(p.opsPorts["gateway"]),
		"SWITCHYARD_RELAY_OPS_ADDR="+opsHost+strconv.Itoa(p.opsPorts["relay"]),
		"SWITCHYARD_WORKER_OPS_ADDR="+opsHost+strconv.Itoa(p.opsPorts["worker"]),
		"SWITCHYARD_TOKENS_ADDR=127.0.0.1:"+strconv.Itoa(tokensPort),
		"SWITCHYARD_TOKENS_OPS_ADDR="+opsHost+strconv.Itoa(p.opsPorts["tokens"]),
		"SWITCHYARD_REPLAY_ADDR=127.0.0.1:"+strconv.Itoa(replayPort),
		"SWITCHYARD_REPLAY_OPS_ADDR="+opsHost+strconv.Itoa(p.opsPorts["replay"]),
		"SWITCHYARD_REPLAY_OPERATIONS_SCAN=500ms",
		"SWITCHYARD_CONSOLE_GATEWAY_METRICS=http://127.0.0.1:"+strconv.Itoa(p.opsPorts["gateway"])+"/metrics",
		"SWITCHYARD_TOKENS_ISSUER="+p.tokens,
		"SWITCHYARD_TOKENS_KEYS_FILE="+keysFile,
		"SWITCHYARD_TOKENS_KEYS_RELOAD=200ms",
		"SWITCHYARD_AUTH_ISSUER="+p.tokens,
		"SWITCHYARD_ROUTES_FILE="+filepath.Join(dir, "routes.yaml"),
		// Routes that accept API keys need the pepper keys are hashed with.
		"SWITCHYARD_API_KEY_PEPPER="+apiKeyPepper,
		"SWITCHYARD_LOG_LEVEL=warn",
		// Tests send many refused requests from 127.0.0.1 on purpose;
		// TestAutoBlock turns blocking on.
		"SWITCHYARD_EDGE_BLOCK_THRESHOLD=0",
	)
	p.env = append(p.env, opts.env...)
	p.pool, err = pgxpool.New(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, proc := range p.procs {
			if err := proc.Stop(30 * time.Second); err != nil {
				t.Errorf("stopping %s: %v", proc.Name(), err)
			}
		}
		p.pool.Close()
		if t.Failed() {
			if keep := os.Getenv("SWITCHYARD_E2E_KEEP_LOGS"); keep != "" {
				dst := filepath.Join(keep, strings.ReplaceAll(t.Name(), "/", "_"))
				if err := os.CopyFS(dst, os.DirFS(dir)); err != nil {
					t.Logf("keeping logs: %v", err)
				} else {
					t.Logf("logs kept in %s", dst)
				}
			}
			for _, svc := range services {
				b, _ := os.ReadFile(filepath.Join(dir, svc+".log"))
				if len(b) > 8000 {
					b = b[len(b)-8000:]
				}
				t.Logf("--- %s log (tail) ---\n%s", svc, b)
			}
		}
	})
	for _, svc := range services {
		p.start(svc)
	}
	return p
}

// client registers an OAuth client with scopes (through the store, as the
// CLI does) and returns its secret.
func (p *platform) client(id string, scopes ...string) string {
	p.t.Helper()
	store, err := oauthclients.New(p.pool, p.storeOpts...)
	require.NoError(p.t, err)
	_, secret, err := store.Create(context.Background(), oauthclients.NewClient{ID: id, Scopes: scopes})
	require.NoError(p.t, err)
	return secret
}

// token gets an access token from the token service (client_secret_basic).
func (p *platform) token(id, secret string, scope ...string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if len(scope) > 0 {
		form.Set("scope", strings.Join(scope, " "))
	}
	req, err := http.NewRequest(http.MethodPost, p.tokens+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("reading token response: %w", err)
	}
	if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" {
		return "", fmt.Errorf("%w: %s (%s)", errTokensBusy, resp.Status, out.Error)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("token endpoint answered %s (%s)", resp.Status, out.Error)
	}
	return out.AccessToken, nil
}

// errTokensBusy: the token service shed the request (503 with
// Retry-After: its secret checks' memory was taken, as on a loaded CI
// machine); a client asks again later.
var errTokensBusy = errors.New("token service busy")

// bearer returns an access token for clientID (jobs:submit jobs:read),
// registering the client on first use.
func (p *platform) bearer(clientID string) string {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if tok, ok := p.bearers[clientID]; ok {
		return tok
	}
	secret := p.client(clientID, "jobs:submit", "jobs:read")
	tok, err := p.token(clientID, secret)
	require.NoError(p.t, err)
	p.bearers[clientID] = tok
	return tok
}

// start runs svc and waits until its /readyz answers 200.
func (p *platform) start(svc string) {
	p.t.Helper()
	require.NoError(p.t, p.startE(svc))
}

// startE is start for goroutines other than the test's: it returns the
// error instead of failing the test.
func (p *platform) startE(svc string) error { return p.startWaiting(svc, "/readyz") }

// startWaiting runs svc and waits until path on its ops listener answers
// 200.
func (p *platform) startWaiting(svc, path string) error {
	logFile, err := os.OpenFile(filepath.Join(p.logDir, svc+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p.t.Cleanup(func() { _ = logFile.Close() })
	binary := svc
	if svc == "gateway2" {
		binary = "gateway"
	}
	if b, ok := p.binaries[svc]; ok {
		binary = b
	}
	exe := binary
	if !filepath.IsAbs(exe) {
		exe = filepath.Join(p.bin, binary)
	}
	cmd := exec.Command(exe)
	p.mu.Lock()
	cmd.Env = append(append(slices.Clone(p.env), p.fixedEnv[svc]...), p.svcEnv[svc]...)
	p.mu.Unlock()
	proc, err := devstack.StartProcess(svc, cmd, logFile, "", syscall.SIGTERM)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.procs[svc] = proc
	p.mu.Unlock()
	ready := fmt.Sprintf("http://127.0.0.1:%d%s", p.opsPorts[svc], path)
	return proc.WaitReady(context.Background(), 60*time.Second, devstack.HTTPReady(ready))
}

// restart stops svc gracefully (SIGTERM) and starts it again with env
// added to the platform's: a new deployment.
func (p *platform) restart(svc string, env ...string) {
	p.t.Helper()
	p.mu.Lock()
	proc := p.procs[svc]
	p.svcEnv[svc] = env
	p.mu.Unlock()
	require.NoError(p.t, proc.Stop(30*time.Second))
	p.start(svc)
}

// crash kills svc with SIGKILL, as a power cut would, and starts it again.
func (p *platform) crash(svc string) {
	p.t.Helper()
	p.mu.Lock()
	proc := p.procs[svc]
	p.mu.Unlock()
	proc.Kill()
	p.t.Logf("killed %s (pid %d) with SIGKILL", svc, proc.Pid())
	p.start(svc)
}

// submit POSTs one text-stats job as client and returns its id.
func (p *platform) submit(client http.Client, clientID string, n int) (string, error) {
	id, _, err := p.submitKeyed(client, clientID, "", fmt.Sprintf("job %d of %s: %s", n, clientID, "lorem ipsum dolor"))
	return id, err
}

// submitKeyed POSTs one text-stats job as client, with an
// Idempotency-Key when key is set, and returns the job's id and the
// answer's status (202 or 200). A 503 with Retry-After is retried after
// the interval it names, as the API asks clients to.
func (p *platform) submitKeyed(client http.Client, clientID, key, text string) (string, int, error) {
	body, _ := json.Marshal(map[string]string{"text": text})
	for {
		req, err := http.NewRequest(http.MethodPost, p.gateway+"/v1/jobs/text-stats", bytes.NewReader(body))
		if err != nil {
			return "", 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+p.bearer(clientID))
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", 0, err
		}
		var out struct {
			ID string `json:"id"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		_ = resp.Body.Close()
		if retry, convErr := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode == http.StatusServiceUnavailable && convErr == nil {
			time.Sleep(time.Duration(retry) * time.Second) // the interval the server asked for
			continue
		}
		if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK {
			return "", 0, fmt.Errorf("submit answered %s", resp.Status)
		}
		if err != nil || out.ID == "" {
			return "", 0, fmt.Errorf("submit answered %s without a job id: %w", resp.Status, err)
		}
		return out.ID, resp.StatusCode, nil
	}
}

// awaitSucceeded polls the job's status as its owner until it succeeds.
func (p *platform) awaitSucceeded(client http.Client, clientID, id string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		req, err := http.NewRequest(http.MethodGet, p.gateway+"/v1/jobs/"+id, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+p.bearer(clientID))
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		var out struct {
			Status string `json:"status"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		_ = resp.Body.Close()
		if err != nil {
			return fmt.Errorf("reading status of %s: %w", id, err)
		}
		if out.Status == "succeeded" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("job %s still %s after %s", id, out.Status, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *platform) count(query string) int {
	p.t.Helper()
	var n int
	require.NoError(p.t, p.pool.QueryRow(context.Background(), query).Scan(&n))
	return n
}
