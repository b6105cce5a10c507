package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds gateway, relay and worker once per test binary.
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := devstack.ModuleRoot(".")
		if err != nil {
			buildErr = err
			return
		}
		binDir, buildErr = os.MkdirTemp("", "switchyard-e2e-bin-")
		if buildErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		buildErr = devstack.Build(ctx, root, binDir, raceEnabled, "./services/gateway", "./services/relay", "./services/worker")
	})
	require.NoError(t, buildErr)
	return binDir
}

// platform is one running Switchyard: its own database and queues, with
// the three services as separate processes.
type platform struct {
	t        *testing.T
	bin      string
	env      []string
	logDir   string
	pool     *pgxpool.Pool
	gateway  string
	opsPorts map[string]int

	mu    sync.Mutex
	procs map[string]*devstack.Process
}

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

func startPlatform(t *testing.T) *platform {
	t.Helper()
	bin := binaries(t)
	dbURL := stacktest.NewDatabase(t)
	stacktest.SQSEndpoint(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "jobs.yaml"), []byte(jobsFile), 0o644))
	gatewayPort, err := devstack.FreePort()
	require.NoError(t, err)
	p := &platform{t: t, bin: bin, logDir: dir, gateway: "http://127.0.0.1:" + strconv.Itoa(gatewayPort),
		opsPorts: map[string]int{}, procs: map[string]*devstack.Process{}}
	for _, svc := range []string{"gateway", "relay", "worker"} {
		port, err := devstack.FreePort()
		require.NoError(t, err)
		p.opsPorts[svc] = port
	}
	p.env = append(os.Environ(), stacktest.Env(t, devstack.SQS)...)
	p.env = append(p.env,
		"DATABASE_URL="+dbURL,
		"SWITCHYARD_JOBS_FILE="+filepath.Join(dir, "jobs.yaml"),
		"SWITCHYARD_QUEUE_PREFIX="+stacktest.QueuePrefix(t),
		// A worker killed mid-message gets it back after this long.
		"SWITCHYARD_SQS_VISIBILITY_TIMEOUT=10s",
		"SWITCHYARD_GATEWAY_ADDR=127.0.0.1:"+strconv.Itoa(gatewayPort),
		"SWITCHYARD_GATEWAY_OPS_ADDR=127.0.0.1:"+strconv.Itoa(p.opsPorts["gateway"]),
		"SWITCHYARD_RELAY_OPS_ADDR=127.0.0.1:"+strconv.Itoa(p.opsPorts["relay"]),
		"SWITCHYARD_WORKER_OPS_ADDR=127.0.0.1:"+strconv.Itoa(p.opsPorts["worker"]),
		"SWITCHYARD_DEV_AUTH=true",
		"SWITCHYARD_LOG_LEVEL=warn",
	)
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
			for _, svc := range []string{"gateway", "relay", "worker"} {
				b, _ := os.ReadFile(filepath.Join(dir, svc+".log"))
				if len(b) > 8000 {
					b = b[len(b)-8000:]
				}
				t.Logf("--- %s log (tail) ---\n%s", svc, b)
			}
		}
	})
	for _, svc := range []string{"relay", "worker", "gateway"} {
		p.start(svc)
	}
	return p
}

// start runs svc and waits until its /readyz answers 200.
func (p *platform) start(svc string) {
	p.t.Helper()
	logFile, err := os.OpenFile(filepath.Join(p.logDir, svc+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(p.t, err)
	p.t.Cleanup(func() { _ = logFile.Close() })
	cmd := exec.Command(filepath.Join(p.bin, svc))
	cmd.Env = p.env
	proc, err := devstack.StartProcess(svc, cmd, logFile, "", syscall.SIGTERM)
	require.NoError(p.t, err)
	p.mu.Lock()
	p.procs[svc] = proc
	p.mu.Unlock()
	ready := fmt.Sprintf("http://127.0.0.1:%d/readyz", p.opsPorts[svc])
	require.NoError(p.t, proc.WaitReady(context.Background(), 60*time.Second, devstack.HTTPReady(ready)))
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
	body, _ := json.Marshal(map[string]string{"text": fmt.Sprintf("job %d of %s: %s", n, clientID, "lorem ipsum dolor")})
	req, err := http.NewRequest(http.MethodPost, p.gateway+"/v1/jobs/text-stats", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Switchyard-Client", clientID)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("submit answered %s", resp.Status)
	}
	var out struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", err
	}
	return out.ID, nil
}

// awaitSucceeded polls the job's status as its owner until it succeeds.
func (p *platform) awaitSucceeded(client http.Client, clientID, id string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		req, err := http.NewRequest(http.MethodGet, p.gateway+"/v1/jobs/"+id, nil)
		if err != nil {
			return err
		}
		req.Header.Set("X-Switchyard-Client", clientID)
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
