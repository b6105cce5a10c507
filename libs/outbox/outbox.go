// Package outbox is Switchyard's transactional outbox on Postgres.
//
// Messages are written in watermill-sql v4's PostgreSQLQueueSchema layout
// (its InsertQuery), wrapped in Watermill's forwarder envelope, inside the
// caller's pgx transaction, so a message exists exactly when the business
// change that produced it commits. All destinations share one
// Watermill topic, Topic (table "watermill_outbox", created by migrations).
// Because the rows are in Watermill's own format, Watermill's stock
// forwarder can drain them too; the relay drains them faster with Claim.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
)

// Topic is the Watermill topic every outbox message is written to; its
// table is "watermill_outbox".
const Topic = "outbox"

// NotifyChannel is the Postgres channel a trigger notifies when outbox rows
// commit.
const NotifyChannel = "switchyard_outbox"

// Message is one message bound for a destination topic.
type Message struct {
	// UUID identifies the message end to end; consumers deduplicate on it.
	UUID string
	// Topic is the destination (a job type).
	Topic    string
	Payload  []byte
	Metadata map[string]string
}

// SchemaAdapter is the watermill-sql schema the outbox table follows.
func SchemaAdapter() wsql.SchemaAdapter { return wsql.PostgreSQLQueueSchema{} }

// OffsetsAdapter is the watermill-sql offsets adapter matching
// SchemaAdapter: forwarded rows are deleted.
func OffsetsAdapter() wsql.OffsetsAdapter {
	return wsql.PostgreSQLQueueOffsetsAdapter{DeleteOnAck: true}
}

// Write appends msgs to the outbox inside tx, in one INSERT (the table
// layout is watermill-sql's own InsertQuery), each wrapped in Watermill's
// forwarder envelope as its forwarder publisher wraps it: a row of its own
// id whose payload is the envelope. Nothing is visible to the relay until
// tx commits.
func Write(ctx context.Context, tx pgx.Tx, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	rows := make(message.Messages, len(msgs))
	for i, m := range msgs {
		row, err := Encode(m)
		if err != nil {
			return err
		}
		rows[i] = message.NewMessage(row.UUID, row.Payload)
	}
	q, err := SchemaAdapter().InsertQuery(wsql.InsertQueryParams{Topic: Topic, Msgs: rows})
	if err != nil {
		return fmt.Errorf("building the outbox insert: %w", err)
	}
	if _, err := tx.Exec(ctx, q.Query, q.Args...); err != nil {
		return fmt.Errorf("writing %d outbox message(s): %w", len(msgs), err)
	}
	return nil
}

// EncodedRow is one outbox row as Write stores it: the row's own id and the
// forwarder envelope that wraps the message.
type EncodedRow struct {
	UUID    string
	Payload []byte
}

// Encode wraps m in Watermill's forwarder envelope, as Write does, for a
// caller that inserts rows with InsertSelectSQL.
func Encode(m Message) (EncodedRow, error) {
	if m.Topic == "" || m.UUID == "" {
		return EncodedRow{}, errors.New("outbox message needs a topic and a UUID")
	}
	payload, err := json.Marshal(envelope{DestinationTopic: m.Topic, UUID: m.UUID, Payload: m.Payload, Metadata: m.Metadata})
	if err != nil {
		return EncodedRow{}, fmt.Errorf("encoding outbox message %s: %w", m.UUID, err)
	}
	return EncodedRow{UUID: watermill.NewUUID(), Payload: payload}, nil
}

// InsertSelectSQL is an INSERT of the rows that selectRows (a SELECT of
// three columns: a Row's UUID as text, its Payload as json, and when the
// message is due as timestamptz, NULL for now) produces, for a statement
// that writes outbox rows together with the change that produced them (a
// data-modifying WITH). The rows are the ones Write would store, held
// until they are due.
func InsertSelectSQL(selectRows string) string {
	return `INSERT INTO watermill_outbox (uuid, payload, deliver_at, metadata) SELECT r.*, '{}'::json FROM (` + selectRows + `) AS r`
}

// envelope is the JSON that Watermill's forwarder wraps messages in
// (components/forwarder; its type is unexported there), used both to write
// and to read rows: TestStockForwarderReadsOurRows holds it to Watermill's.
type envelope struct {
	DestinationTopic string            `json:"destination_topic"`
	UUID             string            `json:"uuid"`
	Payload          []byte            `json:"payload"`
	Metadata         map[string]string `json:"metadata"`
}

// decodeEnvelope reads a row's payload column.
func decodeEnvelope(raw []byte) (Message, error) {
	var e envelope
	if err := json.Unmarshal(raw, &e); err != nil {
		return Message{}, fmt.Errorf("decoding forwarder envelope: %w", err)
	}
	if e.DestinationTopic == "" || e.UUID == "" {
		return Message{}, errors.New("forwarder envelope lacks a destination topic or message UUID")
	}
	return Message{UUID: e.UUID, Topic: e.DestinationTopic, Payload: e.Payload, Metadata: e.Metadata}, nil
}

// Backlog is what the outbox holds now.
type Backlog struct {
	// Pending is how many messages wait to be forwarded.
	Pending int64
	// OldestAge is how long the oldest pending message has waited (0
	// when none waits).
	OldestAge time.Duration
	// Parked is how many rows were parked (not forwarder envelopes).
	Parked int64
}

// ReadBacklog counts the outbox's pending and parked rows and the age of
// the oldest pending one, on the database's clock.
func ReadBacklog(ctx context.Context, db interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}) (Backlog, error) {
	var b Backlog
	var ageSeconds float64
	err := db.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE NOT acked),
		       COALESCE(EXTRACT(EPOCH FROM now() - min(created_at) FILTER (WHERE NOT acked)), 0)::float8,
		       count(*) FILTER (WHERE acked)
		FROM watermill_outbox`).Scan(&b.Pending, &ageSeconds, &b.Parked)
	if err != nil {
		return Backlog{}, fmt.Errorf("reading the outbox backlog: %w", err)
	}
	b.OldestAge = time.Duration(max(ageSeconds, 0) * float64(time.Second))
	return b, nil
}
