package productionpath_test

import (
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/switchyard/switchyard/libs/jobcatalog"
)

// awsServices are the workloads that call SQS, by the name Terraform's
// policies use; the gateway and the token service never do.
var awsServices = []string{"init", "relay", "replay", "worker"}

// service is a workload's service name: switchyard-relay -> relay.
func service(w workload) string { return strings.TrimPrefix(w.Name, "switchyard-") }

// TestTerraformServesTheOverlaysJobTypes: every job type of the overlay's
// jobs.yaml has its queue and DLQ in Terraform's production variables,
// named as the services name them (item 6: Terraform's default job types
// were not the overlay's, so order-webhook had no queue).
func TestTerraformServesTheOverlaysJobTypes(t *testing.T) {
	r, tf := productionOverlay(t), terraform(t)
	for _, w := range r.Workloads {
		catalog := catalogOf(t, w)
		if catalog == nil {
			continue
		}
		prefix := w.Env["SWITCHYARD_QUEUE_PREFIX"]
		assert.Equal(t, tf.QueuePrefix, prefix, "%s: SWITCHYARD_QUEUE_PREFIX is Terraform's queue_prefix", w.Name)
		for _, name := range catalog.Names() {
			jt, ok := tf.JobTypes[name]
			if !assert.True(t, ok, "%s serves job type %s, which %s gives no queue", w.Name, name, tfvars) {
				continue
			}
			assert.Equal(t, prefix+name, jt.Queue)
			assert.Equal(t, prefix+name+"-dlq", jt.DLQ)
		}
	}
}

// TestServicesThatCallAWSHaveRoles: Terraform declares a policy and an
// IRSA role for every workload that calls SQS (item 7: the init Job had
// none), and the overlay annotates each one's service account with the
// role that `terraform output service_role_arns` names (item 8: no
// annotation, no credentials).
func TestServicesThatCallAWSHaveRoles(t *testing.T) {
	r, tf := productionOverlay(t), terraform(t)
	require.Contains(t, tf.Outputs, "service_role_arns")
	require.ElementsMatch(t, awsServices, slices.Sorted(mapsKeys(tf.Policies)), "a policy for each service that calls SQS, and no other")
	require.ElementsMatch(t, awsServices, tf.RoleServices, "an IRSA role for each")
	arn := regexp.MustCompile(`^arn:aws:iam::[0-9]{12}:role/` + regexp.QuoteMeta(tf.QueuePrefix) + `([a-z]+)$`)
	for _, w := range r.Workloads {
		svc := service(w)
		annotation := r.ServiceAccounts[w.ServiceAccount]["eks.amazonaws.com/role-arn"]
		if !slices.Contains(awsServices, svc) {
			assert.Empty(t, annotation, "%s never calls AWS and gets no role", w.Name)
			continue
		}
		m := arn.FindStringSubmatch(annotation)
		if assert.NotNil(t, m, "service account %s of %s carries its IAM role (eks.amazonaws.com/role-arn), not %q", w.ServiceAccount, w.Name, annotation) {
			assert.Equal(t, svc, m[1], "%s assumes its own role", w.Name)
		}
	}
}

// TestEgressAdmitsEveryTarget: every HTTP target of the overlay's job
// types (the worker calls them) and every upstream of its sync routes
// (the gateway calls them) is admitted by an egress NetworkPolicy that
// selects the caller (item 9: the worker's fulfilment.orders.svc:8080 was
// blocked).
func TestEgressAdmitsEveryTarget(t *testing.T) {
	r := productionOverlay(t)
	worker, gateway := r.workloadNamed(t, "switchyard-worker"), r.workloadNamed(t, "switchyard-gateway")
	catalog := catalogOf(t, worker)
	require.NotNil(t, catalog, "the worker reads a jobs file")
	checked := 0
	for _, jt := range catalog.Types() {
		if jt.HTTP == nil {
			continue
		}
		checked++
		assert.NoError(t, r.admits(worker, jt.HTTP.URL), "job type %s", jt.Name)
	}
	for _, u := range upstreams(t, gateway) {
		checked++
		assert.NoError(t, r.admits(gateway, u), "sync route upstream")
	}
	require.Positive(t, checked, "the overlay has targets to check")
}

