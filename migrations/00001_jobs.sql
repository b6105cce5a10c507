-- +goose Up
CREATE TABLE jobs (
    id              uuid        PRIMARY KEY,
    type            text        NOT NULL,
    client_id       text        NOT NULL,
    status          text        NOT NULL CHECK (status IN
                        ('accepted', 'queued', 'processing', 'succeeded', 'failed', 'dead_lettered', 'replayed')),
    payload         jsonb       NOT NULL,
    result          jsonb,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    idempotency_key text,
    request_hash    bytea       NOT NULL,
    request_id      text,
    traceparent     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    queued_at       timestamptz,
    started_at      timestamptz,
    finished_at     timestamptz
);

-- An Idempotency-Key is scoped to the client that sent it.
CREATE UNIQUE INDEX jobs_client_idempotency_key ON jobs (client_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE INDEX jobs_client_created ON jobs (client_id, created_at DESC);

-- +goose Down
DROP TABLE jobs;
