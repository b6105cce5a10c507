package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/libs/auditlog"
	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/oauthclients"
)

// clientView is how the CLI shows a client (JSON output).
type clientView struct {
	ClientID                string     `json:"client_id"`
	ClientSecret            string     `json:"client_secret,omitempty"`
	Name                    string     `json:"name"`
	Scopes                  []string   `json:"scopes"`
	Disabled                bool       `json:"disabled"`
	DisabledAt              *time.Time `json:"disabled_at,omitempty"`
	CreatedAt               time.Time  `json:"created_at"`
	SecretRotatedAt         *time.Time `json:"secret_rotated_at,omitempty"`
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
}

func viewOf(c oauthclients.Client, secret string) clientView {
	return clientView{ClientID: c.ID, ClientSecret: secret, Name: c.Name, Scopes: c.Scopes, Disabled: c.Disabled(),
		DisabledAt: c.DisabledAt, CreatedAt: c.CreatedAt, SecretRotatedAt: c.SecretRotatedAt,
		PreviousSecretExpiresAt: c.PreviousSecretExpiresAt}
}

type clientsFlags struct {
	dbURL  string
	output string
}

// register adds the flags to cmd, checked before any subcommand runs.
func (f *clientsFlags) register(cmd *cobra.Command) {
	cmd.PersistentPreRunE = func(*cobra.Command, []string) error {
		if f.dbURL == "" {
			return usageError{errors.New("no database: set DATABASE_URL or --database-url")}
		}
		if f.output != "text" && f.output != "json" {
			return usageError{fmt.Errorf("--output must be text or json, not %q", f.output)}
		}
		return nil
	}
	cmd.PersistentFlags().StringVar(&f.dbURL, "database-url", os.Getenv("DATABASE_URL"), "Postgres URL (default $DATABASE_URL)")
	cmd.PersistentFlags().StringVarP(&f.output, "output", "o", "text", "output format: text or json")
}

func newClientsCmd() *cobra.Command {
	var f clientsFlags
	cmd := &cobra.Command{
		Use:   "clients",
		Short: "Manage the token service's OAuth2 clients (DATABASE_URL)",
		Long: `Manage the OAuth2 clients of the token service, directly in Postgres.

A client's secret is printed once, when it is created or rotated; only an
argon2id hash is stored. Disabling a client stops new tokens at once and
makes every gateway refuse its unexpired tokens within milliseconds
(Postgres NOTIFY; at worst SWITCHYARD_AUTH_DISABLED_CLIENTS_POLL).`,
	}
	f.register(cmd)
	cmd.AddCommand(newClientsCreateCmd(&f), newClientsListCmd(&f), newClientsSetDisabledCmd(&f, true),
		newClientsSetDisabledCmd(&f, false), newClientsRotateCmd(&f), newClientsSetScopesCmd(&f), newClientsCallbacksCmd(&f))
	return cmd
}

// clientStoreOptions are the client store's options from the
// environment: the pepper of SWITCHYARD_CLIENT_SECRET_PEPPER (a value, or
// a vault: reference read with the VAULT_* login), which the token service
// must share.
func clientStoreOptions(ctx context.Context) ([]oauthclients.Option, error) {
	var cfg struct {
		Pepper config.Secret `conf:"mask,env:SWITCHYARD_CLIENT_SECRET_PEPPER"`
	}
	if err := config.Load(ctx, &cfg); err != nil {
		return nil, fmt.Errorf("reading SWITCHYARD_CLIENT_SECRET_PEPPER: %w", err)
	}
	if p := cfg.Pepper.Value(); p != "" {
		return []oauthclients.Option{oauthclients.WithPepper([]byte(p))}, nil
	}
	return nil, nil
}

func withClients(cmd *cobra.Command, f *clientsFlags, fn func(*oauthclients.Store) error) error {
	opts, err := clientStoreOptions(cmd.Context())
	if err != nil {
		return err
	}
	pool, err := openClientsDB(cmd, f)
	if err != nil {
		return err
	}
	defer pool.Close()
	// Every change is audited in its own transaction, by the operator.
	actor := cliActor()
	opts = append(opts, oauthclients.WithAudit(func(ctx context.Context, tx pgx.Tx, action string, c oauthclients.Client) error {
		return auditlog.Write(ctx, tx, auditlog.Entry{Actor: actor, Action: action, Target: c.ID,
			After: map[string]any{"scopes": c.Scopes, "disabled": c.Disabled(), "name": c.Name}})
	}))
	store, err := oauthclients.New(pool, opts...)
	if err != nil {
		return err
	}
	return fn(store)
}

// openClientsDB opens the database the clients commands manage.
func openClientsDB(cmd *cobra.Command, f *clientsFlags) (*pgxpool.Pool, error) {
	url, err := databaseURL(cmd.Context(), f.dbURL)
	if err != nil {
		return nil, err
	}
	return database.Open(cmd.Context(), database.Config{URL: url, ApplicationName: "switchyard-cli", MaxConns: 2})
}

// cliActor names the operator running the CLI in the audit log:
// "cli:<user>@<host>" ($SWITCHYARD_OPERATOR, when set, instead of the
// user, for shared accounts).
func cliActor() string {
	name := os.Getenv("SWITCHYARD_OPERATOR")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	if name == "" {
		name = "unknown"
	}
	host, _ := os.Hostname()
	return "cli:" + name + "@" + host
}

