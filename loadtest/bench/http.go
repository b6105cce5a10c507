package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// newClient returns an HTTP client that keeps a connection per worker.
func newClient(concurrency int) *http.Client {
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConns: concurrency * 2, MaxIdleConnsPerHost: concurrency * 2, IdleConnTimeout: time.Minute},
	}
}

// shed is a call the server refused for now (503 with Retry-After): the
// caller waits as told, as a well-behaved client does, and carries on.
type shed struct{ retryAfter time.Duration }

func (s shed) Error() string { return fmt.Sprintf("shed: retry after %s", s.retryAfter) }

// saturate runs do from concurrency goroutines for d and returns the
// completed calls per second; a call that fails stops the measurement,
// one that was shed (see shed) waits and does not count.
func saturate(ctx context.Context, concurrency int, d time.Duration, do func(ctx context.Context, client *http.Client) error) (float64, error) {
	rate, _, err := saturateCounting(ctx, concurrency, d, do)
	return rate, err
}

// saturateCounting is saturate that also returns how many calls were
// shed.
func saturateCounting(ctx context.Context, concurrency int, d time.Duration, do func(ctx context.Context, client *http.Client) error) (float64, int64, error) {
	client := newClient(concurrency)
	defer client.CloseIdleConnections()
	// Warm the connections up first, outside the measurement.
	for range concurrency {
		if err := do(ctx, client); err != nil && !errors.As(err, new(shed)) {
			return 0, 0, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var n, refused atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				err := do(ctx, client)
				var s shed
				if errors.As(err, &s) {
					refused.Add(1)
					select {
					case <-ctx.Done():
					case <-time.After(s.retryAfter):
					}
					continue
				}
				if err != nil {
					if ctx.Err() == nil {
						once.Do(func() { firstErr = err; cancel() })
					}
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return 0, 0, firstErr
	}
	return float64(n.Load()) / time.Since(start).Seconds(), refused.Load(), nil
}

// call sends one request and insists on want.
func call(ctx context.Context, client *http.Client, method, u, token, body string, want int) error {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusServiceUnavailable && want != http.StatusServiceUnavailable {
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs >= 0 {
			return shed{retryAfter: time.Duration(secs) * time.Second}
		}
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s answered %d, not %d: %s", method, u, resp.StatusCode, want, bytes.TrimSpace(b))
	}
	return nil
}

// token gets an access token for the bench client.
func (p *platform) token(ctx context.Context) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.tokens+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.SetBasicAuth(benchClient, p.secret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.AccessToken == "" {
		return "", errors.Join(fmt.Errorf("token endpoint answered %s", resp.Status), err)
	}
	return out.AccessToken, nil
}
