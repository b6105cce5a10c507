package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/libs/apikeys"
	"github.com/switchyard/switchyard/libs/auditlog"
	"github.com/switchyard/switchyard/libs/config"
	"github.com/switchyard/switchyard/libs/oauthclients"
)

func newAPIKeysCmd() *cobra.Command {
	var f clientsFlags
	cmd := &cobra.Command{
		Use:   "api-keys",
		Short: "Manage clients' API keys (DATABASE_URL, SWITCHYARD_API_KEY_PEPPER)",
		Long: `Manage API keys, directly in Postgres.

A key is printed once, when it is created or rotated; only an HMAC-SHA256
of it under SWITCHYARD_API_KEY_PEPPER (the gateways' pepper, a value or a
vault: reference) is stored. A key works on the routes whose auth list
names api_key, with its own scopes (a subset of its client's), expiry,
source networks and usage plan. Revoking a key makes every gateway refuse
it within milliseconds (Postgres NOTIFY; at worst 10 s). Every change is
audited.`,
	}
	f.register(cmd)
	cmd.AddCommand(newAPIKeysCreateCmd(&f), newAPIKeysListCmd(&f), newAPIKeysRevokeCmd(&f), newAPIKeysRotateCmd(&f))
	return cmd
}

// apiKeysEnv bundles what the api-keys commands work with.
type apiKeysEnv struct {
	keys    *apikeys.Store
	clients *oauthclients.Store
}

// withAPIKeys runs fn with an audited key store; needPepper says whether
// the command makes keys (and so needs the pepper).
func withAPIKeys(cmd *cobra.Command, f *clientsFlags, needPepper bool, fn func(apiKeysEnv) error) error {
	var cfg struct {
		Pepper config.Secret `conf:"mask,env:SWITCHYARD_API_KEY_PEPPER"`
	}
	if err := config.Load(cmd.Context(), &cfg); err != nil {
		return fmt.Errorf("reading SWITCHYARD_API_KEY_PEPPER: %w", err)
	}
	var hasher *apikeys.Hasher
	if p := cfg.Pepper.Value(); p != "" {
		var err error
		if hasher, err = apikeys.NewHasher([]byte(p)); err != nil {
			return usageError{fmt.Errorf("SWITCHYARD_API_KEY_PEPPER: %w", err)}
		}
	} else if needPepper {
		return usageError{errors.New("no pepper: set SWITCHYARD_API_KEY_PEPPER to the gateways' (a value or a vault: reference)")}
	}
	pool, err := openClientsDB(cmd, f)
	if err != nil {
		return err
	}
	defer pool.Close()
	clients, err := oauthclients.New(pool)
	if err != nil {
		return err
	}
	actor := cliActor()
	store := apikeys.NewStore(pool, hasher).Audited(func(ctx context.Context, tx pgx.Tx, action string, k apikeys.Key) error {
		return auditlog.Write(ctx, tx, auditlog.Entry{Actor: actor, Action: action, Target: k.ID, After: auditedKey(k)})
	})
	return fn(apiKeysEnv{keys: store, clients: clients})
}

// auditedKey is what an audit row says of a key (never the key).
func auditedKey(k apikeys.Key) map[string]any {
	return map[string]any{"client_id": k.ClientID, "name": k.Name, "scopes": k.Scopes, "allowed_cidrs": k.AllowedCIDRs,
		"expires_at": k.ExpiresAt, "plan": k.Plan, "rotated_from": k.RotatedFrom, "revoked_at": k.RevokedAt}
}

type apiKeyFlags struct {
	client, name, period string
	scopes, cidrs        []string
	expiresIn            time.Duration
	rate                 float64
	burst                int
	quota                int64
}

