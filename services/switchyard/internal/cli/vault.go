package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/services/switchyard/internal/vaultsetup"
)

func newVaultCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vault",
		Short: "Set Vault up for Switchyard (VAULT_ADDR, VAULT_TOKEN of an operator)",
	}
	cmd.AddCommand(newVaultProvisionCmd())
	return cmd
}

// provisionVault runs vaultsetup.Provision with VAULT_ADDR and VAULT_TOKEN,
// prints what it did, and returns it with the client it used.
func provisionVault(cmd *cobra.Command, plan vaultsetup.Plan) (vaultsetup.Result, *vault.Client, error) {
	addr := os.Getenv("VAULT_ADDR")
	if addr == "" || os.Getenv("VAULT_TOKEN") == "" {
		return vaultsetup.Result{}, nil, usageError{errors.New("set VAULT_ADDR and VAULT_TOKEN (a token allowed to manage mounts, policies and auth methods)")}
	}
	if plan.DatabaseURL == "" {
		return vaultsetup.Result{}, nil, usageError{errors.New("no database: set DATABASE_URL or --database-url (an admin user who can create roles)")}
	}
	cfg := vault.DefaultConfig()
	cfg.Address = addr
	client, err := vault.NewClient(cfg)
	if err != nil {
		return vaultsetup.Result{}, nil, fmt.Errorf("creating Vault client: %w", err)
	}
	res, err := vaultsetup.Provision(cmd.Context(), client, plan)
	if err != nil {
		return res, nil, err
	}
	out := cmd.OutOrStdout()
	for _, c := range res.Created {
		fmt.Fprintln(out, "created", c)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tAPPROLE\tDATABASE ROLE\tSECRET ID FILE")
	for _, r := range res.Ordered() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Service, r.AppRole, r.DatabaseRole, dash(r.SecretIDFile))
	}
	if err := tw.Flush(); err != nil {
		return res, nil, fmt.Errorf("writing output: %w", err)
	}
	fmt.Fprintf(out, "token signing key: SWITCHYARD_TOKENS_KEYS_TRANSIT=%s\n", res.TransitKey)
	if res.PepperRef != "" {
		fmt.Fprintf(out, "client-secret pepper: SWITCHYARD_CLIENT_SECRET_PEPPER=%s (the token service and 'switchyard clients')\n", res.PepperRef)
	}
	if res.APIKeyPepperRef != "" {
		fmt.Fprintf(out, "API key pepper: SWITCHYARD_API_KEY_PEPPER=%s (the gateways and 'switchyard api-keys')\n", res.APIKeyPepperRef)
	}
	if res.KubernetesMount != "" {
		fmt.Fprintf(out, "Kubernetes auth at %s: a role per service (VAULT_KUBERNETES_ROLE=%s-<service>) bound to the service account of that name in namespace %s; the init Job's role %s reads only %s/%s/admin/database\n",
			res.KubernetesMount, plan.Prefix, plan.Kubernetes.Namespace, res.InitRole, plan.KVMount, plan.Prefix)
	}
	if res.SQSSecret != "" {
		fmt.Fprintf(out, "SQS credentials: SWITCHYARD_SQS_ACCESS_KEY_ID=vault:%[1]s#access_key_id SWITCHYARD_SQS_SECRET_ACCESS_KEY=vault:%[1]s#secret_access_key\n", res.SQSSecret)
	}
	return res, client, nil
}

// Where, under <kv>/<prefix>/, provisioning keeps the URLs an operator
// gives it: the schema owner's, which the Kubernetes init Job migrates
// with, and the gateway's Redis.
const (
	schemaOwnerSecret  = "admin/database"
	gatewayRedisSecret = "gateway/redis"
)

