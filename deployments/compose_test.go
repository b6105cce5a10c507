// Package deployments_test checks the deployment files that no other
// test runs: the local stack's docker-compose.yml (which cannot run here;
// `docker compose config` validates its schema offline).
package deployments_test

import (
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type composeFile struct {
	Services map[string]struct {
		Ports       []string          `yaml:"ports"`
		Environment map[string]string `yaml:"environment"`
		MemLimit    string            `yaml:"mem_limit"`
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
