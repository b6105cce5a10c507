// Command k8scheck builds kustomizations and checks what they produce,
// without a cluster:
//
//	go run . ../../k8s/base ../../k8s/overlays/production
//
// Each directory builds with kustomize (as `kubectl kustomize` does); each
// object decodes strictly (unknown or misspelt fields and wrong types
// fail) into its type from k8s.io/api; and Switchyard's rules hold: every
// Deployment has readiness, liveness and startup probes, CPU and memory
// requests and a memory limit, runs as non-root with a read-only root
// filesystem and no privilege escalation, has its own service account,
// and a PodDisruptionBudget selects it; every HorizontalPodAutoscaler
// scales a Deployment that exists; a default-deny NetworkPolicy is
// present; every container with a memory limit sets GOMEMLIMIT to at most
// 90% of it (and the token service's secret-check budget fits in half of
// that); and a Deployment that believes forwarding headers
// (*_TRUSTED_PROXIES) trusts no whole address family and is reachable on
// its public port only from selected pods, never from any source or an
// IP block, since any peer that can reach it could spoof its address.
package main

import (
	"errors"
	"fmt"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: k8scheck <kustomization dir>...\n       k8scheck render <kustomization dir>   (what it would run, as JSON)")
		os.Exit(2)
	}
	if os.Args[1] == "render" {
		if len(os.Args) != 3 {
			fmt.Fprintln(os.Stderr, "usage: k8scheck render <kustomization dir>")
			os.Exit(2)
		}
		if err := render(os.Args[2], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	var errs []error
	for _, dir := range os.Args[1:] {
		n, err := check(dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", dir, err))
			continue
		}
		fmt.Printf("%s: %d objects built and checked\n", dir, n)
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func check(dir string) (int, error) {
	objs, err := build(dir)
	if err != nil {
		return 0, err
	}
	return len(objs), errors.Join(rules(objs)...)
}

// build runs kustomize on dir and decodes every object strictly.
func build(dir string) ([]runtime.Object, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build: %w", err)
	}
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var objs []runtime.Object
	var errs []error
	for _, r := range resMap.Resources() {
		raw, err := r.AsYAML()
		if err != nil {
			return nil, err
		}
		obj, gvk, err := decoder.Decode(raw, nil, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", r.GetKind(), r.GetName(), err))
			continue
		}
		if gvk.Kind != r.GetKind() {
			errs = append(errs, fmt.Errorf("%s %s decoded as %s", r.GetKind(), r.GetName(), gvk.Kind))
		}
		objs = append(objs, obj)
	}
	return objs, errors.Join(errs...)
}

func rules(objs []runtime.Object) []error {
	var (
		errs        []error
		configMaps  = map[string]map[string]string{}
		policies    []*networkingv1.NetworkPolicy
		deployments = map[string]*appsv1.Deployment{}
		accounts    = map[string]bool{}
		pdbs        []*policyv1.PodDisruptionBudget
		hpas        []*autoscalingv2.HorizontalPodAutoscaler
		defaultDeny bool
	)
	for _, o := range objs {
		switch v := o.(type) {
		case *appsv1.Deployment:
			deployments[v.Name] = v
		case *corev1.ServiceAccount:
			accounts[v.Name] = true
		case *policyv1.PodDisruptionBudget:
			pdbs = append(pdbs, v)
		case *autoscalingv2.HorizontalPodAutoscaler:
			hpas = append(hpas, v)
		case *corev1.ConfigMap:
			configMaps[v.Name] = v.Data
		case *networkingv1.NetworkPolicy:
			policies = append(policies, v)
			if len(v.Spec.PodSelector.MatchLabels) == 0 && len(v.Spec.PodSelector.MatchExpressions) == 0 &&
				len(v.Spec.Ingress) == 0 && len(v.Spec.Egress) == 0 && len(v.Spec.PolicyTypes) == 2 {
				defaultDeny = true
			}
		}
	}
	if len(deployments) == 0 {
		errs = append(errs, errors.New("no Deployment"))
	}
	if !defaultDeny {
		errs = append(errs, errors.New("no default-deny NetworkPolicy (empty pod selector, Ingress and Egress, no rules)"))
	}
	for name, d := range deployments {
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("Deployment %s: %s", name, fmt.Sprintf(format, args...)))
		}
		spec := d.Spec.Template.Spec
		if sa := spec.ServiceAccountName; sa == "" || !accounts[sa] {
			fail("service account %q is not defined", sa)
		}
		if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			fail("pod does not set runAsNonRoot")
		}
		for _, c := range spec.Containers {
			if c.ReadinessProbe == nil || c.LivenessProbe == nil || c.StartupProbe == nil {
				fail("container %s lacks a readiness, liveness or startup probe", c.Name)
			}
			req, lim := c.Resources.Requests, c.Resources.Limits
			if req.Cpu().IsZero() || req.Memory().IsZero() || lim.Memory().IsZero() {
				fail("container %s lacks CPU and memory requests or a memory limit", c.Name)
			}
			errs = append(errs, memoryRules(name, c, configMaps)...)
			errs = append(errs, proxyRules(d, c, configMaps, policies)...)
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				fail("container %s must have a read-only root filesystem and no privilege escalation", c.Name)
			}
		}
		covered := false
		for _, p := range pdbs {
			sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			if err == nil && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				covered = true
			}
		}
		if !covered {
			fail("no PodDisruptionBudget selects its pods")
		}
	}
	for _, h := range hpas {
		ref := h.Spec.ScaleTargetRef
		if _, ok := deployments[ref.Name]; ref.Kind != "Deployment" || !ok {
			errs = append(errs, fmt.Errorf("HorizontalPodAutoscaler %s scales %s %s, which does not exist", h.Name, ref.Kind, ref.Name))
		}
	}
	return errs
}