// TestVerifiedTLSHasItsCA: a database URL with sslmode=verify-full (or
// verify-ca) names its CA file (sslrootcert), and that file is mounted
// (item 10: the RDS CA is not in the image, so every connection failed).
func TestVerifiedTLSHasItsCA(t *testing.T) {
	r := productionOverlay(t)
	checked := 0
	for _, w := range r.Workloads {
		for name, v := range w.Env {
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
				continue
			}
			mode := u.Query().Get("sslmode")
			if mode != "verify-full" && mode != "verify-ca" {
				continue
			}
			checked++
			ca := u.Query().Get("sslrootcert")
			if !assert.NotEmpty(t, ca, "%s %s: sslmode=%s needs sslrootcert, the CA the image lacks", w.Name, name, mode) {
				continue
			}
			_, file := w.Files[ca]
			_, external := w.ExternalMounts[filepath.Dir(ca)]
			assert.True(t, file || external, "%s %s: sslrootcert %s is not in a mounted volume", w.Name, name, ca)
		}
	}
	require.Positive(t, checked, "the production overlay verifies its database's certificate")
}

// TestEveryVaultReferenceIsInTheRunbook: each vault: reference the overlay
// uses is in deployments/k8s/README.md, whose provisioning step writes it
// (item 11: the gateway's Redis URL was never written nor mentioned). The
// run test proves that provisioning as the README says writes them all.
func TestEveryVaultReferenceIsInTheRunbook(t *testing.T) {
	r := productionOverlay(t)
	readme, err := os.ReadFile(filepath.Join(moduleRoot(t), "deployments", "k8s", "README.md"))
	require.NoError(t, err)
	for _, w := range r.Workloads {
		for name, v := range w.Env {
			ref, ok := strings.CutPrefix(v, "vault:")
			if !ok {
				continue
			}
			path, _, _ := strings.Cut(ref, "#")
			assert.True(t, strings.Contains(string(readme), path),
				"%s %s=%s: deployments/k8s/README.md does not say how %s is written", w.Name, name, v, path)
		}
	}
}

// admits reports why no egress policy selecting w lets it reach target
// (a URL), or nil.
func (r rendered) admits(w workload, target string) error {
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return err
	}
	// A cluster service: <name>.<namespace>.svc[.cluster.local], or a bare
	// <name> in the workloads' own namespace.
	host := u.Hostname()
	namespace := ""
	switch labels := strings.Split(strings.TrimSuffix(host, ".cluster.local"), "."); {
	case len(labels) == 3 && labels[2] == "svc":
		namespace = labels[1]
	case len(labels) == 1:
		namespace = r.Namespace
	}
	for _, spec := range r.NetworkPolicies {
		if !slices.Contains(spec.PolicyTypes, "Egress") || !spec.PodSelector.matches(w.Labels) {
			continue
		}
		for _, rule := range spec.Egress {
			portOK := len(rule.Ports) == 0
			for _, rp := range rule.Ports {
				portOK = portOK || rp.Port == nil || *rp.Port == p
			}
			if !portOK {
				continue
			}
			if len(rule.To) == 0 {
				return nil // any destination on this port
			}
			for _, peer := range rule.To {
				switch {
				case peer.IPBlock != nil:
					if prefix, err := netip.ParsePrefix(peer.IPBlock.CIDR); err == nil && namespace == "" &&
						(prefix.Bits() == 0 || ipIn(host, prefix)) {
						return nil
					}
				case namespace == "":
					// A pod selector cannot reach outside the cluster.
				case peer.NamespaceSelector == nil:
					if namespace == r.Namespace {
						return nil
					}
				case peer.NamespaceSelector.matches(map[string]string{"kubernetes.io/metadata.name": namespace}):
					return nil
				}
			}
		}
	}
	return &egressError{caller: w.Name, target: net.JoinHostPort(host, port)}
}

type egressError struct{ caller, target string }

func (e *egressError) Error() string {
	return "no egress NetworkPolicy lets " + e.caller + " reach " + e.target
}

func ipIn(host string, prefix netip.Prefix) bool {
	a, err := netip.ParseAddr(host)
	return err == nil && prefix.Contains(a)
}

// catalogOf parses the jobs file w reads, or returns nil when it reads
// none.
func catalogOf(t *testing.T, w workload) *jobcatalog.Catalog {
	t.Helper()
	data, ok := w.Files[w.Env["SWITCHYARD_JOBS_FILE"]]
	if !ok {
		return nil
	}
	c, err := jobcatalog.Parse([]byte(data))
	require.NoError(t, err, "%s's jobs file", w.Name)
	return c
}

// upstreams returns the upstream URLs of the sync routes w serves.
func upstreams(t *testing.T, w workload) []string {
	t.Helper()
	data, ok := w.Files[w.Env["SWITCHYARD_ROUTES_FILE"]]
	if !ok {
		return nil
	}
	var doc struct {
		Routes []struct {
			Upstream struct {
				URL string `yaml:"url"`
			} `yaml:"upstream"`
		} `yaml:"routes"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(data), &doc))
	var out []string
	for _, r := range doc.Routes {
		if r.Upstream.URL != "" {
			out = append(out, r.Upstream.URL)
		}
	}
	return out
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
