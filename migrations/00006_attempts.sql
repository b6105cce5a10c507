-- +goose Up

-- One row per attempt at a job: when it started and ended, how, and why it
-- failed. The worker writes the row when an attempt starts ('running') and
-- settles it when the attempt ends; an attempt whose worker died is marked
-- 'abandoned' when the next one starts. Retry decisions count the failed
-- attempts of the message being processed (message_id), so a replayed job,
-- which travels in a new message, gets a fresh set of attempts while its
-- history stays.
CREATE TABLE job_attempts (
    job_id      uuid        NOT NULL,
    attempt     integer     NOT NULL,
    message_id  text        NOT NULL,
    outcome     text        NOT NULL DEFAULT 'running'
                    CHECK (outcome IN ('running', 'succeeded', 'failed', 'abandoned')),
    error       text,
    fingerprint text,
    permanent   boolean     NOT NULL DEFAULT false,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (job_id, attempt)
);

CREATE INDEX job_attempts_message ON job_attempts (message_id);

-- When a failed job will be tried again (the message is hidden in SQS
-- until then).
ALTER TABLE jobs ADD COLUMN next_attempt_at timestamptz;

-- +goose Down
ALTER TABLE jobs DROP COLUMN next_attempt_at;
DROP TABLE job_attempts;
