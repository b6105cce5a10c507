-- +goose Up

-- What happened to a job besides its attempts (job_attempts) and its
-- acceptance (jobs.created_at), for the job's timeline on
-- GET /v1/jobs/{id}: each hand-over of its message to SQS ('queued', by the
-- relay, in the transaction that deletes the outbox row), each retry
-- scheduled and each dead-lettering (by the worker, in the transaction
-- that records the failure), each replay (by the replay service, in the
-- transaction that writes the replayed message). Append-only.
CREATE TABLE job_events (
    id     bigserial   PRIMARY KEY,
    job_id uuid        NOT NULL,
    type   text        NOT NULL CHECK (type IN ('queued', 'retry_scheduled', 'dead_lettered', 'replayed')),
    at     timestamptz NOT NULL DEFAULT now(),
    detail jsonb       NOT NULL DEFAULT '{}'
);

CREATE INDEX job_events_job ON job_events (job_id, id);

-- +goose Down
DROP TABLE job_events;
