package main

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// envValue is a container's environment variable, resolved through a
// ConfigMap reference; ok is false when it is not set.
func envValue(c corev1.Container, name string, configMaps map[string]map[string]string) (string, bool) {
	for _, e := range c.Env {
		if e.Name != name {
			continue
		}
		if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
			ref := e.ValueFrom.ConfigMapKeyRef
			v, ok := configMaps[ref.Name][ref.Key]
			return v, ok
		}
		return e.Value, true
	}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef != nil {
			if v, ok := configMaps[from.ConfigMapRef.Name][name]; ok {
				return v, true
			}
		}
	}
	return "", false
}

// parseGoMemLimit reads GOMEMLIMIT's syntax: a number of bytes with an
// optional B, KiB, MiB, GiB or TiB suffix.
func parseGoMemLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("GOMEMLIMIT %q is not a size", s)
	}
	return n * mult, nil
}

// memoryRules: a Go process with a memory limit sets GOMEMLIMIT below it,
// so that the garbage collector works harder before the kernel kills it.
func memoryRules(name string, c corev1.Container, configMaps map[string]map[string]string) []error {
	limit := c.Resources.Limits.Memory()
	if limit.IsZero() {
		return nil
	}
	raw, ok := envValue(c, "GOMEMLIMIT", configMaps)
	if !ok {
		return []error{fmt.Errorf("Deployment %s: container %s has a memory limit but no GOMEMLIMIT", name, c.Name)}
	}
	soft, err := parseGoMemLimit(raw)
	if err != nil {
		return []error{fmt.Errorf("Deployment %s: container %s: %w", name, c.Name, err)}
	}
	if soft > limit.Value()*9/10 {
		return []error{fmt.Errorf("Deployment %s: container %s: GOMEMLIMIT %s is above 90%% of its memory limit %s", name, c.Name, raw, limit)}
	}
	if v, ok := envValue(c, "SWITCHYARD_TOKENS_HASH_MEMORY_MIB", configMaps); ok {
		mib, err := strconv.ParseInt(v, 10, 64)
		if err != nil || mib<<20 > soft/2 {
			return []error{fmt.Errorf("Deployment %s: container %s: SWITCHYARD_TOKENS_HASH_MEMORY_MIB %q must be a number of MiB at most half of GOMEMLIMIT", name, c.Name, v)}
		}
	}
	if _, ok := envValue(c, "SWITCHYARD_TOKENS_ADDR", configMaps); ok {
		if _, ok := envValue(c, "SWITCHYARD_TOKENS_HASH_MEMORY_MIB", configMaps); !ok {
			return []error{fmt.Errorf("Deployment %s: container %s: the token service needs SWITCHYARD_TOKENS_HASH_MEMORY_MIB sized to its limit", name, c.Name)}
		}
	}
	return nil
}

// trustedProxyVars are the settings that make a service believe
// forwarding headers from some peers.
var trustedProxyVars = []string{"SWITCHYARD_EDGE_TRUSTED_PROXIES", "SWITCHYARD_TOKENS_TRUSTED_PROXIES"}

// proxyRules: a service that believes X-Forwarded-For from a network must
// be reachable on its public port only from selected pods (the ingress);
// otherwise any pod in that network can claim any address.
func proxyRules(d *appsv1.Deployment, c corev1.Container, configMaps map[string]map[string]string, policies []*networkingv1.NetworkPolicy) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("Deployment %s: %s", d.Name, fmt.Sprintf(format, args...)))
	}
	trusts := false
	for _, v := range trustedProxyVars {
		raw, ok := envValue(c, v, configMaps)
		if !ok || strings.TrimSpace(raw) == "" {
			continue
		}
		trusts = true
		for _, cidr := range strings.Split(raw, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(cidr))
			if err != nil {
				fail("%s: %q is not a CIDR", v, cidr)
				continue
			}
			if p.Bits() == 0 {
				fail("%s trusts every address (%s)", v, p)
			}
		}
	}
	if !trusts {
		return errs
	}
	public := map[int32]bool{}
	for _, p := range c.Ports {
		if p.Name == "http" {
			public[p.ContainerPort] = true
		}
	}
	podLabels := labels.Set(d.Spec.Template.Labels)
	for _, np := range policies {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(podLabels) {
			continue
		}
		for i, rule := range np.Spec.Ingress {
			if !coversPort(rule.Ports, public) {
				continue
			}
			if len(rule.From) == 0 {
				fail("NetworkPolicy %s rule %d admits any source to its public port, yet it trusts forwarding headers", np.Name, i)
			}
			for _, peer := range rule.From {
				switch {
				case peer.IPBlock != nil:
					fail("NetworkPolicy %s rule %d admits an IP block (%s) to its public port, yet it trusts forwarding headers", np.Name, i, peer.IPBlock.CIDR)
				case peer.NamespaceSelector != nil && peer.PodSelector == nil:
					fail("NetworkPolicy %s rule %d admits every pod of selected namespaces to its public port; name the ingress pods too", np.Name, i)
				case peer.NamespaceSelector != nil && len(peer.NamespaceSelector.MatchLabels) == 0 && len(peer.NamespaceSelector.MatchExpressions) == 0:
					fail("NetworkPolicy %s rule %d admits pods of every namespace to its public port", np.Name, i)
				}
			}
		}
	}
	return errs
}

// coversPort reports whether a rule's ports include one of public (no
// ports: every port).
func coversPort(ports []networkingv1.NetworkPolicyPort, public map[int32]bool) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if p.Port == nil || public[p.Port.IntVal] {
			return true
		}
	}
	return false
}
