package e2e_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack"
)

// The package's tests are two groups that run one after the other:
// TestHeavyFlows, whose flows take turns, then TestWaitingFlows, whose tests
// run -parallel at a time (four in `go tool task test`). The two groups
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
// own and the package's SQS server; each calls t.Parallel.
func TestWaitingFlows(t *testing.T) {
	for _, test := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"GatewayShedsBeyondItsInFlightLimit", gatewayShedsBeyondItsInFlightLimit},
		{"APIKeys", apiKeys},
		{"ClientsTokensAndOwnership", clientsTokensAndOwnership},
		{"AttackSuite", attackSuite},
		{"ScopeMatrix", scopeMatrix},
		{"UnknownKidFlood", unknownKidFlood},
		{"KeyRotationWithoutRestart", keyRotationWithoutRestart},
		{"CompletionCallbacks", completionCallbacks},
		{"InvalidSettingExitsWithStatus2", invalidSettingExitsWithStatus2},
		{"ConsoleOverTLS", consoleOverTLS},
		{"ConsoleSignInCannotLockAnOperatorOut", consoleSignInCannotLockAnOperatorOut},
		{"GracefulDrainUnderLoad", gracefulDrainUnderLoad},
		{"SharedRateLimit", sharedRateLimit},
		{"QuotaSurvivesRestart", quotaSurvivesRestart},
		{"RequestHygiene", requestHygiene},
		{"AutoBlock", autoBlock},
		{"GatewayTLS", gatewayTLS},
		{"AdminMutualTLS", adminMutualTLS},
		{"ExternalIdentityProviders", externalIdentityProviders},
		{"OneTracePerJob", oneTracePerJob},
		{"MetricsAfterTraffic", metricsAfterTraffic},
		{"PipelineRecoversFromAnSQSPause", pipelineRecoversFromAnSQSPause},
		{"GatewayAttacks", gatewayAttacks},
		{"WorkerHTTPTargetAttacks", workerHTTPTargetAttacks},
		{"ShippedThrottling", shippedThrottling},
		{"AdminRefusalsAudited", adminRefusalsAudited},
		{"MalformedRoutesFileStopsStartup", malformedRoutesFileStopsStartup},
		{"TokenServiceSecretCheckFlood", tokenServiceSecretCheckFlood},
		{"TokenServiceBehindProxy", tokenServiceBehindProxy},
		{"TokenServiceVictimLockout", tokenServiceVictimLockout},
		{"TokenServicePepperEnforced", tokenServicePepperEnforced},
		{"TokenServiceConnectionFlood", tokenServiceConnectionFlood},
		{"VaultOutage", vaultOutage},
		{"DynamicDatabaseCredentials", dynamicDatabaseCredentials},
		{"TransitKeyRotationUnderTraffic", transitKeyRotationUnderTraffic},
		{"ProvisionedPlatform", provisionedPlatform},
	} {
		t.Run(test.name, test.run)
	}
}
