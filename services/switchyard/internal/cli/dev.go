package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/devstack"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/oauthclients"
	"github.com/switchyard/switchyard/libs/signingkeys"
	"github.com/switchyard/switchyard/libs/termsafe"
	"github.com/switchyard/switchyard/migrations"
	"github.com/switchyard/switchyard/services/switchyard/internal/vaultsetup"
)

func newDevCmd(logger *slog.Logger) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run Switchyard locally without Docker",
		Long: `Run Switchyard locally without Docker.

Postgres, SQS and Vault come from DATABASE_URL, AWS_ENDPOINT_URL_SQS and
VAULT_ADDR when set; otherwise throwaway servers are started under --dir
(Postgres: the server on 127.0.0.1:5432 when one answers, else initdb;
SQS: moto_server; Vault: a dev server built by 'go tool task tools:vault').`,
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", ".dev", "directory for throwaway servers, binaries and logs")
	cmd.AddCommand(newDevUpCmd(logger, &dir), newDevExecCmd(logger, &dir), newDevChaosCmd(logger, &dir), newDevSoakCmd(logger, &dir))
	return cmd
}

func newDevExecCmd(logger *slog.Logger, dir *string) *cobra.Command {
	var ownPostgres bool
	cmd := &cobra.Command{
		Use:   "exec -- COMMAND [ARGS...]",
		Short: "Run a command with the local stack's servers in its environment, then stop them",
		Example: `  switchyard dev exec -- go test -race ./...
  switchyard dev exec --own-postgres --dir .dev/test -- go test ./...
  switchyard dev exec -- env | grep -E 'DATABASE_URL|AWS_|VAULT_'`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			stack, err := devstack.Start(ctx, devstack.Config{Dir: *dir, Logger: logger, NewPostgres: ownPostgres})
			if err != nil {
				return err
			}
			defer func() {
				if err := stack.Stop(); err != nil {
					logger.Error("stopping local stack", "error", err)
				}
			}()
			child := exec.Command(args[0], args[1:]...)
			child.Env = append(os.Environ(), stack.Env()...)
			// The child's output is its own terminal output (colours included).
			child.Stdin, child.Stdout, child.Stderr = os.Stdin, termsafe.Raw(cmd.OutOrStdout()), termsafe.Raw(cmd.ErrOrStderr())
			if err := child.Start(); err != nil {
				return fmt.Errorf("starting %s: %w", args[0], err)
			}
			// The child shares the terminal's process group: a Ctrl-C
			// reaches it directly. A SIGTERM sent to us is passed on.
			done := make(chan error, 1)
			go func() { done <- child.Wait() }()
			select {
			case err = <-done:
			case <-ctx.Done():
				_ = child.Process.Signal(syscall.SIGTERM)
				err = <-done
			}
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ee.ExitCode() < 0 {
					return exitCode(1)
				}
				return exitCode(ee.ExitCode())
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&ownPostgres, "own-postgres", false,
		"start a Postgres of the stack's own under --dir (300 connections, fsync off) even when DATABASE_URL names one or one answers on 127.0.0.1:5432")
	return cmd
}

type devUpOptions struct {
	gatewayAddr  string
	tokensAddr   string
	replayAddr   string
	upstreamAddr string
	database     string
	// ownServers starts a Postgres and an SQS server of the stack's own
	// even when others are configured (dev chaos restarts and pauses
	// them); extraEnv is added to every service's environment.
	ownServers bool
	extraEnv   []string
	// vault is how dev up gets its secrets: vaultAuto, vaultRequire or
	// vaultOff.
	vault string
}

// How dev up gets its secrets (--vault).
const (
	// vaultAuto uses Vault when one is configured or built; otherwise
	// it runs on a secrets file and builds Vault in the background.
	vaultAuto = "auto"
	// vaultRequire builds Vault first when it is not built, and uses it.
	vaultRequire = "require"
	// vaultOff runs on the secrets file even when Vault is built.
	vaultOff = "off"
)

// devSecretsFile and devKeysFile, in dev up's directory, hold the
// services' secrets and the token service's signing keys when dev up
// runs without Vault.
const (
	devSecretsFile = "secrets.json"
	devKeysFile    = "signing-keys.json"
)

