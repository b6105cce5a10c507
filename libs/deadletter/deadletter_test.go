package deadletter_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/deadletter"
)

func TestNormalise(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{`target answered 503`, `target answered <n>`},
		{`posting to http://10.0.0.7:8080/hooks/9?x=1: dial tcp 10.0.0.7:8080: connect: connection refused`,
			`posting to <url> dial tcp <addr>: connect: connection refused`},
		{`job 5b2f0a4e-1c3d-4e5f-8a9b-0c1d2e3f4a5b: row locked`, `job <uuid>: row locked`},
		{`dial tcp [::1]:5432: i/o timeout after 1.5s`, `dial tcp <addr>: i/o timeout after <n>`},
		{`invalid value "abc" for field 'name'`, `invalid value <str> for field <str>`},
		{`checksum deadbeef0badf00d mismatch`, `checksum <hex> mismatch`},
		{`bad cafe`, `bad cafe`},
		{`at 2026-11-23T10:00:01.5Z   too   late`, `at <time> too late`},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, deadletter.Normalise(tt.in), tt.in)
	}
}

func TestFingerprintIsStableAcrossVariableParts(t *testing.T) {
	t.Parallel()
	a := deadletter.Fingerprint("http", false, `target answered 503 after 1.2s`)
	require.Len(t, a, 16)
	require.Equal(t, a, deadletter.Fingerprint("http", false, `target answered 502 after 30ms`))
	require.NotEqual(t, a, deadletter.Fingerprint("text-stats", false, `target answered 503 after 1.2s`), "handler is part of it")
	require.NotEqual(t, a, deadletter.Fingerprint("http", true, `target answered 503 after 1.2s`), "class is part of it")
	require.NotEqual(t, a, deadletter.Fingerprint("http", false, `connection refused`))
}

func TestMetadataRoundTripAndTruncation(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	m := deadletter.Metadata{
		Reason: deadletter.ReasonAttemptsExhausted, Error: strings.Repeat("é", deadletter.MaxErrorBytes), Attempts: 3,
		Topic: "t", FirstFailureAt: &now, LastFailureAt: &now, DeadLetteredAt: now,
	}
	s, err := m.Encode()
	require.NoError(t, err)
	got, err := deadletter.Decode(s)
	require.NoError(t, err)
	require.LessOrEqual(t, len(got.Error), deadletter.MaxErrorBytes)
	require.True(t, strings.HasSuffix(got.Error, "…"))
	require.True(t, strings.HasPrefix(got.Error, "éé"))
	got.Error = m.Error
	require.Equal(t, m, got)

	_, err = deadletter.Decode("{not json")
	require.Error(t, err)
}

func TestTraceID(t *testing.T) {
	t.Parallel()
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", deadletter.TraceID("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
	require.Empty(t, deadletter.TraceID("garbage"))
	require.Empty(t, deadletter.TraceID(""))
}
