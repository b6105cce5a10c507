// Package cli implements the switchyard command.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/libs/logging"
	"github.com/switchyard/switchyard/libs/termsafe"
)

// exitCode is an error that carries the process exit code (from a child
// command run by `dev exec`).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// Execute runs the CLI with args and returns the process exit code: 0 on
// success, 2 for usage errors, 1 for other failures, or the exit code of
// the command `dev exec` ran.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger, _ := logging.NewTo(stderr, "switchyard", os.Getenv(logging.EnvLevel), "text")
	root := newRoot(logger)
	root.SetArgs(args)
	// What commands print (payloads, error texts, names) came from
	// clients and targets: it may not drive the operator's terminal.
	safeOut, safeErr := termsafe.NewWriter(stdout), termsafe.NewWriter(stderr)
	defer func() { _ = safeOut.Flush(); _ = safeErr.Flush() }()
	stdout, stderr = safeOut, safeErr
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var code exitCode
	if errors.As(err, &code) {
		return int(code)
	}
	var usage usageError
	if errors.As(err, &usage) {
		fmt.Fprintln(stderr, "error:", err)
		return 2
	}
	fmt.Fprintln(stderr, "error:", err)
	return 1
}

type usageError struct{ error }

func newRoot(logger *slog.Logger) *cobra.Command {
	root := &cobra.Command{
		Use:           "switchyard",
		Short:         "Operate and develop Switchyard",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newMigrateCmd(logger), newQueuesCmd(logger), newInitCmd(logger), newProbeCmd(), newDevCmd(logger),
		newClientsCmd(), newAPIKeysCmd(), newKeysCmd(), newDLQCmd(), newJobTypesCmd(), newRetentionCmd(), newVaultCmd(), newDoctorCmd())
	return root
}
