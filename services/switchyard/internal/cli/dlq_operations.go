package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/libs/replayapi"
)

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
				var page replayapi.Page[replayapi.Operation]
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
				var op replayapi.Operation
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
				var op replayapi.Operation
				if err := decodeInto(raw, &op); err != nil {
					return err
				}
				return printOperation(cmd.OutOrStdout(), op)
			})
		},
	}
}

func newDLQRemoveCmd(f *adminFlags, mode string) *cobra.Command {
	short := "Archive dead letters: out of replays, deleted after the retention period"
	if mode == "purge" {
		short = "Delete dead letters now"
	}
	var filter dlqFilter
	var dryRun bool
	var limit int
	cmd := &cobra.Command{
		Use:   mode + " [DEAD_LETTER_ID]",
		Short: short,
		Long: short + `: one by its id, or every one a filter selects (at least
one filter flag; --dry-run counts them first; more than --max is refused
whole). Dead letters a running bulk replay holds are left alone. Each call
is audited with its filter and counts.`,
		Example: `  switchyard dlq ` + mode + ` 0192f0c1-7c1e-7d2a-9c55-1e0f3b1f2a3b
  switchyard dlq ` + mode + ` --fingerprint 3f9a0c1d2e4b5a67 --dry-run
  switchyard dlq ` + mode + ` --type webhook --until 720h`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.MaximumNArgs(1)(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			q, err := filter.values(time.Now())
			if err != nil {
				return err
			}
			switch {
			case len(args) == 1 && (len(q) > 0 || dryRun):
				return usageError{fmt.Errorf("give a dead letter id or filter flags, not both")}
			case len(args) == 0 && len(q) == 0:
				return usageError{fmt.Errorf("give a dead letter id, or filter flags (--type, --fingerprint, --client, --reason, --status, --since, --until) to %s every match", mode)}
			case len(args) == 1:
				return withAdmin(cmd, f, func(ctx context.Context, c *adminClient) error { return removeOne(ctx, cmd, c, f, mode, args[0]) })
			}
			body := map[string]any{"mode": mode, "dry_run": dryRun, "filter": flatten(q)}
			if limit > 0 {
				body["max"] = limit
			}
			return withAdmin(cmd, f, func(ctx context.Context, c *adminClient) error {
				raw, err := c.do(ctx, http.MethodPost, "/admin/v1/dead-letters/remove", nil, body)
				if err != nil {
					return err
				}
				if f.json {
					return printJSON(cmd.OutOrStdout(), raw)
				}
				var res struct {
					Result struct {
						Matched, InRunningReplay, Removed int
					} `json:"result"`
				}
				if err := decodeInto(raw, &res); err != nil {
					return err
				}
				r := res.Result
				verb := map[string]string{"archive": "archived", "purge": "purged"}[mode]
				if dryRun {
					fmt.Fprintf(cmd.OutOrStdout(), "dry run: %d dead letters match and would be %s; %d held by a running bulk replay are left alone\n", r.Matched, verb, r.InRunningReplay)
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %d dead letters; %d held by a running bulk replay left alone\n", verb, r.Removed, r.InRunningReplay)
				return nil
			})
		},
	}
	filter.register(cmd, true)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "count what the filter selects; change nothing")
	cmd.Flags().IntVar(&limit, "max", 0, "refuse if the filter selects more than this (default and at most 100000)")
	return cmd
}

// flatten turns query values into the JSON filter of a bulk request.
func flatten(q url.Values) map[string]string {
	out := map[string]string{}
	for k := range q {
		out[k] = q.Get(k)
	}
	return out
}

// removeOne archives or purges one dead letter by id.
func removeOne(ctx context.Context, cmd *cobra.Command, c *adminClient, f *adminFlags, mode, id string) error {
	raw, err := c.do(ctx, http.MethodDelete, "/admin/v1/dead-letters/"+url.PathEscape(id), url.Values{"mode": {mode}}, nil)
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
		fmt.Fprintf(cmd.OutOrStdout(), "archived %s; deleted after %s\n", id, res.PurgeAfter.UTC().Format(time.RFC3339))
	} else {
		fmt.Fprintf(cmd.OutOrStdout(), "purged %s\n", id)
	}
	return nil
}
