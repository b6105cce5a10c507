package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"github.com/switchyard/switchyard/libs/clock"
	"github.com/switchyard/switchyard/loadtest/sqsload"
)

// insertRate inserts single rows, each its own transaction, from
// concurrency goroutines for d: the reference for the accept route, whose
// transaction writes two rows (the job and its outbox message).
func (p *platform) insertRate(ctx context.Context, concurrency int, d time.Duration) (float64, error) {
	if _, err := p.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS bench_rows (id uuid PRIMARY KEY, payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return 0, fmt.Errorf("creating bench_rows: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var n atomic.Int64
	var g errgroup.Group
	start := time.Now()
	for range concurrency {
		g.Go(func() error {
			for ctx.Err() == nil {
				if _, err := p.pool.Exec(ctx, `INSERT INTO bench_rows (id, payload) VALUES ($1, $2)`, uuid.New(), benchText); err != nil {
					return unlessOver(ctx, fmt.Errorf("inserting: %w", err))
				}
				n.Add(1)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}

// unlessOver is err, or nil when ctx has ended (the measurement is over,
// and the call it cut short does not count).
func unlessOver(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return err
	}
	return nil
}

var tpsLine = regexp.MustCompile(`tps = ([0-9.]+)`)

// pgbenchRate runs pgbench with the same single-row insert, when pgbench
// is installed; ok is false when it is not.
func (p *platform) pgbenchRate(ctx context.Context, concurrency int, d time.Duration) (tps float64, ok bool, err error) {
	bin := pgbench()
	if bin == "" {
		return 0, false, nil
	}
	script := filepath.Join(p.dir, "insert.sql")
	if err := os.WriteFile(script, []byte(`INSERT INTO bench_rows (id, payload) VALUES (gen_random_uuid(), '`+benchText+`');`+"\n"), 0o600); err != nil {
		return 0, false, err
	}
	// Each pgbench client is a server connection: stay well inside
	// max_connections (100 by default).
	out, err := exec.CommandContext(ctx, bin, "-n", "-c", strconv.Itoa(min(concurrency, 48)), "-j", "2", //nolint:gosec // pgbench with our own arguments
		"-T", strconv.Itoa(int(d.Seconds())), "-f", script, p.dbURL).CombinedOutput()
	if err != nil {
		return 0, true, fmt.Errorf("pgbench: %w: %s", err, out)
	}
	m := tpsLine.FindSubmatch(out)
	if m == nil {
		return 0, true, fmt.Errorf("pgbench printed no tps: %s", out)
	}
	tps, err = strconv.ParseFloat(string(m[1]), 64)
	return tps, true, err
}

// pgbench is the path of pgbench, or "" when it is not installed.
func pgbench() string {
	bin, err := exec.LookPath("pgbench")
	if err != nil {
		return ""
	}
	return bin
}

const benchText = `{"text":"the quick brown fox jumps over the lazy dog"}`

// rss samples a process's resident memory until stop is closed and
// returns the largest, in bytes.
func rss(pid int, stop <-chan struct{}) func() int64 {
	var peak atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if v := readRSS(pid); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 { <-done; return peak.Load() }
}

func readRSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// queue creates a fresh queue for a bare measurement.
func (p *platform) queue(ctx context.Context, name string) (string, error) {
	out, err := p.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		return "", fmt.Errorf("creating queue %s: %w", name, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// bareSend sends n relay-sized messages with SendMessageBatch(10) from
// concurrency goroutines and returns messages per second.
func (p *platform) bareSend(ctx context.Context, url string, n, concurrency int) (float64, error) {
	messages := make([]sqsload.Message, n)
	for i := range messages {
		messages[i] = sqsload.Message{Body: benchText, Attributes: map[string]string{
			"_watermill_message_uuid": uuid.NewString(), "job_id": uuid.NewString(),
			"job_type": "bench", "client_id": benchClient,
		}}
	}
	return sqsload.SendBatches(ctx, p.sqs, url, messages, concurrency)
}

// bareReceive empties url of its n messages with ReceiveMessage(10) and
// DeleteMessageBatch from concurrency goroutines, and returns messages
// per second from the first message received to the last deleted (as the
// worker's rate is taken from its first attempt to its last success).
func (p *platform) bareReceive(ctx context.Context, url string, n, concurrency int) (float64, error) {
	var got, first atomic.Int64
	var g errgroup.Group
	for range concurrency {
		g.Go(func() error {
			for got.Load() < int64(n) && ctx.Err() == nil {
				out, err := p.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
				if err != nil {
					return err
				}
				if len(out.Messages) == 0 {
					continue
				}
				first.CompareAndSwap(0, time.Now().UnixNano())
				entries := make([]types.DeleteMessageBatchRequestEntry, len(out.Messages))
				for i, m := range out.Messages {
					entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle}
				}
				if _, err := p.sqs.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: entries}); err != nil {
					return err
				}
				got.Add(int64(len(out.Messages)))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return float64(got.Load()) / time.Since(time.Unix(0, first.Load())).Seconds(), nil
}

// roundTrips sends, receives and deletes one message at a time, n times,
// and returns each round trip.
func (p *platform) roundTrips(ctx context.Context, url string, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if _, err := p.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String(benchText)}); err != nil {
			return nil, err
		}
		for {
			r, err := p.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 1, WaitTimeSeconds: 1})
			if err != nil {
				return nil, err
			}
			if len(r.Messages) == 0 {
				continue
			}
			if _, err := p.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: r.Messages[0].ReceiptHandle}); err != nil {
				return nil, err
			}
			break
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// count runs a counting query.
func (p *platform) count(ctx context.Context, query string, args ...any) (int, error) {
	var n int
	err := p.pool.QueryRow(ctx, query, args...).Scan(&n)
	return n, err
}

// waitZero polls a counting query until it answers 0, or fails after
// timeout.
func (p *platform) waitZero(ctx context.Context, query string, timeout time.Duration) error {
	left := 0
	err := waitFor(ctx, timeout, func() (bool, error) {
		var err error
		left, err = p.count(ctx, query)
		return left == 0, err
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%d still left (%s): %w", left, query, err)
	}
	return err
}

// errNotYet: waitFor's condition did not hold in time.
var errNotYet = errors.New("condition not met")

// waitFor polls cond every 20 ms until it holds, fails, or timeout
// passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w within %s", errNotYet, timeout)
		}
		if !clock.Sleep(ctx, 20*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// submitAll submits n jobs to the accept route at url from concurrency
// goroutines and returns their ids.
func submitAll(ctx context.Context, client *http.Client, url, token string, n, concurrency int) ([]string, error) {
	ids := make([]string, n)
	var next atomic.Int64
	var g errgroup.Group
	for range concurrency {
		g.Go(func() error {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				id, err := accept(ctx, client, url, token)
				if err != nil {
					return err
				}
				ids[i] = id
			}
			return nil
		})
	}
	return ids, g.Wait()
}

// accept submits one job and returns its id; any answer but 202 is an
// error.
func accept(ctx context.Context, client *http.Client, url, token string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(benchText))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		ID string `json:"id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != http.StatusAccepted || out.ID == "" {
		return "", fmt.Errorf("accept answered %s without a job id (decoding: %v)", resp.Status, err) //nolint:errorlint // the status is the error; the decoding error is context
	}
	return out.ID, nil
}

// percentile of ds (0 < q <= 1), nearest rank.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// paced calls do at rate per second for d (one goroutine per call).
func paced(ctx context.Context, rate float64, d time.Duration, do func(ctx context.Context) error) error {
	interval := time.Duration(float64(time.Second) / rate)
	t := time.NewTicker(interval)
	defer t.Stop()
	end := time.Now().Add(d)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		wg.Go(func() {
			if err := do(ctx); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}