func newVaultProvisionCmd() *cobra.Command {
	var plan vaultsetup.Plan
	var services string
	var sqsFromEnv bool
	var k8s vaultsetup.KubernetesAuth
	var k8sCAFile, ownerURL, redisURL string
	cmd := &cobra.Command{
		Use:   "provision",
		Short: "Provision Vault for every service (idempotent): AppRoles, policies, database users, signing key",
		Long: `Provision Vault for Switchyard; every step is idempotent.

  - per service an AppRole <prefix>-<service> whose policy allows only what
    the service needs: its database role, its own KV secrets
    (<kv>/<prefix>/<service>/*), the shared ones it uses (the SQS
    credentials <kv>/<prefix>/shared/sqs: relay, worker and replay only),
    and for the token service signing with the transit key;
  - the database secrets engine, connected with DATABASE_URL's user (who
    must be able to create roles), with a role per service whose users are
    created IN ROLE switchyard_<service>, which holds exactly that
    service's grants (run migrations first);
  - the transit key <prefix>-jwt (ecdsa-p256) that signs access tokens;
  - with --credentials-dir, each service's role-id and secret-id files
    (a secret id that still logs in is kept);
  - with --kubernetes-namespace, the Kubernetes auth method (configured
    with --kubernetes-host, or as it is) and a role per service,
    <prefix>-<service>, bound to the service account of that name in the
    namespace (deployments/k8s), plus <prefix>-init for the init Job,
    which may read only <kv>/<prefix>/admin/database (the schema owner's
    URL: --schema-owner-url, by default --database-url);
  - with --redis-url, the gateway's Redis URL at
    <kv>/<prefix>/gateway/redis#url (SWITCHYARD_REDIS_URL=vault:... in
    deployments/k8s).

KV secrets are written once: a second run keeps what is there (change one
with 'vault kv put').

Run it with an operator's token (VAULT_TOKEN); the services then log in
with VAULT_AUTH_METHOD=approle and the files (VAULT_ROLE_ID_FILE,
VAULT_SECRET_ID_FILE), SWITCHYARD_VAULT_DATABASE_ROLE=<prefix>-<service>,
and the token service with SWITCHYARD_TOKENS_KEYS_TRANSIT.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if services != "" {
				plan.Services = strings.Split(services, ",")
			}
			if sqsFromEnv {
				plan.SQSAccessKeyID, plan.SQSSecretAccessKey = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
				if plan.SQSAccessKeyID == "" || plan.SQSSecretAccessKey == "" {
					return usageError{errors.New("--sqs-credentials-from-env needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")}
				}
			}
			if ownerURL == "" && k8s.Namespace != "" {
				ownerURL = plan.DatabaseURL
			}
			for path, value := range map[string]string{schemaOwnerSecret: ownerURL, gatewayRedisSecret: redisURL} {
				if value == "" {
					continue
				}
				if plan.Secrets == nil {
					plan.Secrets = map[string]map[string]any{}
				}
				plan.Secrets[path] = map[string]any{"url": value}
			}
			if k8s.Namespace != "" {
				if k8sCAFile != "" {
					ca, err := os.ReadFile(k8sCAFile)
					if err != nil {
						return usageError{fmt.Errorf("--kubernetes-ca-cert-file: %w", err)}
					}
					k8s.CACert = string(ca)
				}
				plan.Kubernetes = &k8s
			} else if k8s.Host != "" || k8sCAFile != "" || k8s.Audience != "" || k8s.VaultOutsideCluster {
				return usageError{errors.New("the --kubernetes-* flags need --kubernetes-namespace (where the service accounts are)")}
			}
			_, _, err := provisionVault(cmd, plan)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&plan.DatabaseURL, "database-url", os.Getenv("DATABASE_URL"), "admin connection for the database engine (default $DATABASE_URL)")
	fl.StringVar(&plan.CredentialsDir, "credentials-dir", "", "write <service>/role-id and <service>/secret-id here")
	fl.StringVar(&plan.Prefix, "prefix", "switchyard", "name of every role, policy and KV path")
	fl.StringVar(&services, "services", "", "comma-separated services (default: gateway,tokens,relay,worker,replay)")
	fl.DurationVar(&plan.DatabaseTTL, "db-ttl", time.Hour, "lease of a database user")
	fl.DurationVar(&plan.DatabaseMaxTTL, "db-max-ttl", 24*time.Hour, "longest life of a database user")
	fl.DurationVar(&plan.TokenTTL, "token-ttl", time.Hour, "TTL of the services' Vault tokens (they renew them)")
	fl.StringVar(&plan.KVMount, "kv-mount", "secret", "KV v2 mount")
	fl.StringVar(&plan.DatabaseMount, "database-mount", "database", "database secrets engine mount")
	fl.StringVar(&plan.TransitMount, "transit-mount", "transit", "transit engine mount")
	fl.StringVar(&plan.AppRoleMount, "approle-mount", "approle", "AppRole auth mount")
	fl.BoolVar(&plan.ClientSecretPepper, "client-secret-pepper", true, "create the token service's client-secret pepper (<kv>/<prefix>/tokens/oauth, written once)")
	fl.BoolVar(&plan.APIKeyPepper, "api-key-pepper", true, "create the gateways' API key pepper (<kv>/<prefix>/shared/api-keys, written once)")
	fl.StringVar(&k8s.Namespace, "kubernetes-namespace", "", "set up Kubernetes auth for the service accounts in this namespace")
	fl.StringVar(&k8s.Mount, "kubernetes-mount", "kubernetes", "Kubernetes auth mount")
	fl.StringVar(&k8s.Host, "kubernetes-host", "", "Kubernetes API server that reviews service-account tokens (default: keep the method's configuration)")
	fl.StringVar(&k8sCAFile, "kubernetes-ca-cert-file", "", "PEM CA bundle of the Kubernetes API server")
	fl.BoolVar(&k8s.VaultOutsideCluster, "kubernetes-vault-outside-cluster", false, "Vault runs outside the cluster: no local CA file or reviewer token (with --kubernetes-host)")
	fl.StringVar(&k8s.Audience, "kubernetes-audience", "", "audience the service-account tokens must carry")
	fl.StringVar(&ownerURL, "schema-owner-url", "", "URL of the schema's owner, for the init Job (<kv>/<prefix>/admin/database#url, written once; default with --kubernetes-namespace: --database-url)")
	fl.StringVar(&redisURL, "redis-url", "", "the gateway's Redis URL (<kv>/<prefix>/gateway/redis#url, written once)")
	fl.BoolVar(&sqsFromEnv, "sqs-credentials-from-env", false, "store AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY as the services' SQS credentials (<kv>/<prefix>/shared/sqs, written once)")
	return cmd
}
