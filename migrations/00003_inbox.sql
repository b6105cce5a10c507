-- +goose Up

-- The worker's inbox: one row per message whose effects have been applied.
-- The row is written in the same transaction as the handler's effects and
-- the job's final status, so a redelivered message is recognised and
-- applies nothing twice.
CREATE TABLE inbox (
    message_id   text        PRIMARY KEY,
    job_id       uuid        NOT NULL,
    handler      text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX inbox_job ON inbox (job_id);

-- +goose Down
DROP TABLE inbox;
