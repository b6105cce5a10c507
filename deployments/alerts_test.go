package deployments_test

import (
	"os"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestEveryAlertRuleHasATest: each rule of prometheus/alerts.yml appears in
// at least one promtool test case of prometheus/alerts_test.yml that
// expects it to fire (go tool task alerts:check runs them), so that the
// docs' "unit-tested" holds for every rule, not most.
func TestEveryAlertRuleHasATest(t *testing.T) {
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				AlertName string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	for file, v := range map[string]any{"prometheus/alerts.yml": &rules, "prometheus/alerts_test.yml": &tests} {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(raw, v); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	fires := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.AlertName] = true
			}
		}
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if !fires[r.Alert] {
				t.Errorf("alert %s has no test case in prometheus/alerts_test.yml that expects it to fire", r.Alert)
			}
		}
	}
	if n == 0 {
		t.Fatal("no alert rules read")
	}
}