func newClientsCreateCmd(f *clientsFlags) *cobra.Command {
	var nc oauthclients.NewClient
	var secretEnv string
	var ifMissing bool
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Register a client and print its secret (shown only this once)",
		Example: `  switchyard clients create --name billing --scope jobs:submit --scope jobs:read
  switchyard clients create --id admin --scope switchyard:admin --secret-from-env ADMIN_SECRET --if-missing`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if secretEnv != "" {
				if nc.Secret = os.Getenv(secretEnv); nc.Secret == "" {
					return usageError{fmt.Errorf("--secret-from-env: $%s is empty", secretEnv)}
				}
			}
			if ifMissing && nc.ID == "" {
				return usageError{errors.New("--if-missing needs --id")}
			}
			if nc.ID != "" {
				if err := oauthclients.ValidateClientID(nc.ID); err != nil {
					return usageError{err}
				}
			}
			if err := oauthclients.ValidateScopes(nc.Scopes); err != nil {
				return usageError{err}
			}
			return withClients(cmd, f, func(s *oauthclients.Store) error {
				c, secret, err := s.Create(cmd.Context(), nc)
				if ifMissing && errors.Is(err, oauthclients.ErrExists) {
					fmt.Fprintf(cmd.ErrOrStderr(), "client %s already exists; left unchanged\n", nc.ID)
					return nil
				}
				if err != nil {
					return err
				}
				return printClients(cmd.OutOrStdout(), f.output, viewOf(c, secret))
			})
		},
	}
	cmd.Flags().StringVar(&nc.ID, "id", "", "client id (default: generated)")
	cmd.Flags().StringVar(&nc.Name, "name", "", "description for operators")
	cmd.Flags().StringSliceVar(&nc.Scopes, "scope", nil, "scope the client may request (repeatable or comma-separated)")
	cmd.Flags().StringVar(&secretEnv, "secret-from-env", "", "take the secret from this environment variable instead of generating one")
	cmd.Flags().BoolVar(&ifMissing, "if-missing", false, "do nothing if a client with --id exists (for provisioning scripts)")
	return cmd
}

func newClientsListCmd(f *clientsFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List clients (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withClients(cmd, f, func(s *oauthclients.Store) error {
				cs, err := s.List(cmd.Context())
				if err != nil {
					return err
				}
				views := make([]clientView, len(cs))
				for i, c := range cs {
					views[i] = viewOf(c, "")
				}
				return printClients(cmd.OutOrStdout(), f.output, views...)
			})
		},
	}
}

func newClientsSetDisabledCmd(f *clientsFlags, disable bool) *cobra.Command {
	use, short := "enable CLIENT_ID", "Enable a disabled client again"
	if disable {
		use, short = "disable CLIENT_ID", "Disable a client: no new tokens, and gateways refuse its unexpired ones"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClients(cmd, f, func(s *oauthclients.Store) error {
				c, err := s.SetDisabled(cmd.Context(), args[0], disable)
				if err != nil {
					return err
				}
				return printClients(cmd.OutOrStdout(), f.output, viewOf(c, ""))
			})
		},
	}
}

func newClientsSetScopesCmd(f *clientsFlags) *cobra.Command {
	var scopes []string
	cmd := &cobra.Command{
		Use:   "set-scopes CLIENT_ID --scope S [--scope S ...]",
		Short: "Replace the scopes a client may request (tokens already issued keep theirs until they expire)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(scopes) == 0 {
				return usageError{errors.New("name the scopes with --scope (a client without scopes can call only routes with scopes: [])")}
			}
			return withClients(cmd, f, func(s *oauthclients.Store) error {
				c, err := s.SetScopes(cmd.Context(), args[0], scopes)
				if err != nil {
					return err
				}
				return printClients(cmd.OutOrStdout(), f.output, viewOf(c, ""))
			})
		},
	}
	cmd.Flags().StringSliceVar(&scopes, "scope", nil, "scope the client may request (repeatable or comma-separated)")
	return cmd
}

func newClientsRotateCmd(f *clientsFlags) *cobra.Command {
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "rotate-secret CLIENT_ID",
		Short: "Give a client a new secret and print it (shown only this once)",
		Long: `Give a client a new secret and print it. With --grace the old secret keeps
working for that long, so that the client can switch without an outage.
Tokens already issued stay valid until they expire.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClients(cmd, f, func(s *oauthclients.Store) error {
				c, secret, err := s.RotateSecret(cmd.Context(), args[0], grace)
				if err != nil {
					return err
				}
				return printClients(cmd.OutOrStdout(), f.output, viewOf(c, secret))
			})
		},
	}
	cmd.Flags().DurationVar(&grace, "grace", 0, "how long the previous secret keeps working")
	return cmd
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

func printClients(w io.Writer, format string, views ...clientView) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if len(views) == 1 {
			return enc.Encode(views[0])
		}
		if views == nil {
			views = []clientView{}
		}
		return enc.Encode(views)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT ID\tNAME\tSCOPES\tSTATUS\tCREATED")
	for _, v := range views {
		status := "enabled"
		if v.Disabled {
			status = "disabled since " + v.DisabledAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.ClientID, v.Name, strings.Join(v.Scopes, " "), status, v.CreatedAt.UTC().Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	for _, v := range views {
		if v.ClientSecret != "" {
			fmt.Fprintf(w, "\nclient secret for %s (shown only now; store it safely):\n%s\n", v.ClientID, v.ClientSecret)
		}
	}
	return nil
}
