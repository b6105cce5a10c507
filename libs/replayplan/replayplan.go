// Package replayplan decides what a bulk replay does, without I/O: which of
// the dead letters matching its filter it replays and why it leaves the
// others (Select), how its staged release is cut (ParseStages, Targets),
// and what it does next given its progress (Next), including the guard
// that stops it by itself when too many replayed messages dead-letter
// again.
package replayplan

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Dead-letter and job statuses Select reads (deadletterstore and jobs own
// them; repeated here so that this package imports neither).
const (
	deadLetterReplayed = "replayed"
	deadLetterArchived = "archived"
	jobDeadLettered    = "dead_lettered"
)

// Candidate is a dead letter that matches a bulk replay's filter.
type Candidate struct {
	// ID is the dead letter's id, a UUIDv7: ids sort by time.
	ID          string
	JobID       string
	Fingerprint string
	// Status is the dead letter's: stored, replayed or archived.
	Status string
	// JobStatus is the job's status, "" when the job does not exist.
	JobStatus string
}

// Reasons a matching dead letter is not replayed.
const (
	// NotReplayableArchived: the dead letter is archived.
	NotReplayableArchived = "archived"
	// NotReplayableNoJob: a stray message, with no job to replay.
	NotReplayableNoJob = "no_job"
	// NotReplayableJobMissing: its job was deleted.
	NotReplayableJobMissing = "job_missing"
	// NotReplayableJobMovedOn: its job is no longer dead-lettered (it was
	// replayed some other way, and is in flight or done).
	NotReplayableJobMovedOn = "job_not_dead_lettered"
)

// Selection is what a bulk replay will do with the dead letters matching
// its filter.
type Selection struct {
	// Replay are the dead letters to replay, oldest first.
	Replay []Candidate `json:"-"`
	// Matched counts every dead letter the filter matched.
	Matched int `json:"matched"`
	// WouldReplay is len(Replay).
	WouldReplay int `json:"would_replay"`
	// Deduplicated counts dead letters already replayed (without force),
	// and older dead letters of a job whose newest one is replayed.
	Deduplicated int `json:"deduplicated"`
	// NotReplayable counts the others by reason.
	NotReplayable map[string]int `json:"not_replayable"`
	// BeyondMax counts replayable dead letters left out by max.
	BeyondMax int `json:"beyond_max"`
}

// Select decides, for every candidate, whether a bulk replay replays it.
// A job is replayed once, through its newest dead letter; a dead letter
// replayed before counts as deduplicated unless force; max (0: no limit)
// keeps the oldest. The result does not depend on the candidates' order.
func Select(cands []Candidate, force bool, max int) Selection {
	sorted := slices.Clone(cands)
	// Newest first, so that the first dead letter seen of a job is the one
	// to replay.
	slices.SortFunc(sorted, func(a, b Candidate) int { return strings.Compare(b.ID, a.ID) })
	sel := Selection{Matched: len(cands), NotReplayable: map[string]int{}}
	jobsSeen := map[string]bool{}
	for _, c := range sorted {
		switch {
		case c.Status == deadLetterArchived:
			sel.NotReplayable[NotReplayableArchived]++
		case c.JobID == "":
			sel.NotReplayable[NotReplayableNoJob]++
		case jobsSeen[c.JobID]:
			sel.Deduplicated++
		case c.Status == deadLetterReplayed && !force:
			jobsSeen[c.JobID] = true
			sel.Deduplicated++
		case c.JobStatus == "":
			jobsSeen[c.JobID] = true
			sel.NotReplayable[NotReplayableJobMissing]++
		case c.JobStatus != jobDeadLettered:
			jobsSeen[c.JobID] = true
			sel.NotReplayable[NotReplayableJobMovedOn]++
		default:
			jobsSeen[c.JobID] = true
			sel.Replay = append(sel.Replay, c)
		}
	}
	slices.Reverse(sel.Replay)
	if max > 0 && len(sel.Replay) > max {
		sel.BeyondMax = len(sel.Replay) - max
		sel.Replay = sel.Replay[:max]
	}
	sel.WouldReplay = len(sel.Replay)
	return sel
}

// Stage is one step of a staged release: release up to Count items in
// all, or up to Percent of the operation's items.
type Stage struct {
	Count   int
	Percent float64
}

// MaxStages bounds how many stages one operation may have.
const MaxStages = 10

// String renders s as it is written: "25" or "10%".
func (s Stage) String() string {
	if s.Percent > 0 {
		return strconv.FormatFloat(s.Percent, 'f', -1, 64) + "%"
	}
	return strconv.Itoa(s.Count)
}

// MarshalJSON writes a count as a number and a share as "N%".
func (s Stage) MarshalJSON() ([]byte, error) {
	if s.Percent > 0 {
		return json.Marshal(s.String())
	}
	return json.Marshal(s.Count)
}

// UnmarshalJSON reads a number (a count) or a string ("10%", or "25").
func (s *Stage) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		st, err := ParseStage(n.String())
		if err != nil {
			return err
		}
		*s = st
		return nil
	}
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return errors.New(`a stage is a count (25) or a share ("10%")`)
	}
	st, err := ParseStage(str)
	if err != nil {
		return err
	}
	*s = st
	return nil
}

