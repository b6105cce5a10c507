package main

import (
	"errors"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func production(t *testing.T) []runtime.Object {
	t.Helper()
	objs, err := build("../../k8s/overlays/production")
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(rules(objs)...); err != nil {
		t.Fatalf("the production overlay breaks a rule: %v", err)
	}
	return objs
}

// TestProxyTrustNeedsClosedPublicPort: the shipped policy admits only the
// ingress controller's pods to the public ports; the policy as it was
// (any source), an IP block, or a whole namespace is refused, because
// the gateway and the token service believe X-Forwarded-For from the pod
// network.
func TestProxyTrustNeedsClosedPublicPort(t *testing.T) {
	cases := map[string]func(*networkingv1.NetworkPolicyIngressRule){
		"any source": func(r *networkingv1.NetworkPolicyIngressRule) { r.From = nil },
		"an IP block": func(r *networkingv1.NetworkPolicyIngressRule) {
			r.From = []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}}}
		},
		"a whole namespace": func(r *networkingv1.NetworkPolicyIngressRule) { r.From[0].PodSelector = nil },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			objs := production(t)
			for _, o := range objs {
				if np, ok := o.(*networkingv1.NetworkPolicy); ok && np.Name == "switchyard-public" {
					mutate(&np.Spec.Ingress[0])
				}
			}
			errs := rules(objs)
			if len(errs) < 2 {
				t.Fatalf("want the gateway and the token service refused, got %v", errs)
			}
			t.Log(errors.Join(errs...))
		})
	}
}

// TestTrustEverything: trusting 0.0.0.0/0 is refused.
func TestTrustEverything(t *testing.T) {
	objs := production(t)
	for _, o := range objs {
		if d, ok := o.(*appsv1.Deployment); ok && d.Name == "switchyard-gateway" {
			for i, e := range d.Spec.Template.Spec.Containers[0].Env {
				if e.Name == "SWITCHYARD_EDGE_TRUSTED_PROXIES" {
					d.Spec.Template.Spec.Containers[0].Env[i].ValueFrom = nil
					d.Spec.Template.Spec.Containers[0].Env[i].Value = "0.0.0.0/0"
				}
			}
		}
	}
	if errs := rules(objs); len(errs) != 1 {
		t.Fatalf("want one error, got %v", errs)
	}
}

// TestGoMemLimit: a container with a memory limit and no GOMEMLIMIT, or
// one above 90% of the limit, is refused.
func TestGoMemLimit(t *testing.T) {
	for name, value := range map[string]string{"missing": "", "too high": "250MiB"} {
		t.Run(name, func(t *testing.T) {
			objs := production(t)
			for _, o := range objs {
				if d, ok := o.(*appsv1.Deployment); ok && d.Name == "switchyard-tokens" {
					c := &d.Spec.Template.Spec.Containers[0]
					for i, e := range c.Env {
						if e.Name == "GOMEMLIMIT" {
							if value == "" {
								c.Env = append(c.Env[:i], c.Env[i+1:]...)
							} else {
								c.Env[i].Value = value
							}
							break
						}
					}
				}
			}
			if errs := rules(objs); len(errs) != 1 {
				t.Fatalf("want one error, got %v", errs)
			}
		})
	}
}
