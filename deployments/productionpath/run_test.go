package productionpath_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
)

// TestProductionManifestsRun runs the production overlay as a cluster
// would, with the AWS side Terraform declares:
//
//   - the SQS server (moto) holds the queues of Terraform's production
//     variables and enforces IAM: each service that calls AWS runs with
//     the keys of a user holding exactly its policy from the .tf files
//     (standing in for its IRSA role); the gateway and the token service
//     get no AWS credentials at all;
//   - Vault is provisioned as deployments/k8s/README.md says, with
//     Kubernetes auth (a stand-in TokenReview API issues each service
//     account's token);
//   - Postgres is reached over TLS verified against the CA the overlay
//     mounts (the local server's own certificate stands in for RDS's);
//   - every workload starts from the rendered command, environment and
//     mounted files, with only addresses changed: cluster DNS names and
//     external hosts become the local servers', listen addresses local
//     ports, mount paths a directory of the test's; and the trust store
//     is the image's (public CAs only).
//
// The init Job must succeed, every Deployment become ready, and an order
// submitted through the gateway reach the fulfilment service. Every SQS
// call the services made must have been allowed, and calls outside a
// service's role are denied.
func TestProductionManifestsRun(t *testing.T) {
	r, tf := productionOverlay(t), terraform(t)
	root := moduleRoot(t)
	ctx := context.Background()
	bin := t.TempDir()
	buildCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	require.NoError(t, devstack.Build(buildCtx, root, bin, false,
		"./services/tokens", "./services/gateway", "./services/relay", "./services/worker", "./services/replay", "./services/switchyard"))

	cloud := newAWS(t, tf)
	vaultServer := stacktest.NewVaultServer(t)
	kube := stacktest.NewKubernetesAPI(t)
	redis := stacktest.NewRedisServer(t)
	collector := stacktest.NewTraceCollector(t)
	db := newVerifiedDatabase(t)
	fulfilment := newTarget(t)

	// What the operator does before `kubectl apply` (deployments/k8s/README.md):
	// Terraform (above), the CA ConfigMap, then Vault.
	external := map[string]map[string]string{"switchyard-db-ca": {"ca.pem": db.caPEM}}
	cli := filepath.Join(bin, "switchyard")
	out, err := runCommand(ctx, cli, []string{"VAULT_ADDR=" + vaultServer.URL(), "VAULT_TOKEN=" + vaultServer.RootToken},
		"vault", "provision", "--database-url", db.adminURL,
		"--kubernetes-namespace", r.Namespace, "--kubernetes-host", kube.URL(), "--kubernetes-vault-outside-cluster",
		"--redis-url", redis.URL())
	require.NoError(t, err, "switchyard vault provision: %s", out)
	t.Logf("switchyard vault provision:\n%s", out)

	// The cluster's addresses, as this machine has them.
	c := newCluster(t, r, bin)
	c.hosts[overlayValue(t, r, "VAULT_ADDR")] = vaultServer.URL()
	c.hosts[hostOf(t, overlayValue(t, r, "DATABASE_URL"), true)] = db.hostPortDB
	c.hosts[overlayValue(t, r, "OTEL_EXPORTER_OTLP_ENDPOINT")] = collector.Endpoint()
	for _, target := range c.targets() {
		c.hosts[target] = fulfilment.URL
	}
	c.external = external
	c.aws = cloud
	c.kube = kube

	// The init Job first, then every Deployment.
	initJob := r.workloadNamed(t, "switchyard-init")
	out, err = c.run(initJob, 2*time.Minute)
	require.NoError(t, err, "the init Job: %s", out)
	t.Logf("init Job:\n%s", out)
	for _, w := range r.Workloads {
		if w.Kind == "Deployment" {
			c.start(w)
		}
	}
	for _, w := range r.Workloads {
		if w.Kind == "Deployment" {
			c.awaitReady(w, 90*time.Second)
		}
	}

	// An operator registers a client; the client gets a token from the
	// token service and submits an order through the gateway.
	tokens := r.workloadNamed(t, "switchyard-tokens")
	out, err = runCommand(ctx, cli, []string{"DATABASE_URL=" + db.adminURL, "VAULT_ADDR=" + vaultServer.URL(),
		"VAULT_TOKEN=" + vaultServer.RootToken, "SWITCHYARD_CLIENT_SECRET_PEPPER=" + tokens.Env["SWITCHYARD_CLIENT_SECRET_PEPPER"]},
		"clients", "create", "--id", "shop", "--scope", "orders:submit", "--scope", "jobs:read", "-o", "json")
	require.NoError(t, err, "switchyard clients create: %s", out)
	var client struct {
		Secret string `json:"client_secret"`
	}
	start := strings.Index(out, "{")
	require.GreaterOrEqual(t, start, 0, "the client as JSON: %s", out)
	require.NoError(t, json.Unmarshal([]byte(out[start:]), &client), out)
	token := c.token(tokens, "shop", client.Secret, "orders:submit jobs:read")
	gateway := c.base(r.workloadNamed(t, "switchyard-gateway"), "http")
	id := c.submit(gateway, token, `{"order_id": "o-1001", "amount": 12.5}`)
	require.Eventually(t, func() bool {
		_, body := call(t, http.MethodGet, gateway+"/v1/jobs/"+id, token, "")
		return strings.Contains(body, `"status":"succeeded"`)
	}, 60*time.Second, 200*time.Millisecond, "the job succeeds")
	require.Contains(t, fulfilment.received(), `"o-1001"`, "the fulfilment service got the order")

	// The rest of the services' SQS calls: a retry (the worker hides the
	// message: ChangeMessageVisibility) and a dead letter (the relay sends
	// to the DLQ, the replay service receives and deletes it there).
	flaky := c.submit(gateway, token, `{"order_id": "o-flaky", "amount": 1}`)
	rejected := c.submit(gateway, token, `{"order_id": "o-reject", "amount": 1}`)
	pool := stacktest.NewPoolURL(t, db.adminURL)
	require.Eventually(t, func() bool {
		var stored int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM dead_letters WHERE job_id = $1`, rejected).Scan(&stored)
		_, body := call(t, http.MethodGet, gateway+"/v1/jobs/"+flaky, token, "")
		return err == nil && stored == 1 && strings.Contains(body, `"status":"succeeded"`)
	}, 90*time.Second, 250*time.Millisecond, "the flaky order succeeds on a retry and the rejected one is stored as a dead letter")

	// Every SQS call a service made was allowed by its policy ...
	calls := cloud.calls()
	for _, svc := range awsServices {
		t.Logf("%s called SQS with: %v", svc, calls.actions(svc))
	}
	require.Empty(t, calls.denied(), "SQS calls the services' IAM policies refused")
	require.Subset(t, calls.actions("relay"), []string{"SendMessageBatch"})
	// (IAM authorises DeleteMessageBatch with the sqs:DeleteMessage action.)
	require.Subset(t, calls.actions("worker"), []string{"ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibility"})
	require.Subset(t, calls.actions("replay"), []string{"ReceiveMessage", "DeleteMessageBatch"})
	// ... and what is outside a service's role is refused.
	for _, denied := range []struct {
		user string
		call func(context.Context, *sqs.Client) error
		what string
	}{
		{"worker", func(ctx context.Context, c *sqs.Client) error {
			_, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: cloud.queueURL(tf.JobTypes["order-webhook"].DLQ)})
			return err
		}, "the worker reads a DLQ"},
		{"replay", func(ctx context.Context, c *sqs.Client) error {
			_, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: cloud.queueURL(tf.JobTypes["order-webhook"].Queue)})
			return err
		}, "the replay service reads a job queue"},
		{"relay", func(ctx context.Context, c *sqs.Client) error {
			_, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: ptr("switchyard-rogue")})
			return err
		}, "the relay creates a queue"},
		{"gateway", func(ctx context.Context, c *sqs.Client) error {
			_, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: ptr(tf.JobTypes["order-webhook"].Queue)})
			return err
		}, "the gateway touches SQS at all"},
	} {
		err := denied.call(ctx, cloud.client(t, denied.user))
		requireDenied(t, err, denied.what)
	}
}

// overlayValue is the one value every workload that sets name gives it
// (ignoring vault: references).
func overlayValue(t *testing.T, r rendered, name string) string {
	t.Helper()
	var v string
	for _, w := range r.Workloads {
		if x, ok := w.Env[name]; ok && !strings.HasPrefix(x, "vault:") {
			require.True(t, v == "" || v == x, "%s differs between workloads: %q, %q", name, v, x)
			v = x
		}
	}
	require.NotEmpty(t, v, "no workload sets %s", name)
	return v
}

// hostOf returns a URL's scheme://host:port, or host:port/path when
// withPath (a database URL's server and database).
func hostOf(t *testing.T, raw string, withPath bool) string {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	if withPath {
		return u.Host + u.Path
	}
	return u.Scheme + "://" + u.Host
}

// cluster runs workloads as processes and maps the cluster's addresses
// to local ones.
type cluster struct {
	t   *testing.T
	r   rendered
	bin string
	dir string
	// hosts maps an address as the manifests write it (scheme://host:port,
	// host:port, host:port/path) to its local stand-in.
	hosts map[string]string
	// ports maps workload -> container port -> local port.
	ports map[string]map[int]int
	// external is the content of ConfigMaps the operator creates.
	external map[string]map[string]string
	aws      *awsSide
	kube     *stacktest.KubernetesAPI

	mu    sync.Mutex
	procs map[string]*devstack.Process
}

func newCluster(t *testing.T, r rendered, bin string) *cluster {
	c := &cluster{t: t, r: r, bin: bin, dir: t.TempDir(), hosts: map[string]string{}, ports: map[string]map[int]int{},
		procs: map[string]*devstack.Process{}}
	for _, w := range r.Workloads {
		c.ports[w.Name] = map[int]int{}
		for _, p := range w.Ports {
			free, err := devstack.FreePort()
			require.NoError(t, err)
			c.ports[w.Name][p] = free
		}
	}
	// Services: <name>:<port>, also as <name>.<namespace>.svc[.cluster.local].
	for name, ports := range r.Services {
		var target workload
		for _, w := range r.Workloads {
			if w.Name == name {
				target = w
			}
		}
		require.NotEmpty(t, target.Name, "Service %s selects no workload of the same name", name)
		for port, targetPort := range ports {
			local := "127.0.0.1:" + strconv.Itoa(c.ports[target.Name][targetPort])
			for _, host := range []string{name, name + "." + r.Namespace + ".svc", name + "." + r.Namespace + ".svc.cluster.local"} {
				c.hosts[host+":"+port] = local
			}
		}
	}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, p := range c.procs {
			_ = p.Stop(30 * time.Second)
		}
	})
	return c
}

// targets are the scheme://host:port of every job type's HTTP target.
func (c *cluster) targets() []string {
	var out []string
	for _, w := range c.r.Workloads {
		if cat := catalogOf(c.t, w); cat != nil {
			for _, jt := range cat.Types() {
				if jt.HTTP != nil {
					out = append(out, hostOf(c.t, jt.HTTP.URL, false))
				}
			}
		}
	}
	return out
}

var listenAddr = regexp.MustCompile(`^:([0-9]+)$`)

// localize rewrites the cluster's addresses in s (an environment value or
// a mounted file) to the local ones, and mount paths to the workload's
// directory.
func (c *cluster) localize(w workload, s string) string {
	if m := listenAddr.FindStringSubmatch(s); m != nil {
		p, _ := strconv.Atoi(m[1])
		if local, ok := c.ports[w.Name][p]; ok {
			return "127.0.0.1:" + strconv.Itoa(local)
		}
	}
	keys := slices.Collect(maps.Keys(c.hosts))
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) }) // longest first
	pairs := make([]string, 0, 2*len(keys)+2)
	for _, k := range keys {
		pairs = append(pairs, k, c.hosts[k])
	}
	for _, dir := range mountRoots(w) {
		pairs = append(pairs, dir+"/", filepath.Join(c.dir, w.Name, dir)+"/")
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// mountRoots are the outermost directories w's volumes are mounted in.
func mountRoots(w workload) []string {
	var dirs []string
	for p := range w.Files {
		dirs = append(dirs, path.Dir(p))
	}
	for p := range w.ExternalMounts {
		dirs = append(dirs, p)
	}
	sort.Strings(dirs)
	var roots []string
	for _, d := range dirs {
		if len(roots) == 0 || (d != roots[len(roots)-1] && !strings.HasPrefix(d, roots[len(roots)-1]+"/")) {
			roots = append(roots, d)
		}
	}
	return roots
}

// command builds w's process: its binary (the image's), arguments, files
// and environment.
func (c *cluster) command(w workload) *exec.Cmd {
	t := c.t
	image := path.Base(w.Image)
	image, _, _ = strings.Cut(image, ":")
	args := []string{}
	if len(w.Command) > 0 {
		require.Equal(t, "/app", w.Command[0], "%s runs the image's binary", w.Name)
		args = w.Command[1:]
	}
	for p, content := range w.Files {
		c.writeFile(w, p, c.localize(w, content))
	}
	for dir, name := range w.ExternalMounts {
		files, ok := c.external[name]
		require.True(t, ok, "%s mounts ConfigMap %s, which the runbook does not create", w.Name, name)
		for file, content := range files {
			c.writeFile(w, path.Join(dir, file), content)
		}
	}
	noCerts := filepath.Join(c.dir, "no-extra-certs")
	require.NoError(t, os.MkdirAll(noCerts, 0o755))
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + c.dir, "TMPDIR=" + os.TempDir(),
		// The image's trust store: public CAs, not this machine's own.
		"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "SSL_CERT_DIR=" + noCerts,
		// What the kubelet and the EKS webhook give the pod.
		"VAULT_KUBERNETES_TOKEN_FILE=" + c.kube.ServiceAccountToken(t, c.r.Namespace, w.ServiceAccount),
		"AWS_EC2_METADATA_DISABLED=true",
	}
	if key, ok := c.aws.keys[service(w)]; ok {
		env = append(env, "AWS_ENDPOINT_URL_SQS="+c.aws.proxy.URL, "AWS_ACCESS_KEY_ID="+key.id, "AWS_SECRET_ACCESS_KEY="+key.secret)
	}
	for k, v := range w.Env {
		env = append(env, k+"="+c.localize(w, v))
	}
	cmd := exec.Command(filepath.Join(c.bin, image), args...)
	cmd.Env = env
	return cmd
}

func (c *cluster) writeFile(w workload, p, content string) {
	local := filepath.Join(c.dir, w.Name, p)
	require.NoError(c.t, os.MkdirAll(filepath.Dir(local), 0o755))
	require.NoError(c.t, os.WriteFile(local, []byte(content), 0o644))
}

// run runs a Job's container to completion.
func (c *cluster) run(w workload, timeout time.Duration) (string, error) {
	cmd := c.command(w)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		err := <-done // after Wait, the output is complete
		return out.String(), fmt.Errorf("%s did not finish within %s (%w)", w.Name, timeout, err)
	}
}

// start runs a Deployment's container (one replica).
func (c *cluster) start(w workload) {
	log, err := os.Create(filepath.Join(c.dir, w.Name+".log"))
	require.NoError(c.t, err)
	c.t.Cleanup(func() { _ = log.Close() })
	p, err := devstack.StartProcess(w.Name, c.command(w), log, "", syscall.SIGTERM)
	require.NoError(c.t, err)
	c.mu.Lock()
	c.procs[w.Name] = p
	c.mu.Unlock()
}

// awaitReady waits for w's readiness probe to pass, as the kubelet would
// before sending it traffic.
func (c *cluster) awaitReady(w workload, timeout time.Duration) {
	c.t.Helper()
	c.mu.Lock()
	p := c.procs[w.Name]
	c.mu.Unlock()
	probe := fmt.Sprintf("http://127.0.0.1:%d%s", c.ports[w.Name][w.ReadinessPort], w.ReadinessPath)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := p.WaitReady(ctx, timeout, devstack.HTTPReady(probe)); err != nil {
		logs, _ := os.ReadFile(filepath.Join(c.dir, w.Name+".log"))
		c.t.Fatalf("%s is not ready: %v\n--- its log ---\n%s", w.Name, err, tail(string(logs), 40))
	}
}

// submit posts a job to the gateway's async route and returns its id.
func (c *cluster) submit(gateway, token, payload string) string {
	c.t.Helper()
	status, body := call(c.t, http.MethodPost, gateway+"/v1/jobs/order-webhook", token, payload)
	require.Equal(c.t, http.StatusAccepted, status, body)
	var job struct {
		ID string `json:"id"`
	}
	require.NoError(c.t, json.Unmarshal([]byte(body), &job))
	return job.ID
}

// base is the local URL of w's named port.
func (c *cluster) base(w workload, port string) string {
	return fmt.Sprintf("http://127.0.0.1:%d", c.ports[w.Name][w.Ports[port]])
}

// token gets a client-credentials token from the token service.
func (c *cluster) token(tokens workload, id, secret, scope string) string {
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	req, err := http.NewRequest(http.MethodPost, c.base(tokens, "http")+"/oauth2/token", strings.NewReader(form.Encode()))
	require.NoError(c.t, err)
	req.SetBasicAuth(id, secret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	require.Equal(c.t, http.StatusOK, resp.StatusCode, string(body))
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	require.NoError(c.t, json.Unmarshal(body, &tok))
	return tok.AccessToken
}

func call(t *testing.T, method, u, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func runCommand(ctx context.Context, binary string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func ptr(s string) *string { return &s }

// verifiedDatabase is a new, empty database on a Postgres server that
// speaks TLS, and the CA its certificate verifies with for "localhost".
type verifiedDatabase struct {
	adminURL   string // the superuser, for provisioning and the schema
	hostPortDB string // localhost:<port>/<database>
	caPEM      string
}

func newVerifiedDatabase(t *testing.T) verifiedDatabase {
	t.Helper()
	ctx := context.Background()
	server, err := url.Parse(stacktest.ServerURL(t))
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, server.String())
	require.NoError(t, err)
	defer conn.Close(ctx)
	var ssl, certFile, dataDir string
	require.NoError(t, conn.QueryRow(ctx, `SELECT current_setting('ssl'), current_setting('ssl_cert_file'), current_setting('data_directory')`).
		Scan(&ssl, &certFile, &dataDir))
	require.Equal(t, "on", ssl, "the test's Postgres (%s) must speak TLS: the production overlay verifies the server's certificate", server.Host)
	if !filepath.IsAbs(certFile) {
		certFile = filepath.Join(dataDir, certFile)
	}
	ca, err := os.ReadFile(certFile)
	require.NoError(t, err, "reading the server's certificate, which stands in for the RDS CA")
	name := "switchyard_prod_" + stacktest.RandomSuffix(t, 4)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+name)
	require.NoError(t, err)
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), server.String())
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = c.Close(context.Background())
		}
	})
	admin := *server
	admin.Path = "/" + name
	return verifiedDatabase{adminURL: admin.String(), hostPortDB: "localhost:" + server.Port() + "/" + name, caPEM: string(ca)}
}

// target stands in for the fulfilment service: it records what it gets,
// rejects order o-reject (400: dead-lettered at once) and fails the first
// delivery of o-flaky (503: retried).
type target struct {
	*httptest.Server
	mu   sync.Mutex
	body []string
}

func newTarget(t *testing.T) *target {
	tg := &target{}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		tg.mu.Lock()
		seen := strings.Count(strings.Join(tg.body, "\n"), "o-flaky")
		tg.body = append(tg.body, string(b))
		tg.mu.Unlock()
		switch {
		case strings.Contains(string(b), "o-reject"):
			w.WriteHeader(http.StatusBadRequest)
		case strings.Contains(string(b), "o-flaky") && seen == 0:
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(tg.Close)
	return tg
}

func (tg *target) received() string {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return strings.Join(tg.body, "\n")
}
