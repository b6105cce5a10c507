package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newDLQCmd() *cobra.Command {
	var f adminFlags
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect, replay and purge dead letters through the replay service's admin API",
		Long: `Inspect, replay and purge dead letters through the replay service's admin
API (every call is audited under the token's client id).

Credentials: $SWITCHYARD_ADMIN_TOKEN (an access token), or --client-id
(or $SWITCHYARD_ADMIN_CLIENT_ID) with $SWITCHYARD_ADMIN_CLIENT_SECRET,
exchanged at --token-url. switchyard:admin allows every command; roles
get capability scopes: dead-letters:read (list, show, stats, operations),
dead-letters:replay (replay, replay-bulk, cancel), dead-letters:edit
(replay --payload), dead-letters:purge (archive, purge), audit:read.

Times (--since, --until) are RFC 3339 (2026-11-30T08:00:00Z) or a
duration back from now (90m, 36h).`,
	}
	f.register(cmd)
	cmd.AddCommand(newDLQListCmd(&f), newDLQShowCmd(&f), newDLQStatsCmd(&f), newDLQReplayCmd(&f), newDLQReplayBulkCmd(&f),
		newDLQOperationsCmd(&f), newDLQOperationCmd(&f), newDLQCancelCmd(&f), newDLQRemoveCmd(&f, "archive"),
		newDLQRemoveCmd(&f, "purge"), newDLQAuditCmd(&f))
	return cmd
}

// dlqFilter holds the filter flags shared by list, stats and replay-bulk.
type dlqFilter struct {
	topic, fingerprint, client, reason, status, since, until string
}

func (d *dlqFilter) register(cmd *cobra.Command, withStatus bool) {
	fl := cmd.Flags()
	fl.StringVar(&d.topic, "type", "", "job type (= topic)")
	fl.StringVar(&d.fingerprint, "fingerprint", "", "error fingerprint")
	fl.StringVar(&d.client, "client", "", "client id of the job")
	fl.StringVar(&d.reason, "reason", "", "attempts_exhausted, permanent_error, undecodable, unknown_job or max_receive_count")
	if withStatus {
		fl.StringVar(&d.status, "status", "", "stored, replayed or archived")
	}
	fl.StringVar(&d.since, "since", "", "dead-lettered at or after (RFC 3339 or a duration ago)")
	fl.StringVar(&d.until, "until", "", "dead-lettered before (RFC 3339 or a duration ago)")
}

// values renders the filter as query parameters.
func (d *dlqFilter) values(now time.Time) (url.Values, error) {
	q := url.Values{}
	for k, v := range map[string]string{"type": d.topic, "fingerprint": d.fingerprint, "client": d.client, "reason": d.reason, "status": d.status} {
		if v != "" {
			q.Set(k, v)
		}
	}
	for k, v := range map[string]string{"since": d.since, "until": d.until} {
		if v == "" {
			continue
		}
		t, err := parseWhen(v, now)
		if err != nil {
			return nil, usageError{fmt.Errorf("--%s: %w", k, err)}
		}
		q.Set(k, t.UTC().Format(time.RFC3339Nano))
	}
	return q, nil
}

// parseWhen reads an RFC 3339 time or a duration back from now.
func parseWhen(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-11-30T08:00:00Z) nor a duration ago (36h)", v)
}

// withAdmin runs fn with a client for the admin API.
func withAdmin(cmd *cobra.Command, f *adminFlags, fn func(context.Context, *adminClient) error) error {
	c, err := newAdminClient(cmd.Context(), f)
	if err != nil {
		return err
	}
	return fn(cmd.Context(), c)
}

