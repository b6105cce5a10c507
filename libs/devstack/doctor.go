package devstack

import (
	"context"
	"fmt"
	"go/version"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// MinGoVersion is the oldest Go toolchain that builds Switchyard: the go
// directive of go.mod (a test keeps the two equal).
const MinGoVersion = "go1.26.8"

// Status is what the doctor concluded about one prerequisite.
type Status int

// Statuses, from fine to blocking.
const (
	// OK: present and working.
	OK Status = iota
	// Note: absent or degraded, but nothing fails for it (an optional
	// component, or one the tasks provide themselves, such as Vault).
	Note
	// Missing: `go tool task dev` or `go tool task test` cannot work
	// until it is installed or configured.
	Missing
)

// String is the status as the doctor prints it.
func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Note:
		return "note"
	default:
		return "MISSING"
	}
}

// Finding is the doctor's verdict on one prerequisite, with the commands
// that provide it when it is not OK.
type Finding struct {
	Name   string
	Status Status
	Detail string
	// Fix lists one line per way to provide it: the Debian/Ubuntu and
	// macOS (Homebrew) install commands, and the variable that points at
	// an existing one.
	Fix []string
}

// DoctorConfig says what Diagnose checks.
type DoctorConfig struct {
	// Dir is the local stack's directory (.dev), where a Vault build
	// started in the background keeps its pid and log.
	Dir string
	// Ports are listen addresses that must be free (dev up's listeners);
	// none for the tests, which take free ports.
	Ports []string
	// LocalPostgres is the URL of the Postgres server devstack uses when
	// DATABASE_URL is unset and one answers (default SharedPostgresURL).
	LocalPostgres string
}

// Diagnose checks every prerequisite of the local stack and the
// dependencies the environment points at: the Go toolchain, Postgres
// (DATABASE_URL, a server on 127.0.0.1:5432, or initdb and postgres to
// start one), SQS (AWS_ENDPOINT_URL_SQS or moto_server), Vault
// (VAULT_ADDR, built, or building), Redis when SWITCHYARD_REDIS_URL is
// set, and the ports in cfg.
func Diagnose(ctx context.Context, cfg DoctorConfig) []Finding {
	if cfg.LocalPostgres == "" {
		cfg.LocalPostgres = SharedPostgresURL
	}
	findings := []Finding{diagnoseGo(ctx), diagnosePostgres(ctx, cfg.LocalPostgres), diagnoseSQS(ctx), diagnoseVault(ctx, cfg.Dir), diagnoseRedis(ctx)}
	if len(cfg.Ports) > 0 {
		findings = append(findings, diagnosePorts(cfg.Ports))
	}
	return findings
}

func diagnoseGo(ctx context.Context) Finding {
	f := Finding{Name: "Go"}
	fix := []string{
		"Debian/Ubuntu:    download " + MinGoVersion + " or newer from https://go.dev/dl/ and put /usr/local/go/bin on PATH (Debian's golang package is older)",
		"macOS (Homebrew): brew install go",
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		f.Status, f.Detail, f.Fix = Missing, "no go command on PATH", fix
		return f
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "env", "GOVERSION").Output()
	have := strings.TrimSpace(string(out))
	if err != nil || !version.IsValid(have) {
		f.Status, f.Detail, f.Fix = Missing, fmt.Sprintf("%s does not report its version (%v)", goBin, err), fix
		return f
	}
	if version.Compare(have, MinGoVersion) < 0 {
		f.Status, f.Detail, f.Fix = Missing, fmt.Sprintf("%s is older than %s (go.mod)", have, MinGoVersion), fix
		return f
	}
	f.Detail = have
	return f
}

func diagnosePostgres(ctx context.Context, localURL string) Finding {
	f := Finding{Name: "Postgres"}
	if u := os.Getenv(EnvDatabaseURL); u != "" {
		return diagnoseNamed(ctx, f, EnvDatabaseURL, redactURL(u), pingPostgres, "to use a local one")
	}
	if pingPostgres(ctx, localURL) == nil {
		f.Detail = "a server answers at " + redactURL(localURL)
		return f
	}
	initdb, errInit := exec.LookPath("initdb")
	_, errServer := exec.LookPath("postgres")
	if errInit == nil && errServer == nil {
		f.Detail = "no server answers; initdb and postgres are on PATH (" + filepath.Dir(initdb) + "): a throwaway server is started under .dev/"
		return f
	}
	f.Status = Missing
	f.Detail = "no " + EnvDatabaseURL + ", no server at " + redactURL(localURL) + ", and no initdb and postgres on PATH"
	if dir := postgresBinDir(); dir != "" {
		f.Detail = "no " + EnvDatabaseURL + " and no server at " + redactURL(localURL) + "; initdb and postgres are installed in " + dir + " but not on PATH"
		f.Fix = []string{"export PATH=" + dir + ":$PATH"}
	}
	f.Fix = append(f.Fix,
		"Debian/Ubuntu:    sudo apt-get install -y postgresql && export PATH=$(ls -d /usr/lib/postgresql/*/bin | tail -1):$PATH",
		`macOS (Homebrew): brew install postgresql@17 && export PATH="$(brew --prefix postgresql@17)/bin:$PATH"`,
		"or one running:   export "+EnvDatabaseURL+"=postgres://USER:PASSWORD@HOST:5432/postgres (a user that may create databases)")
	return f
}

