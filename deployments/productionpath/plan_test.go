// Package productionpath_test holds the production path to what runs:
// the Kubernetes production overlay, rendered with Kustomize, and the
// Terraform module, evaluated from its .tf files, are checked against
// each other (rules_test.go) and run: the real binaries with exactly the
// rendered configuration, against Postgres over verified TLS, Vault with
// Kubernetes auth, and an SQS server enforcing the IAM policies Terraform
// declares (run_test.go).
package productionpath_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// The production overlay, its Terraform variables, and where the tests
// pretend to be (the overlay's region; moto's default account).
const (
	overlay   = "deployments/k8s/overlays/production"
	tfvars    = "deployments/terraform/production.tfvars"
	region    = "eu-west-1"
	accountID = "123456789012"
)

// rendered mirrors k8scheck's render output
// (deployments/tools/k8scheck/render.go).
type rendered struct {
	Workloads       []workload                   `json:"workloads"`
	Services        map[string]map[string]int    `json:"services"`
	ServiceAccounts map[string]map[string]string `json:"service_accounts"`
	NetworkPolicies map[string]policySpec        `json:"network_policies"`
	Namespace       string                       `json:"namespace"`
}

type workload struct {
	Kind           string            `json:"kind"`
	Name           string            `json:"name"`
	ServiceAccount string            `json:"service_account"`
	Image          string            `json:"image"`
	Command        []string          `json:"command"`
	Env            map[string]string `json:"env"`
	Files          map[string]string `json:"files"`
	ExternalMounts map[string]string `json:"external_mounts"`
	Ports          map[string]int    `json:"ports"`
	ReadinessPath  string            `json:"readiness_path"`
	ReadinessPort  int               `json:"readiness_port"`
	Labels         map[string]string `json:"labels"`
}

// policySpec is the part of a NetworkPolicy's spec the rules read.
type policySpec struct {
	PodSelector labelSelector `json:"podSelector"`
	PolicyTypes []string      `json:"policyTypes"`
	Egress      []struct {
		Ports []struct {
			Protocol string `json:"protocol"`
			Port     *int   `json:"port"`
		} `json:"ports"`
		To []struct {
			NamespaceSelector *labelSelector `json:"namespaceSelector"`
			PodSelector       *labelSelector `json:"podSelector"`
			IPBlock           *struct {
				CIDR string `json:"cidr"`
			} `json:"ipBlock"`
		} `json:"to"`
	} `json:"egress"`
}

type labelSelector struct {
	MatchLabels      map[string]string `json:"matchLabels"`
	MatchExpressions []struct {
		Key      string   `json:"key"`
		Operator string   `json:"operator"`
		Values   []string `json:"values"`
	} `json:"matchExpressions"`
}

// matches reports whether the selector selects labels (an empty selector
// selects everything).
func (s labelSelector) matches(labels map[string]string) bool {
	for k, v := range s.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	for _, e := range s.MatchExpressions {
		v, has := labels[e.Key]
		in := false
		for _, want := range e.Values {
			in = in || (has && v == want)
		}
		switch e.Operator {
		case "In":
			if !in {
				return false
			}
		case "NotIn":
			if in {
				return false
			}
		case "Exists":
			if !has {
				return false
			}
		case "DoesNotExist":
			if has {
				return false
			}
		}
	}
	return true
}

// terraformPlan mirrors tfplan's output (deployments/tools/tfplan).
type terraformPlan struct {
	QueuePrefix  string                     `json:"queue_prefix"`
	JobTypes     map[string]tfJobType       `json:"job_types"`
	Policies     map[string]json.RawMessage `json:"policies"`
	RoleServices []string                   `json:"role_services"`
	Outputs      []string                   `json:"outputs"`
}

// tfJobType is one job type's queues as Terraform declares them.
type tfJobType struct {
	Queue                    string `json:"queue"`
	DLQ                      string `json:"dlq"`
	QueueARN                 string `json:"queue_arn"`
	DLQARN                   string `json:"dlq_arn"`
	VisibilityTimeoutSeconds int    `json:"visibility_timeout_seconds"`
	MaxReceiveCount          int    `json:"max_receive_count"`
}

var (
	renderOnce sync.Once
	renderOut  rendered
	renderErr  error
	tfOnce     sync.Once
	tfOut      terraformPlan
	tfErr      error
)

// moduleRoot is the repository's root.
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := devstack.ModuleRoot(".")
	require.NoError(t, err)
	return root
}

// runTool runs `go run . args...` in a tool module under
// deployments/tools and decodes its JSON output into v.
func runTool(root, tool string, v any, args ...string) error {
	cmd := exec.Command("go", append([]string{"run", "."}, args...)...)
	cmd.Dir = filepath.Join(root, "deployments", "tools", tool)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return &toolError{tool: tool, err: err, stderr: stderr.String()}
	}
	return json.Unmarshal(stdout.Bytes(), v)
}

type toolError struct {
	tool   string
	err    error
	stderr string
}

func (e *toolError) Error() string { return e.tool + ": " + e.err.Error() + ": " + e.stderr }

// productionOverlay renders the production overlay (once per test binary).
func productionOverlay(t *testing.T) rendered {
	t.Helper()
	root := moduleRoot(t)
	renderOnce.Do(func() {
		renderErr = runTool(root, "k8scheck", &renderOut, "render", filepath.Join(root, overlay))
	})
	require.NoError(t, renderErr)
	return renderOut
}

// terraform evaluates the Terraform root module with the production
// variables (once per test binary).
func terraform(t *testing.T) terraformPlan {
	t.Helper()
	root := moduleRoot(t)
	tfOnce.Do(func() {
		tfErr = runTool(root, "tfplan", &tfOut, "-root", filepath.Join(root, "deployments", "terraform"),
			"-var-file", filepath.Join(root, tfvars), "-region", region, "-account", accountID)
	})
	require.NoError(t, tfErr)
	return tfOut
}

// workloadNamed returns the rendered workload of that name.
func (r rendered) workloadNamed(t *testing.T, name string) workload {
	t.Helper()
	for _, w := range r.Workloads {
		if w.Name == name {
			return w
		}
	}
	t.Fatalf("the overlay has no workload %s", name)
	return workload{}
}