// Views of the admin API's answers, as far as the tables show them.
type (
	dlqDeadLetter struct {
		ID             string     `json:"id"`
		Topic          string     `json:"topic"`
		JobID          string     `json:"job_id"`
		ClientID       string     `json:"client_id"`
		Reason         string     `json:"reason"`
		Error          string     `json:"error"`
		Fingerprint    string     `json:"fingerprint"`
		Attempts       int        `json:"attempts"`
		Handler        string     `json:"handler"`
		TraceID        string     `json:"trace_id"`
		FirstFailureAt *time.Time `json:"first_failure_at"`
		LastFailureAt  *time.Time `json:"last_failure_at"`
		DeadLetteredAt time.Time  `json:"dead_lettered_at"`
		Status         string     `json:"status"`
		ReplayCount    int        `json:"replay_count"`
		ReplayedAt     *time.Time `json:"replayed_at"`
		ReplayedBy     string     `json:"replayed_by"`
		ReplayOf       string     `json:"replay_of"`
	}
	dlqDetail struct {
		dlqDeadLetter
		Payload         json.RawMessage `json:"payload"`
		PayloadEncoding string          `json:"payload_encoding"`
		JobURL          string          `json:"job_url"`
		History         []struct {
			Attempt     int       `json:"attempt"`
			Outcome     string    `json:"outcome"`
			Error       string    `json:"error"`
			Fingerprint string    `json:"fingerprint"`
			Permanent   bool      `json:"permanent"`
			StartedAt   time.Time `json:"started_at"`
		} `json:"history"`
	}
	dlqPage[T any] struct {
		Items      []T    `json:"items"`
		NextCursor string `json:"next_cursor"`
	}
	dlqSelection struct {
		Matched       int            `json:"matched"`
		WouldReplay   int            `json:"would_replay"`
		Deduplicated  int            `json:"deduplicated"`
		NotReplayable map[string]int `json:"not_replayable"`
		BeyondMax     int            `json:"beyond_max"`
	}
	dlqProgress struct {
		Total        int `json:"total"`
		Pending      int `json:"pending"`
		Replayed     int `json:"replayed"`
		Deduplicated int `json:"deduplicated"`
		Skipped      int `json:"skipped"`
		Succeeded    int `json:"succeeded"`
		FailedAgain  int `json:"failed_again"`
		InFlight     int `json:"in_flight"`
	}
	dlqOperation struct {
		ID           string       `json:"id"`
		Status       string       `json:"status"`
		CreatedAt    time.Time    `json:"created_at"`
		CreatedBy    string       `json:"created_by"`
		RatePerS     float64      `json:"rate_per_s"`
		Stages       []any        `json:"stages"`
		StageTargets []int        `json:"stage_targets"`
		Stage        int          `json:"stage"`
		Selection    dlqSelection `json:"selection"`
		Progress     dlqProgress  `json:"progress"`
		StopReason   string       `json:"stop_reason"`
		FinishedAt   *time.Time   `json:"finished_at"`
	}
)

func newDLQListCmd(f *adminFlags) *cobra.Command {
	var flt dlqFilter
	var limit int
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List dead letters, newest first",
		Example: `  switchyard dlq list --type webhook --since 24h
  switchyard dlq list --fingerprint 3f2a9c1e0b7d4a56 --status stored --all`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := flt.values(time.Now())
			if err != nil {
				return err
			}
			if limit < 1 || limit > 500 {
				return usageError{fmt.Errorf("--limit %d must be from 1 to 500", limit)}
			}
			q.Set("limit", strconv.Itoa(limit))
			return withAdmin(cmd, f, func(ctx context.Context, c *adminClient) error {
				// Pages are kept as the API sent them (for --json) and decoded
				// for the table only when one is printed.
				var raws []json.RawMessage
				for {
					var page dlqPage[json.RawMessage]
					if _, err := c.get(ctx, "/admin/v1/dead-letters", q, &page); err != nil {
						return err
					}
					raws = append(raws, page.Items...)
					if !all || page.NextCursor == "" {
						if f.json {
							return printJSONValue(cmd.OutOrStdout(), map[string]any{"items": orEmpty(raws), "next_cursor": page.NextCursor})
						}
						items := make([]dlqDeadLetter, len(raws))
						for i, r := range raws {
							if err := decodeInto(r, &items[i]); err != nil {
								return err
							}
						}
						return printDeadLetters(cmd.OutOrStdout(), items, page.NextCursor)
					}
					q.Set("cursor", page.NextCursor)
				}
			})
		},
	}
	flt.register(cmd, true)
	cmd.Flags().IntVar(&limit, "limit", 50, "dead letters per page (1-500)")
	cmd.Flags().BoolVar(&all, "all", false, "follow the cursor through every page")
	return cmd
}

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

func printDeadLetters(w io.Writer, items []dlqDeadLetter, next string) error {
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

func newDLQShowCmd(f *adminFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show DEAD_LETTER_ID",
		Short: "Show one dead letter: metadata, payload and the job's attempts",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd, f, func(ctx context.Context, c *adminClient) error {
				var d dlqDetail
				raw, err := c.get(ctx, "/admin/v1/dead-letters/"+url.PathEscape(args[0]), nil, &d)
				if err != nil {
					return err
				}
				if f.json {
					return printJSON(cmd.OutOrStdout(), raw)
				}
				return printDetail(cmd.OutOrStdout(), d)
			})
		},
	}
}

