-- +goose Up

-- Cancellation (POST /v1/jobs/{id}/cancel, DELETE /v1/jobs/{id}). A job
-- that has not started (accepted, queued, or failed and waiting for its
-- retry) becomes 'cancelled' at once; its message is dropped when a worker
-- receives it. A job whose attempt is running is marked
-- (cancel_requested_at): the running attempt ends as it would have, and
-- no later attempt runs (a failure of the running attempt cancels the job
-- instead of retrying or dead-lettering it).
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

-- The gateway cancels through this function only: it may not update jobs
-- (a compromised gateway could otherwise mark any job succeeded). It
-- cancels job p_id of client p_client in one statement: the row is locked
-- first, so a worker's concurrent move is wholly before or after it; a
-- job that is not running becomes cancelled, a processing one is marked.
-- It returns the status the job had (none: no such job of that client)
-- and whether it was cancelled now. The statuses cancelled at once are
-- jobs.Status.Cancellable's (jobstore.TestCancelFunctionAgreesWithDomain).
-- +goose StatementBegin
CREATE FUNCTION switchyard_cancel_job(p_id uuid, p_client text) RETURNS TABLE (status text, cancelled_now boolean)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH target AS (
        SELECT j.id, j.status, j.cancel_requested_at IS NOT NULL AS requested
        FROM jobs j WHERE j.id = p_id AND j.client_id = p_client FOR UPDATE
    ), cancelled AS (
        UPDATE jobs j SET status = 'cancelled', cancel_requested_at = COALESCE(j.cancel_requested_at, now()),
            next_attempt_at = NULL, finished_at = now(), updated_at = now()
        FROM target t WHERE j.id = t.id AND t.status IN ('accepted', 'queued', 'failed', 'replayed')
        RETURNING j.id
    ), requested AS (
        UPDATE jobs j SET cancel_requested_at = now(), updated_at = now()
        FROM target t WHERE j.id = t.id AND t.status = 'processing' AND NOT t.requested
        RETURNING j.id
    ), events AS (
        INSERT INTO job_events (job_id, type)
        SELECT id, 'cancelled' FROM cancelled UNION ALL SELECT id, 'cancel_requested' FROM requested
    )
    SELECT t.status, EXISTS (SELECT 1 FROM cancelled) FROM target t
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION switchyard_cancel_job(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchyard_cancel_job(uuid, text) TO switchyard_gateway, switchyard_app;

-- +goose Down
ALTER TABLE job_attempts DROP CONSTRAINT job_attempts_outcome_check;
ALTER TABLE job_attempts ADD CONSTRAINT job_attempts_outcome_check CHECK (outcome IN ('running', 'succeeded', 'failed', 'abandoned'));
DROP FUNCTION switchyard_cancel_job(uuid, text);
ALTER TABLE job_events DROP CONSTRAINT job_events_type_check;
ALTER TABLE job_events ADD CONSTRAINT job_events_type_check CHECK (type IN ('queued', 'retry_scheduled', 'dead_lettered', 'replayed'));
ALTER TABLE jobs DROP COLUMN cancel_requested_at;
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check CHECK (status IN
    ('accepted', 'queued', 'processing', 'succeeded', 'failed', 'dead_lettered', 'replayed'));
