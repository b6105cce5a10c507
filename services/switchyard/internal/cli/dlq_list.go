package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/libs/replayapi"
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
					var page replayapi.Page[json.RawMessage]
					if _, err := c.get(ctx, "/admin/v1/dead-letters", q, &page); err != nil {
						return err
					}
					raws = append(raws, page.Items...)
					if !all || page.NextCursor == "" {
						if f.json {
							return printJSONValue(cmd.OutOrStdout(), map[string]any{"items": orEmpty(raws), "next_cursor": page.NextCursor})
						}
						items := make([]replayapi.DeadLetter, len(raws))
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

func newDLQShowCmd(f *adminFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show DEAD_LETTER_ID",
		Short: "Show one dead letter: metadata, payload and the job's attempts",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withAdmin(cmd, f, func(ctx context.Context, c *adminClient) error {
				var d replayapi.Detail
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