func printDetail(w io.Writer, d dlqDetail) error {
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
	row("reason", d.Reason)
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
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\n", a.Attempt, a.StartedAt.UTC().Format(time.RFC3339), outcome, oneLine(a.Error, 80))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}

func newDLQStatsCmd(f *adminFlags) *cobra.Command {
	var flt dlqFilter
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Count dead letters by type and error fingerprint, largest groups first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := flt.values(time.Now())
			if err != nil {
				return err
			}
			return withAdmin(cmd, f, func(ctx context.Context, c *adminClient) error {
				var out struct {
					Groups []struct {
						Topic       string    `json:"topic"`
						Fingerprint string    `json:"fingerprint"`
						Reason      string    `json:"reason"`
						Count       int       `json:"count"`
						Stored      int       `json:"stored"`
						Replayed    int       `json:"replayed"`
						Last        time.Time `json:"last_dead_lettered_at"`
						SampleError string    `json:"sample_error"`
					} `json:"groups"`
					Total int `json:"total"`
				}
				raw, err := c.get(ctx, "/admin/v1/dead-letters/stats", q, &out)
				if err != nil {
					return err
				}
				if f.json {
					return printJSON(cmd.OutOrStdout(), raw)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TYPE\tFINGERPRINT\tREASON\tCOUNT\tSTORED\tREPLAYED\tLAST\tSAMPLE ERROR")
				for _, g := range out.Groups {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", g.Topic, g.Fingerprint, g.Reason, g.Count, g.Stored, g.Replayed,
						g.Last.UTC().Format(time.RFC3339), oneLine(g.SampleError, 60))
				}
				if err := tw.Flush(); err != nil {
					return fmt.Errorf("writing output: %w", err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%d dead letters in %d groups\n", out.Total, len(out.Groups))
				return nil
			})
		},
	}
	flt.register(cmd, true)
	return cmd
}

func newDLQReplayCmd(f *adminFlags) *cobra.Command {
	var payload, payloadFile string
	var force bool
	cmd := &cobra.Command{
		Use:   "replay DEAD_LETTER_ID",
		Short: "Replay one dead letter, optionally with an edited payload (validated like a new request)",
		Example: `  switchyard dlq replay 01a2f1c4-…
  switchyard dlq replay 01a2f1c4-… --payload '{"text":"fixed"}'
  switchyard dlq replay 01a2f1c4-… --payload-file fixed.json`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if payload != "" && payloadFile != "" {
				return usageError{errors.New("give --payload or --payload-file, not both")}
			}
			body := map[string]any{}
			if payloadFile != "" {
				b, err := os.ReadFile(payloadFile)
				if err != nil {
					return usageError{fmt.Errorf("--payload-file: %w", err)}
				}
				payload = string(b)
			}
			if payload != "" {
				if !json.Valid([]byte(payload)) {
					return usageError{errors.New("the payload is not valid JSON")}
				}
				body["payload"] = json.RawMessage(payload)
			}
			if force {
				body["force"] = true
			}
			return withAdmin(cmd, f, func(ctx context.Context, c *adminClient) error {
				raw, err := c.do(ctx, http.MethodPost, "/admin/v1/dead-letters/"+url.PathEscape(args[0])+"/replay", nil, body)
				if err != nil {
					return err
				}
				if f.json {
					return printJSON(cmd.OutOrStdout(), raw)
				}
				var res struct {
					JobID        string `json:"job_id"`
					MessageID    string `json:"message_id"`
					ReplayCount  int    `json:"replay_count"`
					Deduplicated bool   `json:"deduplicated"`
					Edited       bool   `json:"edited"`
				}
				if err := decodeInto(raw, &res); err != nil {
					return err
				}
				if res.Deduplicated {
					fmt.Fprintf(cmd.OutOrStdout(), "already replayed (message %s); nothing sent. --force sends it again.\n", res.MessageID)
					return nil
				}
				edited := ""
				if res.Edited {
					edited = " with the edited payload"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "replayed%s: job %s, message %s (replay %d)\n", edited, res.JobID, res.MessageID, res.ReplayCount)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&payload, "payload", "", "replace the payload with this JSON")
	cmd.Flags().StringVar(&payloadFile, "payload-file", "", "replace the payload with this file's JSON")
	cmd.Flags().BoolVar(&force, "force", false, "replay even if it was replayed before")
	return cmd
}

func newDLQReplayBulkCmd(f *adminFlags) *cobra.Command {
	var flt dlqFilter
	var all, dryRun, force, detach bool
	var max int
	var rate, stopRatio float64
	var stages, settle string
	cmd := &cobra.Command{
		Use:   "replay-bulk",
		Short: "Replay every dead letter matching a filter, at a set rate and in stages",
		Long: `Replay every stored dead letter matching a filter, oldest first, at --rate
per second. Dead letters replayed before are counted as deduplicated, not
sent again (unless --force), and a job is replayed once.

--stages releases the replay in steps (e.g. 1,10%,100%): each stage waits
until the jobs replayed in the one before it have succeeded or failed, and
the operation stops by itself when more than --stop-ratio of the settled
replays are dead-lettered again.

Without --detach the command follows the operation with a progress bar
until it ends; Ctrl-C stops following, not the operation.`,
		Example: `  switchyard dlq replay-bulk --fingerprint 3f2a9c1e0b7d4a56 --dry-run
  switchyard dlq replay-bulk --fingerprint 3f2a9c1e0b7d4a56 --rate 50 --stages 1,10%,100%
  switchyard dlq replay-bulk --type webhook --since 2026-11-30T08:00:00Z --until 2026-11-30T09:00:00Z --max 1000`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := flt.values(time.Now())
			if err != nil {
				return err
			}
			filter := map[string]string{}
			for k := range q {
				filter[k] = q.Get(k)
			}
			body := map[string]any{"filter": filter, "dry_run": dryRun, "rate_per_s": rate, "force": force, "all": all}
			if cmd.Flags().Changed("max") {
				body["max"] = max
			}
			if stages != "" {
				parts := []string{}
				for p := range strings.SplitSeq(stages, ",") {
					parts = append(parts, strings.TrimSpace(p))
				}
				body["stages"] = parts
			}
			if cmd.Flags().Changed("stop-ratio") {
				body["stop_if_failed_ratio"] = stopRatio
			}
			if settle != "" {
				body["settle_timeout"] = settle
			}
			return withAdmin(cmd, f, func(ctx context.Context, c *adminClient) error {
				raw, err := c.do(ctx, http.MethodPost, "/admin/v1/replays", nil, body)
				if err != nil {
					return err
				}
				if dryRun {
					return printDryRun(cmd.OutOrStdout(), raw, f.json)
				}
				var op dlqOperation
				if err := decodeInto(raw, &op); err != nil {
					return err
				}
				if detach {
					if f.json {
						return printJSON(cmd.OutOrStdout(), raw)
					}
					fmt.Fprintf(cmd.OutOrStdout(), "operation %s started: %d dead letters at %g/s\nfollow it: switchyard dlq operation %[1]s --follow\n",
						op.ID, op.Progress.Total, op.RatePerS)
					return nil
				}
				return follow(ctx, c, op.ID, cmd.OutOrStdout(), cmd.ErrOrStderr(), f.json)
			})
		},
	}
	flt.register(cmd, false)
	fl := cmd.Flags()
	fl.BoolVar(&all, "all", false, "replay every dead letter (no filter)")
	fl.BoolVar(&dryRun, "dry-run", false, "count what would be replayed; change nothing")
	fl.IntVar(&max, "max", 0, "replay at most this many (the oldest)")
	fl.Float64Var(&rate, "rate", 10, "replays per second")
	fl.StringVar(&stages, "stages", "", "staged release, e.g. 1,10%,100%")
	fl.Float64Var(&stopRatio, "stop-ratio", 0.1, "stop when more than this share of settled replays dead-letter again")
	fl.StringVar(&settle, "settle-timeout", "", "longest wait for a stage's replays to settle (default 5m)")
	fl.BoolVar(&force, "force", false, "replay dead letters replayed before, too")
	fl.BoolVar(&detach, "detach", false, "start the operation and return")
	return cmd
}

func printDryRun(w io.Writer, raw []byte, asJSON bool) error {
	if asJSON {
		return printJSON(w, raw)
	}
	var dr struct {
		Selection dlqSelection `json:"selection"`
		Targets   []int        `json:"stage_targets"`
		RatePerS  float64      `json:"rate_per_s"`
		Estimated string       `json:"estimated_send_time"`
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

// follow polls an operation until it ends, with a progress bar on a
// terminal (a line per change otherwise), then prints its summary. A
// stopped or cancelled operation is an error.
func follow(ctx context.Context, c *adminClient, id string, out, errw io.Writer, asJSON bool) error {
	var bar *progressbar.ProgressBar
	tty := false
	if f, ok := errw.(*os.File); ok && term.IsTerminal(int(f.Fd())) { //nolint:gosec // a file descriptor fits an int
		tty = true
	}
	stoppedFollowing := func() {
		fmt.Fprintf(errw, "\nstopped following; the operation goes on. Follow: switchyard dlq operation %s --follow; cancel: switchyard dlq cancel %[1]s\n", id)
	}
	last := ""
	var raw []byte
	var op dlqOperation
	for {
		var err error
		raw, err = c.get(ctx, "/admin/v1/replays/"+url.PathEscape(id), nil, &op)
		if err != nil {
			if ctx.Err() != nil {
				stoppedFollowing()
			}
			return err
		}
		p := op.Progress
		done := p.Total - p.Pending
		status := fmt.Sprintf("stage %d/%d, replayed %d, succeeded %d, failed again %d, deduplicated %d, skipped %d",
			op.Stage, max(1, len(op.StageTargets)), p.Replayed, p.Succeeded, p.FailedAgain, p.Deduplicated, p.Skipped)
		if tty {
			if bar == nil {
				bar = progressbar.NewOptions(max(p.Total, 1), progressbar.OptionSetWriter(errw), progressbar.OptionShowCount(),
					progressbar.OptionSetWidth(30), progressbar.OptionSetPredictTime(true),
					progressbar.OptionSetDescription("replaying"))
			}
			bar.Describe(status)
			_ = bar.Set(done)
		} else if line := fmt.Sprintf("%d/%d processed; %s", done, p.Total, status); line != last {
			fmt.Fprintln(errw, line)
			last = line
		}
		if op.Status != "running" {
			break
		}
		select {
		case <-ctx.Done():
			stoppedFollowing()
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	if bar != nil {
		_ = bar.Finish()
		fmt.Fprintln(errw)
	}
	if asJSON {
		if err := printJSON(out, raw); err != nil {
			return err
		}
	} else if err := printOperation(out, op); err != nil {
		return err
	}
	if op.Status != "completed" {
		return fmt.Errorf("operation %s %s: %s", op.ID, op.Status, op.StopReason)
	}
	return nil
}

func printOperation(w io.Writer, op dlqOperation) error {
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

func newDLQOperationsCmd(f *adminFlags) *cobra.Command {
	var status string
	var limit int
	cmd := &cobra.Command{
		Use:   "operations",
		Short: "List bulk replay operations, newest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if status != "" {
				q.Set("status", status)
			}
			return withAdmin(cmd, f, func(ctx context.Context, c *adminClient) error {
				var page dlqPage[dlqOperation]
				raw, err := c.get(ctx, "/admin/v1/replays", q, &page)
				if err != nil {
					return err
				}
				if f.json {
					return printJSON(cmd.OutOrStdout(), raw)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATUS\tCREATED\tBY\tRATE\tSTAGE\tTOTAL\tREPLAYED\tSUCCEEDED\tFAILED AGAIN\tPENDING")
				for _, op := range page.Items {
					p := op.Progress
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%g/s\t%d/%d\t%d\t%d\t%d\t%d\t%d\n", op.ID, op.Status, op.CreatedAt.UTC().Format(time.RFC3339),
						op.CreatedBy, op.RatePerS, op.Stage, max(1, len(op.StageTargets)), p.Total, p.Replayed, p.Succeeded, p.FailedAgain, p.Pending)
				}
				if err := tw.Flush(); err != nil {
					return fmt.Errorf("writing output: %w", err)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&status, "status", "", "running, completed, stopped or cancelled")
	cmd.Flags().IntVar(&limit, "limit", 20, "operations to show (1-500)")
	return cmd
}

func newDLQOperationCmd(f *adminFlags) *cobra.Command {
	var followIt bool
	cmd := &cobra.Command{
		Use:   "operation OPERATION_ID",
		Short: "Show a bulk replay operation's progress (--follow: until it ends)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd, f, func(ctx context.Context, c *adminClient) error {
				if followIt {
					return follow(ctx, c, args[0], cmd.OutOrStdout(), cmd.ErrOrStderr(), f.json)
				}
				var op dlqOperation
				raw, err := c.get(ctx, "/admin/v1/replays/"+url.PathEscape(args[0]), nil, &op)
				if err != nil {
					return err
				}
				if f.json {
					return printJSON(cmd.OutOrStdout(), raw)
				}
				return printOperation(cmd.OutOrStdout(), op)
			})
		},
	}
	cmd.Flags().BoolVar(&followIt, "follow", false, "follow with a progress bar until the operation ends")
	return cmd
}

func newDLQCancelCmd(f *adminFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel OPERATION_ID",
		Short: "Cancel a running bulk replay (items replayed so far stay replayed)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd, f, func(ctx context.Context, c *adminClient) error {
				raw, err := c.do(ctx, http.MethodPost, "/admin/v1/replays/"+url.PathEscape(args[0])+"/cancel", nil, nil)
				if err != nil {
					return err
				}
				if f.json {
					return printJSON(cmd.OutOrStdout(), raw)
				}
				var op dlqOperation
				if err := decodeInto(raw, &op); err != nil {
					return err
				}
				return printOperation(cmd.OutOrStdout(), op)
			})
		},
	}
}

func newDLQRemoveCmd(f *adminFlags, mode string) *cobra.Command {
	short := "Archive a dead letter: out of replays, deleted after the retention period"
	if mode == "purge" {
		short = "Delete a dead letter now"
	}
	return &cobra.Command{
		Use:   mode + " DEAD_LETTER_ID",
		Short: short,
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd, f, func(ctx context.Context, c *adminClient) error {
				raw, err := c.do(ctx, http.MethodDelete, "/admin/v1/dead-letters/"+url.PathEscape(args[0]), url.Values{"mode": {mode}}, nil)
				if err != nil {
					return err
				}
				if f.json {
					return printJSON(cmd.OutOrStdout(), raw)
				}
				var res struct {
					PurgeAfter *time.Time `json:"purge_after"`
				}
				if err := decodeInto(raw, &res); err != nil {
					return err
				}
				if res.PurgeAfter != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "archived %s; deleted after %s\n", args[0], res.PurgeAfter.UTC().Format(time.RFC3339))
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "purged %s\n", args[0])
				}
				return nil
			})
		},
	}
}

