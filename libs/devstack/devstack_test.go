package devstack

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	vault "github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
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

func sqsClient(endpoint string) *sqs.Client {
	return sqs.New(sqs.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
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

	// It speaks TLS with a certificate for localhost that is its own CA,
	// as the production overlay's tests need.
	verified := strings.Replace(strings.Replace(url, "127.0.0.1", "localhost", 1), "sslmode=disable",
		"sslmode=verify-full&sslrootcert="+filepath.Join(dir, "data", "server.crt"), 1)
	conn, err = pgx.Connect(ctx, verified)
	require.NoError(t, err, "a verified TLS connection to %s", verified)
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
	client := sqsClient(s.SQSEndpoint)
	out, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("devstack-test")})
	require.NoError(t, err)
	require.Contains(t, aws.ToString(out.QueueUrl), "devstack-test")
	require.NoError(t, s.Stop())
	require.Error(t, pingSQS(ctx, s.SQSEndpoint))
}

// TestMotoKeepsEveryMessage sends, receives and deletes concurrently, the
// load under which stock moto loses and resurrects messages: every message
// arrives exactly once and the queue ends empty.
func TestMotoKeepsEveryMessage(t *testing.T) {
	t.Parallel()
	// A lost message would keep the receivers polling: a deadline turns
	// that into a failure that says so, not a 30-minute hang.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := testStack(t)
	require.NoError(t, s.startMoto(ctx, t.TempDir()))
	client := sqsClient(s.SQSEndpoint)
	q, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("hammer"),
		Attributes: map[string]string{"VisibilityTimeout": "300"}})
	require.NoError(t, err)
	const senders, perSender = 4, 100

	var wg sync.WaitGroup
	for sdr := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perSender; i += 10 {
				var entries []types.SendMessageBatchRequestEntry
				for j := i; j < i+10; j++ {
					entries = append(entries, types.SendMessageBatchRequestEntry{
						Id: aws.String(fmt.Sprint(j - i)), MessageBody: aws.String(fmt.Sprintf("%d-%d", sdr, j))})
				}
				_, err := client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: q.QueueUrl, Entries: entries})
				assert.NoError(t, err)
			}
		}()
	}
	var mu sync.Mutex
	seen := map[string]int{}
	total := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, c := range seen {
			n += c
		}
		return n
	}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for total() < senders*perSender {
				out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
				if ctx.Err() != nil {
					return // the deadline: the count below says what was missing
				}
				if !assert.NoError(t, err) {
					return
				}
				var del []types.DeleteMessageBatchRequestEntry
				for i, m := range out.Messages {
					mu.Lock()
					seen[aws.ToString(m.Body)]++
					mu.Unlock()
					del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
				}
				if len(del) > 0 {
					_, err := client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: q.QueueUrl, Entries: del})
					assert.NoError(t, err)
				}
			}
		}()
	}
	wg.Wait()
	require.Len(t, seen, senders*perSender, "every message delivered")
	for body, n := range seen {
		require.Equal(t, 1, n, "message %s delivered %d times", body, n)
	}
	out, err := client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
	require.NoError(t, err)
	require.Empty(t, out.Messages, "nothing deleted comes back")
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
