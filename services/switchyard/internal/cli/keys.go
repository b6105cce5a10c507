package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/libs/auditlog"
	"github.com/switchyard/switchyard/libs/database"
	"github.com/switchyard/switchyard/libs/signingkeys"
)

func newKeysCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage the token service's signing keys file",
		Long: `Manage the token service's signing keys file (SWITCHYARD_TOKENS_KEYS_FILE).

A rotation adds a key that activates after --lead: until then it is only
published in the JWKS, so that gateways learn it before any token carries
its kid. Keep --lead above the gateways' JWKS refresh interval
(SWITCHYARD_AUTH_JWKS_REFRESH, default 5m) plus the JWKS max-age. The key it
replaces stays published for the token lifetime plus clock skew; --retain
prunes from the file keys replaced longer ago than that. The token service
re-reads the file every SWITCHYARD_TOKENS_KEYS_RELOAD: no restart.`,
	}
	cmd.PersistentFlags().StringVar(&file, "file", "", "signing keys file (required)")
	_ = cmd.MarkPersistentFlagRequired("file")
	cmd.AddCommand(newKeysRotateCmd(&file), newKeysListCmd(&file))
	return cmd
}

func newKeysRotateCmd(file *string) *cobra.Command {
	var alg string
	var lead, retain time.Duration
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Add a new signing key (creating the file if needed) and prune retired ones",
		Example: `  switchyard keys rotate --file signing-keys.json                 # first key: active at once
  switchyard keys rotate --file signing-keys.json --lead 15m --retain 30m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ring, err := signingkeys.FileSource{Path: *file}.Load(cmd.Context())
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			now := time.Now()
			if _, ok := ring.Active(now); !ok {
				lead = 0 // nothing signs yet: the first key is needed now
			}
			ring, key, err := ring.Rotate(alg, now, lead, retain)
			if err != nil {
				return usageError{err}
			}
			if err := signingkeys.WriteFile(*file, ring); err != nil {
				return err
			}
			if err := auditKeyRotation(cmd, *file, key); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added %s key %s, signing from %s; %d key(s) in %s\n",
				key.Algorithm, key.ID, key.ActivatesAt.Format(time.RFC3339), len(ring.Keys), *file)
			return nil
		},
	}
	cmd.Flags().StringVar(&alg, "alg", signingkeys.ES256, "algorithm: ES256, EdDSA or RS256")
	cmd.Flags().DurationVar(&lead, "lead", 15*time.Minute, "how long the new key is published before it signs")
	cmd.Flags().DurationVar(&retain, "retain", time.Hour, "keep replaced keys this long (at least token lifetime + clock skew)")
	return cmd
}

func newKeysListCmd(file *string) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the keys in the file and their state (no private material)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ring, err := signingkeys.FileSource{Path: *file}.Load(cmd.Context())
			if err != nil {
				return err
			}
			now := time.Now()
			active, _ := ring.Active(now)
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KID\tALG\tACTIVATES\tSTATE")
			for _, k := range ring.Keys {
				state := "replaced"
				switch {
				case k.ActivatesAt.After(now):
					state = "published, not yet signing"
				case k.ID == active.ID:
					state = "signing"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.ID, k.Algorithm, k.ActivatesAt.Format(time.RFC3339), state)
			}
			return tw.Flush()
		},
	}
}

// auditKeyRotation records a rotation in the audit log when the CLI has a
// database (DATABASE_URL, as in every deployment); without one it says
// that the rotation is not audited.
func auditKeyRotation(cmd *cobra.Command, file string, key signingkeys.Key) error {
	dbURL := os.Getenv("DATABASE_URL")
	if dbURL == "" {
		fmt.Fprintln(cmd.ErrOrStderr(), "not recorded in the audit log: set DATABASE_URL to audit key rotations")
		return nil
	}
	url, err := databaseURL(cmd.Context(), dbURL)
	if err != nil {
		return fmt.Errorf("the key was rotated, but auditing it failed: %w", err)
	}
	pool, err := database.Open(cmd.Context(), database.Config{URL: url, ApplicationName: "switchyard-cli", MaxConns: 1})
	if err != nil {
		return fmt.Errorf("the key was rotated, but auditing it failed: %w", err)
	}
	defer pool.Close()
	err = auditlog.Write(cmd.Context(), pool, auditlog.Entry{Actor: cliActor(), Action: "keys.rotate", Target: file,
		After: map[string]any{"kid": key.ID, "alg": key.Algorithm, "activates_at": key.ActivatesAt.UTC().Format(time.RFC3339)}})
	if err != nil {
		return fmt.Errorf("the key was rotated, but auditing it failed: %w", err)
	}
	return nil
}
