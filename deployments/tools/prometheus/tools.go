//go:build tools

// Package prometheustool pins the versions of promtool, which checks and
// unit-tests the alert rules and the Prometheus configuration in
// deployments/prometheus, and amtool, which checks the Alertmanager
// example there.
package prometheustool

import (
	_ "github.com/prometheus/alertmanager/cmd/amtool"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
