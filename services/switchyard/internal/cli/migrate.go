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
			url, err := databaseURL(cmd.Context(), dbURL)
			if err != nil {
				return err
			}
			applied, err := migrations.Up(cmd.Context(), url, logger)
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
	cmd.Flags().StringVar(&dbURL, "database-url", os.Getenv("DATABASE_URL"), "Postgres URL or vault: reference (default $DATABASE_URL)")
	return cmd
}

// databaseURL returns the database URL a command was given: raw, or the
// secret a vault: reference names (vault:secret/switchyard/admin/database#url
// in the Kubernetes init Job), read with the VAULT_* login as the services
// read theirs.
func databaseURL(ctx context.Context, raw string) (string, error) {
	if raw == "" {
		return "", usageError{errors.New("no database: set DATABASE_URL or --database-url")}
	}
	url, err := config.Resolve(ctx, raw)
	if err != nil {
		return "", fmt.Errorf("reading the database URL: %w", err)
	}
	return url, nil
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
	queues, _, err := sqsqueue.Connect(ctx, cfg.Queues, nil, nil)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, t := range catalog.Names() {
		// Both queues: with SWITCHYARD_SQS_EXISTING_QUEUES each is looked
		// up on its own, so a DLQ Terraform lacks fails here, not later.
		for _, topic := range []string{t, sqsqueue.DeadLetterTopic(t)} {
			if _, err := queues.Ensure(ctx, topic); err != nil {
				return nil, err
			}
			names = append(names, queues.Name(topic))
		}
	}
	return names, nil
}
