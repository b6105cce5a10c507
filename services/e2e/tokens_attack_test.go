package e2e_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// procStatusKiB reads a field of /proc/<pid>/status in KiB (VmRSS: resident
// now, VmHWM: the peak resident size since the process started).
func procStatusKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			require.NoError(t, err)
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// clientFrom is an HTTP client whose connections leave from the loopback
// address local (127.0.0.0/8 all reach 127.0.0.1 on Linux), so that a
// test can be a trusted proxy (127.0.0.1) or an untrusted peer.
func clientFrom(local string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64}}
}

type tokenReply struct {
	status     int
	errorCode  string
	retryAfter string
}

// tokenAs asks the token service for a token with client_secret_post;
// header holds extra name/value pairs (X-Forwarded-For).
func (p *platform) tokenAs(client *http.Client, id, secret string, header ...string) (tokenReply, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}
	req, err := http.NewRequest(http.MethodPost, p.tokens+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return tokenReply{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return tokenReply{}, err
	}
	defer resp.Body.Close()
	var out struct {
		Error string `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return tokenReply{status: resp.StatusCode, errorCode: out.Error, retryAfter: resp.Header.Get("Retry-After")}, nil
}

// tokenServiceSecretCheckFlood (security item 1): 200 parallel token
// requests with random client ids, from as many addresses as a botnet has
// (the per-address limit is off), each costing an argon2id check of
// 19 MiB. The token service's peak resident memory stays under the
// 256 MiB its Kubernetes limit gives it; what cannot be checked now is
// refused with 503 temporarily_unavailable and Retry-After, and a real
// client gets its token right after.
func tokenServiceSecretCheckFlood(t *testing.T) {
	p := startPlatformWith(t, platformOptions{
		services: []string{"tokens"},
		binaries: map[string]string{"tokens": plainBinary(t, "tokens")},
		// GOMEMLIMIT as the manifests and compose set it.
		serviceEnv: map[string][]string{"tokens": {"GOMEMLIMIT=200MiB", "SWITCHYARD_TOKENS_RATE_PER_IP=0"}},
	})
	pid := p.procs["tokens"].Pid()
	before := procStatusKiB(t, pid, "VmRSS")
	const n = 200
	start := make(chan struct{})
	replies := make([]tokenReply, n)
	errs := make([]error, n)
	client := clientFrom("127.0.0.1")
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			replies[i], errs[i] = p.tokenAs(client, "c-"+strings.ToLower(rand.Text()[:20]), rand.Text())
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	took := time.Since(began)
	peak := procStatusKiB(t, pid, "VmHWM")
	byStatus := map[int]int{}
	for i, r := range replies {
		require.NoError(t, errs[i])
		byStatus[r.status]++
		switch r.status {
		case http.StatusUnauthorized:
			assert.Equal(t, "invalid_client", r.errorCode)
		case http.StatusServiceUnavailable:
			assert.Equal(t, "temporarily_unavailable", r.errorCode)
			assert.NotEmpty(t, r.retryAfter, "a 503 says when to come back")
		default:
			t.Errorf("request %d: unexpected status %d (%s)", i, r.status, r.errorCode)
		}
	}
	t.Logf("%d parallel random-id token requests in %s: %v; resident %d KiB before, peak %d KiB (limit 262144 KiB)",
		n, took.Round(time.Millisecond), byStatus, before, peak)
	require.Less(t, peak, 256*1024, "peak resident memory under the Kubernetes limit")
	assert.Positive(t, byStatus[http.StatusUnauthorized], "the flood was checked as far as memory allows")

	secret := p.client("after-flood", "jobs:submit")
	r, err := p.tokenAs(client, "after-flood", secret)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status, "a real client gets its token right after the flood: %+v", r)

	// The same class with ids no client can have: 8,000-character random
	// ids, as long as the form allows. Each failure would be remembered
	// under its id (a bucket keyed by ~8 KB: 100,000 of them are 800 MB)
	// after a secret check; an id that cannot exist costs neither.
	const long = 200
	longReplies := make([]tokenReply, long)
	for i := range long {
		wg.Go(func() {
			longReplies[i], errs[i] = p.tokenAs(client, strings.Repeat(strings.ToLower(rand.Text()), 320)[:8000], "x")
		})
	}
	wg.Wait()
	longByStatus := map[int]int{}
	for i, r := range longReplies {
		require.NoError(t, errs[i])
		longByStatus[r.status]++
	}
	t.Logf("%d parallel token requests with 8,000-character random client ids: %v", long, longByStatus)
	require.Equal(t, map[int]int{http.StatusUnauthorized: long}, longByStatus,
		"an id no client can have is refused at once, never queued for a secret check")
	assert.Equal(t, float64(long), p.metric("tokens", "switchyard_tokens_refused_total", "reason=malformed_client_id"),
		"refused for its form, before any secret check or bucket")
}

// tokenServiceBehindProxy (security item 2): behind a trusted proxy,
// each client address has its own bucket; the proxy's address is not one
// bucket for everybody. A peer that is not a trusted proxy cannot choose
// its address with X-Forwarded-For.
func tokenServiceBehindProxy(t *testing.T) {
	p := startPlatformWith(t, platformOptions{
		services: []string{"tokens"},
		serviceEnv: map[string][]string{"tokens": {"SWITCHYARD_TOKENS_TRUSTED_PROXIES=127.0.0.1/32",
			// One request per 100 s refills a bucket: the test counts buckets,
			// and six requests that each take a second under load must not
			// earn a token back (at 0.2/s one did, in CI).
			"SWITCHYARD_TOKENS_RATE_PER_IP=0.01", "SWITCHYARD_TOKENS_BURST_PER_IP=3"}},
	})
	secret := p.client("behind-proxy", "jobs:submit")
	proxy := clientFrom("127.0.0.1")
	// 40 different callers behind the ingress, one request each: none is
	// limited by the others' requests (each is checked: 401).
	for i := range 40 {
		r, err := p.tokenAs(proxy, fmt.Sprintf("caller-%d", i), "wrong", "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i+1))
		require.NoError(t, err)
		require.Equal(t, http.StatusUnauthorized, r.status, "client address %d behind the proxy: %+v", i+1, r)
	}
	r, err := p.tokenAs(proxy, "behind-proxy", secret, "X-Forwarded-For", "198.51.100.200")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status, "a real client behind the proxy: %+v", r)
	// One address beyond its burst is limited, whatever it claims further left.
	limited := 0
	for i := range 6 {
		r, err := p.tokenAs(proxy, "behind-proxy", secret, "X-Forwarded-For", fmt.Sprintf("10.9.9.%d, 203.0.113.50", i))
		require.NoError(t, err)
		if r.status == http.StatusTooManyRequests {
			limited++
		}
	}
	require.Equal(t, 3, limited, "203.0.113.50 gets its burst of 3, then 429")
	// An untrusted peer's X-Forwarded-For is not believed: every request
	// counts against 127.0.0.2.
	direct := clientFrom("127.0.0.2")
	limited = 0
	for i := range 6 {
		r, err := p.tokenAs(direct, "behind-proxy", secret, "X-Forwarded-For", fmt.Sprintf("192.0.2.%d", i+1))
		require.NoError(t, err)
		if r.status == http.StatusTooManyRequests {
			limited++
		}
	}
	require.Equal(t, 3, limited, "spoofed X-Forwarded-For from an untrusted peer: one bucket")
}

// tokenServiceVictimLockout (security item 3): an attacker who knows a
// victim's client id sends wrong secrets for it as fast as it can, from
// one address and then from many. The victim, from its own address, still
// gets its token; the attacker's failures are limited per client and
// address, and once limited cost no secret check.
func tokenServiceVictimLockout(t *testing.T) {
	p := startPlatformWith(t, platformOptions{
		services:   []string{"tokens"},
		serviceEnv: map[string][]string{"tokens": {"SWITCHYARD_TOKENS_TRUSTED_PROXIES=127.0.0.1/32"}},
	})
	secret := p.client("victim", "jobs:submit")
	proxy := clientFrom("127.0.0.1")
	attack := func(from string, n int) map[int]int {
		out := map[int]int{}
		for range n {
			r, err := p.tokenAs(proxy, "victim", "not-the-secret-"+rand.Text(), "X-Forwarded-For", from)
			require.NoError(t, err)
			out[r.status]++
		}
		return out
	}
	one := attack("198.51.100.66", 40)
	t.Logf("40 wrong secrets for the victim from one address: %v", one)
	require.Positive(t, one[http.StatusTooManyRequests], "the attacker's failures are limited")
	many := map[int]int{}
	for i := range 30 {
		for s, c := range attack(fmt.Sprintf("198.51.100.%d", 100+i), 2) {
			many[s] += c
		}
	}
	t.Logf("60 wrong secrets for the victim from 30 addresses: %v", many)
	for i := range 3 {
		r, err := p.tokenAs(proxy, "victim", secret, "X-Forwarded-For", "203.0.113.9")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, r.status, "the victim's request %d: %+v", i+1, r)
	}
	assert.Equal(t, float64(one[http.StatusUnauthorized]+many[http.StatusUnauthorized]), p.metric("tokens", "switchyard_tokens_refused_total", "reason=bad_credentials"),
		"limited attempts were refused before any secret check")
}

// tokenServicePepperEnforced (security item 12): once a pepper is
// configured, a secret hashed without it is refused (a copy of the
// database alone would otherwise still verify guesses for it), unless the
// migration flag is on; with the flag, a successful check re-hashes the
// secret with the pepper, after which the flag is not needed.
func tokenServicePepperEnforced(t *testing.T) {
	p := startPlatformWith(t, platformOptions{services: []string{"tokens"}})
	client := clientFrom("127.0.0.1")
	old := p.client("from-before-the-pepper", "jobs:submit")
	r, err := p.tokenAs(client, "from-before-the-pepper", old)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status)

	const pepper = "SWITCHYARD_CLIENT_SECRET_PEPPER=a-pepper-of-sixteen-bytes-or-more"
	p.restart("tokens", pepper)
	r, err = p.tokenAs(client, "from-before-the-pepper", old)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, r.status, "an un-peppered hash is refused once a pepper is set: %+v", r)

	p.restart("tokens", pepper, "SWITCHYARD_TOKENS_ACCEPT_UNPEPPERED=true")
	r, err = p.tokenAs(client, "from-before-the-pepper", old)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status, "accepted while migrating: %+v", r)
	var hash string
	require.NoError(t, p.pool.QueryRow(context.Background(), `SELECT secret_hash FROM oauth_clients WHERE client_id = 'from-before-the-pepper'`).Scan(&hash))
	require.True(t, strings.HasPrefix(hash, "pepper:"), "re-hashed with the pepper on success")

	p.restart("tokens", pepper)
	r, err = p.tokenAs(client, "from-before-the-pepper", old)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status, "migrated: accepted without the flag: %+v", r)
}

// holdConnections opens n connections to addr from local, each asking one
// cheap question (GET path) and then keeping the connection open, idle,
// as a keep-alive client may. It returns how many the server answered and
// still holds once all are open, and how many it had neither answered
// nor closed within 5 s (still waiting in its accept queue).
func holdConnections(t *testing.T, addr, local, path string, n int) (held, pending int) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\n\r\n"
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			break // the server or this machine refuses more: what is held counts
		}
		conns = append(conns, c)
		_, _ = c.Write([]byte(req))
	}
	// Read each answer (or the close); then see which answered connections
	// are still open: an open one times out on a short read.
	buf := make([]byte, 64<<10)
	answered := make([]net.Conn, 0, len(conns))
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, err := c.Read(buf)
		switch {
		case k > 0:
			answered = append(answered, c)
		case err != nil && os.IsTimeout(err):
			pending++
		}
	}
	for _, c := range answered {
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(buf); err != nil && os.IsTimeout(err) {
			held++
		}
	}
	return held, pending
}

// tokenServiceConnectionFlood (security item 1's class: memory an
// unauthenticated caller makes the token service keep): one address opens
// 10,000 keep-alive connections, each with one request for the JWKS, and
// keeps them idle. A connection held costs the service a goroutine and its
// buffers (~20 KiB) for as long as it stays idle, so without a bound
// 10,000 of them are ~200 MiB of a 256 MiB limit. The service holds at
// most its per-address share, its resident memory stays bounded, and a
// real client from another address still gets its token.
func tokenServiceConnectionFlood(t *testing.T) {
	p := startPlatformWith(t, platformOptions{
		services: []string{"tokens"},
		binaries: map[string]string{"tokens": plainBinary(t, "tokens")},
	})
	pid := p.procs["tokens"].Pid()
	before := procStatusKiB(t, pid, "VmRSS")
	const n = 10_000
	held, pending := holdConnections(t, strings.TrimPrefix(p.tokens, "http://"), "127.0.0.3", "/.well-known/jwks.json", n)
	peak := procStatusKiB(t, pid, "VmHWM")
	t.Logf("%d idle keep-alive connections from one address: %d answered and held by the token service, %d not yet accepted; resident %d KiB before, peak %d KiB",
		n, held, pending, before, peak)
	assert.LessOrEqual(t, held, 256, "one address holds at most its share of connections")
	assert.Less(t, peak-before, 64*1024, "connections held cost bounded memory")
	assert.GreaterOrEqual(t, p.metric("tokens", "switchyard_http_connections_refused_total"), float64(n-256-pending),
		"each connection beyond the address's share was closed on arrival, and counted")

	secret := p.client("while-flooded", "jobs:submit")
	r, err := p.tokenAs(clientFrom("127.0.0.4"), "while-flooded", secret)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status, "a real client gets its token while the flood holds its connections: %+v", r)
}