func newDevUpCmd(logger *slog.Logger, dir *string) *cobra.Command {
	var opts devUpOptions
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start the local stack and every service; Ctrl-C stops all of it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !slices.Contains([]string{vaultAuto, vaultRequire, vaultOff}, opts.vault) {
				return usageError{fmt.Errorf("--vault %q: use auto, require or off", opts.vault)}
			}
			return devUp(cmd.Context(), logger, *dir, opts, cmd.OutOrStdout())
		},
	}
	addDevUpFlags(cmd.Flags(), &opts)
	return cmd
}

// addDevUpFlags registers dev up's flags into opts; `doctor --for dev`
// takes them too, so that `go tool task dev -- <flags>` checks the
// addresses dev up will listen on.
func addDevUpFlags(fs *pflag.FlagSet, opts *devUpOptions) {
	fs.StringVar(&opts.gatewayAddr, "gateway-addr", "127.0.0.1:8080", "gateway public listener")
	fs.StringVar(&opts.tokensAddr, "tokens-addr", "127.0.0.1:8070", "token service public listener")
	fs.StringVar(&opts.replayAddr, "replay-addr", "127.0.0.1:8083", "replay service admin API listener")
	fs.StringVar(&opts.upstreamAddr, "upstream-addr", "127.0.0.1:8090", "demo upstream listener")
	fs.StringVar(&opts.database, "database", "switchyard_dev", "database to create and use when DATABASE_URL is not set")
	fs.StringVar(&opts.vault, "vault", vaultAuto, "secrets: auto (Vault when configured or built; otherwise a secrets file under --dir while Vault builds in the background), require (build Vault first if needed) or off (the secrets file)")
}

// listeners are the addresses dev up listens on.
func (o devUpOptions) listeners() []string {
	return []string{o.gatewayAddr, o.tokensAddr, o.replayAddr, o.upstreamAddr}
}

// service is one binary dev up runs.
type service struct {
	name  string
	env   []string
	ready string // URL that answers 200 when the service is ready
}

func devUp(ctx context.Context, logger *slog.Logger, dir string, opts devUpOptions, out io.Writer) error {
	dp, err := startDevPlatform(ctx, logger, dir, opts, out)
	if err != nil {
		return errors.Join(err, dp.stop())
	}
	defer func() { _ = dp.stop() }()

	// Where everything is, for the load tests (go tool task loadtest:*)
	// and scripts: the dev client's credentials, so readable by its owner
	// only, and removed when the stack stops.
	envFile := filepath.Join(dp.dir, DevEnvFile)
	envText := fmt.Sprintf("SWITCHYARD_GATEWAY_URL=http://%s\nSWITCHYARD_GATEWAY_OPS_URL=http://%s\nSWITCHYARD_TOKEN_URL=%s/oauth2/token\n"+
		"SWITCHYARD_ADMIN_URL=http://%s\nSWITCHYARD_UPSTREAM_URL=http://%s\nSWITCHYARD_CLIENT_ID=%s\nSWITCHYARD_CLIENT_SECRET=%s\n",
		opts.gatewayAddr, dp.opsAddr["gateway"], dp.issuer, opts.replayAddr, opts.upstreamAddr, devClientID, dp.devSecret)
	if err := os.WriteFile(envFile, []byte(envText), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", envFile, err)
	}
	defer func() { _ = os.Remove(envFile) }()

	fmt.Fprintf(out, `
Switchyard is up. Gateway: http://%[1]s  (ops: http://%[2]s/readyz, /metrics)
Token service: %[3]s. OAuth client "dev" (all scopes), secret: %[4]s

  TOKEN=$(curl -s -u dev:%[4]s -d grant_type=client_credentials %[3]s/oauth2/token | jq -r .access_token)
  curl -si http://%[1]s/v1/jobs/text-stats -H "Authorization: Bearer $TOKEN" \
       -H 'Content-Type: application/json' -d '{"text":"hello switchyard"}'
  curl -s http://%[1]s/v1/jobs/<id> -H "Authorization: Bearer $TOKEN"

Dead letters: the operator console, http://%[5]s/console/ (sign in as dev with the secret above),
or the admin API on http://%[5]s:
  export SWITCHYARD_ADMIN_URL=http://%[5]s SWITCHYARD_TOKEN_URL=%[3]s/oauth2/token
  export SWITCHYARD_ADMIN_CLIENT_ID=dev SWITCHYARD_ADMIN_CLIENT_SECRET=%[4]s
  %[6]s dlq stats

Clients, their API keys and completion callbacks (directly in Postgres):
  export DATABASE_URL='%[7]s' SWITCHYARD_API_KEY_PEPPER='%[8]s'
  %[6]s api-keys create --client dev --scopes jobs:submit,jobs:read
  %[6]s clients callbacks set-hosts dev 127.0.0.1:8090

Press Ctrl-C to stop every process started here.
`, opts.gatewayAddr, dp.opsAddr["gateway"], dp.issuer, dp.devSecret, opts.replayAddr, os.Args[0], dp.dbURL, dp.apiKeyPepper)

	select {
	case <-ctx.Done():
		logger.Info("stopping services")
		return nil
	case p := <-dp.exited:
		return fmt.Errorf("%s exited unexpectedly: %w", p.Name(), p.Err())
	}
}

