// Package e2e holds Switchyard's end-to-end tests: they build the service
// binaries, run them against real Postgres and SQS from the local stack
// harness, drive them over HTTP, and crash them with SIGKILL.
//
// Every test runs a platform of its own (database, queue prefix, ports),
// so any may run beside any other. They are subtests of two groups that
// run one after the other (flows_test.go): TestHeavyFlows takes, one after
// another, the flows that push thousands of messages through SQS (the
// 2,000- and 5,000-job runs, the cancellation races, the poison and
// bulk-replay flows), the timing-sensitive ones and the browser tests, on
// an SQS server of their own (moto serialises every call; beside each
// other these flows slow it until the relay's calls time out); then
// TestWaitingFlows' tests, which mostly wait (for retries, outages, key
// refreshes), run four at once in `go tool task test`, longest first.
package e2e
