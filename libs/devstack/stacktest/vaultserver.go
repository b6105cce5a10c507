package stacktest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/switchyard/switchyard/libs/devstack"
)

// VaultServer is a Vault server of the test's own, in server mode with
// file storage rather than a dev server: it keeps its data (secrets,
// tokens, leases) when it is stopped and started again, and comes back
// sealed until unsealed, as a production Vault without auto-unseal does.
// Start unseals it with the key it was initialised with.
type VaultServer struct {
	tb   testing.TB
	bin  string
	dir  string
	addr string
	// RootToken and UnsealKey come from its initialisation.
	RootToken, UnsealKey string
	proc                 *devstack.Process
}

// NewVaultServer starts, initialises (one key share) and unseals a
// VaultServer, with KV v2 at secret/, stopped when the test ends.
func NewVaultServer(tb testing.TB) *VaultServer {
	tb.Helper()
	bin, err := devstack.VaultBinary()
	if err != nil {
		tb.Fatalf("stacktest: %v", err)
	}
	port, err := devstack.FreePort()
	if err != nil {
		tb.Fatalf("stacktest: %v", err)
	}
	dir := tb.TempDir()
	v := &VaultServer{tb: tb, bin: bin, dir: dir, addr: "127.0.0.1:" + strconv.Itoa(port)}
	conf := fmt.Sprintf(`storage "file" { path = %q }
listener "tcp" {
  address     = %q
  tls_disable = true
}
disable_mlock = true
api_addr      = "http://%s"
`, filepath.Join(dir, "data"), v.addr, v.addr)
	if err := os.WriteFile(filepath.Join(dir, "vault.hcl"), []byte(conf), 0o600); err != nil {
		tb.Fatalf("stacktest: %v", err)
	}
	tb.Cleanup(func() {
		if v.proc != nil {
			_ = v.proc.Stop(10 * time.Second)
		}
	})
	v.run()
	c := v.client("")
	init, err := c.Sys().Init(&vault.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		tb.Fatalf("stacktest: initialising Vault: %v", err)
	}
	v.RootToken, v.UnsealKey = init.RootToken, init.Keys[0]
	v.unseal()
	if err := v.Root().Sys().Mount("secret", &vault.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
		tb.Fatalf("stacktest: enabling KV: %v", err)
	}
	return v
}

// URL is the server's address.
func (v *VaultServer) URL() string { return "http://" + v.addr }

// Root returns a client with the root token.
func (v *VaultServer) Root() *vault.Client { return v.client(v.RootToken) }

func (v *VaultServer) client(token string) *vault.Client {
	cfg := vault.DefaultConfig()
	cfg.Address = v.URL()
	c, err := vault.NewClient(cfg)
	if err != nil {
		v.tb.Fatalf("stacktest: Vault client: %v", err)
	}
	c.SetToken(token)
	return c
}

func (v *VaultServer) run() {
	cmd := exec.Command(v.bin, "server", "-config="+filepath.Join(v.dir, "vault.hcl"))
	cmd.Env = append(os.Environ(), "HOME="+v.dir, "VAULT_ADDR=", "VAULT_TOKEN=")
	log, err := os.OpenFile(filepath.Join(v.dir, "vault.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		v.tb.Fatalf("stacktest: %v", err)
	}
	v.tb.Cleanup(func() { _ = log.Close() })
	p, err := devstack.StartProcess("vault", cmd, log, "", syscall.SIGTERM)
	if err != nil {
		v.tb.Fatalf("stacktest: starting Vault: %v", err)
	}
	v.proc = p
	// Listening is enough: an uninitialised or sealed server answers 501
	// or 503 on its health endpoint.
	err = p.WaitReady(context.Background(), time.Minute, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.URL()+"/v1/sys/health", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		return resp.Body.Close()
	})
	if err != nil {
		v.tb.Fatalf("stacktest: Vault did not start: %v", err)
	}
}

func (v *VaultServer) unseal() {
	if _, err := v.client("").Sys().Unseal(v.UnsealKey); err != nil {
		v.tb.Fatalf("stacktest: unsealing Vault: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := v.client("").Sys().Health()
		if err == nil && !s.Sealed && s.Initialized {
			return
		}
		if time.Now().After(deadline) {
			v.tb.Fatalf("stacktest: Vault still sealed or standby: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the server (SIGTERM); its data stays.
func (v *VaultServer) Stop() {
	v.tb.Helper()
	if err := v.proc.Stop(10 * time.Second); err != nil {
		v.tb.Fatalf("stacktest: stopping Vault: %v", err)
	}
}

// Start starts the server again on the same address and unseals it.
func (v *VaultServer) Start() {
	v.tb.Helper()
	v.run()
	v.unseal()
}