// devPlatform is the local stack and the services dev up (or dev chaos)
// runs on it.
type devPlatform struct {
	logger    *slog.Logger
	dir       string
	root      string
	binDir    string
	stack     *devstack.Stack
	dbURL     string
	issuer    string
	devSecret string
	pepper    string
	// apiKeyPepper is the gateways' API key pepper (api-keys commands
	// need it).
	apiKeyPepper string
	opsAddr      map[string]string
	// services are the service specs in start order; running holds the
	// live process of each.
	services []service
	env      map[string][]string // each service's whole environment
	out      io.Writer
	running  map[string]*devstack.Process
	// exited receives each process that exits on its own (not stopped
	// or killed through the platform).
	exited chan *devstack.Process
	// expected marks processes stopped or killed on purpose.
	expected map[*devstack.Process]bool
	mu       sync.Mutex
	cleanups []func()
}

// startDevPlatform builds the services, starts (or finds) the stack,
// provisions Vault and starts every service, waiting for each to be
// ready. On error, what it started is in the returned platform, to stop.
func startDevPlatform(ctx context.Context, logger *slog.Logger, dir string, opts devUpOptions, out io.Writer) (*devPlatform, error) {
	dp := &devPlatform{logger: logger, out: out, opsAddr: map[string]string{}, env: map[string][]string{},
		running: map[string]*devstack.Process{}, expected: map[*devstack.Process]bool{}, exited: make(chan *devstack.Process, 64)}
	root, err := devstack.ModuleRoot(".")
	if err != nil {
		return dp, err
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	binDir := filepath.Join(dir, "bin")
	dp.dir, dp.root, dp.binDir = dir, root, binDir
	logger.Info("building services", "into", binDir)
	if err := devstack.Build(ctx, root, binDir, false, devstack.Binaries...); err != nil {
		return dp, err
	}

	useVault, err := chooseVault(ctx, logger, root, dir, opts.vault, out)
	if err != nil {
		return dp, err
	}
	components := []devstack.Component{devstack.Postgres, devstack.SQS}
	if useVault {
		components = append(components, devstack.Vault)
	}
	stack, err := devstack.Start(ctx, devstack.Config{Dir: dir, Logger: logger, Components: components, NewPostgres: opts.ownServers, NewSQS: opts.ownServers})
	if err != nil {
		return dp, err
	}
	dp.stack = stack

	dbURL := os.Getenv(devstack.EnvDatabaseURL)
	if dbURL == "" || opts.ownServers {
		if dbURL, err = devstack.EnsureDatabase(ctx, stack.DatabaseURL, opts.database); err != nil {
			return dp, err
		}
	}
	dp.dbURL = dbURL
	if _, err := migrations.Up(ctx, dbURL, logger); err != nil {
		return dp, err
	}
	if stack.Started("moto_server") {
		if err := resendToFreshStandIn(ctx, logger, dbURL); err != nil {
			return dp, err
		}
	}

	// Vault as production has it: each service logs in with its own
	// AppRole, gets short-lived database users, and tokens are signed by
	// the transit engine. Without Vault, the same secrets under the same
	// names in a file, and a signing key file.
	var (
		vaultRes   vaultsetup.Result
		serviceEnv func(svc string) []string
	)
	if useVault {
		vaultRes, err = provisionDevVault(ctx, stack, dbURL, filepath.Join(dir, "vault-credentials"))
		serviceEnv = func(svc string) []string {
			if _, ok := vaultRes.Roles[svc]; ok {
				return vaultRes.Env(svc, stack.VaultAddr)
			}
			return nil
		}
	} else {
		vaultRes, err = provisionDevSecretsFile(ctx, stack, dir, filepath.Join(dir, "vault-credentials"))
		serviceEnv = func(svc string) []string {
			if slices.Contains(vaultsetup.Services, svc) {
				return vaultRes.FileEnv(svc, filepath.Join(dir, devSecretsFile), filepath.Join(dir, devKeysFile))
			}
			return nil
		}
	}
	if err != nil {
		return dp, err
	}
	dp.pepper, dp.apiKeyPepper = vaultRes.Pepper, vaultRes.APIKeyPepper
	// The dev client's secret is hashed with the pepper the token service
	// reads from Vault.
	devSecret, err := ensureDevClient(ctx, dbURL, oauthclients.WithPepper([]byte(vaultRes.Pepper)))
	if err != nil {
		return dp, err
	}
	dp.devSecret = devSecret
	issuer := "http://" + opts.tokensAddr
	dp.issuer = issuer
	base := append(stack.Env(),
		"DATABASE_URL="+dbURL,
		"SWITCHYARD_TOKENS_ISSUER="+issuer,
		"SWITCHYARD_AUTH_ISSUER="+issuer,
		"SWITCHYARD_ROUTES_FILE="+filepath.Join(root, "deployments", "config", "routes.yaml"),
		"SWITCHYARD_JOBS_FILE="+filepath.Join(root, "deployments", "config", "jobs.yaml"),
		"SWITCHYARD_WEBHOOK_URL=http://"+opts.upstreamAddr+"/hooks",
		"SWITCHYARD_DEMO_UPSTREAM_URL=http://"+opts.upstreamAddr,
		"SWITCHYARD_LOG_FORMAT=text",
	)
	base = append(base, opts.extraEnv...)
	ports := make([]int, 5)
	for i := range ports {
		if ports[i], err = devstack.FreePort(); err != nil {
			return dp, err
		}
	}
	opsAddr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	services := []service{
		{name: "demoupstream", env: []string{"SWITCHYARD_UPSTREAM_ADDR=" + opts.upstreamAddr}, ready: "http://" + opts.upstreamAddr + "/healthz"},
		{name: "tokens", env: []string{"SWITCHYARD_TOKENS_ADDR=" + opts.tokensAddr, "SWITCHYARD_TOKENS_OPS_ADDR=" + opsAddr(3)},
			ready: "http://" + opsAddr(3) + "/readyz"},
		{name: "relay", env: append([]string{"SWITCHYARD_RELAY_OPS_ADDR=" + opsAddr(0)}, relayPacing(stack)...), ready: "http://" + opsAddr(0) + "/readyz"},
		{name: "worker", env: []string{"SWITCHYARD_WORKER_OPS_ADDR=" + opsAddr(1)}, ready: "http://" + opsAddr(1) + "/readyz"},
		{name: "replay", env: []string{"SWITCHYARD_REPLAY_ADDR=" + opts.replayAddr, "SWITCHYARD_REPLAY_OPS_ADDR=" + opsAddr(4),
			// The console shows the gateway's breakers.
			"SWITCHYARD_CONSOLE_GATEWAY_METRICS=http://" + opsAddr(2) + "/metrics"},
			ready: "http://" + opsAddr(4) + "/readyz"},
		{name: "gateway", env: []string{
			"SWITCHYARD_GATEWAY_ADDR=" + opts.gatewayAddr, "SWITCHYARD_GATEWAY_OPS_ADDR=" + opsAddr(2),
		}, ready: "http://" + opsAddr(2) + "/readyz"},
	}

	for i, name := range []string{"relay", "worker", "gateway", "tokens", "replay"} {
		dp.opsAddr[name] = opsAddr(i)
	}
	dp.services = services
	for _, svc := range services {
		env := append(append(os.Environ(), base...), svc.env...)
		env = append(env, serviceEnv(svc.name)...)
		dp.env[svc.name] = env
		if err := dp.start(ctx, svc.name); err != nil {
			return dp, err
		}
	}
	return dp, nil
}

// resendToFreshStandIn sends again the messages of jobs that were in SQS:
// the stand-in this stack started keeps its queues in memory and started
// empty, so the messages of a previous run's queued jobs are gone (a dev
// stack stopped with a backlog left 1,014 jobs queued for ever).
func resendToFreshStandIn(ctx context.Context, logger *slog.Logger, dbURL string) error {
	pool, err := database.Open(ctx, database.Config{URL: dbURL, ApplicationName: "switchyard-cli", MaxConns: 2})
	if err != nil {
		return err
	}
	defer pool.Close()
	n, err := jobstore.ResendInFlight(ctx, pool)
	if err != nil {
		return fmt.Errorf("sending again the messages the previous SQS stand-in held: %w", err)
	}
	if n > 0 {
		logger.Info("the SQS stand-in started empty: the messages of jobs it held before are sent again", "jobs", n)
	}
	return nil
}

// devStandInRate is the relay's pace on the local SQS stand-in: a little
// under what the worker receives from it (~70 messages/s), so that a
// backlog waits in the outbox, where it costs nothing, rather than in the
// stand-in, whose every call slows with its queue's depth until it
// answers nothing (a 13,000-message backlog did that). Real SQS and
// LocalStack need no pace.
const devStandInRate = "60"

// devStandInLoops is the relay's loop count at that pace (not the default
// 8): every loop's claim must get its share of the rate within the time a
// batch may wait before its send, or the relay refuses the settings, and
// at 60 messages a second more loops would only wait.
const devStandInLoops = "4"

// relayPacing is the relay's extra environment: the pace above when the
// stack runs the stand-in itself and SWITCHYARD_RELAY_MAX_RATE is unset
// (with its loop count, unless SWITCHYARD_RELAY_LOOPS is set).
func relayPacing(stack *devstack.Stack) []string {
	if !stack.Started("moto_server") || os.Getenv("SWITCHYARD_RELAY_MAX_RATE") != "" {
		return nil
	}
	env := []string{"SWITCHYARD_RELAY_MAX_RATE=" + devStandInRate}
	if os.Getenv("SWITCHYARD_RELAY_LOOPS") == "" {
		env = append(env, "SWITCHYARD_RELAY_LOOPS="+devStandInLoops)
	}
	return env
}

// start runs the service named name (again) and waits until it is ready.
func (dp *devPlatform) start(ctx context.Context, name string) error {
	var svc service
	for _, s := range dp.services {
		if s.name == name {
			svc = s
		}
	}
	cmd := exec.Command(filepath.Join(dp.binDir, svc.name)) //nolint:gosec // the binaries built above
	cmd.Dir = dp.root
	cmd.Env = dp.env[svc.name]
	p, err := devstack.StartProcess(svc.name, cmd, dp.out, fmt.Sprintf("%-13s| ", svc.name), syscall.SIGTERM)
	if err != nil {
		return err
	}
	dp.mu.Lock()
	dp.running[svc.name] = p
	dp.mu.Unlock()
	go func() {
		<-p.Done()
		dp.mu.Lock()
		expected := dp.expected[p]
		dp.mu.Unlock()
		if !expected {
			dp.exited <- p
		}
	}()
	return p.WaitReady(ctx, 60*time.Second, devstack.HTTPReady(svc.ready))
}

// kill ends the service named name with SIGKILL, as a crash would, and
// returns once it is gone.
func (dp *devPlatform) kill(name string) {
	dp.mu.Lock()
	p := dp.running[name]
	dp.expected[p] = true
	dp.mu.Unlock()
	p.Kill()
	<-p.Done()
}

// signal sends sig to the service named name (SIGSTOP and SIGCONT pause
// and resume it, for fault drills).
func (dp *devPlatform) signal(name string, sig syscall.Signal) error {
	dp.mu.Lock()
	p := dp.running[name]
	dp.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%s is not running", name)
	}
	if err := syscall.Kill(p.Pid(), sig); err != nil {
		return fmt.Errorf("signalling %s: %w", name, err)
	}
	return nil
}

