-- +goose Up

-- Dead letters, as the replay service drains them from every DLQ. One row
-- per message (message_id: the Watermill UUID, or SQS's message id for a
-- message that had none), so draining the same message twice stores it
-- once. The row is committed before the message is deleted from SQS.
CREATE TABLE dead_letters (
    id                uuid        PRIMARY KEY,
    message_id        text        NOT NULL UNIQUE,
    sqs_message_id    text        NOT NULL,
    topic             text        NOT NULL,
    job_id            uuid,
    client_id         text,
    reason            text        NOT NULL,
    error             text        NOT NULL DEFAULT '',
    fingerprint       text        NOT NULL,
    attempts          integer     NOT NULL DEFAULT 0,
    handler           text        NOT NULL DEFAULT '',
    trace_id          text        NOT NULL DEFAULT '',
    first_failure_at  timestamptz,
    last_failure_at   timestamptz,
    dead_lettered_at  timestamptz NOT NULL,
    stored_at         timestamptz NOT NULL DEFAULT now(),
    receive_count     integer     NOT NULL DEFAULT 0,
    payload           bytea       NOT NULL,
    attributes        jsonb       NOT NULL DEFAULT '{}',
    -- stored -> replayed (a replay went through the outbox) -> ...;
    -- archived (kept until purge_after, then deleted); purged rows are
    -- deleted outright.
    status            text        NOT NULL DEFAULT 'stored'
                          CHECK (status IN ('stored', 'replayed', 'archived')),
    replay_count      integer     NOT NULL DEFAULT 0,
    replayed_at       timestamptz,
    replayed_by       text,
    replay_message_id text,
    -- The dead letter whose replay this message was, when it failed again.
    replay_of         uuid,
    archived_at       timestamptz,
    purge_after       timestamptz
);

CREATE INDEX dead_letters_topic ON dead_letters (topic, id DESC);
CREATE INDEX dead_letters_fingerprint ON dead_letters (fingerprint, id DESC);
CREATE INDEX dead_letters_client ON dead_letters (client_id, id DESC);
CREATE INDEX dead_letters_job ON dead_letters (job_id);
CREATE INDEX dead_letters_dead_lettered_at ON dead_letters (dead_lettered_at);
CREATE UNIQUE INDEX dead_letters_replay_message ON dead_letters (replay_message_id) WHERE replay_message_id IS NOT NULL;
CREATE INDEX dead_letters_purge ON dead_letters (purge_after) WHERE purge_after IS NOT NULL;

-- Every admin call, written in the transaction of its effect.
CREATE TABLE admin_audit (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL,
    action      text        NOT NULL,
    target      text        NOT NULL DEFAULT '',
    filter      jsonb,
    counts      jsonb,
    request_id  text        NOT NULL DEFAULT '',
    source_ip   text        NOT NULL DEFAULT '',
    before      jsonb,
    after       jsonb,
    outcome     text        NOT NULL DEFAULT 'ok'
);

CREATE INDEX admin_audit_actor ON admin_audit (actor, id DESC);
CREATE INDEX admin_audit_action ON admin_audit (action, id DESC);

-- +goose Down
DROP TABLE admin_audit;
DROP TABLE dead_letters;
