package devstack

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// findingsByName indexes the doctor's findings.
func findingsByName(findings []Finding) map[string]Finding {
	m := map[string]Finding{}
	for _, f := range findings {
		m[f.Name] = f
	}
	return m
}

// pathWithOnlyGo returns a PATH directory holding the go command and
// nothing else: no moto_server, no initdb, no postgres, no vault.
func pathWithOnlyGo(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.Symlink(goBin, filepath.Join(dir, "go")))
	return dir
}

// clearStackEnv unsets every variable that points the doctor at a
// running server.
func clearStackEnv(t *testing.T) {
	t.Helper()
	for _, name := range []string{EnvDatabaseURL, EnvSQSEndpoint, EnvVaultAddr, EnvVaultToken, "SWITCHYARD_REDIS_URL"} {
		t.Setenv(name, "")
	}
	t.Setenv(EnvVaultBin, filepath.Join(t.TempDir(), "no-vault-here"))
}

func TestDoctorAdvisesWhatIsMissing(t *testing.T) {
	clearStackEnv(t)
	t.Setenv("PATH", pathWithOnlyGo(t))
	// A port nothing listens on stands for "no server on 127.0.0.1:5432".
	closed, err := FreePort()
	require.NoError(t, err)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = taken.Close() })
	free, err := FreePort()
	require.NoError(t, err)

	got := findingsByName(Diagnose(context.Background(), DoctorConfig{
		Dir:           t.TempDir(),
		LocalPostgres: "postgres://postgres@" + hostPort(closed) + "/postgres?sslmode=disable",
		Ports:         []string{taken.Addr().String(), hostPort(free)},
	}))

	assert.Equal(t, OK, got["Go"].Status, got["Go"].Detail)

	pg := got["Postgres"]
	assert.Equal(t, Missing, pg.Status)
	fixes := strings.Join(pg.Fix, "\n")
	assert.Contains(t, fixes, "sudo apt-get install -y postgresql")
	assert.Contains(t, fixes, "brew install postgresql@17")
	assert.Contains(t, fixes, "export DATABASE_URL=")
	if dir := postgresBinDir(); dir != "" {
		// Debian installs initdb off PATH: the doctor says where it is.
		assert.Contains(t, pg.Detail, dir)
		assert.Equal(t, "export PATH="+dir+":$PATH", pg.Fix[0])
	}

	sqs := got["SQS"]
	assert.Equal(t, Missing, sqs.Status)
	assert.Contains(t, sqs.Detail, "no moto_server on PATH")
	fixes = strings.Join(sqs.Fix, "\n")
	assert.Contains(t, fixes, "sudo apt-get install -y pipx && pipx install 'moto[server]'")
	assert.Contains(t, fixes, "brew install pipx && pipx install 'moto[server]'")
	assert.Contains(t, fixes, "export AWS_ENDPOINT_URL_SQS=")

	// Vault not built is a note: dev up runs without it and the test
	// task builds it.
	vault := got["Vault"]
	assert.Equal(t, Note, vault.Status)
	assert.Contains(t, strings.Join(vault.Fix, "\n"), "go tool task tools:vault")

	assert.Equal(t, Note, got["Redis"].Status)

	ports := got["ports"]
	assert.Equal(t, Missing, ports.Status)
	assert.Contains(t, ports.Detail, taken.Addr().String())
	assert.NotContains(t, ports.Detail, hostPort(free))
}

func TestDoctorFindsConfiguredServers(t *testing.T) {
	// The servers the test run has (CI: `switchyard dev exec` names
	// them), or the local ones devstack would use.
	s := testStack(t)
	dir := worldReadableDir(t)
	require.NoError(t, s.startPostgres(context.Background(), dir, false))
	require.NoError(t, s.startSQS(context.Background(), dir, false))
	t.Setenv(EnvDatabaseURL, s.DatabaseURL)
	t.Setenv(EnvSQSEndpoint, s.SQSEndpoint)
	t.Setenv(EnvVaultAddr, "")

	got := findingsByName(Diagnose(context.Background(), DoctorConfig{Dir: dir}))
	for _, name := range []string{"Go", "Postgres", "SQS"} {
		assert.Equal(t, OK, got[name].Status, "%s: %s", name, got[name].Detail)
		assert.Empty(t, got[name].Fix, name)
	}
	_, built := VaultBuilt()
	assert.Equal(t, built, got["Vault"].Status == OK, got["Vault"].Detail)

	// Configured but down is missing, with the variable named.
	t.Setenv("SWITCHYARD_REDIS_URL", "redis://"+hostPort(mustFreePort(t))+"/0")
	t.Setenv(EnvSQSEndpoint, "http://"+hostPort(mustFreePort(t)))
	got = findingsByName(Diagnose(context.Background(), DoctorConfig{Dir: dir}))
	assert.Equal(t, Missing, got["Redis"].Status)
	assert.Equal(t, Missing, got["SQS"].Status)
	assert.Contains(t, got["SQS"].Detail, EnvSQSEndpoint)
}

func mustFreePort(t *testing.T) int {
	t.Helper()
	p, err := FreePort()
	require.NoError(t, err)
	return p
}

func TestMinGoVersionIsGoMods(t *testing.T) {
	root, err := ModuleRoot(".")
	require.NoError(t, err)
	raw, err := os.ReadFile(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	var goLine string
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "go "); ok {
			goLine = strings.TrimSpace(v)
		}
	}
	assert.Equal(t, "go"+goLine, MinGoVersion)
}
