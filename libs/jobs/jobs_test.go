package jobs_test

import (
	"bytes"
	"testing"

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
		[]jobs.Status{jobs.StatusAccepted, jobs.StatusQueued, jobs.StatusProcessing, jobs.StatusFailed, jobs.StatusReplayed},
		jobs.Sources(jobs.StatusProcessing))
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
