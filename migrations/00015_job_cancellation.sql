-- +goose Up

-- Cancellation (POST /v1/jobs/{id}/cancel, DELETE /v1/jobs/{id}). A job
-- that has not started (accepted, queued, or failed and waiting for its
-- retry) becomes 'cancelled' at once; its message is dropped when a worker
-- receives it. A job whose attempt is running is marked
-- (cancel_requested_at): the running attempt ends as it would have, and
-- no later attempt runs (a failure of the running attempt cancels the job
-- instead of retrying or dead-lettering it). The gateway moves jobs only
-- through the statuses and columns granted here.
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check CHECK (status IN
    ('accepted', 'queued', 'processing', 'succeeded', 'failed', 'dead_lettered', 'replayed', 'cancelled'));
ALTER TABLE jobs ADD COLUMN cancel_requested_at timestamptz;

ALTER TABLE job_events DROP CONSTRAINT job_events_type_check;
ALTER TABLE job_events ADD CONSTRAINT job_events_type_check CHECK (type IN
    ('queued', 'retry_scheduled', 'dead_lettered', 'replayed', 'cancel_requested', 'cancelled'));

-- An attempt whose worker found the cancellation before running the
-- handler ends 'cancelled'.
ALTER TABLE job_attempts DROP CONSTRAINT job_attempts_outcome_check;
ALTER TABLE job_attempts ADD CONSTRAINT job_attempts_outcome_check CHECK (outcome IN ('running', 'succeeded', 'failed', 'abandoned', 'cancelled'));

GRANT UPDATE (status, cancel_requested_at, next_attempt_at, finished_at, updated_at) ON jobs TO switchyard_gateway;
GRANT INSERT ON job_events TO switchyard_gateway;

-- +goose Down
ALTER TABLE job_attempts DROP CONSTRAINT job_attempts_outcome_check;
ALTER TABLE job_attempts ADD CONSTRAINT job_attempts_outcome_check CHECK (outcome IN ('running', 'succeeded', 'failed', 'abandoned'));
REVOKE INSERT ON job_events FROM switchyard_gateway;
REVOKE UPDATE (status, cancel_requested_at, next_attempt_at, finished_at, updated_at) ON jobs FROM switchyard_gateway;
ALTER TABLE job_events DROP CONSTRAINT job_events_type_check;
ALTER TABLE job_events ADD CONSTRAINT job_events_type_check CHECK (type IN ('queued', 'retry_scheduled', 'dead_lettered', 'replayed'));
ALTER TABLE jobs DROP COLUMN cancel_requested_at;
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check CHECK (status IN
    ('accepted', 'queued', 'processing', 'succeeded', 'failed', 'dead_lettered', 'replayed'));
