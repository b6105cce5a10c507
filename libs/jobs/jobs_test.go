package jobs_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/jobs"
)

func TestTransitions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		from, to jobs.Status
		ok       bool
	}{
		{jobs.StatusAccepted, jobs.StatusQueued, true},
		{jobs.StatusAccepted, jobs.StatusProcessing, true},
		{jobs.StatusQueued, jobs.StatusProcessing, true},
		{jobs.StatusProcessing, jobs.StatusSucceeded, true},
		{jobs.StatusProcessing, jobs.StatusFailed, true},
		{jobs.StatusFailed, jobs.StatusProcessing, true},
		{jobs.StatusFailed, jobs.StatusDeadLettered, true},
		{jobs.StatusDeadLettered, jobs.StatusReplayed, true},
		{jobs.StatusReplayed, jobs.StatusQueued, true},
		{jobs.StatusSucceeded, jobs.StatusProcessing, false},
		{jobs.StatusSucceeded, jobs.StatusQueued, false},
		{jobs.StatusQueued, jobs.StatusAccepted, false},
		{jobs.StatusProcessing, jobs.StatusQueued, false},
		{jobs.StatusProcessing, jobs.StatusDeadLettered, true},
		{jobs.StatusQueued, jobs.StatusDeadLettered, true},
		{jobs.StatusSucceeded, jobs.StatusDeadLettered, false},
		{jobs.StatusDeadLettered, jobs.StatusProcessing, false},
		{jobs.Status("bogus"), jobs.StatusQueued, false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.ok, tt.from.CanMoveTo(tt.to), "%s -> %s", tt.from, tt.to)
	}
}

func TestSources(t *testing.T) {
	t.Parallel()
	require.Equal(t, []jobs.Status{jobs.StatusAccepted, jobs.StatusReplayed}, jobs.Sources(jobs.StatusQueued))
	require.ElementsMatch(t,
		[]jobs.Status{jobs.StatusScheduled, jobs.StatusAccepted, jobs.StatusQueued, jobs.StatusProcessing, jobs.StatusFailed, jobs.StatusReplayed},
		jobs.Sources(jobs.StatusProcessing))
	require.Equal(t, []jobs.Status{jobs.StatusScheduled, jobs.StatusAccepted, jobs.StatusQueued, jobs.StatusProcessing, jobs.StatusFailed, jobs.StatusReplayed},
		jobs.Sources(jobs.StatusCancelled))
	require.Empty(t, jobs.Sources(jobs.StatusAccepted))
}

func TestRequestHash(t *testing.T) {
	t.Parallel()
	a := jobs.RequestHash("text-stats", []byte(`{"text":"a"}`))
	require.Len(t, a, 32)
	require.True(t, bytes.Equal(a, jobs.RequestHash("text-stats", []byte(`{"text":"a"}`))))
	require.False(t, bytes.Equal(a, jobs.RequestHash("text-stats", []byte(`{"text":"b"}`))))
	// The separator keeps type and payload from running into each other.
	require.False(t, bytes.Equal(jobs.RequestHash("ab", []byte("c")), jobs.RequestHash("a", []byte("bc"))))
	// Options (how the job was scheduled) count; none hashes as before.
	require.False(t, bytes.Equal(a, jobs.RequestHash("text-stats", []byte(`{"text":"a"}`), "Switchyard-Delay=60")))
	require.True(t, bytes.Equal(a, jobs.RequestHash("text-stats", []byte(`{"text":"a"}`), []string{}...)))
}

func TestValidateTypeName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"text-stats", "webhook", "a", "a_b-9"} {
		require.NoError(t, jobs.ValidateTypeName(ok), ok)
	}
	for _, bad := range []string{"", "Text", "9abc", "a.b", "a/b", "a b", string(make([]byte, 49))} {
		require.Error(t, jobs.ValidateTypeName(bad), bad)
	}
}

func TestRetryPolicyDelay(t *testing.T) {
	t.Parallel()
	p := jobs.RetryPolicy{Attempts: 5, Base: 2 * time.Second, Max: 10 * time.Second}
	require.NoError(t, p.Validate())
	tests := []struct {
		failures int
		jitter   float64
		want     time.Duration
	}{
		{1, 0, time.Second},               // half of the 2 s step
		{1, 0.999999999, 2 * time.Second}, // just under the whole step
		{2, 0.5, 3 * time.Second},         // 4 s step: 2 s + 1 s
		{3, 0, 4 * time.Second},           // 8 s step
		{4, 0, 5 * time.Second},           // 16 s step, capped at 10 s
		{60, 1, 10 * time.Second},         // far past the cap, no overflow
		{0, 0, time.Second},               // treated as the first failure
	}
	for _, tt := range tests {
		require.InDelta(t, tt.want, p.Delay(tt.failures, tt.jitter), float64(time.Millisecond), "failures %d jitter %v", tt.failures, tt.jitter)
	}
	require.False(t, p.Exhausted(4))
	require.True(t, p.Exhausted(5))
}

func TestRetryPolicyValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, jobs.DefaultRetryPolicy().Validate())
	require.NoError(t, jobs.RetryPolicy{Attempts: 1}.Validate(), "no retries, no waits")
	for _, bad := range []jobs.RetryPolicy{
		{Attempts: 0, Base: time.Second, Max: time.Second},
		{Attempts: 101, Base: time.Second, Max: time.Second},
		{Attempts: 3, Base: -time.Second, Max: time.Second},
		{Attempts: 3, Base: time.Minute, Max: time.Second},
		{Attempts: 3, Base: time.Second, Max: 13 * time.Hour},
	} {
		require.Error(t, bad.Validate(), "%+v", bad)
	}
}