// ParseStage reads "25" (items in all) or "10%" (share of the items).
func ParseStage(s string) (Stage, error) {
	s = strings.TrimSpace(s)
	if pct, ok := strings.CutSuffix(s, "%"); ok {
		p, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
		if err != nil || math.IsNaN(p) || p <= 0 || p > 100 {
			return Stage{}, fmt.Errorf("stage %q: a share must be above 0%% and at most 100%%", s)
		}
		return Stage{Percent: p}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return Stage{}, fmt.Errorf(`stage %q: a stage is a count of at least 1 (25) or a share ("10%%")`, s)
	}
	return Stage{Count: n}, nil
}

// ParseStages reads a comma-separated list such as "1,10%,100%".
func ParseStages(s string) ([]Stage, error) {
	var out []Stage
	for part := range strings.SplitSeq(s, ",") {
		st, err := ParseStage(part)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, ValidateStages(out)
}

// ValidateStages checks that stages grow: each releases more than the one
// before it when both are counts or both shares. (A count and a share are
// compared only once the total is known; Targets merges stages that come
// to the same count.)
func ValidateStages(stages []Stage) error {
	if len(stages) > MaxStages {
		return fmt.Errorf("%d stages: at most %d", len(stages), MaxStages)
	}
	for i := 1; i < len(stages); i++ {
		a, b := stages[i-1], stages[i]
		if (a.Percent > 0) == (b.Percent > 0) && (b.Count <= a.Count && b.Percent <= a.Percent) {
			return fmt.Errorf("stage %d (%s) must release more than stage %d (%s): stages are cumulative", i+1, b, i, a)
		}
	}
	return nil
}

// Targets turns stages into cumulative item counts for total items:
// strictly increasing, the last always total (a final "100%" is implied).
// A share rounds up, so "10%" of 5 items is 1. No items: no stages.
func Targets(stages []Stage, total int) []int {
	if total <= 0 {
		return []int{}
	}
	var out []int
	for _, s := range stages {
		n := s.Count
		if s.Percent > 0 {
			n = int(math.Ceil(float64(total) * s.Percent / 100))
		}
		n = min(n, total)
		if len(out) == 0 || n > out[len(out)-1] {
			out = append(out, n)
		}
	}
	if len(out) == 0 || out[len(out)-1] < total {
		out = append(out, total)
	}
	return out
}

// Outcomes are what became of an operation's replayed messages so far.
type Outcomes struct {
	// Replayed counts items sent through the outbox.
	Replayed int `json:"replayed"`
	// Succeeded counts those whose job succeeded since.
	Succeeded int `json:"succeeded"`
	// FailedAgain counts those whose job was dead-lettered again.
	FailedAgain int `json:"failed_again"`
}

// Settled counts replayed items whose job has an outcome.
func (o Outcomes) Settled() int { return o.Succeeded + o.FailedAgain }

// InFlight counts replayed items whose job has no outcome yet.
func (o Outcomes) InFlight() int { return o.Replayed - o.Settled() }

// guardSample is how many settled replays the guard waits for before it
// judges (fewer when fewer were replayed: a first stage of 1 is judged on
// that one).
const guardSample = 10

// Tripped reports whether more than ratio of the settled replays failed
// again, once enough have settled, and says so.
func Tripped(o Outcomes, ratio float64) (bool, string) {
	need := min(guardSample, o.Replayed)
	settled := o.Settled()
	if settled == 0 || settled < need {
		return false, ""
	}
	share := float64(o.FailedAgain) / float64(settled)
	if share <= ratio {
		return false, ""
	}
	return true, fmt.Sprintf("%d of %d settled replays were dead-lettered again (%.0f%%, above the %.0f%% allowed)",
		o.FailedAgain, settled, share*100, ratio*100)
}

// State is an operation's progress, as Next reads it.
type State struct {
	// Targets are the stages' cumulative item counts; Stage indexes it.
	Targets []int
	Stage   int
	// Processed counts items no longer pending (replayed, deduplicated or
	// skipped).
	Processed int
	Outcomes  Outcomes
	// StageDoneAt is when the current stage's last item was processed
	// (zero: not yet recorded).
	StageDoneAt time.Time
	Now         time.Time
	// SettleTimeout bounds the wait for a stage's jobs to settle.
	SettleTimeout time.Duration
	// StopIfFailedRatio is the guard's threshold.
	StopIfFailedRatio float64
}

// Action is what an operation does next.
type Action int

// Actions.
const (
	// Replay the next N items.
	Replay Action = iota + 1
	// MarkStageDone: record StageDoneAt (now), then ask again.
	MarkStageDone
	// Wait for the stage's replayed jobs to settle, then ask again.
	Wait
	// Advance to the next stage.
	Advance
	// Complete: every item was processed.
	Complete
	// Stop by itself, for Reason.
	Stop
)

// Decision is Next's answer.
type Decision struct {
	Action Action
	// N is how many items to replay (Replay).
	N int
	// Reason explains a Stop, or an Advance that did not wait for every
	// job to settle.
	Reason string
}

// Next decides an operation's next step. The guard is checked first, at
// every step: an operation whose replays fail again stops wherever it is.
// Within a stage items are replayed up to the stage's target; a stage
// that is not the last then waits until its replayed jobs have settled,
// at most SettleTimeout, before the next is released. If none of them
// settled in that time the operation stops: nothing tells it that
// releasing more is safe.
func Next(s State) Decision {
	if tripped, why := Tripped(s.Outcomes, s.StopIfFailedRatio); tripped {
		return Decision{Action: Stop, Reason: why}
	}
	if len(s.Targets) == 0 {
		return Decision{Action: Complete}
	}
	stage := min(s.Stage, len(s.Targets)-1)
	target := s.Targets[stage]
	if s.Processed < target {
		return Decision{Action: Replay, N: target - s.Processed}
	}
	if stage == len(s.Targets)-1 {
		return Decision{Action: Complete}
	}
	if s.Outcomes.InFlight() == 0 {
		return Decision{Action: Advance}
	}
	if s.StageDoneAt.IsZero() {
		return Decision{Action: MarkStageDone}
	}
	if s.Now.Sub(s.StageDoneAt) < s.SettleTimeout {
		return Decision{Action: Wait}
	}
	if s.Outcomes.Settled() == 0 {
		return Decision{Action: Stop, Reason: fmt.Sprintf("none of the %d replays of stage %d settled within %s, so it is not known whether releasing more is safe",
			s.Outcomes.Replayed, stage+1, s.SettleTimeout)}
	}
	return Decision{Action: Advance, Reason: fmt.Sprintf("%d replays of stage %d had not settled after %s; the %d settled ones passed the guard",
		s.Outcomes.InFlight(), stage+1, s.SettleTimeout, s.Outcomes.Settled())}
}
