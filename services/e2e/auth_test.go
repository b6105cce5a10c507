package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/signingkeys"
)

// cli runs the switchyard CLI binary against the platform's database.
func (p *platform) cli(args ...string) string {
	p.t.Helper()
	cmd := exec.Command(filepath.Join(p.bin, "switchyard"), args...)
	cmd.Env = p.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(p.t, err, "switchyard %s: %s", strings.Join(args, " "), stderr.String())
	return string(out)
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
}

// call sends a request to the gateway; header holds extra name/value
// pairs.
func (p *platform) call(method, path, authorization, body string, header ...string) reply {
	p.t.Helper()
	req, err := http.NewRequest(method, p.gateway+path, strings.NewReader(body))
	require.NoError(p.t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(p.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(p.t, err)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return reply{resp.StatusCode, resp.Header, out}
}

// clientsTokensAndOwnership is the round trip an operator and two
// API users make: clients created with the CLI, tokens from the token
// service, a job submitted and read, another client locked out of it, and
// a disabled client's unexpired token refused.
func clientsTokensAndOwnership(t *testing.T) {
	p := startPlatform(t, nil)
	var alice, bob struct {
		ClientID     string   `json:"client_id"`
		ClientSecret string   `json:"client_secret"`
		Scopes       []string `json:"scopes"`
	}
	require.NoError(t, json.Unmarshal([]byte(p.cli("clients", "create", "--id", "alice", "--name", "Alice's app",
		"--scope", "jobs:submit,jobs:read", "-o", "json")), &alice))
	require.NoError(t, json.Unmarshal([]byte(p.cli("clients", "create", "--scope", "jobs:read", "-o", "json")), &bob))
	require.Equal(t, []string{"jobs:read", "jobs:submit"}, alice.Scopes)
	require.NotEmpty(t, alice.ClientSecret)
	list := p.cli("clients", "list")
	require.Contains(t, list, "alice")
	require.Contains(t, list, bob.ClientID)
	require.NotContains(t, list, alice.ClientSecret, "list never shows secrets")

	// curl -u alice:secret -d grant_type=client_credentials .../oauth2/token
	aliceToken, err := p.token(alice.ClientID, alice.ClientSecret)
	require.NoError(t, err)
	// client_secret_post for bob.
	resp, err := http.PostForm(p.tokens+"/oauth2/token", url.Values{"grant_type": {"client_credentials"},
		"client_id": {bob.ClientID}, "client_secret": {bob.ClientSecret}})
	require.NoError(t, err)
	var bobTok struct {
		AccessToken string `json:"access_token"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&bobTok))
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	r := p.call("POST", "/v1/jobs/text-stats", "Bearer "+aliceToken, `{"text":"hello from alice"}`)
	require.Equal(t, http.StatusAccepted, r.status, r.body)
	id := r.body["id"].(string)
	require.NoError(t, p.awaitSucceededWith("Bearer "+aliceToken, id, time.Minute))
	var owner string
	var scopes []string
	require.NoError(t, p.pool.QueryRow(context.Background(), `SELECT client_id, client_scopes FROM jobs WHERE id = $1`, id).Scan(&owner, &scopes))
	require.Equal(t, "alice", owner)
	require.Equal(t, []string{"jobs:read", "jobs:submit"}, scopes, "the caller's scopes are recorded on the job")

	r = p.call("GET", "/v1/jobs/"+id, "Bearer "+bobTok.AccessToken, "")
	require.Equal(t, http.StatusNotFound, r.status, "another client's job does not exist for bob")
	r = p.call("POST", "/v1/jobs/text-stats", "Bearer "+bobTok.AccessToken, `{"text":"x"}`)
	require.Equal(t, http.StatusForbidden, r.status, "bob may not submit")

	// Disable alice: her unexpired token stops working without a restart.
	start := time.Now()
	p.cli("clients", "disable", "alice")
	require.Eventually(t, func() bool {
		return p.call("GET", "/v1/jobs/"+id, "Bearer "+aliceToken, "").status == http.StatusUnauthorized
	}, 15*time.Second, 5*time.Millisecond)
	t.Logf("a disabled client's token was refused %s after `clients disable` returned", time.Since(start))
	_, err = p.token(alice.ClientID, alice.ClientSecret)
	require.ErrorContains(t, err, "401", "and it gets no new tokens")
	p.cli("clients", "enable", "alice")
	require.Eventually(t, func() bool {
		return p.call("GET", "/v1/jobs/"+id, "Bearer "+aliceToken, "").status == http.StatusOK
	}, 15*time.Second, 5*time.Millisecond)
}

// awaitSucceededWith polls a job's status with the given Authorization.
func (p *platform) awaitSucceededWith(authorization, id string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		r := p.call("GET", "/v1/jobs/"+id, authorization, "")
		if r.body["status"] == "succeeded" {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("job %s did not succeed within %s", id, timeout)
}

// forge signs claims with key, applying header changes (nil deletes).
func forge(t *testing.T, key signingkeys.Key, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(key.Algorithm), claims)
	tok.Header["kid"], tok.Header["typ"] = key.ID, "at+jwt"
	for h, v := range header {
		if v == nil {
			delete(tok.Header, h)
		} else {
			tok.Header[h] = v
		}
	}
	s, err := tok.SignedString(key.Signer)
	require.NoError(t, err)
	return s
}

func (p *platform) signingKey() signingkeys.Key {
	p.t.Helper()
	ring, err := signingkeys.FileSource{Path: p.keysFile}.Load(context.Background())
	require.NoError(p.t, err)
	k, ok := ring.Active(time.Now())
	require.True(p.t, ok)
	return k
}

// attackSuite throws forged, broken and hostile credentials at the
// running gateway: every one is refused with 401 (431 for a header too big
// to read) and nothing is written.
func attackSuite(t *testing.T) {
	p := startPlatform(t, []string{"tokens", "gateway"})
	secret := p.client("victim", "jobs:submit", "jobs:read")
	valid, err := p.token("victim", secret)
	require.NoError(t, err)
	key := p.signingKey()
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		now := time.Now()
		c := jwt.MapClaims{"iss": p.tokens, "sub": "victim", "aud": "switchyard", "client_id": "victim",
			"scope": "jobs:submit jobs:read", "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "jti": uuid.NewString()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	// Sanity: a token forged with the real key and good claims is accepted,
	// so each refusal below is for the one thing the case changes.
	r := p.call("GET", "/v1/jobs/"+uuid.NewString(), "Bearer "+forge(t, key, claims(nil), nil), "")
	require.Equal(t, http.StatusNotFound, r.status, r.body)

	other, err := signingkeys.Generate(signingkeys.ES256, time.Now(), time.Now())
	require.NoError(t, err)
	sameKid := other
	sameKid.ID = key.ID
	pubDER, err := json.Marshal(key.Public())
	require.NoError(t, err)
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil))
	hs.Header["kid"], hs.Header["typ"] = key.ID, "at+jwt"
	hsToken, err := hs.SignedString(pubDER)
	require.NoError(t, err)
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)
	parts := strings.Split(valid, ".")
	var payload map[string]any
	raw, err := jwt.NewParser().DecodeSegment(parts[1])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &payload))
	payload["client_id"], payload["scope"] = "admin", "switchyard:admin jobs:submit"
	raw, _ = json.Marshal(payload)
	tamperedPayload := parts[0] + "." + base64.RawURLEncoding.EncodeToString(raw) + "." + parts[2]
	sig := []byte(parts[2])
	sig[len(sig)/2] = map[bool]byte{true: 'B', false: 'A'}[sig[len(sig)/2] == 'A']
	tamperedSig := parts[0] + "." + parts[1] + "." + string(sig)
	big := forge(t, key, claims(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("x", 9<<10) }), nil)

	cases := []struct {
		name          string
		authorization string
	}{
		{"no Authorization header", ""},
		{"alg none", "Bearer " + none},
		{"HS256 signed with the public key bytes", "Bearer " + hsToken},
		{"unknown kid", "Bearer " + forge(t, key, claims(nil), map[string]any{"kid": "unknown-kid"})},
		{"kid with path and SQL characters", "Bearer " + forge(t, key, claims(nil), map[string]any{"kid": "../../../dev/null'; DROP TABLE jobs;--"})},
		{"jku pointing elsewhere", "Bearer " + forge(t, other, claims(nil), map[string]any{"jku": "http://127.0.0.1:1/jwks.json"})},
		{"x5u pointing elsewhere", "Bearer " + forge(t, key, claims(nil), map[string]any{"x5u": "http://127.0.0.1:1/cert.pem"})},
		{"expired", "Bearer " + forge(t, key, claims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-2 * time.Minute).Unix() }), nil)},
		{"nbf in the future", "Bearer " + forge(t, key, claims(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(10 * time.Minute).Unix() }), nil)},
		{"missing exp", "Bearer " + forge(t, key, claims(func(c jwt.MapClaims) { delete(c, "exp") }), nil)},
		{"wrong iss", "Bearer " + forge(t, key, claims(func(c jwt.MapClaims) { c["iss"] = "https://login.example.com" }), nil)},
		{"wrong aud", "Bearer " + forge(t, key, claims(func(c jwt.MapClaims) { c["aud"] = "another-api" }), nil)},
		{"wrong typ", "Bearer " + forge(t, key, claims(nil), map[string]any{"typ": "JWT"})},
		{"tampered payload", "Bearer " + tamperedPayload},
		{"tampered signature", "Bearer " + tamperedSig},
		{"different key, same kid", "Bearer " + forge(t, sameKid, claims(nil), nil)},
		{"8 KiB+ token", "Bearer " + big},
		{"Bearer with no token", "Bearer "},
		{"Bearer alone", "Bearer"},
		{"Basic credentials", "Basic dmljdGltOnNlY3JldA=="},
		{"two tokens", "Bearer " + valid + " " + valid},
	}
	for _, tc := range cases {
		r := p.call("POST", "/v1/jobs/text-stats", tc.authorization, `{"text":"should never be accepted"}`)
		require.Equal(t, http.StatusUnauthorized, r.status, "%s: %v", tc.name, r.body)
		require.True(t, strings.HasPrefix(r.header.Get("WWW-Authenticate"), `Bearer realm="switchyard"`), tc.name)
		if tc.authorization != "" {
			require.Contains(t, r.header.Get("WWW-Authenticate"), `error="invalid_token"`, tc.name)
		}
		require.Equal(t, "application/problem+json", r.header.Get("Content-Type"), tc.name)
	}

	// A 1 MiB Authorization header is refused before it is read into a
	// request (431 from the HTTP server's header limit).
	req, err := http.NewRequest(http.MethodPost, p.gateway+"/v1/jobs/text-stats", strings.NewReader(`{"text":"x"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.Repeat("A", 1<<20))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Contains(t, []int{http.StatusRequestHeaderFieldsTooLarge, http.StatusUnauthorized}, resp.StatusCode)

	// A disabled client's unexpired token. The propagation is watched with
	// a read (a submission accepted before it arrives would write a job).
	disabledSecret := p.client("soon-disabled", "jobs:submit", "jobs:read")
	disabledToken, err := p.token("soon-disabled", disabledSecret)
	require.NoError(t, err)
	_, err = p.pool.Exec(context.Background(), `UPDATE oauth_clients SET disabled_at = now() WHERE client_id = 'soon-disabled'`)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return p.call("GET", "/v1/jobs/"+uuid.NewString(), "Bearer "+disabledToken, "").status == http.StatusUnauthorized
	}, 15*time.Second, 5*time.Millisecond)
	r = p.call("POST", "/v1/jobs/text-stats", "Bearer "+disabledToken, `{"text":"x"}`)
	require.Equal(t, http.StatusUnauthorized, r.status, "a disabled client's token cannot submit")
	require.Contains(t, r.header.Get("WWW-Authenticate"), `error="invalid_token"`)

	require.Zero(t, p.count(`SELECT count(*) FROM jobs`), "no refused request wrote a job")
	require.Zero(t, p.count(`SELECT count(*) FROM watermill_outbox`), "no refused request wrote a message")

	// The scheme is case-insensitive (RFC 7235): lowercase bearer works.
	r = p.call("GET", "/v1/jobs/"+uuid.NewString(), "bearer "+valid, "")
	require.Equal(t, http.StatusNotFound, r.status, r.body)
	r = p.call("POST", "/v1/jobs/text-stats", "bearer "+valid, `{"text":"accepted"}`)
	require.Equal(t, http.StatusAccepted, r.status, r.body)
}

// scopeMatrix: every configured route with no token, a token without
// its scopes, and a token with them; paths no route lists are never 2xx.
func scopeMatrix(t *testing.T) {
	p := startPlatform(t, []string{"tokens", "gateway"})
	secret := p.client("matrix", "jobs:submit", "jobs:read", "switchyard:admin", "unrelated:scope")
	tokenFor := func(scopes ...string) string {
		tok, err := p.token("matrix", secret, scopes...)
		require.NoError(t, err)
		return "Bearer " + tok
	}
	r := p.call("POST", "/v1/jobs/text-stats", tokenFor("jobs:submit"), `{"text":"owned by matrix"}`)
	require.Equal(t, http.StatusAccepted, r.status)
	jobID := r.body["id"].(string)

	wrong := tokenFor("unrelated:scope")
	routes := []struct {
		method, path, body string
		scopes             []string // nil: the route has no policy
		ok                 int
	}{
		{"POST", "/v1/jobs/text-stats", `{"text":"x"}`, []string{"jobs:submit"}, http.StatusAccepted},
		{"GET", "/v1/jobs/" + jobID, "", []string{"jobs:read"}, http.StatusOK},
		{"GET", "/admin/v1/jobs/" + jobID, "", []string{"switchyard:admin"}, http.StatusOK},
		{"POST", "/v1/jobs/closed", `{"text":"x"}`, nil, 0},
	}
	for _, rt := range routes {
		name := rt.method + " " + rt.path
		require.Equal(t, http.StatusUnauthorized, p.call(rt.method, rt.path, "", rt.body).status, name+": no token")
		w := p.call(rt.method, rt.path, wrong, rt.body)
		require.Equal(t, http.StatusForbidden, w.status, name+": wrong scope")
		if rt.scopes == nil {
			all := p.call(rt.method, rt.path, tokenFor(), rt.body)
			require.Equal(t, http.StatusForbidden, all.status, name+": a route without a policy is denied to everyone")
			continue
		}
		require.Contains(t, w.header.Get("WWW-Authenticate"), `error="insufficient_scope"`, name)
		require.Contains(t, w.header.Get("WWW-Authenticate"), `scope="`+strings.Join(rt.scopes, " ")+`"`, name)
		require.Equal(t, rt.ok, p.call(rt.method, rt.path, tokenFor(rt.scopes...), rt.body).status, name+": right scope")
	}
	full := tokenFor()
	for _, path := range []string{"/", "/v1/jobs", "/v2/jobs/" + jobID, "/admin/v1/dead-letters", "/v1/jobs/" + jobID + "/extra",
		"/v1/jobs/text-stats%2F..%2F" + jobID, "/admin%2Fv1/jobs/" + jobID, "/.well-known/jwks.json"} {
		for _, auth := range []string{"", full} {
			st := p.call("GET", path, auth, "").status
			require.True(t, st == http.StatusNotFound || st == http.StatusUnauthorized || st == http.StatusBadRequest,
				"GET %s (token: %t) answered %d", path, auth != "", st)
		}
	}

	// Paths are normalised before routing, so the route and its policy are
	// those of the canonical path, whatever the encoding: dot segments
	// (encoded or not) and doubled slashes never skip a guard.
	readOnly := tokenFor("jobs:read")
	for _, path := range []string{"/v1/%2e%2e/admin/v1/jobs/" + jobID, "/v1/jobs/../../admin/v1/jobs/" + jobID,
		"//admin//v1/jobs/" + jobID, "/admin/v1/./jobs/%2E/" + jobID, "/v1/%2E%2e/admin/v1/jobs/" + jobID} {
		require.Equal(t, http.StatusUnauthorized, p.call("GET", path, "", "").status, path+": no token")
		require.Equal(t, http.StatusForbidden, p.call("GET", path, readOnly, "").status, path+": the admin route's policy applies")
		require.Equal(t, http.StatusOK, p.call("GET", path, tokenFor("switchyard:admin"), "").status, path+": it is the admin route")
	}
	resolved := "/v1/jobs/text-stats/../" + jobID
	require.Equal(t, http.StatusForbidden, p.call("GET", resolved, wrong, "").status, "the job-status route's policy applies")
	require.Equal(t, http.StatusOK, p.call("GET", resolved, readOnly, "").status)
	require.Equal(t, http.StatusBadRequest, p.call("GET", "/v1/jobs/%00", readOnly, "").status, "control characters are refused")
	require.Equal(t, http.StatusBadRequest, p.call("GET", "/../admin/v1/jobs/"+jobID, full, "").status, "above the root")
}

// metric reads a series (the sum of those matching labels, "k=v") from a
// service's /metrics; the series must be exported.
func (p *platform) metric(svc, name string, labels ...string) float64 {
	p.t.Helper()
	v, ok := value(p.scrape(svc), name, labels...)
	require.True(p.t, ok, "%s exports %s%v", svc, name, labels)
	return v
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// unknownKidFlood: 1,000 requests with random unknown kids cost a
// handful of JWKS fetches at most (counted at the token service), while
// valid tokens keep being served.
func unknownKidFlood(t *testing.T) {
	p := startPlatform(t, []string{"tokens", "gateway"})
	secret := p.client("steady", "jobs:read")
	valid, err := p.token("steady", secret)
	require.NoError(t, err)
	key := p.signingKey()
	timeValid := func(n int) []time.Duration {
		out := make([]time.Duration, 0, n)
		for range n {
			start := time.Now()
			r := p.call("GET", "/v1/jobs/"+uuid.NewString(), "Bearer "+valid, "")
			out = append(out, time.Since(start))
			require.Equal(t, http.StatusNotFound, r.status)
		}
		return out
	}
	before := timeValid(200)
	fetches := p.metric("tokens", "switchyard_tokens_jwks_requests_total")

	// The flood's tokens are signed up front so that signing them does not
	// compete with the gateway for this machine's two cores.
	flood := make([]string, 1000)
	for i := range flood {
		now := time.Now()
		flood[i] = forge(t, key, jwt.MapClaims{"iss": p.tokens, "aud": "switchyard", "client_id": "steady",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix(), "n": i},
			map[string]any{"kid": rand.Text()})
	}
	// runFlood sends tokens from 8 concurrent clients while timing 200
	// valid requests, and returns how many were refused and the timings.
	runFlood := func(tokens []string) (int64, []time.Duration) {
		var refused atomic.Int64
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				client := http.Client{Timeout: 10 * time.Second}
				for _, tok := range tokens[w*len(tokens)/8 : (w+1)*len(tokens)/8] {
					req, _ := http.NewRequest(http.MethodGet, p.gateway+"/v1/jobs/"+uuid.NewString(), nil)
					req.Header.Set("Authorization", "Bearer "+tok)
					resp, err := client.Do(req)
					if err != nil {
						continue
					}
					_ = resp.Body.Close()
					if resp.StatusCode == http.StatusUnauthorized {
						refused.Add(1)
					}
				}
			}()
		}
		during := timeValid(200)
		wg.Wait()
		return refused.Load(), during
	}
	refused, during := runFlood(flood)
	require.EqualValues(t, 1000, refused, "every unknown kid is refused")
	delta := p.metric("tokens", "switchyard_tokens_jwks_requests_total") - fetches
	require.LessOrEqual(t, delta, 3.0, "JWKS fetches caused by 1,000 unknown kids")

	// Reference in the same run: a flood of the same size whose tokens are
	// refused for a reason that never touches the JWKS (wrong audience),
	// so any difference is the unknown-kid path's own cost.
	reference := make([]string, 1000)
	for i := range reference {
		now := time.Now()
		reference[i] = forge(t, key, jwt.MapClaims{"iss": p.tokens, "aud": "elsewhere", "client_id": "steady",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix(), "n": i}, nil)
	}
	refusedRef, duringRef := runFlood(reference)
	require.EqualValues(t, 1000, refusedRef)
	t.Logf("1,000 unknown kids caused %.0f JWKS fetch(es); valid-token median latency: %s alone, %s during the unknown-kid flood, "+
		"%s during an equal flood of wrong-audience tokens (ratio unknown-kid/reference %.2f)",
		delta, median(before), median(during), median(duringRef), float64(median(during))/float64(median(duringRef)))
}

