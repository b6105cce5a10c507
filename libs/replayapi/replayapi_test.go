package replayapi_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/replayapi"
	"github.com/switchyard/switchyard/libs/replayplan"
)

// TestOperationRoundTrip: what the replay service writes, a client reads
// back as it was (stages as "10%" or counts, durations as "1m30s", the
// progress with its outcomes).
func TestOperationRoundTrip(t *testing.T) {
	now := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	op := replayapi.Operation{
		ID: "op-1", Status: "running", CreatedAt: now, CreatedBy: "ops", RatePerS: 5,
		Stages:        []replayplan.Stage{{Count: 1}, {Percent: 10}, {Percent: 100}},
		StageTargets:  []int{1, 10, 100},
		SettleTimeout: replayapi.Duration(90 * time.Second),
		Selection:     replayplan.Selection{Matched: 120, WouldReplay: 100, Deduplicated: 20, NotReplayable: map[string]int{}},
		Progress: replayapi.Progress{
			ItemCounts: replayapi.ItemCounts{Total: 100, Pending: 40, InFlight: 3,
				Outcomes: replayplan.Outcomes{Replayed: 60, Succeeded: 55, FailedAgain: 2}},
			ByStage: []replayapi.ItemCounts{
				{Total: 1, Outcomes: replayplan.Outcomes{Replayed: 1, Succeeded: 1}},
				{Total: 9, Outcomes: replayplan.Outcomes{Replayed: 9, Succeeded: 8, FailedAgain: 1}},
				{Total: 90, Pending: 40, InFlight: 3, Outcomes: replayplan.Outcomes{Replayed: 50, Succeeded: 46, FailedAgain: 1}},
			}},
	}
	raw, err := json.Marshal(op)
	require.NoError(t, err)
	require.Contains(t, string(raw), `"settle_timeout":"1m30s"`)
	require.Contains(t, string(raw), `"stages":[1,"10%","100%"]`)
	require.Contains(t, string(raw), `"progress":{"total":100,"pending":40,`)
	require.Contains(t, string(raw), `"by_stage":[{"total":1,`)
	var back replayapi.Operation
	require.NoError(t, json.Unmarshal(raw, &back))
	require.Equal(t, op, back)

	var bad replayapi.Duration
	require.Error(t, json.Unmarshal([]byte(`"soon"`), &bad))
}
