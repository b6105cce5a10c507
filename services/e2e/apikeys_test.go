package e2e_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
)

const apiKeyRoutes = `
routes:
  - {method: POST, path: "/v1/jobs/text-stats", mode: async, job_type: text-stats, scopes: [jobs:submit], auth: [bearer, api_key]}
  - {method: GET, path: "/v1/jobs/{id}", mode: job-status, scopes: [jobs:read], auth: [bearer, api_key]}
  - {method: POST, path: "/v1/bearer-only", mode: async, job_type: text-stats, scopes: [jobs:submit]}
  - {method: POST, path: "/v1/keys-only", mode: async, job_type: text-stats, scopes: [jobs:submit], auth: [api_key]}
`

const apiKeyPepper = "e2e-api-key-pepper-0123456789"

// createdKey is what `switchyard api-keys create -o json` prints.
type createdKey struct {
	Key    string `json:"key"`
	APIKey struct {
		ID        string     `json:"id"`
		Scopes    []string   `json:"scopes"`
		ExpiresAt *time.Time `json:"expires_at"`
	} `json:"api_key"`
}

func (p *platform) apiKey(args ...string) createdKey {
	p.t.Helper()
	var k createdKey
	out := p.cli(append([]string{"api-keys", "create", "-o", "json"}, args...)...)
	require.NoError(p.t, json.Unmarshal([]byte(out), &k), out)
	return k
}

