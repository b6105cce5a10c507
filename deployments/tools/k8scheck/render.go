package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Rendered is what a cluster would run from a kustomization, in the terms a
// process needs: per workload its command, its environment resolved
// through ConfigMaps, and the files its ConfigMap volumes mount. The
// production-path test (deployments/productionpath) starts the real
// binaries from it.
type Rendered struct {
	Workloads []Workload `json:"workloads"`
	// Services maps a Service's name to its ports: port -> container port
	// of the pods it selects (by the port's name or number).
	Services map[string]map[int32]int32 `json:"services"`
	// ServiceAccounts maps a service account's name to its annotations.
	ServiceAccounts map[string]map[string]string `json:"service_accounts"`
	// NetworkPolicies maps a NetworkPolicy's name to its spec, as the
	// Kubernetes API serialises it.
	NetworkPolicies map[string]networkingv1.NetworkPolicySpec `json:"network_policies"`
	// Namespace is the namespace the objects are in ("" when not set).
	Namespace string `json:"namespace"`
}

// Workload is one Deployment or Job's first container.
type Workload struct {
	Kind           string            `json:"kind"`
	Name           string            `json:"name"`
	ServiceAccount string            `json:"service_account"`
	Image          string            `json:"image"`
	Command        []string          `json:"command"`
	Env            map[string]string `json:"env"`
	// Files maps a mounted path to its content (ConfigMap volumes).
	Files map[string]string `json:"files"`
	// ExternalMounts maps a mount path to the ConfigMap mounted there that
	// the manifests do not define (an operator creates it).
	ExternalMounts map[string]string `json:"external_mounts"`
	// Ports maps a container port's name to its number.
	Ports map[string]int32 `json:"ports"`
	// Readiness is the readiness probe's HTTP path and port number.
	ReadinessPath string `json:"readiness_path,omitempty"`
	ReadinessPort int32  `json:"readiness_port,omitempty"`
	// Selector is the pod template's labels (Services select them).
	Labels map[string]string `json:"labels"`
}

// render builds dir and writes what it would run as JSON.
func render(dir string, out io.Writer) error {
	objs, err := build(dir)
	if err != nil {
		return err
	}
	r, err := renderObjects(objs)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func renderObjects(objs []runtime.Object) (Rendered, error) {
	r := Rendered{Services: map[string]map[int32]int32{}, ServiceAccounts: map[string]map[string]string{},
		NetworkPolicies: map[string]networkingv1.NetworkPolicySpec{}}
	configMaps := map[string]map[string]string{}
	var pods []struct {
		kind, name string
		spec       corev1.PodTemplateSpec
	}
	var services []*corev1.Service
	for _, o := range objs {
		switch v := o.(type) {
		case *corev1.ConfigMap:
			configMaps[v.Name] = v.Data
		case *corev1.ServiceAccount:
			r.ServiceAccounts[v.Name] = v.Annotations
			r.Namespace = v.Namespace
		case *networkingv1.NetworkPolicy:
			r.NetworkPolicies[v.Name] = v.Spec
		case *corev1.Service:
			services = append(services, v)
		case *appsv1.Deployment:
			pods = append(pods, struct {
				kind, name string
				spec       corev1.PodTemplateSpec
			}{"Deployment", v.Name, v.Spec.Template})
		case *batchv1.Job:
			pods = append(pods, struct {
				kind, name string
				spec       corev1.PodTemplateSpec
			}{"Job", v.Name, v.Spec.Template})
		}
	}
	for _, p := range pods {
		spec := p.spec.Spec
		if len(spec.Containers) == 0 {
			return r, fmt.Errorf("%s %s has no container", p.kind, p.name)
		}
		c := spec.Containers[0]
		w := Workload{Kind: p.kind, Name: p.name, ServiceAccount: spec.ServiceAccountName, Image: c.Image,
			Command: c.Command, Env: map[string]string{}, Files: map[string]string{}, ExternalMounts: map[string]string{}, Ports: map[string]int32{},
			Labels: p.spec.Labels}
		for _, from := range c.EnvFrom {
			if from.ConfigMapRef == nil {
				return r, fmt.Errorf("%s %s: only ConfigMap envFrom is supported", p.kind, p.name)
			}
			cm, ok := configMaps[from.ConfigMapRef.Name]
			if !ok {
				return r, fmt.Errorf("%s %s: envFrom names ConfigMap %s, which does not exist", p.kind, p.name, from.ConfigMapRef.Name)
			}
			for k, v := range cm {
				w.Env[from.Prefix+k] = v
			}
		}
		for _, e := range c.Env {
			v, ok := envValue(c, e.Name, configMaps)
			if !ok {
				return r, fmt.Errorf("%s %s: %s refers to a ConfigMap key that does not exist", p.kind, p.name, e.Name)
			}
			w.Env[e.Name] = v
		}
		for _, port := range c.Ports {
			w.Ports[port.Name] = port.ContainerPort
		}
		if rp := c.ReadinessProbe; rp != nil && rp.HTTPGet != nil {
			w.ReadinessPath = rp.HTTPGet.Path
			w.ReadinessPort = rp.HTTPGet.Port.IntVal
			if name := rp.HTTPGet.Port.StrVal; name != "" {
				w.ReadinessPort = w.Ports[name]
			}
		}
		volumes := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = v
		}
		for _, m := range c.VolumeMounts {
			v, ok := volumes[m.Name]
			if !ok {
				return r, fmt.Errorf("%s %s mounts volume %s, which it does not declare", p.kind, p.name, m.Name)
			}
			if v.ConfigMap == nil {
				continue // only ConfigMap volumes carry files a process reads
			}
			cm, ok := configMaps[v.ConfigMap.Name]
			if !ok {
				w.ExternalMounts[m.MountPath] = v.ConfigMap.Name
				continue
			}
			keys := map[string]string{}
			if len(v.ConfigMap.Items) == 0 {
				for k := range cm {
					keys[k] = k
				}
			}
			for _, it := range v.ConfigMap.Items {
				keys[it.Key] = it.Path
			}
			for key, rel := range keys {
				if m.SubPath != "" {
					if m.SubPath == rel {
						w.Files[m.MountPath] = cm[key]
					}
					continue
				}
				w.Files[path.Join(m.MountPath, rel)] = cm[key]
			}
		}
		r.Workloads = append(r.Workloads, w)
	}
	sort.Slice(r.Workloads, func(i, j int) bool { return r.Workloads[i].Name < r.Workloads[j].Name })
	for _, s := range services {
		ports := map[int32]int32{}
		for _, sp := range s.Spec.Ports {
			target := sp.TargetPort.IntVal
			for _, w := range r.Workloads {
				if selects(s.Spec.Selector, w.Labels) && sp.TargetPort.StrVal != "" {
					target = w.Ports[sp.TargetPort.StrVal]
				}
			}
			if target == 0 {
				target = sp.Port
			}
			ports[sp.Port] = target
		}
		r.Services[s.Name] = ports
	}
	return r, nil
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}
