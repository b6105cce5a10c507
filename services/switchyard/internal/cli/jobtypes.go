package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newJobTypesCmd() *cobra.Command {
	var f adminFlags
	cmd := &cobra.Command{
		Use:   "job-types",
		Short: "List job types with their queues, and pause or resume one, through the replay service's admin API",
		Long: `List the declared job types with their queue and DLQ depths, jobs finished
in the last hour and whether they are paused; pause or resume one.

While a job type is paused its workers receive none of its messages (a
pause reaches them within a receive wait, 10 s by default); the messages
wait in SQS and jobs keep being accepted. The pause is kept in Postgres,
so it survives worker restarts, and both changes are audited
(job_types.pause, job_types.resume).

Credentials as for switchyard dlq: $SWITCHYARD_ADMIN_TOKEN, or --client-id
with $SWITCHYARD_ADMIN_CLIENT_SECRET. Listing needs dead-letters:read,
pausing and resuming job-types:pause (or switchyard:admin).`,
	}
	f.register(cmd)
	var reason string
	pause := &cobra.Command{
		Use:     "pause <job type>",
		Short:   "Pause a job type: its workers stop receiving, its messages wait in SQS",
		Example: `  switchyard job-types pause text-stats --reason "upstream maintenance until 14:00"`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return pauseOrResume(cmd, &f, args[0], "pause", map[string]string{"reason": reason})
		},
	}
	pause.Flags().StringVar(&reason, "reason", "", "why (shown to other operators and audited)")
	resume := &cobra.Command{
		Use:   "resume <job type>",
		Short: "Resume a paused job type",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return pauseOrResume(cmd, &f, args[0], "resume", nil)
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List job types: queue and DLQ depth, the last hour's finished jobs, pauses",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, &f, func(ctx context.Context, c *adminClient) error {
				raw, err := c.get(ctx, "/admin/v1/job-types", nil, nil)
				if err != nil {
					return err
				}
				if f.json {
					return printJSON(cmd.OutOrStdout(), raw)
				}
				var out struct {
					JobTypes []struct {
						Name   string `json:"name"`
						Paused *struct {
							PausedAt time.Time `json:"paused_at"`
							PausedBy string    `json:"paused_by"`
							Reason   string    `json:"reason"`
						} `json:"paused"`
						Queue *struct {
							Visible  int `json:"visible"`
							InFlight int `json:"in_flight"`
						} `json:"queue"`
						DLQ *struct {
							Visible int `json:"visible"`
						} `json:"dlq"`
						LastHour  map[string]int64 `json:"last_hour"`
						ErrorRate float64          `json:"error_rate"`
					} `json:"job_types"`
				}
				if err := decodeInto(raw, &out); err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "JOB TYPE\tSTATE\tQUEUED\tIN FLIGHT\tDLQ\tSUCCEEDED (1H)\tDEAD-LETTERED (1H)")
				for _, jt := range out.JobTypes {
					state := "running"
					if jt.Paused != nil {
						state = fmt.Sprintf("paused by %s %s", jt.Paused.PausedBy, jt.Paused.PausedAt.UTC().Format(time.RFC3339))
					}
					queued, inFlight, dlq := "?", "?", "?"
					if jt.Queue != nil {
						queued, inFlight = fmt.Sprint(jt.Queue.Visible), fmt.Sprint(jt.Queue.InFlight)
					}
					if jt.DLQ != nil {
						dlq = fmt.Sprint(jt.DLQ.Visible)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\n", jt.Name, state, queued, inFlight, dlq,
						jt.LastHour["succeeded"], jt.LastHour["dead_lettered"])
				}
				return tw.Flush()
			})
		},
	}
	cmd.AddCommand(list, pause, resume)
	return cmd
}

func pauseOrResume(cmd *cobra.Command, f *adminFlags, jobType, verb string, body any) error {
	return withAdmin(cmd, f, func(ctx context.Context, c *adminClient) error {
		raw, err := c.do(ctx, http.MethodPost, "/admin/v1/job-types/"+url.PathEscape(jobType)+"/"+verb, nil, body)
		if err != nil {
			return err
		}
		if f.json {
			return printJSON(cmd.OutOrStdout(), raw)
		}
		var out struct {
			Changed bool `json:"changed"`
		}
		if err := decodeInto(raw, &out); err != nil {
			return err
		}
		switch {
		case verb == "pause" && out.Changed:
			fmt.Fprintf(cmd.OutOrStdout(), "paused %s: its workers stop receiving within a receive wait; its messages wait in SQS\n", jobType)
		case verb == "pause":
			fmt.Fprintf(cmd.OutOrStdout(), "%s was paused already\n", jobType)
		case out.Changed:
			fmt.Fprintf(cmd.OutOrStdout(), "resumed %s\n", jobType)
		default:
			fmt.Fprintf(cmd.OutOrStdout(), "%s was not paused\n", jobType)
		}
		return nil
	})
}
