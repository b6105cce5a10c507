package devstack

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	vault "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// These tests exercise the start paths themselves, whatever servers the
// environment names: CI points the other tests at servers it started, so
// without these the initdb, moto and Vault start-up code would go untested.

func testStack(t *testing.T) *Stack {
	t.Helper()
	s := &Stack{logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	t.Cleanup(func() { require.NoError(t, s.Stop()) })
	return s
}

// worldReadableDir returns a fresh directory the postgres user can reach
// (t.TempDir's parents are private to root).
func worldReadableDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "devstack-test-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755))
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func TestThrowawayPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testStack(t)
	dir := filepath.Join(worldReadableDir(t), "postgres")
	require.NoError(t, s.startThrowawayPostgres(ctx, dir))
	require.NotEqual(t, SharedPostgresURL, s.DatabaseURL)

	url, err := EnsureDatabase(ctx, s.DatabaseURL, "app")
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	var db string
	require.NoError(t, conn.QueryRow(ctx, "SELECT current_database()").Scan(&db))
	require.Equal(t, "app", db)
	require.NoError(t, conn.Close(ctx))

	// Stop ends the server: the URL no longer answers.
	require.NoError(t, s.Stop())
	require.Error(t, pingPostgres(ctx, s.DatabaseURL))
}

func TestMoto(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testStack(t)
	require.NoError(t, s.startMoto(ctx, t.TempDir()))
	client := sqs.New(sqs.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(s.SQSEndpoint),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	out, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("devstack-test")})
	require.NoError(t, err)
	require.Contains(t, aws.ToString(out.QueueUrl), "devstack-test")
	require.NoError(t, s.Stop())
	require.Error(t, pingSQS(ctx, s.SQSEndpoint))
}

func TestVaultDev(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testStack(t)
	require.NoError(t, s.startVaultDev(ctx, t.TempDir()))
	cfg := vault.DefaultConfig()
	cfg.Address = s.VaultAddr
	client, err := vault.NewClient(cfg)
	require.NoError(t, err)
	client.SetToken(s.VaultToken)
	_, err = client.KVv2("secret").Put(ctx, "devstack", map[string]any{"k": "v"})
	require.NoError(t, err)
	got, err := client.KVv2("secret").Get(ctx, "devstack")
	require.NoError(t, err)
	require.Equal(t, "v", got.Data["k"])
	require.NoError(t, s.Stop())
	require.Error(t, pingVault(ctx, s.VaultAddr))
}

func TestStartUsesEnvironment(t *testing.T) {
	t.Setenv(EnvDatabaseURL, "postgres://u@db.example:5432/x")
	t.Setenv(EnvSQSEndpoint, "http://sqs.example:4566")
	t.Setenv(EnvVaultAddr, "http://vault.example:8200")
	t.Setenv(EnvVaultToken, "tok")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{})
	require.NoError(t, err, "nothing is started, so no directory is needed")
	require.Equal(t, "postgres://u@db.example:5432/x", s.DatabaseURL)
	require.Equal(t, "http://sqs.example:4566", s.SQSEndpoint)
	require.Equal(t, "http://vault.example:8200", s.VaultAddr)
	require.Contains(t, s.Env(), "VAULT_TOKEN=tok")
	require.NoError(t, s.Stop())
}

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	got, err := WithDatabase("postgres://u:p@h:5/old?sslmode=disable", "new")
	require.NoError(t, err)
	require.Equal(t, "postgres://u:p@h:5/new?sslmode=disable", got)
	_, err = WithDatabase("mysql://h/x", "new")
	require.Error(t, err)
}
