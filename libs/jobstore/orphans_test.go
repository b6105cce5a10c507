package jobstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/jobmessage"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/libs/outbox"
)

// TestResendInFlight: jobs whose messages had been forwarded (queued) get
// a new message each, with a new id and the job's own fields; a job whose
// message still waits in the outbox does not get a second one.
func TestResendInFlight(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	store := jobstore.New(pool)
	var ids []string
	for _, text := range []string{`{"text":"a"}`, `{"text":"b"}`, `{"text":"c"}`} {
		job, _, err := store.Accept(ctx, submission("c1", "", text))
		require.NoError(t, err)
		ids = append(ids, job.ID)
	}
	// The relay forwards two of them: their rows leave the outbox and
	// their jobs are queued.
	claim, err := outbox.ClaimBatch(ctx, pool, 2)
	require.NoError(t, err)
	var forwarded []int64
	var queued []string
	for _, r := range claim.Rows {
		forwarded = append(forwarded, r.Offset)
		queued = append(queued, r.Message.Metadata[jobmessage.JobID])
	}
	require.NoError(t, jobstore.MarkQueued(ctx, claim.Tx(), queued))
	require.NoError(t, claim.Complete(ctx, forwarded))

	n, err := jobstore.ResendInFlight(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, 2, n)

	claim, err = outbox.ClaimBatch(ctx, pool, 10)
	require.NoError(t, err)
	defer claim.Release(ctx)
	require.Len(t, claim.Rows, 3, "one unsent from the start, two sent again")
	var again []string
	for _, r := range claim.Rows {
		id := r.Message.Metadata[jobmessage.JobID]
		if id == queued[0] || id == queued[1] {
			again = append(again, id)
			require.Equal(t, "c1", r.Message.Metadata[jobmessage.ClientID])
			require.Equal(t, "text-stats", r.Message.Topic)
		}
	}
	require.ElementsMatch(t, queued, again)
	require.Subset(t, ids, again)
}

// TestCounts: what the fault drill reads, on real rows.
func TestCounts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	store := jobstore.New(pool)
	job, _, err := store.Accept(ctx, submission("c1", "", `{"text":"a"}`))
	require.NoError(t, err)

	n, err := jobstore.CountUnfinished(ctx, pool, time.Now().Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = jobstore.CountUnfinished(ctx, pool, time.Now().Add(-time.Minute))
	require.NoError(t, err)
	require.Zero(t, n, "accepted within the last minute")
	n, err = jobstore.CountProcessing(ctx, pool)
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = jobstore.CountNotSucceeded(ctx, pool, []string{job.ID, "00000000-0000-0000-0000-000000000001"})
	require.NoError(t, err)
	require.Equal(t, 2, n, "one unfinished, one missing")
}
