-- +goose Up

-- The transactional outbox. The layout is watermill-sql v4's
-- PostgreSQLQueueSchema for the topic "outbox" (table "watermill_outbox"),
-- created here instead of auto-initialised at run time. Rows are written by
-- Watermill's SQL publisher wrapped in its forwarder envelope, in the same
-- transaction as the job row, and deleted once SQS has accepted them.
-- "offset" is BIGSERIAL rather than Watermill's SERIAL so that it cannot
-- run out; the column type is otherwise what Watermill reads and writes.
CREATE TABLE watermill_outbox (
    "offset"     BIGSERIAL   PRIMARY KEY,
    "uuid"       VARCHAR(36) NOT NULL,
    "payload"    JSON        DEFAULT NULL,
    "metadata"   JSON        DEFAULT NULL,
    "acked"      BOOLEAN     NOT NULL DEFAULT FALSE,
    "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- Wake the relay when new messages commit. One notification per INSERT
-- statement; Postgres delivers it at commit and folds duplicates within a
-- transaction, so a transaction that writes many rows costs one wake-up.
-- +goose StatementBegin
CREATE FUNCTION switchyard_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('switchyard_outbox', '');
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER watermill_outbox_notify
    AFTER INSERT ON watermill_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION switchyard_outbox_notify();

-- +goose Down
DROP TABLE watermill_outbox;
DROP FUNCTION switchyard_outbox_notify();
