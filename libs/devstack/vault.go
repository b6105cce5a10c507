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
	bin, err := VaultBinary()
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		if onPath, lookErr := exec.LookPath("vault"); lookErr == nil {
			bin = onPath
		} else {
			return fmt.Errorf("no Vault server configured (%s) and no Vault binary at %s: build it with `go tool task tools:vault`", EnvVaultAddr, bin)
		}
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