// apiKeys: keys made with the CLI work on the routes that accept them
// and nowhere else, reach a job's status, are refused by both gateways
// within a second of being revoked, and their usage plan is one bucket
// across both gateways (shared through Redis).
func apiKeys(t *testing.T) {
	redis := stacktest.NewRedisServer(t)
	p := startPlatformWith(t, platformOptions{
		services: []string{"tokens", "relay", "worker", "gateway", "gateway2"}, routes: apiKeyRoutes,
		env:        []string{"SWITCHYARD_API_KEY_PEPPER=" + apiKeyPepper, "SWITCHYARD_REDIS_URL=" + redis.URL()},
		serviceEnv: map[string][]string{"gateway": {"SWITCHYARD_LOG_LEVEL=info"}},
	})
	secret := p.client("keyed", "jobs:submit", "jobs:read")
	token, err := p.token("keyed", secret)
	require.NoError(t, err)
	key := p.apiKey("--client", "keyed", "--name", "e2e")
	require.Equal(t, []string{"jobs:read", "jobs:submit"}, key.APIKey.Scopes)
	require.True(t, strings.HasPrefix(key.Key, "sy_"+key.APIKey.ID+"_"))
	require.NotContains(t, p.cli("api-keys", "list", "--client", "keyed"), key.Key, "list never shows keys")

	// A job submitted and read with the key, both ways of sending it.
	var r reply
	require.Eventually(t, func() bool {
		r = p.call("POST", "/v1/jobs/text-stats", "", `{"text":"hello by key"}`, "X-API-Key", key.Key)
		return r.status == http.StatusAccepted
	}, 10*time.Second, 20*time.Millisecond, "the new key reaches the gateway: %v", r.body)
	id := r.body["id"].(string)
	require.Eventually(t, func() bool {
		return p.call("GET", "/v1/jobs/"+id, "ApiKey "+key.Key, "").body["status"] == "succeeded"
	}, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, http.StatusOK, p.call("GET", "/v1/jobs/"+id, "Bearer "+token, "").status,
		"the key's jobs are its client's")
	require.Equal(t, 1, p.count(`SELECT count(*) FROM jobs WHERE client_id = 'keyed' AND id = '`+id+`'`))

	// Route x credential matrix.
	other := p.apiKey("--client", "keyed", "--scopes", "jobs:read")
	bogus := "sy_" + strings.Repeat("a", 16) + "_" + strings.Repeat("b", 59)
	type cred struct{ name, auth, key string }
	creds := []cred{{"none", "", ""}, {"bearer", "Bearer " + token, ""}, {"key", "", key.Key},
		{"bogus key", "", bogus}, {"key without the scope", "", other.Key}}
	want := map[string][]int{
		"/v1/jobs/text-stats": {401, 202, 202, 401, 403},
		"/v1/bearer-only":     {401, 202, 401, 401, 401},
		"/v1/keys-only":       {401, 401, 202, 401, 403},
	}
	for path, statuses := range want {
		for i, c := range creds {
			var h []string
			if c.key != "" {
				h = []string{"X-API-Key", c.key}
			}
			r := p.call("POST", path, c.auth, `{"text":"matrix"}`, h...)
			require.Equal(t, statuses[i], r.status, "%s with %s: %v", path, c.name, r.body)
			if r.status == http.StatusUnauthorized {
				require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
			}
		}
	}
	both := p.call("POST", "/v1/jobs/text-stats", "Bearer "+token, `{"text":"x"}`, "X-API-Key", key.Key)
	require.Equal(t, http.StatusUnauthorized, both.status, "a key and a token at once is refused")

	// The access log names the key's id, never the key.
	log, err := os.ReadFile(filepath.Join(p.logDir, "gateway.log"))
	require.NoError(t, err)
	require.Contains(t, string(log), key.APIKey.ID)
	require.NotContains(t, string(log), key.Key)

	// Revocation reaches both gateways within a second.
	for _, base := range []string{p.gateway, p.gateway2} {
		require.Equal(t, http.StatusOK, status(t, base, id, key.Key))
	}
	p.cli("api-keys", "revoke", key.APIKey.ID)
	// The revocation is committed when the CLI returns (its own start-up,
	// seconds under a loaded -race CI, is not the propagation).
	start := time.Now()
	// Each gateway is polled on its own until it refuses the key (for up
	// to 10 s, so that a miss reports how late it was); each must have
	// refused within a second.
	took := make([]time.Duration, 2)
	var wg sync.WaitGroup
	for i, base := range []string{p.gateway, p.gateway2} {
		wg.Go(func() {
			for time.Since(start) < 10*time.Second {
				if statusOrZero(base, id, key.Key) == http.StatusUnauthorized {
					took[i] = time.Since(start)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	t.Logf("revocation refused by the gateways %s and %s after the CLI returned", took[0], took[1])
	for i, d := range took {
		require.LessOrEqual(t, d, time.Second, "gateway %d refused the revoked key %s after the CLI returned", i+1, d)
	}
	require.Contains(t, p.cli("api-keys", "list", "--client", "keyed"), "revoked")
	require.Equal(t, 1, p.count(`SELECT count(*) FROM admin_audit WHERE action = 'api_key.revoke' AND target = '`+key.APIKey.ID+`'`))

	// Rotation: the new key works at once, the old one until the overlap
	// ends or its own expiry, whichever comes first, and the CLI says which.
	expiring := p.apiKey("--client", "keyed", "--expires-in", "1h")
	out := p.cli("api-keys", "rotate", expiring.APIKey.ID, "--overlap", "24h")
	var rotated createdKey
	for line := range strings.SplitSeq(out, "\n") {
		if k, ok := strings.CutPrefix(line, "key: "); ok {
			rotated.Key = k
		}
	}
	require.NotEmpty(t, rotated.Key, out)
	require.NotNil(t, expiring.APIKey.ExpiresAt)
	require.Contains(t, out, "keeps working until "+expiring.APIKey.ExpiresAt.UTC().Format(time.RFC3339),
		"the old key's own expiry, an hour away, comes before the 24-h overlap")
	require.Eventually(t, func() bool {
		return status(t, p.gateway, id, rotated.Key) == http.StatusOK && status(t, p.gateway2, id, rotated.Key) == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, "the rotated key reaches both gateways")
	require.Equal(t, http.StatusOK, status(t, p.gateway, id, expiring.Key), "the old key works during the overlap")

	// A usage plan of 1 request/s, burst 3, is one bucket across both
	// gateways: the fourth request within the second is refused with 429
	// and RateLimit headers, whichever gateway gets it.
	planned := p.apiKey("--client", "keyed", "--rate", "1", "--burst", "3")
	require.Eventually(t, func() bool {
		return status(t, p.gateway, id, planned.Key) == http.StatusOK && status(t, p.gateway2, id, planned.Key) == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond)
	var limited *http.Response
	for i := range 8 {
		resp := get(t, []string{p.gateway, p.gateway2}[i%2], id, planned.Key)
		if resp.StatusCode == http.StatusTooManyRequests {
			limited = resp
			break
		}
	}
	require.NotNil(t, limited, "the plan's bucket ran out")
	require.Contains(t, limited.Header.Get("RateLimit"), `"api-key"`)
	require.Contains(t, limited.Header.Get("RateLimit-Policy"), `"api-key";q=3`)
	require.NotEmpty(t, limited.Header.Get("Retry-After"))
}

func get(t *testing.T, base, id, key string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/v1/jobs/"+id, nil)
	require.NoError(t, err)
	req.Header.Set("X-API-Key", key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp
}

func status(t *testing.T, base, id, key string) int { return get(t, base, id, key).StatusCode }

// statusOrZero is status for other goroutines than the test's: 0 when the
// request fails.
func statusOrZero(base, id, key string) int {
	req, err := http.NewRequest(http.MethodGet, base+"/v1/jobs/"+id, nil)
	if err != nil {
		return 0
	}
	req.Header.Set("X-API-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}
