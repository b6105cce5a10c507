package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/libs/auditlog"
	"github.com/switchyard/switchyard/libs/callbacks"
)

// callbacksView is how the CLI shows a client's callback settings.
type callbacksView struct {
	ClientID string             `json:"client_id"`
	Hosts    []string           `json:"hosts"`
	Secrets  []callbacks.Secret `json:"secrets"`
}

func newClientsCallbacksCmd(f *clientsFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "callbacks",
		Short: "Manage a client's completion callbacks: allowed hosts and signing secrets",
		Long: `A submission may name a callback URL (header Switchyard-Callback-Url) on a
host its client's allow-list names; when the job finishes the platform POSTs
its final state there, signed per Standard Webhooks with the client's
signing secrets. Every change is audited.`,
	}
	cmd.AddCommand(newCallbacksShowCmd(f), newCallbacksSetHostsCmd(f), newCallbacksRotateCmd(f))
	return cmd
}

// withCallbacks runs fn with an audited callbacks store.
func withCallbacks(cmd *cobra.Command, f *clientsFlags, fn func(*callbacks.Store) error) error {
	pool, err := openClientsDB(cmd, f)
	if err != nil {
		return err
	}
	defer pool.Close()
	actor := cliActor()
	store := callbacks.NewStore(pool).Audited(func(ctx context.Context, tx pgx.Tx, action, clientID string, after map[string]any) error {
		return auditlog.Write(ctx, tx, auditlog.Entry{Actor: actor, Action: action, Target: clientID, After: after})
	})
	return fn(store)
}

func showCallbacks(ctx context.Context, w io.Writer, format string, s *callbacks.Store, clientID string, newSecret *callbacks.Secret) error {
	hosts, err := s.Hosts(ctx, clientID)
	if err != nil {
		return err
	}
	secrets, err := s.Secrets(ctx, clientID, false)
	if err != nil {
		return err
	}
	if newSecret != nil && len(secrets) > 0 && secrets[0].ID == newSecret.ID {
		secrets[0].Value = newSecret.Value
	}
	v := callbacksView{ClientID: clientID, Hosts: hosts, Secrets: secrets}
	if v.Hosts == nil {
		v.Hosts = []string{}
	}
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "client\t%s\n", clientID)
	fmt.Fprintf(tw, "hosts\t%s\n", strings.Join(hosts, " "))
	for _, sec := range secrets {
		state := "signing"
		if sec.ExpiresAt != nil {
			state = "signing until " + sec.ExpiresAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "secret %d\tcreated %s, %s\n", sec.ID, sec.CreatedAt.UTC().Format(time.RFC3339), state)
	}
	if len(secrets) == 0 {
		fmt.Fprintln(tw, "secrets\tnone: callbacks fail until one is made with rotate-secret")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if newSecret != nil {
		_, err = fmt.Fprintf(w, "\nnew signing secret (shown only this once):\n%s\n", newSecret.Value)
	}
	return err
}

func newCallbacksShowCmd(f *clientsFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show CLIENT_ID",
		Short: "Show a client's allowed callback hosts and its signing secrets (never their values)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withCallbacks(cmd, f, func(s *callbacks.Store) error {
				return showCallbacks(cmd.Context(), cmd.OutOrStdout(), f.output, s, args[0], nil)
			})
		},
	}
}

func newCallbacksSetHostsCmd(f *clientsFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "set-hosts CLIENT_ID [HOST ...]",
		Short: "Replace the hosts a client's callback URLs may name (none: no callbacks)",
		Long: `Replace the hosts a client's callback URLs may name. A host matches on any
port unless it names one (hooks.example.com:8443); *.example.com matches every
subdomain of example.com. With no hosts the client may name no callback URL.
Callbacks already accepted to a host no longer listed are not delivered.`,
		Example: `  switchyard clients callbacks set-hosts billing hooks.billing.example.com
  switchyard clients callbacks set-hosts billing '*.billing.example.com' 10.0.3.7:8443`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{errors.New("name the client, then the hosts")}
			}
			for _, h := range args[1:] {
				if _, err := callbacks.NormalizeHost(h); err != nil {
					return usageError{err}
				}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return withCallbacks(cmd, f, func(s *callbacks.Store) error {
				if err := s.SetHosts(cmd.Context(), args[0], args[1:]); err != nil {
					return err
				}
				return showCallbacks(cmd.Context(), cmd.OutOrStdout(), f.output, s, args[0], nil)
			})
		},
	}
}

func newCallbacksRotateCmd(f *clientsFlags) *cobra.Command {
	var overlap time.Duration
	cmd := &cobra.Command{
		Use:   "rotate-secret CLIENT_ID",
		Short: "Give a client a new callback signing secret and print it (shown only this once)",
		Long: `Give a client a new callback signing secret and print it. During --overlap
every callback carries one signature per secret (webhook-signature holds
them space-separated), so a receiver that still knows only the old secret
keeps verifying; afterwards only the new one signs.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if overlap < 0 {
				return usageError{errors.New("--overlap may not be negative")}
			}
			return withCallbacks(cmd, f, func(s *callbacks.Store) error {
				sec, err := s.RotateSecret(cmd.Context(), args[0], overlap)
				if err != nil {
					return err
				}
				return showCallbacks(cmd.Context(), cmd.OutOrStdout(), f.output, s, args[0], &sec)
			})
		},
	}
	cmd.Flags().DurationVar(&overlap, "overlap", 24*time.Hour, "how long the previous secrets keep signing too")
	return cmd
}
