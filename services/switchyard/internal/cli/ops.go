package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/libs/oauthclients"
	"github.com/switchyard/switchyard/libs/signingkeys"
	"github.com/switchyard/switchyard/migrations"
	"github.com/switchyard/switchyard/services/switchyard/internal/vaultsetup"
)

// newInitCmd is the one-shot set-up step of a deployment (the compose
// "init" service): migrations, every job type's queues, the token
// service's first signing key, and the bootstrap OAuth client.
func newInitCmd(logger *slog.Logger) *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Prepare a deployment: migrations, queues, first signing key, bootstrap client (idempotent)",
		Long: `Prepare a deployment; every step is idempotent.

  DATABASE_URL                          apply migrations (a URL, or a vault: reference
                                        read with the VAULT_* login, as the services do)
  SWITCHYARD_JOBS_FILE, SQS settings    create every job type's queue and DLQ
  SWITCHYARD_TOKENS_KEYS_FILE           create the signing keys file if it is missing
  SWITCHYARD_BOOTSTRAP_CLIENT_ID        create this OAuth client if it is missing, with
  SWITCHYARD_BOOTSTRAP_CLIENT_SECRET    this secret (at least 32 characters; with Vault:
                                        generated when empty, kept in Vault at
                                        secret/switchyard/admin/bootstrap-client) and
  SWITCHYARD_BOOTSTRAP_CLIENT_SCOPES    these scopes (space-separated)
  SWITCHYARD_INIT_VAULT_CREDENTIALS_DIR provision Vault (VAULT_ADDR, VAULT_TOKEN) as
                                        'switchyard vault provision' does, writing
                                        the services' AppRole credentials here`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dbURL, err := databaseURL(cmd.Context(), os.Getenv("DATABASE_URL"))
			if err != nil {
				return err
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
			if path := os.Getenv("SWITCHYARD_TOKENS_KEYS_FILE"); path != "" {
				if err := ensureSigningKeys(cmd.Context(), path, cmd.OutOrStdout()); err != nil {
					return err
				}
			}
			bootstrapID := os.Getenv("SWITCHYARD_BOOTSTRAP_CLIENT_ID")
			bootstrapSecret := os.Getenv("SWITCHYARD_BOOTSTRAP_CLIENT_SECRET")
			if dir := os.Getenv("SWITCHYARD_INIT_VAULT_CREDENTIALS_DIR"); dir != "" {
				// The init step's AWS credentials become the services' SQS
				// credentials, read from Vault; the pepper is made before the
				// bootstrap client's secret is hashed with it; that secret is
				// kept in Vault (operators only), generated when not given.
				plan := vaultsetup.Plan{DatabaseURL: dbURL, CredentialsDir: dir, ClientSecretPepper: true, APIKeyPepper: true,
					SQSAccessKeyID: os.Getenv("AWS_ACCESS_KEY_ID"), SQSSecretAccessKey: os.Getenv("AWS_SECRET_ACCESS_KEY")}
				if bootstrapID != "" {
					if bootstrapSecret == "" {
						bootstrapSecret = oauthclients.NewSecret()
					}
					plan.Secrets = map[string]map[string]any{bootstrapClientSecret: {"client_id": bootstrapID, "client_secret": bootstrapSecret}}
				}
				_, client, err := provisionVault(cmd, plan)
				if err != nil {
					return err
				}
				if bootstrapID != "" {
					// The secret Vault holds: this run's, or an earlier one's.
					s, err := client.KVv2("secret").Get(cmd.Context(), "switchyard/"+bootstrapClientSecret)
					if err != nil {
						return fmt.Errorf("reading the bootstrap client's secret: %w", err)
					}
					bootstrapSecret, _ = s.Data["client_secret"].(string)
					fmt.Fprintf(cmd.OutOrStdout(), "bootstrap client %s: its secret is in Vault at secret/switchyard/%s\n", bootstrapID, bootstrapClientSecret)
				}
			}
			if bootstrapID != "" {
				if err := ensureBootstrapClient(cmd, dbURL, bootstrapID, bootstrapSecret); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func ensureSigningKeys(ctx context.Context, path string, out io.Writer) error {
	_, err := signingkeys.FileSource{Path: path}.Load(ctx)
	if err == nil {
		fmt.Fprintf(out, "signing keys present in %s\n", path)
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	ring, key, err := signingkeys.Ring{}.Rotate(signingkeys.ES256, time.Now(), 0, 0)
	if err != nil {
		return err
	}
	if err := signingkeys.WriteFile(path, ring); err != nil {
		return err
	}
	fmt.Fprintf(out, "created signing key %s in %s\n", key.ID, path)
	return nil
}

// bootstrapClientSecret is where, under secret/switchyard/, the init step
// keeps the bootstrap client's id and secret (no service may read it).
const bootstrapClientSecret = "admin/bootstrap-client"

func ensureBootstrapClient(cmd *cobra.Command, dbURL, id, secret string) error {
	if len(secret) < 32 {
		return usageError{errors.New("SWITCHYARD_BOOTSTRAP_CLIENT_SECRET must hold at least 32 characters")}
	}
	scopes := strings.Fields(os.Getenv("SWITCHYARD_BOOTSTRAP_CLIENT_SCOPES"))
	return withClients(cmd, &clientsFlags{dbURL: dbURL}, func(s *oauthclients.Store) error {
		_, _, err := s.Create(cmd.Context(), oauthclients.NewClient{ID: id, Name: "bootstrap", Scopes: scopes, Secret: secret})
		switch {
		case errors.Is(err, oauthclients.ErrExists):
			fmt.Fprintf(cmd.OutOrStdout(), "bootstrap client %s present\n", id)
			return nil
		case err != nil:
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "created bootstrap client %s with scopes %v\n", id, scopes)
		return nil
	})
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
