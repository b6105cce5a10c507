package outbox_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/switchyard/switchyard/libs/devstack/stacktest"
	"github.com/switchyard/switchyard/libs/outbox"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

func write(t *testing.T, pool *pgxpool.Pool, msgs ...outbox.Message) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return outbox.Write(ctx, tx, msgs...) }))
}

func msg(i int) outbox.Message {
	return outbox.Message{
		UUID: fmt.Sprintf("m-%03d", i), Topic: "orders",
		Payload: []byte(fmt.Sprintf(`{"n":%d}`, i)), Metadata: map[string]string{"job_id": fmt.Sprint(i)},
	}
}

func TestWriteIsTransactional(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, outbox.Write(ctx, tx, msg(1)))
	require.NoError(t, tx.Rollback(ctx))
	bl, err := outbox.ReadBacklog(ctx, pool)
	require.NoError(t, err)
	require.Zero(t, bl.Pending)

	require.Error(t, outbox.Write(ctx, nil, outbox.Message{Topic: "", UUID: "x"}))
}

func TestClaimsDoNotOverlap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	for i := range 10 {
		write(t, pool, msg(i))
	}
	bl, err := outbox.ReadBacklog(ctx, pool)
	require.NoError(t, err)
	require.EqualValues(t, 10, bl.Pending)
	require.Positive(t, bl.OldestAge, "the oldest row has waited since it was written")

	a, err := outbox.ClaimBatch(ctx, pool, 6)
	require.NoError(t, err)
	b, err := outbox.ClaimBatch(ctx, pool, 6)
	require.NoError(t, err)
	require.Len(t, a.Rows, 6)
	require.Len(t, b.Rows, 4, "the second claim skips the rows the first holds")
	seen := map[string]bool{}
	for _, r := range append(a.Rows, b.Rows...) {
		require.False(t, seen[r.Message.UUID])
		seen[r.Message.UUID] = true
	}
	require.Equal(t, "m-000", a.Rows[0].Message.UUID, "claims follow offset order")
	require.JSONEq(t, `{"n":0}`, string(a.Rows[0].Message.Payload))
	require.Equal(t, "0", a.Rows[0].Message.Metadata["job_id"])

	// a forwards only two of its rows; the rest go back.
	require.NoError(t, a.Complete(ctx, []int64{a.Rows[0].Offset, a.Rows[1].Offset}))
	b.Release(ctx)
	bl, err = outbox.ReadBacklog(ctx, pool)
	require.NoError(t, err)
	require.EqualValues(t, 8, bl.Pending)

	c, err := outbox.ClaimBatch(ctx, pool, 100)
	require.NoError(t, err)
	require.Len(t, c.Rows, 8)
	require.Equal(t, "m-002", c.Rows[0].Message.UUID)
	c.Release(ctx)
}

func TestUndecodableRowsAreParked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	write(t, pool, msg(1))
	_, err := pool.Exec(ctx, `INSERT INTO watermill_outbox (uuid, payload, metadata) VALUES ('junk', '{"not":"an envelope"}', '{}')`)
	require.NoError(t, err)
	write(t, pool, msg(2))

	c, err := outbox.ClaimBatch(ctx, pool, 10)
	require.NoError(t, err)
	require.Len(t, c.Rows, 2, "the rows around the bad one still flow")
	require.Len(t, c.Parked, 1)
	require.NoError(t, c.Complete(ctx, []int64{c.Rows[0].Offset, c.Rows[1].Offset}))

	again, err := outbox.ClaimBatch(ctx, pool, 10)
	require.NoError(t, err)
	require.Empty(t, again.Rows)
	require.Empty(t, again.Parked, "parked rows are not claimed again")
	again.Release(ctx)
	var kept int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM watermill_outbox WHERE uuid = 'junk' AND acked`).Scan(&kept))
	require.Equal(t, 1, kept, "kept for inspection")
	bl, err := outbox.ReadBacklog(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, outbox.Backlog{Parked: 1}, bl, "parked rows are counted apart from the (empty) backlog")
}

// TestStockForwarderReadsOurRows proves the rows are in Watermill's own
// format: Watermill's forwarder, reading with watermill-sql's subscriber,
// delivers them intact.
func TestStockForwarderReadsOurRows(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool := stacktest.NewPool(t)
	write(t, pool, msg(1), msg(2))

	logger := watermill.NopLogger{}
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromPgx(pool), wsql.SubscriberConfig{
		SchemaAdapter: outbox.SchemaAdapter(), OffsetsAdapter: outbox.OffsetsAdapter(), PollInterval: 50 * time.Millisecond,
	}, logger)
	require.NoError(t, err)
	dest := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 10}, logger)
	received, err := dest.Subscribe(ctx, "orders")
	require.NoError(t, err)
	fwd, err := forwarder.NewForwarder(sub, dest, logger, forwarder.Config{ForwarderTopic: outbox.Topic})
	require.NoError(t, err)
	go func() { _ = fwd.Run(ctx) }()
	defer fwd.Close() //nolint:errcheck

	// Compare as a set: the format is the point, not the order (Watermill
	// redelivers a message its publisher failed on, after later ones).
	got := map[string]string{}
	for len(got) < 2 {
		select {
		case m := <-received:
			got[m.UUID] = fmt.Sprintf("%s|%s", m.Payload, m.Metadata.Get("job_id"))
			m.Ack()
		case <-ctx.Done():
			t.Fatalf("stock forwarder delivered %d of 2 messages", len(got))
		}
	}
	require.Equal(t, map[string]string{"m-001": `{"n":1}|1`, "m-002": `{"n":2}|2`}, got)
	require.Eventually(t, func() bool {
		bl, err := outbox.ReadBacklog(ctx, pool)
		return err == nil && bl.Pending == 0
	}, 10*time.Second, 20*time.Millisecond, "the stock forwarder deletes what it forwarded")
}

// TestSQLEnvelopeMatchesEncode: the envelope the database writes for rows
// made in SQL (switchyard_outbox_envelope, migration 00019: the callback
// trigger) reads back as the message Encode would have written, for a
// payload long enough that Postgres's base64 breaks lines, with text
// outside ASCII, and with empty metadata values left out.
func TestSQLEnvelopeMatchesEncode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := stacktest.NewPool(t)
	payload := `{"text":"` + strings.Repeat("Grüße, 世界 ", 40) + `"}`
	_, err := pool.Exec(ctx, `INSERT INTO watermill_outbox (uuid, payload, metadata)
		VALUES ('row-1', switchyard_outbox_envelope('orders', 'msg-1', $1, jsonb_build_object('job_id', 'j-1', 'request_id', NULL::text)), '{}')`, payload)
	require.NoError(t, err)
	claim, err := outbox.ClaimBatch(ctx, pool, 10)
	require.NoError(t, err)
	defer claim.Release(ctx)
	require.Len(t, claim.Rows, 1)
	require.Equal(t, outbox.Message{UUID: "msg-1", Topic: "orders", Payload: []byte(payload), Metadata: map[string]string{"job_id": "j-1"}},
		claim.Rows[0].Message)

	encoded, err := outbox.Encode(outbox.Message{UUID: "msg-1", Topic: "orders", Payload: []byte(payload), Metadata: map[string]string{"job_id": "j-1"}})
	require.NoError(t, err)
	var fromSQL string
	require.NoError(t, pool.QueryRow(ctx, `SELECT switchyard_outbox_envelope('orders', 'msg-1', $1, '{"job_id": "j-1"}')::text`, payload).Scan(&fromSQL))
	require.JSONEq(t, string(encoded.Payload), fromSQL, "the same JSON, field for field")
}
