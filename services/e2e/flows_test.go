package e2e_test

import (
	"flag"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack"
)

// The package's tests are two groups that run one after the other:
// TestHeavyFlows, whose flows take turns, then TestWaitingFlows, whose tests
// run -parallel at a time (four in `go tool task test`), longest first. The two groups
// were tried side by side (one slot for the heavy flows, three for the
// waiting tests): on a two-core machine both took the same CPU, moto
// answered the 5,000-job run's relay too late and it failed, and the
// package took longer than one group after the other. One test runs with,
// e.g., go test -run 'TestHeavyFlows/PoisonMessages' or -run
// 'TestWaitingFlows/GatewayTLS'.

// TestHeavyFlows runs, one after another, the flows that push thousands of
// messages through SQS (the 2,000- and 5,000-job runs, the cancellation
// races, the poison and bulk-replay flows), the ones whose timing a busy
// SQS server would blur (scheduled jobs, the lifecycle, a sync route's
// fallback to a job) and the browser tests, on an SQS server of their own.
// The SQS server here (moto) serialises every call: beside each other these
// flows slow it until the relay's calls time out, and the package's
// server is shared with the other packages' tests that go test runs
// beside this one.
func TestHeavyFlows(t *testing.T) {
	stack, err := devstack.Start(t.Context(), devstack.Config{
		Dir: t.TempDir(), Components: []devstack.Component{devstack.SQS}, NewSQS: true,
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, stack.Stop()) })
	for _, flow := range []struct {
		name string
		run  func(t *testing.T, sqsServer string)
	}{
		{"FiveThousandConcurrentJobsWithPairsAndCrashes", fiveThousandConcurrentJobsWithPairsAndCrashes},
		{"TwoThousandJobs", twoThousandJobs},
		{"CancellationRacesOnThePlatform", cancellationRacesOnThePlatform},
		{"PoisonMessages", poisonMessages},
		{"BulkReplayFlow", bulkReplayFlow},
		{"BulkReplayResumesAfterSIGKILL", bulkReplayResumesAfterSIGKILL},
		{"JobLifecycle", jobLifecycle},
		{"ScheduledJobsRunWhenDue", scheduledJobsRunWhenDue},
		{"SyncRoutesAndDegradeToAsync", syncRoutesAndDegradeToAsync},
		{"Console", console},
		{"ConsoleSecurity", consoleSecurity},
		{"JobTypePause", jobTypePause},
	} {
		t.Run(flow.name, func(t *testing.T) { flow.run(t, stack.SQSEndpoint) })
	}
}

// TestWaitingFlows runs the tests that mostly wait (for retries, outages,
// lease and key refreshes, floods to be refused), each on a platform of its
// own and the package's SQS server, -parallel of them at once (lanes that
// take the next test as each one ends). They are listed longest first (as
// measured on the project's machine, 2026-12-06): started in that order the
// group ends with short tests side by side, not with one long test alone,
// as it did when t.Parallel let Go start them in no fixed order (the
// 150-second DynamicDatabaseCredentials started among the last).
func TestWaitingFlows(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"DynamicDatabaseCredentials", dynamicDatabaseCredentials},         // 150 s
		{"PipelineRecoversFromAnSQSPause", pipelineRecoversFromAnSQSPause}, // 127 s
		{"CompletionCallbacks", completionCallbacks},                       // 106 s
		{"GracefulDrainUnderLoad", gracefulDrainUnderLoad},                 // 104 s
		{"VaultOutage", vaultOutage},                                       // 68 s
		{"TokenServiceSecretCheckFlood", tokenServiceSecretCheckFlood},
		{"TokenServiceConnectionFlood", tokenServiceConnectionFlood},
		{"APIKeys", apiKeys},
		{"TokenServiceVictimLockout", tokenServiceVictimLockout},
		{"MetricsAfterTraffic", metricsAfterTraffic},
		{"TokenServiceBehindProxy", tokenServiceBehindProxy},
		{"ProvisionedPlatform", provisionedPlatform},
		{"TransitKeyRotationUnderTraffic", transitKeyRotationUnderTraffic},
		{"GatewayAttacks", gatewayAttacks},
		{"WorkerHTTPTargetAttacks", workerHTTPTargetAttacks},
		{"ConsoleSignInCannotLockAnOperatorOut", consoleSignInCannotLockAnOperatorOut},
		{"ShippedThrottling", shippedThrottling},
		{"OneTracePerJob", oneTracePerJob},
		{"SharedRateLimit", sharedRateLimit},
		{"ClientsTokensAndOwnership", clientsTokensAndOwnership},
		{"ExternalIdentityProviders", externalIdentityProviders},
		{"ConsoleOverTLS", consoleOverTLS},
		{"QuotaSurvivesRestart", quotaSurvivesRestart},
		{"UnknownKidFlood", unknownKidFlood},
		{"TokenServicePepperEnforced", tokenServicePepperEnforced},
		{"GatewayTLS", gatewayTLS},
		{"ScopeMatrix", scopeMatrix},
		{"KeyRotationWithoutRestart", keyRotationWithoutRestart},
		{"AttackSuite", attackSuite},
		{"AdminRefusalsAudited", adminRefusalsAudited},
		{"RequestHygiene", requestHygiene},
		{"AutoBlock", autoBlock},
		{"AdminMutualTLS", adminMutualTLS},
		{"GatewayShedsBeyondItsInFlightLimit", gatewayShedsBeyondItsInFlightLimit},
		{"MalformedRoutesFileStopsStartup", malformedRoutesFileStopsStartup},
		{"InvalidSettingExitsWithStatus2", invalidSettingExitsWithStatus2},
	}
	next := make(chan int, len(tests))
	for i := range tests {
		next <- i
	}
	close(next)
	// t.Run may be called from several goroutines at once; each returns
	// when its test has ended.
	var lanes sync.WaitGroup
	for range parallelism() {
		lanes.Go(func() {
			for i := range next {
				t.Run(tests[i].name, tests[i].run)
			}
		})
	}
	lanes.Wait()
}

// parallelism is go test's -parallel (GOMAXPROCS when not given).
func parallelism() int {
	if f := flag.Lookup("test.parallel"); f != nil {
		if n, err := strconv.Atoi(f.Value.String()); err == nil && n > 0 {
			return n
		}
	}
	return runtime.GOMAXPROCS(0)
}
