// Module k6tool pins k6, the load generator of loadtest/k6 (run it with
// `go tool -modfile=loadtest/k6tool/go.mod k6`, or through the
// loadtest:* tasks). k6 is AGPL-3.0: it is a development tool here, in its
// own module, never linked into or shipped with the services.
module github.com/switchyard/switchyard/loadtest/k6tool

go 1.26.8

tool go.k6.io/k6

require go.k6.io/k6 v1.8.1
