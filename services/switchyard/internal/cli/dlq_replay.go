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
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/switchyard/switchyard/libs/replayapi"
)

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
				var op replayapi.Operation
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
	var op replayapi.Operation
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
