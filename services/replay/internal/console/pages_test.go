package console

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/replayapi"
)

func TestPrettyPayloadShowsWhatTheSenderWrote(t *testing.T) {
	for _, tc := range []struct {
		name, raw, encoding, want string
	}{
		{"indented", `{"a":1,"b":[true,null]}`, "json", "{\n  \"a\": 1,\n  \"b\": [\n    true,\n    null\n  ]\n}"},
		{"HTML escapes undone", `{"t":"\u003cscript\u003ex \u0026 y\u003c/script\u003e"}`, "json", "{\n  \"t\": \"<script>x & y</script>\"\n}"},
		{"an escaped backslash before u003c is kept", `{"t":"\\u003c"}`, "json", "{\n  \"t\": \"\\\\u003c\"\n}"},
		{"other escapes kept", `{"t":"\u00e9\n\"q\""}`, "json", "{\n  \"t\": \"\\u00e9\\n\\\"q\\\"\"\n}"},
		{"key order kept", `{"z":1,"a":2}`, "json", "{\n  \"z\": 1,\n  \"a\": 2\n}"},
		{"text", `"plain <b>text</b>"`, "text", "plain <b>text</b>"},
		{"base64", `"AAEC"`, "base64", "AAEC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := prettyPayload(json.RawMessage(tc.raw), tc.encoding)
			require.Equal(t, tc.want, got)
			if tc.encoding == "json" {
				require.True(t, json.Valid([]byte(got)), "the shown payload is still JSON an operator can edit and send")
			}
		})
	}
}

func TestSealedCredentialsOpenOnlyWithTheirSecret(t *testing.T) {
	_, key, csrf, err := keys([]byte("0123456789abcdef0123456789abcdef"))
	require.NoError(t, err)
	sealed, err := seal(key, credentials{Secret: "s3cret", Token: "tok"})
	require.NoError(t, err)
	require.NotContains(t, string(sealed), "s3cret")
	got, err := unseal(key, sealed)
	require.NoError(t, err)
	require.Equal(t, credentials{Secret: "s3cret", Token: "tok"}, got)

	_, other, otherCSRF, err := keys([]byte("0123456789abcdef0123456789abcdeX"))
	require.NoError(t, err)
	_, err = unseal(other, sealed)
	require.Error(t, err)
	require.NotEqual(t, csrf, otherCSRF)
	sealed[len(sealed)-1] ^= 1
	_, err = unseal(key, sealed)
	require.Error(t, err, "a tampered seal does not open")
}

func TestFromLocalInput(t *testing.T) {
	require.Equal(t, "2026-12-06T10:00:00Z", fromLocalInput("2026-12-06T10:00"))
	require.Equal(t, "2026-12-06T10:00:05Z", fromLocalInput("2026-12-06T10:00:05"))
	require.Equal(t, "2026-12-06T10:00:00+01:00", fromLocalInput("2026-12-06T10:00:00+01:00"))
	require.Equal(t, "junk", fromLocalInput("junk"))
}

func TestLinksKeepTheirQuery(t *testing.T) {
	pages, err := parsePages()
	require.NoError(t, err)
	var buf bytes.Buffer
	v := view{Title: "t", Page: "dead-letters", Operator: &operatorView{ClientID: "op", CanReplay: true},
		Data: deadLettersView{Query: url.Values{"type": {"a&b"}, "fingerprint": {"f<1>"}}, Filter: map[string]string{},
			Items: []replayapi.DeadLetter{{ID: "x"}}, NextCursor: "c=1"}}
	require.NoError(t, pages["dead-letters"].Execute(&buf, v))
	require.Contains(t, buf.String(), `href="/console/replays/new?fingerprint=f%3C1%3E&amp;type=a%26b"`)
	require.Contains(t, buf.String(), `href="/console/dead-letters?cursor=c%3D1&amp;fingerprint=f%3C1%3E&amp;type=a%26b"`)
}

func TestAxisTopIsRoundAndAboveTheData(t *testing.T) {
	for _, tc := range []struct{ v, want float64 }{{0, 4}, {1, 1}, {5, 8}, {9, 10}, {87.5, 100}, {120, 200}, {1234, 2000}, {0.3, 0.4}} {
		got := axisTop(tc.v)
		require.Equal(t, tc.want, got, "axisTop(%v)", tc.v)
		require.GreaterOrEqual(t, got, tc.v)
	}
}

func TestParseBreakers(t *testing.T) {
	text := `# HELP switchyard_breaker_state Circuit breaker state: 0 closed, 1 half-open, 2 open.
# TYPE switchyard_breaker_state gauge
switchyard_breaker_state{route="POST /v1/webhooks"} 2
switchyard_breaker_state{route="GET /v1/echo/{name}"} 0
switchyard_breaker_state{route="POST /v1/text-stats"} 1
# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 42
`
	got, err := parseBreakers(strings.NewReader(text))
	require.NoError(t, err)
	require.Equal(t, []breakerState{{"GET /v1/echo/{name}", "closed"}, {"POST /v1/text-stats", "half-open"}, {"POST /v1/webhooks", "open"}}, got)
	got, err = parseBreakers(strings.NewReader("go_goroutines 1\n"))
	require.NoError(t, err)
	require.Empty(t, got, "a gateway without sync routes has no breakers")
	_, err = parseBreakers(strings.NewReader("not { a metric"))
	require.Error(t, err)
}
