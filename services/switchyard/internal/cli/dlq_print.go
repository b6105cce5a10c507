package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchyard/switchyard/libs/replayapi"
	"github.com/switchyard/switchyard/libs/replayplan"
)

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func printJSONValue(w io.Writer, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding output: %w", err)
	}
	return printJSON(w, raw)
}

func printDeadLetters(w io.Writer, items []replayapi.DeadLetter, next string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tREASON\tFINGERPRINT\tATTEMPTS\tCLIENT\tDEAD-LETTERED\tSTATUS\tERROR")
	for _, d := range items {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", d.ID, d.Topic, d.Reason, d.Fingerprint, d.Attempts, dash(d.ClientID),
			d.DeadLetteredAt.UTC().Format(time.RFC3339), d.Status, oneLine(d.Error, 60))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	fmt.Fprintf(w, "%d dead letters", len(items))
	if next != "" {
		fmt.Fprint(w, "; more: --all, or the API's cursor "+next)
	}
	fmt.Fprintln(w)
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine shortens s to n runes on one line.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func printDetail(w io.Writer, d replayapi.Detail) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	when := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	row("id", d.ID)
	row("status", fmt.Sprintf("%s (replayed %d times)", d.Status, d.ReplayCount))
	row("type", d.Topic)
	row("reason", string(d.Reason))
	row("error", d.Error)
	row("fingerprint", d.Fingerprint)
	row("attempts", strconv.Itoa(d.Attempts))
	row("handler", dash(d.Handler))
	row("job", dash(d.JobID)+" "+d.JobURL)
	row("client", dash(d.ClientID))
	row("trace id", dash(d.TraceID))
	row("first failure", when(d.FirstFailureAt))
	row("last failure", when(d.LastFailureAt))
	row("dead-lettered", d.DeadLetteredAt.UTC().Format(time.RFC3339))
	if d.ReplayedAt != nil {
		row("last replayed", when(d.ReplayedAt)+" by "+d.ReplayedBy)
	}
	if d.ReplayOf != "" {
		row("replay of", d.ReplayOf)
	}
	row("payload", "("+d.PayloadEncoding+") "+oneLine(string(d.Payload), 200))
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	fmt.Fprintln(w, "\nhistory:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ATTEMPT\tSTARTED\tOUTCOME\tERROR")
	for _, a := range d.History {
		outcome := a.Outcome
		if a.Permanent {
			outcome += " (permanent)"
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\n", a.Number, a.StartedAt.UTC().Format(time.RFC3339), outcome, oneLine(a.Error, 80))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}

func printDryRun(w io.Writer, raw []byte, asJSON bool) error {
	if asJSON {
		return printJSON(w, raw)
	}
	var dr struct {
		Selection replayplan.Selection `json:"selection"`
		Targets   []int                `json:"stage_targets"`
		RatePerS  float64              `json:"rate_per_s"`
		Estimated string               `json:"estimated_send_time"`
	}
	if err := decodeInto(raw, &dr); err != nil {
		return err
	}
	s := dr.Selection
	fmt.Fprintf(w, "dry run: nothing was replayed\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "matched\t%d\n", s.Matched)
	fmt.Fprintf(tw, "would replay\t%d\n", s.WouldReplay)
	fmt.Fprintf(tw, "would deduplicate\t%d\t(replayed before, or an older dead letter of the same job)\n", s.Deduplicated)
	nr := 0
	var why []string
	for k, v := range s.NotReplayable {
		nr += v
		why = append(why, fmt.Sprintf("%s %d", k, v))
	}
	fmt.Fprintf(tw, "not replayable\t%d\t%s\n", nr, strings.Join(why, ", "))
	fmt.Fprintf(tw, "beyond --max\t%d\n", s.BeyondMax)
	fmt.Fprintf(tw, "stages\t%s\n", joinInts(dr.Targets))
	fmt.Fprintf(tw, "send time at %g/s\t%s\t(plus the wait for each stage to settle)\n", dr.RatePerS, dr.Estimated)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}

func joinInts(ns []int) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = strconv.Itoa(n)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " → ")
}

func printOperation(w io.Writer, op replayapi.Operation) error {
	p := op.Progress
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "operation\t%s\n", op.ID)
	status := op.Status
	if op.StopReason != "" {
		status += ": " + op.StopReason
	}
	fmt.Fprintf(tw, "status\t%s\n", status)
	fmt.Fprintf(tw, "created\t%s by %s\n", op.CreatedAt.UTC().Format(time.RFC3339), op.CreatedBy)
	fmt.Fprintf(tw, "rate\t%g/s\n", op.RatePerS)
	fmt.Fprintf(tw, "stages\t%s (at stage %d)\n", joinInts(op.StageTargets), op.Stage)
	fmt.Fprintf(tw, "items\t%d: %d replayed, %d deduplicated, %d skipped, %d pending\n", p.Total, p.Replayed, p.Deduplicated, p.Skipped, p.Pending)
	fmt.Fprintf(tw, "outcomes\t%d succeeded, %d dead-lettered again, %d in flight\n", p.Succeeded, p.FailedAgain, p.InFlight)
	fmt.Fprintf(tw, "selection\t%d matched, %d deduplicated, %d beyond max\n", op.Selection.Matched, op.Selection.Deduplicated, op.Selection.BeyondMax)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}
