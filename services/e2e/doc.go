// Package e2e holds Switchyard's end-to-end tests: they build the service
// binaries, run them against real Postgres and SQS from the local stack
// harness, drive them over HTTP, and crash them with SIGKILL.
//
// Every test runs a platform of its own (database, queue prefix, ports),
// so any may run beside any other. The ones that push thousands of
// messages through SQS (the 2,000- and 5,000-job runs, the cancellation
// races, the poison and bulk-replay flows) and the browser tests run
// alone, first: they share one SQS server (moto, serialised) or need the
// CPU, and beside each other they slow it until the relay's calls time
// out. The rest mostly wait (for retries, outages, key refreshes) and
// call t.Parallel; `go tool task test` runs four of them at once.
package e2e
