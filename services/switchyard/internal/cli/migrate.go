package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/jobcatalog"
	"github.com/switchyard/switchyard/libs/sqsqueue"
	"github.com/switchyard/switchyard/migrations"
)

func newMigrateCmd(logger *slog.Logger) *cobra.Command {
	var dbURL string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply pending database migrations (DATABASE_URL)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dbURL == "" {
				return usageError{errors.New("no database: set DATABASE_URL or --database-url")}
			}
			applied, err := migrations.Up(cmd.Context(), dbURL, logger)
			if err != nil {
				return err
			}
			latest, err := migrations.Latest()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "applied %d migration(s); schema at version %d\n", len(applied), latest)
			return nil
		},
	}
	cmd.Flags().StringVar(&dbURL, "database-url", os.Getenv("DATABASE_URL"), "Postgres URL (default $DATABASE_URL)")
	return cmd
}

// queuesConfig is what `queues ensure` reads from the environment: the
// same variables as the relay and the worker.
type queuesConfig struct {
	JobsFile string `conf:"default:deployments/config/jobs.yaml,env:SWITCHYARD_JOBS_FILE"`
	Queues   sqsqueue.Config
}

func newQueuesCmd(logger *slog.Logger) *cobra.Command {
	cmd := &cobra.Command{Use: "queues", Short: "Manage SQS queues"}
	cmd.AddCommand(&cobra.Command{
		Use:   "ensure",
		Short: "Create every job type's queue and DLQ with its redrive policy (idempotent)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			names, err := ensureQueues(cmd.Context())
			if err != nil {
				return err
			}
			for _, n := range names {
				fmt.Fprintln(cmd.OutOrStdout(), n)
			}
			logger.Info("queues ready", "count", len(names))
			return nil
		},
	})
	return cmd
}

// ensureQueues reads queuesConfig from the environment, provisions the
// queues of every job type and returns their names, DLQs included.
func ensureQueues(ctx context.Context) ([]string, error) {
	var cfg queuesConfig
	if err := config.Load(ctx, &cfg); err != nil {
		return nil, err
	}
	catalog, err := jobcatalog.Load(cfg.JobsFile)
	if err != nil {
		return nil, err
	}
	queues, _, err := sqsqueue.Connect(ctx, cfg.Queues)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, t := range catalog.Names() {
		if _, err := queues.Ensure(ctx, t); err != nil {
			return nil, err
		}
		names = append(names, queues.Name(t), queues.DLQName(t))
	}
	return names, nil
}
