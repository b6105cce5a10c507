package devstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// VaultVersion is the Vault server version the local stack runs; it must
// match deployments/tools/vault/go.mod.
const VaultVersion = "1.19.0"

// EnvVaultBin names a Vault binary to use instead of the cached build.
const EnvVaultBin = "SWITCHYARD_VAULT_BIN"

// VaultBinary returns the path where `go tool task tools:vault` caches the
// Vault server build: outside the repository so that every clone on the
// machine reuses it.
func VaultBinary() (string, error) {
	if p := os.Getenv(EnvVaultBin); p != "" {
		return p, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("locating the user cache directory: %w", err)
	}
	return filepath.Join(cache, "switchyard", "bin", "vault-"+VaultVersion), nil
}

func (s *Stack) startVault(ctx context.Context, dir string) error {
	if addr := os.Getenv(EnvVaultAddr); addr != "" {
		s.VaultAddr = addr
		s.VaultToken = os.Getenv(EnvVaultToken)
		s.logger.Info("vault from environment", "env", EnvVaultAddr, "addr", addr)
		return nil
	}
	if err := needDir(dir, Vault); err != nil {
		return err
	}
	return s.startVaultDev(ctx, dir)
}

// startVaultDev runs a Vault dev server on a free port with a random root
// token.
func (s *Stack) startVaultDev(ctx context.Context, dir string) error {
	bin, ok := VaultBuilt()
	if !ok {
		return fmt.Errorf("no Vault server configured (%s) and no Vault binary at %s: build it with `go tool task tools:vault`", EnvVaultAddr, bin)
	}
	port, err := FreePort()
	if err != nil {
		return err
	}
	token, err := randomToken()
	if err != nil {
		return err
	}
	vaultDir := filepath.Join(dir, "vault")
	if err := os.MkdirAll(vaultDir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", vaultDir, err)
	}
	cmd := exec.Command(bin, "server", "-dev", "-dev-root-token-id="+token, "-dev-listen-address="+hostPort(port))
	// The dev server writes ~/.vault-token; keep it in the stack directory.
	cmd.Env = append(os.Environ(), "HOME="+vaultDir, "VAULT_ADDR=", "VAULT_TOKEN=")
	cmd.Dir = vaultDir
	p, err := s.startServer("vault", cmd, filepath.Join(vaultDir, "vault.log"), syscall.SIGTERM)
	if err != nil {
		return err
	}
	addr := "http://" + hostPort(port)
	if err := p.WaitReady(ctx, 60*time.Second, func(ctx context.Context) error { return pingVault(ctx, addr) }); err != nil {
		return err
	}
	s.VaultAddr, s.VaultToken = addr, token
	s.logger.Info("vault started", "addr", addr, "mode", "dev")
	return nil
}

func pingVault(ctx context.Context, addr string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, addr+"/v1/sys/health", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("vault health: %s", resp.Status)
	}
	return nil
}

func randomToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating a token: %w", err)
	}
	return "dev-" + hex.EncodeToString(b), nil
}

// VaultBuilt returns the Vault server binary the local stack would run
// (SWITCHYARD_VAULT_BIN, the cached build, or vault on PATH) and whether
// there is one.
func VaultBuilt() (string, bool) {
	bin, err := VaultBinary()
	if err == nil {
		if _, err := os.Stat(bin); err == nil {
			return bin, true
		}
	}
	if onPath, err := exec.LookPath("vault"); err == nil {
		return onPath, true
	}
	return bin, false
}

// Files a Vault build started in the background keeps in the stack's
// directory: its process id while it runs, and its output.
const (
	vaultBuildPidFile = "vault-build.pid"
	vaultBuildLogFile = "vault-build.log"
)

// VaultBuilding reports whether a Vault build that StartVaultBuild began
// under dir still runs, with its pid and log.
func VaultBuilding(dir string) (pid int, log string, ok bool) {
	raw, err := os.ReadFile(filepath.Join(dir, vaultBuildPidFile)) //nolint:gosec // the stack's own file
	if err != nil {
		return 0, "", false
	}
	pid, err = strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0, "", false
	}
	return pid, filepath.Join(dir, vaultBuildLogFile), true
}

// StartVaultBuild runs `go tool task tools:vault` in root in the
// background, at the lowest CPU priority, in a session of its own (so
// that Ctrl-C on the terminal that started it does not end it), with its
// output in dir's vault-build.log; it returns at once. A build already
// running under dir is left alone (started is false).
func StartVaultBuild(root, dir string) (log string, started bool, err error) {
	if _, log, ok := VaultBuilding(dir); ok {
		return log, false, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", false, fmt.Errorf("building Vault: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, fmt.Errorf("creating %s: %w", dir, err)
	}
	log = filepath.Join(dir, vaultBuildLogFile)
	out, err := os.Create(log) //nolint:gosec // the stack's own file
	if err != nil {
		return "", false, fmt.Errorf("creating %s: %w", log, err)
	}
	defer out.Close()
	args := []string{goBin, "tool", "task", "tools:vault"}
	if nice, err := exec.LookPath("nice"); err == nil {
		args = append([]string{nice, "-n", "19"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...) //nolint:gosec // fixed command
	cmd.Dir, cmd.Stdout, cmd.Stderr = root, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return "", false, fmt.Errorf("building Vault: %w", err)
	}
	pidFile := filepath.Join(dir, vaultBuildPidFile)
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return "", false, fmt.Errorf("writing %s: %w", pidFile, err)
	}
	// Reap it when it ends while this process still runs; once this
	// process has gone, init does.
	go func() { _ = cmd.Wait() }()
	return log, true, nil
}