func newAPIKeysCreateCmd(f *clientsFlags) *cobra.Command {
	var kf apiKeyFlags
	cmd := &cobra.Command{
		Use:   "create --client ID",
		Short: "Create an API key for a client and print it (the only time it is shown)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nk, err := kf.newKey()
			if err != nil {
				return usageError{err}
			}
			return withAPIKeys(cmd, f, true, func(env apiKeysEnv) error {
				c, err := env.clients.Get(cmd.Context(), kf.client)
				if err != nil {
					return err
				}
				nk.ClientScopes = c.Scopes
				key, rec, err := env.keys.Create(cmd.Context(), nk)
				if err != nil {
					return err
				}
				return printNewKey(cmd.OutOrStdout(), f.output, key, rec)
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&kf.client, "client", "", "the client the key belongs to (required)")
	fl.StringVar(&kf.name, "name", "", "what the key is for, to recognise it in lists")
	fl.StringSliceVar(&kf.scopes, "scopes", nil, "the key's scopes, a subset of the client's (default: all of the client's)")
	fl.StringSliceVar(&kf.cidrs, "allow-cidr", nil, "source networks the key may be used from, e.g. 203.0.113.0/24 (repeatable; default: anywhere)")
	fl.DurationVar(&kf.expiresIn, "expires-in", 0, "the key expires this long from now, e.g. 2160h (default: never)")
	fl.Float64Var(&kf.rate, "rate", 0, "usage plan: requests per second (token bucket; 0: the routes' own limits only)")
	fl.IntVar(&kf.burst, "burst", 0, "usage plan: burst above the rate (default: the rate, at least 1)")
	fl.Int64Var(&kf.quota, "quota", 0, "usage plan: requests per --quota-period (0: none)")
	fl.StringVar(&kf.period, "quota-period", "", "usage plan: day or month (UTC)")
	return cmd
}

func (kf apiKeyFlags) newKey() (apikeys.NewKey, error) {
	if kf.client == "" {
		return apikeys.NewKey{}, errors.New("--client is required")
	}
	nk := apikeys.NewKey{ClientID: kf.client, Name: kf.name, Scopes: kf.scopes,
		Plan: apikeys.Plan{RatePerSecond: kf.rate, Burst: kf.burst, Quota: kf.quota, QuotaPeriod: kf.period}}
	for _, raw := range kf.cidrs {
		p, err := netip.ParsePrefix(strings.TrimSpace(raw))
		if err != nil {
			addr, aerr := netip.ParseAddr(strings.TrimSpace(raw))
			if aerr != nil {
				return nk, fmt.Errorf("--allow-cidr %q is not a network (203.0.113.0/24) or an address", raw)
			}
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		nk.AllowedCIDRs = append(nk.AllowedCIDRs, p)
	}
	if kf.expiresIn < 0 {
		return nk, errors.New("--expires-in cannot be negative")
	}
	if kf.expiresIn > 0 {
		at := time.Now().Add(kf.expiresIn)
		nk.ExpiresAt = &at
	}
	return nk, nk.Plan.Validate()
}

func printNewKey(w io.Writer, format, key string, rec apikeys.Key) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Key    string      `json:"key"`
			APIKey apikeys.Key `json:"api_key"`
		}{key, rec})
	}
	fmt.Fprintf(w, "API key %s for client %s (scopes: %s)\n", rec.ID, rec.ClientID, strings.Join(rec.Scopes, " "))
	fmt.Fprintf(w, "key: %s\n", key)
	fmt.Fprintln(w, "This is the only time the key is shown: store it now. Send it as X-API-Key.")
	return nil
}

func newAPIKeysListCmd(f *clientsFlags) *cobra.Command {
	var client string
	cmd := &cobra.Command{
		Use:   "list [--client ID]",
		Short: "List API keys (never the keys themselves)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAPIKeys(cmd, f, false, func(env apiKeysEnv) error {
				keys, err := env.keys.List(cmd.Context(), client)
				if err != nil {
					return err
				}
				return printKeys(cmd.OutOrStdout(), f.output, keys)
			})
		},
	}
	cmd.Flags().StringVar(&client, "client", "", "only this client's keys")
	return cmd
}

func printKeys(w io.Writer, format string, keys []apikeys.Key) error {
	if format == "json" {
		if keys == nil {
			keys = []apikeys.Key{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(keys)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCLIENT\tNAME\tSCOPES\tSTATE\tEXPIRES\tLAST USED")
	now := time.Now()
	for _, k := range keys {
		state := "active"
		switch {
		case k.RevokedAt != nil:
			state = "revoked"
		case !k.Usable(now):
			state = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.ClientID, k.Name, strings.Join(k.Scopes, " "), state,
			formatTime(k.ExpiresAt), formatTime(k.LastUsedAt))
	}
	return tw.Flush()
}

func formatTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func newAPIKeysRevokeCmd(f *clientsFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke KEY_ID",
		Short: "Revoke an API key: every gateway refuses it within a second",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !apikeys.ValidID(args[0]) {
				return usageError{fmt.Errorf("%q is not a key id (16 characters a-z, 2-7: the part after sy_)", args[0])}
			}
			return withAPIKeys(cmd, f, false, func(env apiKeysEnv) error {
				k, err := env.keys.Revoke(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if f.output == "json" {
					return printKeys(cmd.OutOrStdout(), f.output, []apikeys.Key{k})
				}
				fmt.Fprintf(cmd.OutOrStdout(), "API key %s of client %s revoked at %s\n", k.ID, k.ClientID, formatTime(k.RevokedAt))
				return nil
			})
		},
	}
}

func newAPIKeysRotateCmd(f *clientsFlags) *cobra.Command {
	var overlap time.Duration
	cmd := &cobra.Command{
		Use:   "rotate KEY_ID [--overlap 24h]",
		Short: "Replace an API key with a new one (printed once); the old one keeps working for --overlap",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !apikeys.ValidID(args[0]) {
				return usageError{fmt.Errorf("%q is not a key id (16 characters a-z, 2-7: the part after sy_)", args[0])}
			}
			if overlap < 0 {
				return usageError{errors.New("--overlap cannot be negative")}
			}
			return withAPIKeys(cmd, f, true, func(env apiKeysEnv) error {
				old, err := env.keys.Get(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				c, err := env.clients.Get(cmd.Context(), old.ClientID)
				if err != nil {
					return err
				}
				key, rec, err := env.keys.Rotate(cmd.Context(), args[0], overlap, c.Scopes)
				if err != nil {
					return err
				}
				if f.output == "text" {
					// The old key's own expiry, which may come before the
					// overlap ends.
					ended, err := env.keys.Get(cmd.Context(), args[0])
					if err != nil {
						return err
					}
					if ended.ExpiresAt != nil {
						fmt.Fprintf(cmd.OutOrStdout(), "API key %s keeps working until %s\n", args[0], ended.ExpiresAt.UTC().Format(time.RFC3339))
					}
				}
				return printNewKey(cmd.OutOrStdout(), f.output, key, rec)
			})
		},
	}
	cmd.Flags().DurationVar(&overlap, "overlap", 24*time.Hour, "how long the old key keeps working")
	return cmd
}
