package e2e_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack"
)

// The package's tests are two groups that run side by side, so that the
// longest starts at once whatever order go test hands out its -parallel
// slots in: TestHeavyFlows holds one slot for the whole run and
// TestWaitingFlows' tests share the others (three of `go tool task
// test`'s four). One test runs with, e.g., go test -run
// 'TestHeavyFlows/PoisonMessages' or -run 'TestWaitingFlows/GatewayTLS'.

// TestHeavyFlows runs, one after another, the flows that push thousands of
// messages through SQS (the 2,000- and 5,000-job runs, the cancellation
// races, the poison and bulk-replay flows), the ones whose timing a busy
// SQS server would blur (scheduled jobs, the lifecycle, a sync route's
// fallback to a job) and the browser tests, on an SQS server of their own.
// The SQS server here (moto) serialises every call: beside each other these
// flows slow it until the relay's calls time out, and beside them the
// waiting tests' calls would queue.
func TestHeavyFlows(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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
