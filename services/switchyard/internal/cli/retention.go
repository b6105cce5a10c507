package cli

import (
	"context"
	"fmt"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newRetentionCmd() *cobra.Command {
	var f adminFlags
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "retention",
		Short: "Run a retention pass now, or with --dry-run show what it would delete",
		Long: `Run one pass of the replay service's retention janitor now, through its
admin API (switchyard:admin only; audited as retention.run or
retention.dry_run), and show per table how many rows it deleted (or, with
--dry-run, would delete now) and the oldest row left. The janitor runs by
itself every SWITCHYARD_RETENTION_INTERVAL; a pass holds a database lock,
so a run while another replica's pass is going answers 409.

Credentials as for switchyard dlq: $SWITCHYARD_ADMIN_TOKEN, or --client-id
with $SWITCHYARD_ADMIN_CLIENT_SECRET.`,
		Example: `  switchyard retention --dry-run
  switchyard retention --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, &f, func(ctx context.Context, c *adminClient) error {
				raw, err := c.do(ctx, http.MethodPost, "/admin/v1/retention/run", nil, map[string]bool{"dry_run": dryRun})
				if err != nil {
					return err
				}
				if f.json {
					return printJSON(cmd.OutOrStdout(), raw)
				}
				var out struct {
					Tables []struct {
						Table     string     `json:"table"`
						Retention string     `json:"retention"`
						Rows      int64      `json:"rows"`
						OldestAt  *time.Time `json:"oldest_at"`
						Complete  bool       `json:"complete"`
					} `json:"tables"`
				}
				if err := decodeInto(raw, &out); err != nil {
					return err
				}
				verb := "DELETED"
				if dryRun {
					verb = "WOULD DELETE"
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintf(tw, "TABLE\tRETENTION\t%s\tOLDEST ROW\n", verb)
				for _, t := range out.Tables {
					oldest := "-"
					if t.OldestAt != nil {
						oldest = t.OldestAt.UTC().Format(time.RFC3339) + " (" + time.Since(*t.OldestAt).Round(time.Second).String() + " ago)"
					}
					rows := fmt.Sprint(t.Rows)
					if !t.Complete {
						rows += " (more left: the pass's time was up)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Table, dash(t.Retention), rows, oldest)
				}
				if err := tw.Flush(); err != nil {
					return fmt.Errorf("writing output: %w", err)
				}
				return nil
			})
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "count what a pass would delete now; delete nothing")
	return cmd
}
