package cli_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/sqsqueue"
	"github.com/switchyard/switchyard/services/switchyard/internal/cli"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

func run(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = cli.Execute(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsageErrorsExitTwo(t *testing.T) {
	code, _, stderr := run("migrate", "--no-such-flag")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "unknown flag")

	code, _, stderr = run("migrate", "--database-url", "")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "no database")
}

// TestInit runs the deployment's init step against real Postgres and SQS,
// twice: it is idempotent.
func TestInit(t *testing.T) {
	dbURL := stacktest.NewDatabase(t)
	stacktest.SQSEndpoint(t)
	prefix := stacktest.QueuePrefix(t)
	jobs := filepath.Join(t.TempDir(), "jobs.yaml")
	require.NoError(t, os.WriteFile(jobs, []byte("job_types:\n  alpha:\n    handler: x\n"), 0o644))
	t.Setenv("DATABASE_URL", dbURL)
	t.Setenv("SWITCHYARD_JOBS_FILE", jobs)
	t.Setenv("SWITCHYARD_QUEUE_PREFIX", prefix)
	for range 2 {
		code, stdout, stderr := run("init")
		require.Equal(t, 0, code, stderr)
		require.Contains(t, stdout, "2 queue(s) ready")
	}
	conn, err := pgx.Connect(context.Background(), dbURL)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var exists bool
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT to_regclass('jobs') IS NOT NULL").Scan(&exists))
	require.True(t, exists)

	cfg, err := sqsqueue.LoadAWSConfig(context.Background())
	require.NoError(t, err)
	out, err := sqs.NewFromConfig(cfg).ListQueues(context.Background(), &sqs.ListQueuesInput{QueueNamePrefix: aws.String(prefix)})
	require.NoError(t, err)
	require.Len(t, out.QueueUrls, 2)
	require.True(t, strings.HasSuffix(out.QueueUrls[0], "alpha") || strings.HasSuffix(out.QueueUrls[1], "alpha"))
}

func TestProbe(t *testing.T) {
	t.Parallel()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer ok.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	defer bad.Close()
	code, _, _ := run("probe", ok.URL)
	require.Equal(t, 0, code)
	code, _, stderr := run("probe", bad.URL)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "503")
}

// TestDevExecPassesExitCode runs a command under `dev exec`: it sees the
// stack in its environment, and its exit code is the CLI's.
func TestDevExecPassesExitCode(t *testing.T) {
	t.Parallel()
	code, _, stderr := run("dev", "exec", "--dir", t.TempDir(), "--", "sh", "-c",
		`test -n "$DATABASE_URL" && test -n "$AWS_ENDPOINT_URL_SQS" && test -n "$VAULT_ADDR" && exit 7`)
	require.Equal(t, 7, code, stderr)
}
