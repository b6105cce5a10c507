// Package breakergauge turns a gobreaker circuit breaker's state into the
// value of the platform's per-process dependency breaker gauges
// (switchyard_sqs_breaker_open, switchyard_vault_breaker_open), so that
// every such gauge reads the same way on a dashboard.
package breakergauge

import "github.com/sony/gobreaker/v2"

// Open is 1 while the breaker is open (calls are answered at once,
// unsent), 0.5 while it lets a probe through, and 0 while it is closed.
func Open(s gobreaker.State) float64 {
	switch s {
	case gobreaker.StateOpen:
		return 1
	case gobreaker.StateHalfOpen:
		return 0.5
	default:
		return 0
	}
}
