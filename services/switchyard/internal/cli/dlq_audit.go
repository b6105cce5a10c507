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
				var page replayapi.Page[struct {
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
