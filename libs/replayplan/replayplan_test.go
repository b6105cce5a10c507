package replayplan_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/replayplan"
)

// id returns a sortable dead-letter id for n (like UUIDv7s, later is larger).
func id(n int) string { return fmt.Sprintf("0190%04d-0000-7000-8000-000000000000", n) }

func TestSelect(t *testing.T) {
	t.Parallel()
	cands := []replayplan.Candidate{
		{ID: id(1), JobID: "j1", Status: "stored", JobStatus: "dead_lettered"},
		{ID: id(2), JobID: "j2", Status: "replayed", JobStatus: "succeeded"},     // replayed before
		{ID: id(3), JobID: "j3", Status: "archived", JobStatus: "dead_lettered"}, // archived
		{ID: id(4), JobID: "", Status: "stored"},                                 // a stray
		{ID: id(5), JobID: "j5", Status: "replayed", JobStatus: "dead_lettered"}, // its replay failed again…
		{ID: id(9), JobID: "j5", Status: "stored", JobStatus: "dead_lettered"},   // …as this newer one
		{ID: id(6), JobID: "j6", Status: "stored", JobStatus: ""},                // job deleted
		{ID: id(7), JobID: "j7", Status: "stored", JobStatus: "queued"},          // replayed some other way
		{ID: id(8), JobID: "j8", Status: "stored", JobStatus: "dead_lettered"},
	}
	ids := func(s replayplan.Selection) []string {
		out := []string{}
		for _, c := range s.Replay {
			out = append(out, c.ID)
		}
		return out
	}

	sel := replayplan.Select(cands, false, 0)
	require.Equal(t, []string{id(1), id(8), id(9)}, ids(sel), "oldest first; j5 through its newest dead letter")
	require.Equal(t, 9, sel.Matched)
	require.Equal(t, 3, sel.WouldReplay)
	require.Equal(t, 2, sel.Deduplicated, "j2 replayed before; j5's older dead letter")
	require.Equal(t, map[string]int{"archived": 1, "no_job": 1, "job_missing": 1, "job_not_dead_lettered": 1}, sel.NotReplayable)
	require.Equal(t, sel.Matched, sel.WouldReplay+sel.Deduplicated+4+sel.BeyondMax, "every match is accounted for")

	forced := replayplan.Select(cands, true, 0)
	require.Equal(t, []string{id(1), id(8), id(9)}, ids(forced),
		"force does not bring back j2 (its job succeeded) nor replay j5 twice")
	require.Equal(t, 1, forced.Deduplicated)
	require.Equal(t, 2, forced.NotReplayable["job_not_dead_lettered"])

	capped := replayplan.Select(cands, false, 2)
	require.Equal(t, []string{id(1), id(8)}, ids(capped))
	require.Equal(t, 1, capped.BeyondMax)

	shuffled := append([]replayplan.Candidate(nil), cands...)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	require.Equal(t, sel, replayplan.Select(shuffled, false, 0), "order of the input does not matter")

	empty := replayplan.Select(nil, false, 10)
	require.Empty(t, empty.Replay)
	require.Zero(t, empty.Matched)
}

func TestStages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		total   int
		targets []int
		err     string
	}{
		{in: "1,10%,100%", total: 250, targets: []int{1, 25, 250}},
		{in: "1,10%,100%", total: 5, targets: []int{1, 5}, err: ""}, // 10% of 5 rounds up to 1: merged
		{in: "1,10%", total: 250, targets: []int{1, 25, 250}},       // a final 100% is implied
		{in: "100", total: 30, targets: []int{30}},
		{in: "5,50%", total: 4, targets: []int{4}},
		{in: "1,10%,100%", total: 0, targets: []int{}},
		{in: "33.3%", total: 10, targets: []int{4, 10}},
		{in: "0", err: "at least 1"},
		{in: "-3", err: "at least 1"},
		{in: "0%", err: "above 0%"},
		{in: "120%", err: "at most 100%"},
		{in: "ten", err: "a count"},
		{in: "", err: "a count"},
		{in: "10,5", err: "must release more"},
		{in: "50%,10%", err: "must release more"},
		{in: "1,2,3,4,5,6,7,8,9,10,11", err: "at most 10"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			stages, err := replayplan.ParseStages(tt.in)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.targets, replayplan.Targets(stages, tt.total))
		})
	}
}

func TestStageJSON(t *testing.T) {
	t.Parallel()
	var stages []replayplan.Stage
	require.NoError(t, json.Unmarshal([]byte(`[1, "10%", "25", 100]`), &stages))
	require.Equal(t, []replayplan.Stage{{Count: 1}, {Percent: 10}, {Count: 25}, {Count: 100}}, stages)
	out, err := json.Marshal(stages)
	require.NoError(t, err)
	require.JSONEq(t, `[1, "10%", 25, 100]`, string(out))
	for _, bad := range []string{`[0]`, `["x%"]`, `[true]`, `[{"count":1}]`, `[1.5]`} {
		require.Error(t, json.Unmarshal([]byte(bad), &stages), bad)
	}
}

