// Package e2e holds Switchyard's end-to-end tests: they build the service
// binaries, run them against real Postgres and SQS from the local stack
// harness, drive them over HTTP, and crash them with SIGKILL.
package e2e