// keyRotationWithoutRestart rotates the signing key with the CLI while
// both services run: the new key is published before it signs, tokens of
// the old key keep working, new tokens carry the new kid, and the gateway
// accepts them without a restart.
func keyRotationWithoutRestart(t *testing.T) {
	p := startPlatform(t, []string{"tokens", "gateway"}, "SWITCHYARD_AUTH_JWKS_REFRESH=1s")
	secret := p.client("rotator", "jobs:read")
	oldKey := p.signingKey()
	oldToken, err := p.token("rotator", secret)
	require.NoError(t, err)
	gatewayPid := p.procs["gateway"].Pid()

	p.cli("keys", "rotate", "--file", p.keysFile, "--lead", "5s", "--retain", "1h")
	ring, err := signingkeys.FileSource{Path: p.keysFile}.Load(context.Background())
	require.NoError(t, err)
	require.Len(t, ring.Keys, 2)
	newKey := ring.Keys[1]

	kidOf := func(tok string) string {
		parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
		require.NoError(t, err)
		return parsed.Header["kid"].(string)
	}
	// Published first: the JWKS shows the new key before its activation,
	// and a token issued meanwhile still carries the old kid.
	require.Eventually(t, func() bool {
		resp, err := http.Get(p.tokens + "/.well-known/jwks.json")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return bytes.Contains(raw, []byte(newKey.ID))
	}, 10*time.Second, 50*time.Millisecond)
	tok, err := p.token("rotator", secret)
	require.NoError(t, err)
	require.True(t, time.Now().Before(newKey.ActivatesAt),
		"the new key must be published well before it activates (the 5 s lead was used up: machine too slow to tell)")
	require.Equal(t, oldKey.ID, kidOf(tok), "the new key does not sign before its activation")
	// ...then signing.
	var newToken string
	require.Eventually(t, func() bool {
		tok, err := p.token("rotator", secret)
		if err != nil {
			return false
		}
		newToken = tok
		return kidOf(tok) == newKey.ID
	}, 15*time.Second, 100*time.Millisecond)

	for name, tok := range map[string]string{"old key": oldToken, "new key": newToken} {
		r := p.call("GET", "/v1/jobs/"+uuid.NewString(), "Bearer "+tok, "")
		require.Equal(t, http.StatusNotFound, r.status, "%s token: %v", name, r.body)
	}
	require.Equal(t, gatewayPid, p.procs["gateway"].Pid(), "no restart")
}