func newDLQAuditCmd(f *adminFlags) *cobra.Command {
	var actor, action, target, since string
	var limit int
	var skipReads bool
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit log of admin calls, newest first",
		Example: `  switchyard dlq audit --actor ops-alice --since 24h --skip-reads
  switchyard dlq audit --action 'replays.*'
  switchyard dlq audit --target <operation id>`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if skipReads {
				q.Set("skip_reads", "true")
			}
			for k, v := range map[string]string{"actor": actor, "action": action, "target": target} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if since != "" {
				t, err := parseWhen(since, time.Now())
				if err != nil {
					return usageError{fmt.Errorf("--since: %w", err)}
				}
				q.Set("since", t.UTC().Format(time.RFC3339Nano))
			}
			return withAdmin(cmd, f, func(ctx context.Context, c *adminClient) error {
				var page dlqPage[struct {
					At      time.Time       `json:"at"`
					Actor   string          `json:"actor"`
					Action  string          `json:"action"`
					Target  string          `json:"target"`
					Counts  json.RawMessage `json:"counts"`
					Outcome string          `json:"outcome"`
				}]
				raw, err := c.get(ctx, "/admin/v1/audit", q, &page)
				if err != nil {
					return err
				}
				if f.json {
					return printJSON(cmd.OutOrStdout(), raw)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "AT\tACTOR\tACTION\tTARGET\tOUTCOME\tCOUNTS")
				for _, e := range page.Items {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.At.UTC().Format(time.RFC3339), e.Actor, e.Action, dash(e.Target),
						oneLine(e.Outcome, 50), oneLine(string(e.Counts), 90))
				}
				if err := tw.Flush(); err != nil {
					return fmt.Errorf("writing output: %w", err)
				}
				return nil
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&actor, "actor", "", "client id that made the call")
	fl.StringVar(&action, "action", "", "e.g. dead_letters.replay, or a prefix: 'replays.*'")
	fl.BoolVar(&skipReads, "skip-reads", false, "leave out reads (lists, shows, stats); dry runs stay")
	fl.StringVar(&target, "target", "", "dead letter or operation id")
	fl.StringVar(&since, "since", "", "at or after (RFC 3339 or a duration ago)")
	fl.IntVar(&limit, "limit", 50, "entries to show (1-500)")
	return cmd
}

func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return usageError{err}
	}
	return nil
}
