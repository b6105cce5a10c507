package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/libs/devstack"
)

func newDoctorCmd() *cobra.Command {
	var (
		purpose string
		dir     string
		devUp   devUpOptions
	)
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check what the local stack needs (Go, Postgres, SQS, Vault, Redis, free ports) and say how to install what is missing",
		Long: `Check every prerequisite of 'go tool task dev' (--for dev) or 'go tool
task test' (--for test) and every dependency the environment points at,
and print for each missing one the command that installs it on
Debian/Ubuntu and on macOS (Homebrew), or the variable that points at an
existing one. Exits 1 only when something really is missing; notes (no
Redis configured, Vault not built yet) do not fail it. It takes dev up's
flags, so that the ports checked are the ones dev up will use.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := devstack.DoctorConfig{Dir: dir}
			switch purpose {
			case "dev":
				cfg.Ports = devUp.listeners()
			case "test":
			default:
				return usageError{fmt.Errorf("--for %q: use dev or test", purpose)}
			}
			findings := devstack.Diagnose(cmd.Context(), cfg)
			if missing := printFindings(cmd.OutOrStdout(), purpose, findings); missing > 0 {
				return exitCode(1)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&purpose, "for", "dev", "what to check for: dev (go tool task dev, including its ports) or test (go tool task test)")
	cmd.Flags().StringVar(&dir, "dir", ".dev", "the local stack's directory (where a background Vault build keeps its log)")
	addDevUpFlags(cmd.Flags(), &devUp)
	return cmd
}

// printFindings writes the doctor's report and returns how many
// prerequisites are missing.
func printFindings(w io.Writer, purpose string, findings []devstack.Finding) int {
	fmt.Fprintf(w, "switchyard doctor: what `go tool task %s` needs\n\n", purpose)
	missing := 0
	for _, f := range findings {
		fmt.Fprintf(w, "  %-8s %-9s %s\n", f.Status, f.Name, f.Detail)
		for _, fix := range f.Fix {
			fmt.Fprintf(w, "  %-8s %-9s   %s\n", "", "", fix)
		}
		if f.Status == devstack.Missing {
			missing++
		}
	}
	switch missing {
	case 0:
		fmt.Fprintln(w, "\nEverything needed is here.")
	default:
		fmt.Fprintf(w, "\n%d missing (%s): install or configure it as shown, then run `go tool task %s` again.\n", missing, missingNames(findings), purpose)
	}
	return missing
}

func missingNames(findings []devstack.Finding) string {
	var names []string
	for _, f := range findings {
		if f.Status == devstack.Missing {
			names = append(names, f.Name)
		}
	}
	return strings.Join(names, ", ")
}