// stop ends every service (newest first), then the stack.
func (dp *devPlatform) stop() error {
	var errs []error
	for i := len(dp.services) - 1; i >= 0; i-- {
		dp.mu.Lock()
		p := dp.running[dp.services[i].name]
		if p != nil {
			dp.expected[p] = true
		}
		dp.mu.Unlock()
		if p == nil {
			continue
		}
		if err := p.Stop(30 * time.Second); err != nil {
			dp.logger.Error("stopping service", "service", p.Name(), "error", err)
			errs = append(errs, err)
		}
	}
	for i := len(dp.cleanups) - 1; i >= 0; i-- {
		dp.cleanups[i]()
	}
	if dp.stack != nil {
		dp.logger.Info("stopping local stack")
		if err := dp.stack.Stop(); err != nil {
			dp.logger.Error("stopping local stack", "error", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// provisionDevVault sets the stack's Vault up as `switchyard vault
// provision` does, with the services' credentials under credsDir.
func provisionDevVault(ctx context.Context, stack *devstack.Stack, dbURL, credsDir string) (vaultsetup.Result, error) {
	cfg := vault.DefaultConfig()
	cfg.Address = stack.VaultAddr
	client, err := vault.NewClient(cfg)
	if err != nil {
		return vaultsetup.Result{}, fmt.Errorf("creating Vault client: %w", err)
	}
	client.SetToken(stack.VaultToken)
	plan := devSecretsPlan(stack, credsDir)
	plan.DatabaseURL, plan.CredentialsDir = dbURL, credsDir
	res, err := vaultsetup.Provision(ctx, client, plan)
	if err != nil {
		return res, fmt.Errorf("provisioning Vault at %s: %w", stack.VaultAddr, err)
	}
	return res, keepDevPepper(credsDir, res)
}

// provisionDevSecretsFile writes the secrets provisionDevVault would put
// in Vault to dir's secrets file, under the same names, and makes sure
// the token service has a signing key in dir's key file.
func provisionDevSecretsFile(ctx context.Context, stack *devstack.Stack, dir, credsDir string) (vaultsetup.Result, error) {
	res, err := vaultsetup.ProvisionFile(filepath.Join(dir, devSecretsFile), devSecretsPlan(stack, credsDir))
	if err != nil {
		return res, err
	}
	keysFile := filepath.Join(dir, devKeysFile)
	ring, err := signingkeys.FileSource{Path: keysFile}.Load(ctx)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("reading %s: %w", keysFile, err)
	}
	if _, ok := ring.Active(time.Now()); !ok {
		// A first key, active at once: nobody holds tokens of an older one.
		if ring, _, err = ring.Rotate(signingkeys.ES256, time.Now(), 0, 24*time.Hour); err != nil {
			return res, fmt.Errorf("generating a signing key: %w", err)
		}
		if err := signingkeys.WriteFile(keysFile, ring); err != nil {
			return res, err
		}
	}
	return res, keepDevPepper(credsDir, res)
}

// devSecretsPlan is what dev up stores, in Vault or the secrets file:
// the stack's SQS credentials, which become the services', and the
// client-secret pepper, kept beside the credentials (the dev server
// forgets everything when it stops), so that clients made in an earlier
// run (in the database that stays) keep working whichever store holds
// it now.
func devSecretsPlan(stack *devstack.Stack, credsDir string) vaultsetup.Plan {
	awsEnv := func(name string) string {
		for _, kv := range stack.Env() {
			if v, ok := strings.CutPrefix(kv, name+"="); ok {
				return v
			}
		}
		return os.Getenv(name)
	}
	pepper, _ := os.ReadFile(filepath.Join(credsDir, devPepperFile))             //nolint:gosec // dev up's own file
	apiKeyPepper, _ := os.ReadFile(filepath.Join(credsDir, devAPIKeyPepperFile)) //nolint:gosec // dev up's own file
	return vaultsetup.Plan{ClientSecretPepper: true, PepperValue: strings.TrimSpace(string(pepper)),
		APIKeyPepper: true, APIKeyPepperValue: strings.TrimSpace(string(apiKeyPepper)),
		SQSAccessKeyID: awsEnv("AWS_ACCESS_KEY_ID"), SQSSecretAccessKey: awsEnv("AWS_SECRET_ACCESS_KEY")}
}

// devPepperFile, under dev up's Vault credentials directory, keeps the
// client-secret pepper between runs.
const devPepperFile = "client-secret-pepper"

// devAPIKeyPepperFile keeps the API key pepper between runs likewise.
const devAPIKeyPepperFile = "api-key-pepper"

func keepDevPepper(credsDir string, res vaultsetup.Result) error {
	if err := os.MkdirAll(credsDir, 0o700); err != nil {
		return fmt.Errorf("keeping the pepper: %w", err)
	}
	for file, value := range map[string]string{devPepperFile: res.Pepper, devAPIKeyPepperFile: res.APIKeyPepper} {
		if err := os.WriteFile(filepath.Join(credsDir, file), []byte(value+"\n"), 0o600); err != nil {
			return fmt.Errorf("keeping the pepper: %w", err)
		}
	}
	return nil
}

// chooseVault decides, by mode (--vault), whether dev up runs on Vault:
// a configured Vault (VAULT_ADDR) or a built one is used unless the mode
// is off; with none, require builds it first (minutes on a cold
// machine), auto starts its build in the background and says so in one
// line.
func chooseVault(ctx context.Context, logger *slog.Logger, root, dir, mode string, out io.Writer) (bool, error) {
	if mode == vaultOff {
		return false, nil
	}
	if os.Getenv(devstack.EnvVaultAddr) != "" {
		return true, nil
	}
	if _, built := devstack.VaultBuilt(); built {
		return true, nil
	}
	if mode == vaultRequire {
		logger.Info("building Vault before starting (--vault=require; ~17 minutes on 2 cores the first time)")
		build := exec.CommandContext(ctx, "go", "tool", "task", "tools:vault")
		build.Dir, build.Stdout, build.Stderr = root, out, out
		if err := build.Run(); err != nil {
			return false, fmt.Errorf("building Vault: %w", err)
		}
		return true, nil
	}
	log, started, err := devstack.StartVaultBuild(root, dir)
	if err != nil {
		return false, err
	}
	verb := "is being built"
	if started {
		verb = "is now building"
	}
	fmt.Fprintf(out, "No Vault yet: running on file-backed secrets (%s, development only); Vault %s in the background (log: %s), and the next `go tool task dev` after it finishes uses it.\n",
		filepath.Join(dir, devSecretsFile), verb, log)
	return false, nil
}

// devClientID is the OAuth client dev up provides.
const devClientID = "dev"

// DevEnvFile is the file, in dev up's directory, that lists the running
// stack's URLs and the dev client's credentials as NAME=value lines while
// it runs.
const DevEnvFile = "stack.env"

// ensureDevClient gives the local stack a client with every scope the
// shipped routes use, with a fresh secret each run (printed by dev up).
func ensureDevClient(ctx context.Context, dbURL string, opts ...oauthclients.Option) (string, error) {
	pool, err := database.Open(ctx, database.Config{URL: dbURL, ApplicationName: "switchyard-cli", MaxConns: 2})
	if err != nil {
		return "", err
	}
	defer pool.Close()
	store, err := oauthclients.New(pool, opts...)
	if err != nil {
		return "", err
	}
	scopes := []string{"jobs:submit", "jobs:read", "webhooks:send", "demo:echo", "switchyard:admin"}
	_, secret, err := store.Create(ctx, oauthclients.NewClient{ID: devClientID, Name: "dev up", Scopes: scopes})
	if errors.Is(err, oauthclients.ErrExists) {
		// A stack from an earlier version: bring its scopes up to date.
		if _, err := store.SetScopes(ctx, devClientID, scopes); err != nil {
			return "", err
		}
		_, secret, err = store.RotateSecret(ctx, devClientID, 0)
	}
	return secret, err
}