// diagnoseNamed checks the server the variable env names (shown as
// shown): it must answer ping; otherwise unsetting env would do what
// instead says.
func diagnoseNamed(ctx context.Context, f Finding, env, shown string, ping func(context.Context, string) error, instead string) Finding {
	if err := ping(ctx, os.Getenv(env)); err != nil {
		f.Status, f.Detail = Missing, fmt.Sprintf("%s=%s does not answer: %v", env, shown, err)
		f.Fix = []string{"start that server, or unset " + env + " " + instead}
		return f
	}
	f.Detail = env + "=" + shown + " answers"
	return f
}

// postgresBinDir returns where Debian's postgresql packages install
// initdb (off PATH), the newest version first; "" when none is there.
func postgresBinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i]
		}
	}
	return ""
}

func diagnoseSQS(ctx context.Context) Finding {
	f := Finding{Name: "SQS"}
	if endpoint := os.Getenv(EnvSQSEndpoint); endpoint != "" {
		return diagnoseNamed(ctx, f, EnvSQSEndpoint, endpoint, pingSQS, "to run moto_server")
	}
	fix := []string{
		"Debian/Ubuntu:    sudo apt-get install -y pipx && pipx install 'moto[server]' && pipx ensurepath",
		"macOS (Homebrew): brew install pipx && pipx install 'moto[server]' && pipx ensurepath",
		"or one running:   export " + EnvSQSEndpoint + "=http://localhost:4566 (LocalStack)",
	}
	motoBin, err := exec.LookPath("moto_server")
	if err != nil {
		f.Status, f.Detail, f.Fix = Missing, "no "+EnvSQSEndpoint+" and no moto_server on PATH", fix
		return f
	}
	if _, err := motoPython(ctx); err != nil {
		f.Status, f.Detail, f.Fix = Missing, "moto_server is at "+motoBin+" but no Python that imports moto was found", fix
		return f
	}
	f.Detail = "moto_server at " + motoBin
	return f
}

func diagnoseVault(ctx context.Context, dir string) Finding {
	f := Finding{Name: "Vault"}
	if addr := os.Getenv(EnvVaultAddr); addr != "" {
		return diagnoseNamed(ctx, f, EnvVaultAddr, addr, pingVault, "to use the dev server built here")
	}
	if bin, ok := VaultBuilt(); ok {
		f.Detail = "dev server built: " + bin
		return f
	}
	f.Status = Note
	if pid, log, ok := VaultBuilding(dir); ok {
		f.Detail = fmt.Sprintf("being built in the background (pid %d, log %s): task dev runs on a secrets file until it is", pid, log)
		return f
	}
	f.Detail = "not built yet (~17 min from source on 2 cores, once): task dev runs on a secrets file and builds it in the background; task test builds it first"
	f.Fix = []string{"build it now:     go tool task tools:vault", "or one running:   export " + EnvVaultAddr + "=http://127.0.0.1:8200 " + EnvVaultToken + "=<a token that may provision>"}
	return f
}

func diagnoseRedis(ctx context.Context) Finding {
	f := Finding{Name: "Redis"}
	raw := os.Getenv("SWITCHYARD_REDIS_URL")
	if raw == "" {
		f.Status, f.Detail = Note, "not configured (optional: SWITCHYARD_REDIS_URL shares rate limits between gateways)"
		return f
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		if strings.HasPrefix(raw, "vault:") {
			f.Status, f.Detail = Note, "SWITCHYARD_REDIS_URL is a Vault reference: not checked"
			return f
		}
		f.Status, f.Detail, f.Fix = Missing, "SWITCHYARD_REDIS_URL is not a redis://host:port URL", []string{"export SWITCHYARD_REDIS_URL=redis://127.0.0.1:6379/0"}
		return f
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "6379")
	}
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		f.Status, f.Detail = Missing, fmt.Sprintf("SWITCHYARD_REDIS_URL is set but %s does not answer: %v", host, err)
		f.Fix = []string{"Debian/Ubuntu:    sudo apt-get install -y redis-server", "macOS (Homebrew): brew install redis && brew services start redis", "or unset SWITCHYARD_REDIS_URL"}
		return f
	}
	_ = conn.Close()
	f.Detail = host + " answers"
	return f
}

func diagnosePorts(addrs []string) Finding {
	f := Finding{Name: "ports"}
	var taken []string
	for _, addr := range addrs {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			taken = append(taken, addr)
			continue
		}
		_ = l.Close()
	}
	if len(taken) == 0 {
		f.Detail = strings.Join(addrs, ", ") + " free"
		return f
	}
	f.Status, f.Detail = Missing, strings.Join(taken, ", ")+" already in use (another `task dev`?)"
	for _, addr := range taken {
		_, port, _ := net.SplitHostPort(addr)
		f.Fix = append(f.Fix, fmt.Sprintf("see what listens on %s: ss -ltnp 'sport = :%s' (macOS: lsof -nP -iTCP:%s -sTCP:LISTEN), stop it, or pass another address to dev up (--gateway-addr, --tokens-addr, --replay-addr, --upstream-addr)", addr, port, port))
	}
	return f
}

// redactURL drops a URL's password, for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
