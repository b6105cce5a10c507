package deadletterstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/deadletter"
	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/jobmessage"
	"github.com/switchyard/switchyard/libs/jobs"
	"github.com/switchyard/switchyard/libs/jobstore"
	"github.com/switchyard/switchyard/services/replay/internal/deadletterstore"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

type env struct {
	t     *testing.T
	pool  *pgxpool.Pool
	jobs  *jobstore.Store
	store *deadletterstore.Store
}

func newEnv(t *testing.T) *env {
	pool := stacktest.NewPool(t)
	return &env{t: t, pool: pool, jobs: jobstore.New(pool), store: deadletterstore.New(pool)}
}

func newID(t *testing.T) string {
	id, err := uuid.NewV7()
	require.NoError(t, err)
	return id.String()
}

// accept submits a job of type orders for client shop and returns its id
// and its first message's id.
func (e *env) accept(payload string) (jobID, messageID string) {
	e.t.Helper()
	jobID, messageID = newID(e.t), newID(e.t)
	_, created, err := e.jobs.Accept(context.Background(), jobs.Submission{ID: jobID, MessageID: messageID, Type: "orders",
		ClientID: "shop", Payload: json.RawMessage(payload), TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	require.NoError(e.t, err)
	require.True(e.t, created)
	return jobID, messageID
}

// crashLooped ingests the job's message as SQS's redrive moves it: no
// worker metadata.
func (e *env) crashLooped(jobID, messageID, payload string) deadletterstore.DeadLetter {
	e.t.Helper()
	n, err := e.store.Ingest(context.Background(), []deadletterstore.Incoming{{
		MessageID: messageID, SQSMessageID: "sqs-" + messageID, Topic: "orders", JobID: jobID, ReceiveCount: 10,
		SentAt: time.Now().UTC(), Payload: []byte(payload), Attributes: map[string]string{jobmessage.JobID: jobID},
	}})
	require.NoError(e.t, err)
	require.Equal(e.t, 1, n)
	page, _, err := e.store.List(context.Background(), deadletterstore.Filter{Topic: "orders"}, 100, "")
	require.NoError(e.t, err)
	for _, d := range page {
		if d.MessageID == messageID {
			return d
		}
	}
	e.t.Fatalf("dead letter of message %s not listed", messageID)
	return deadletterstore.DeadLetter{}
}

func (e *env) jobStatus(id string) string {
	var s string
	require.NoError(e.t, e.pool.QueryRow(context.Background(), `SELECT status FROM jobs WHERE id = $1`, id).Scan(&s))
	return s
}

// TestIngestCompletesFromTheJobOnce: a message SQS moved (no worker
// metadata) is completed from its job (client, trace) and dead-letters
// it; the same message again stores nothing.
func TestIngestCompletesFromTheJobOnce(t *testing.T) {
	e := newEnv(t)
	jobID, msgID := e.accept(`{"n":1}`)
	d := e.crashLooped(jobID, msgID, `{"n":1}`)
	require.Equal(t, deadletter.ReasonMaxReceiveCount, d.Reason)
	require.Equal(t, "shop", d.ClientID, "completed from the job")
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", d.TraceID)
	require.Equal(t, jobID, d.JobID)
	require.Equal(t, string(jobs.StatusDeadLettered), e.jobStatus(jobID))

	n, err := e.store.Ingest(context.Background(), []deadletterstore.Incoming{{MessageID: msgID, Topic: "orders", JobID: jobID, Payload: []byte(`{}`)}})
	require.NoError(t, err)
	require.Zero(t, n, "a message stored before is skipped")
}

// TestReplay: a replay moves the job back and writes its next message
// (the job's keys, replay_of, the edited payload); a second one is
// deduplicated unless forced; an archived dead letter is not replayable.
func TestReplay(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	jobID, msgID := e.accept(`{"n":1}`)
	d := e.crashLooped(jobID, msgID, `{"n":1}`)
	audit := deadletterstore.AuditEntry{Actor: "ops", Action: "dead_letters.replay", Target: d.ID}

	res, err := e.store.Replay(ctx, deadletterstore.ReplayRequest{ID: d.ID, Payload: json.RawMessage(`{"n":2}`), Audit: audit})
	require.NoError(t, err)
	require.True(t, res.Edited)
	require.False(t, res.Deduplicated)
	require.Equal(t, 1, res.ReplayCount)
	require.Equal(t, string(jobs.StatusReplayed), e.jobStatus(jobID))
	var payload, meta []byte
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT payload->'payload', payload->'metadata' FROM watermill_outbox
		WHERE payload->>'uuid' = $1`, res.MessageID).Scan(&payload, &meta))
	var m map[string]string
	require.NoError(t, json.Unmarshal(meta, &m))
	require.Equal(t, d.ID, m[jobmessage.ReplayOf])
	require.Equal(t, jobID, m[jobmessage.JobID])
	require.Equal(t, "shop", m[jobmessage.ClientID])

	again, err := e.store.Replay(ctx, deadletterstore.ReplayRequest{ID: d.ID, Audit: audit})
	require.NoError(t, err)
	require.True(t, again.Deduplicated, "replayed before: nothing sent")
	require.Equal(t, res.MessageID, again.MessageID)

	// Forced while the job is no longer dead-lettered: refused, named.
	_, err = e.store.Replay(ctx, deadletterstore.ReplayRequest{ID: d.ID, Force: true, Audit: audit})
	require.ErrorIs(t, err, deadletter.ErrNotReplayable)
	require.ErrorContains(t, err, "replayed")

	// Archived: never replayable; past its retention, purged.
	_, err = e.store.Remove(ctx, d.ID, deadletterstore.ModeArchive, -time.Second, deadletterstore.AuditEntry{Actor: "ops", Action: "dead_letters.archive", Target: d.ID})
	require.NoError(t, err)
	_, err = e.store.Replay(ctx, deadletterstore.ReplayRequest{ID: d.ID, Force: true, Audit: audit})
	require.ErrorIs(t, err, deadletter.ErrNotReplayable)
	n, err := e.store.PurgeExpired(ctx, 10, true)
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "a dry run counts it")
	n, err = e.store.PurgeExpired(ctx, 10, false)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	_, err = e.store.Get(ctx, d.ID)
	require.True(t, errors.Is(err, deadletter.ErrNotFound), "%v", err)
}

// TestListPagesAndFilters: pages of a limit, joined by the cursor, list
// every dead letter once; a filter narrows; stats group them.
func TestListPagesAndFilters(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	want := map[string]bool{}
	for range 5 {
		jobID, msgID := e.accept(`{}`)
		want[e.crashLooped(jobID, msgID, `{}`).ID] = true
	}
	seen := map[string]bool{}
	after := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10)
		page, more, err := e.store.List(ctx, deadletterstore.Filter{Topic: "orders"}, 2, after)
		require.NoError(t, err)
		for _, d := range page {
			require.False(t, seen[d.ID], "%s listed twice", d.ID)
			seen[d.ID] = true
		}
		if !more {
			break
		}
		after = page[len(page)-1].ID
	}
	require.Equal(t, want, seen)
	none, _, err := e.store.List(ctx, deadletterstore.Filter{Topic: "other"}, 10, "")
	require.NoError(t, err)
	require.Empty(t, none)
	groups, err := e.store.Stats(ctx, deadletterstore.Filter{})
	require.NoError(t, err)
	require.NotEmpty(t, groups)
}

// TestGroupCountsFollowEveryChange: the counts the triggers keep (read by
// Stats without a filter) equal the counts aggregated from the rows
// (Stats with a filter that selects everything) after ingests in one
// batch and one by one, a replay, an archive and a purge.
func TestGroupCountsFollowEveryChange(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	epoch := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	check := func(what string) []deadletterstore.Group {
		t.Helper()
		kept, err := e.store.Stats(ctx, deadletterstore.Filter{})
		require.NoError(t, err)
		counted, err := e.store.Stats(ctx, deadletterstore.Filter{Since: &epoch})
		require.NoError(t, err)
		for i := range kept {
			kept[i].First, kept[i].Last = kept[i].First.UTC(), kept[i].Last.UTC()
		}
		for i := range counted {
			counted[i].First, counted[i].Last = counted[i].First.UTC(), counted[i].Last.UTC()
			// A deleted dead letter does not move the group's first time:
			// it is when the group was first seen.
			if i < len(kept) {
				require.False(t, kept[i].First.After(counted[i].First), what)
				counted[i].First = kept[i].First
			}
		}
		require.Equal(t, counted, kept, what)
		now := time.Now()
		require.NoError(t, e.store.AddHourly(ctx, kept, deadletterstore.Filter{}, 24, now))
		require.NoError(t, e.store.AddHourly(ctx, counted, deadletterstore.Filter{Since: &epoch}, 24, now))
		require.Equal(t, counted, kept, what+": hourly")
		for _, g := range kept {
			total := 0
			for _, n := range g.Hourly {
				total += n
			}
			require.Equal(t, g.Count, total, what+": every dead letter of the last 24 hours is in an hour")
		}
		return kept
	}
	var batch []deadletterstore.Incoming
	for i := range 5 {
		jobID, msgID := e.accept(fmt.Sprintf(`{"n":%d}`, i))
		batch = append(batch, deadletterstore.Incoming{MessageID: msgID, SQSMessageID: "sqs-" + msgID, Topic: "orders", JobID: jobID,
			ReceiveCount: 10, SentAt: time.Now().UTC(), Payload: []byte(`{}`), Attributes: map[string]string{jobmessage.JobID: jobID}})
	}
	n, err := e.store.Ingest(ctx, batch)
	require.NoError(t, err)
	require.Equal(t, 5, n)
	groups := check("after a batch")
	require.Len(t, groups, 1)
	require.Equal(t, 5, groups[0].Stored)
	jobID, msgID := e.accept(`{"n":9}`)
	d := e.crashLooped(jobID, msgID, `{"n":9}`)
	check("after one more")

	_, err = e.store.Replay(ctx, deadletterstore.ReplayRequest{ID: d.ID, Audit: deadletterstore.AuditEntry{Actor: "ops", Action: "dead_letters.replay", Target: d.ID}})
	require.NoError(t, err)
	groups = check("after a replay")
	require.Equal(t, 5, groups[0].Stored)
	require.Equal(t, 1, groups[0].Replayed)

	page, _, err := e.store.List(ctx, deadletterstore.Filter{Status: deadletterstore.StatusStored}, 10, "")
	require.NoError(t, err)
	_, err = e.store.Remove(ctx, page[0].ID, deadletterstore.ModeArchive, time.Hour, deadletterstore.AuditEntry{Actor: "ops", Action: "dead_letters.archive", Target: page[0].ID})
	require.NoError(t, err)
	groups = check("after an archive")
	require.Equal(t, 6, groups[0].Count, "an archived dead letter is still counted")
	require.Equal(t, 4, groups[0].Stored)
	for _, dl := range page[1:] {
		_, err = e.store.Remove(ctx, dl.ID, deadletterstore.ModePurge, time.Hour, deadletterstore.AuditEntry{Actor: "ops", Action: "dead_letters.purge", Target: dl.ID})
		require.NoError(t, err)
	}
	groups = check("after purges")
	require.Equal(t, 2, groups[0].Count)
	_, err = e.pool.Exec(ctx, `DELETE FROM dead_letters`)
	require.NoError(t, err)
	require.Empty(t, check("after deleting every row"), "an emptied group is gone")
}