func TestTripped(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		o    replayplan.Outcomes
		trip bool
	}{
		{"nothing settled", replayplan.Outcomes{Replayed: 1}, false},
		{"a canary of one fails", replayplan.Outcomes{Replayed: 1, FailedAgain: 1}, true},
		{"a canary of one succeeds", replayplan.Outcomes{Replayed: 1, Succeeded: 1}, false},
		{"too few settled to judge", replayplan.Outcomes{Replayed: 50, FailedAgain: 3, Succeeded: 2}, false},
		{"at the threshold", replayplan.Outcomes{Replayed: 50, FailedAgain: 2, Succeeded: 18}, false},
		{"above the threshold", replayplan.Outcomes{Replayed: 50, FailedAgain: 3, Succeeded: 17}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			trip, why := replayplan.Tripped(tt.o, 0.1)
			require.Equal(t, tt.trip, trip, why)
			if trip {
				require.Contains(t, why, "dead-lettered again")
			}
		})
	}
	trip, _ := replayplan.Tripped(replayplan.Outcomes{Replayed: 10, FailedAgain: 10}, 1)
	require.False(t, trip, "a ratio of 1 never stops")
	trip, _ = replayplan.Tripped(replayplan.Outcomes{Replayed: 10, FailedAgain: 1, Succeeded: 9}, 0)
	require.True(t, trip, "a ratio of 0 stops at the first failure")
}

func TestNext(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	base := replayplan.State{Targets: []int{1, 25, 250}, Now: now, SettleTimeout: time.Minute, StopIfFailedRatio: 0.1}
	with := func(f func(*replayplan.State)) replayplan.State {
		s := base
		f(&s)
		return s
	}
	tests := []struct {
		name string
		s    replayplan.State
		want replayplan.Decision
	}{
		{"start: the canary", base, replayplan.Decision{Action: replayplan.Replay, N: 1}},
		{"canary sent, first wait is recorded", with(func(s *replayplan.State) {
			s.Processed, s.Outcomes = 1, replayplan.Outcomes{Replayed: 1}
		}), replayplan.Decision{Action: replayplan.MarkStageDone}},
		{"canary in flight", with(func(s *replayplan.State) {
			s.Processed, s.Outcomes, s.StageDoneAt = 1, replayplan.Outcomes{Replayed: 1}, now.Add(-10*time.Second)
		}), replayplan.Decision{Action: replayplan.Wait}},
		{"canary succeeded", with(func(s *replayplan.State) {
			s.Processed, s.Outcomes, s.StageDoneAt = 1, replayplan.Outcomes{Replayed: 1, Succeeded: 1}, now
		}), replayplan.Decision{Action: replayplan.Advance}},
		{"canary failed again", with(func(s *replayplan.State) {
			s.Processed, s.Outcomes = 1, replayplan.Outcomes{Replayed: 1, FailedAgain: 1}
		}), replayplan.Decision{Action: replayplan.Stop, Reason: "1 of 1 settled replays were dead-lettered again (100%, above the 10% allowed)"}},
		{"canary deduplicated: nothing to wait for", with(func(s *replayplan.State) { s.Processed = 1 }),
			replayplan.Decision{Action: replayplan.Advance}},
		{"second stage under way", with(func(s *replayplan.State) {
			s.Stage, s.Processed, s.Outcomes = 1, 10, replayplan.Outcomes{Replayed: 10, Succeeded: 4}
		}), replayplan.Decision{Action: replayplan.Replay, N: 15}},
		{"nothing settled within the timeout", with(func(s *replayplan.State) {
			s.Processed, s.Outcomes, s.StageDoneAt = 1, replayplan.Outcomes{Replayed: 1}, now.Add(-2*time.Minute)
		}), replayplan.Decision{Action: replayplan.Stop, Reason: "none of the 1 replays of stage 1 settled within 1m0s, so it is not known whether releasing more is safe"}},
		{"timeout with some settled and passing", with(func(s *replayplan.State) {
			s.Stage, s.Processed, s.Outcomes, s.StageDoneAt = 1, 25, replayplan.Outcomes{Replayed: 25, Succeeded: 20}, now.Add(-2*time.Minute)
		}), replayplan.Decision{Action: replayplan.Advance, Reason: "5 replays of stage 2 had not settled after 1m0s; the 20 settled ones passed the guard"}},
		{"last stage done: complete without waiting", with(func(s *replayplan.State) {
			s.Stage, s.Processed, s.Outcomes = 2, 250, replayplan.Outcomes{Replayed: 240, Succeeded: 100}
		}), replayplan.Decision{Action: replayplan.Complete}},
		{"the guard stops the last stage too", with(func(s *replayplan.State) {
			s.Stage, s.Processed, s.Outcomes = 2, 100, replayplan.Outcomes{Replayed: 100, Succeeded: 20, FailedAgain: 20}
		}), replayplan.Decision{Action: replayplan.Stop, Reason: "20 of 40 settled replays were dead-lettered again (50%, above the 10% allowed)"}},
		{"no items", replayplan.State{Targets: []int{}}, replayplan.Decision{Action: replayplan.Complete}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, replayplan.Next(tt.s))
		})
	}
}
