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
