// Package deployments_test checks the deployment files that no other
// test runs: the local stack's docker-compose.yml (which cannot run here;
// `docker compose config` validates its schema offline).
package deployments_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

type composeFile struct {
	Services map[string]struct {
		Ports       []string          `yaml:"ports"`
		Environment map[string]string `yaml:"environment"`
		MemLimit    string            `yaml:"mem_limit"`
		// StopGracePeriod is how long `docker compose stop` waits.
		StopGracePeriod string `yaml:"stop_grace_period"`
	} `yaml:"services"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	raw, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Services) == 0 {
		t.Fatal("no services in docker-compose.yml")
	}
	return f
}

// TestComposePortsOnLoopback (security item 17): the local stack holds
// well-known root credentials (Postgres, Vault's dev root token, the demo
// client), so every published port binds to 127.0.0.1, never to every
// interface of the developer's machine.
func TestComposePortsOnLoopback(t *testing.T) {
	for name, svc := range loadCompose(t).Services {
		for _, p := range svc.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("service %s publishes %q on every interface; write 127.0.0.1:%s", name, p, p)
			}
		}
	}
}

// TestComposeMemoryLimits: a Switchyard service with a memory limit tells
// the Go runtime (GOMEMLIMIT), and the token service bounds its secret
// checks, as the Kubernetes manifests do.
func TestComposeMemoryLimits(t *testing.T) {
	f := loadCompose(t)
	for _, name := range []string{"gateway", "tokens", "relay", "worker", "replay"} {
		svc, ok := f.Services[name]
		if !ok {
			t.Errorf("no service %s", name)
			continue
		}
		if svc.MemLimit == "" || svc.Environment["GOMEMLIMIT"] == "" {
			t.Errorf("service %s: mem_limit %q, GOMEMLIMIT %q: set both", name, svc.MemLimit, svc.Environment["GOMEMLIMIT"])
		}
	}
	if f.Services["tokens"].Environment["SWITCHYARD_TOKENS_HASH_MEMORY_MIB"] == "" {
		t.Error("tokens: SWITCHYARD_TOKENS_HASH_MEMORY_MIB is not set")
	}
}

// TestComposeStopGrace: `docker compose stop` waits for each service at
// least as long as it drains (SWITCHYARD_DRAIN_DELAY, then
// SWITCHYARD_SHUTDOWN_TIMEOUT for requests or messages in flight), with
// room to spare; compose's default of 10 s cut the 20 s drains short
// (production-path item 12).
func TestComposeStopGrace(t *testing.T) {
	f := loadCompose(t)
	for _, name := range []string{"gateway", "tokens", "relay", "worker", "replay"} {
		svc := f.Services[name]
		grace, err := time.ParseDuration(svc.StopGracePeriod)
		if err != nil {
			t.Errorf("service %s: stop_grace_period %q: set one (compose's default, 10s, is shorter than the drain): %v", name, svc.StopGracePeriod, err)
			continue
		}
		var drain time.Duration
		for _, env := range []string{"SWITCHYARD_DRAIN_DELAY", "SWITCHYARD_SHUTDOWN_TIMEOUT"} {
			if v, ok := svc.Environment[env]; ok {
				d, err := time.ParseDuration(v)
				if err != nil {
					t.Errorf("service %s: %s=%q: %v", name, env, v, err)
				}
				drain += d
			}
		}
		if name != "relay" && drain == 0 {
			t.Errorf("service %s: set SWITCHYARD_SHUTDOWN_TIMEOUT, so that its stop grace can be checked against it", name)
		}
		if grace < drain+5*time.Second {
			t.Errorf("service %s: stop_grace_period %s, but it drains for %s: give it at least 5s more", name, grace, drain)
		}
	}
}

// TestComposeJaegerListens: the traces the services send to
// http://jaeger:4318 reach Jaeger, whose built-in configuration listens on
// localhost unless JAEGER_LISTEN_HOST says otherwise (item 13).
func TestComposeJaegerListens(t *testing.T) {
	j, ok := loadCompose(t).Services["jaeger"]
	if !ok {
		t.Fatal("no jaeger service")
	}
	if j.Environment["JAEGER_LISTEN_HOST"] != "0.0.0.0" {
		t.Errorf("jaeger: JAEGER_LISTEN_HOST=%q: its OTLP receiver would listen on the container's localhost only", j.Environment["JAEGER_LISTEN_HOST"])
	}
}
