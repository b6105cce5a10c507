package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/migrations"
)

// newInitCmd is the one-shot set-up step of a deployment (the compose
// "init" service): migrations, then every job type's queues.
func newInitCmd(logger *slog.Logger) *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Prepare a deployment: apply migrations (DATABASE_URL) and provision queues (idempotent)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dbURL := os.Getenv("DATABASE_URL")
			if dbURL == "" {
				return usageError{errors.New("no database: set DATABASE_URL")}
			}
			applied, err := migrations.Up(cmd.Context(), dbURL, logger)
			if err != nil {
				return err
			}
			names, err := ensureQueues(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "applied %d migration(s); %d queue(s) ready\n", len(applied), len(names))
			return nil
		},
	}
}

// newProbeCmd checks an HTTP endpoint, for container healthchecks in
// images that have no curl.
func newProbeCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "probe URL",
		Short: "Exit 0 when URL answers 2xx (container healthchecks)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client := http.Client{Timeout: timeout}
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, args[0], nil)
			if err != nil {
				return usageError{err}
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			_ = resp.Body.Close()
			if resp.StatusCode < 200 || resp.StatusCode > 299 {
				return fmt.Errorf("%s answered %s", args[0], resp.Status)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "request timeout")
	return cmd
}
