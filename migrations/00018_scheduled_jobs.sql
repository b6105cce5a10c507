-- +goose Up

-- Delayed and scheduled jobs. A submission may ask to run at a time
-- (jobs.run_at); until then the job is 'scheduled'. Its outbox row says
-- when the message is due (deliver_at). The relay hands a row to SQS once
-- it is due within SQS's longest delay (15 minutes), with DelaySeconds for
-- the rest; until then the outbox holds it. Rows due now have no
-- deliver_at, and each kind is claimed along its own index, so that
-- millions of held rows cost the relay's claims nothing.
ALTER TABLE jobs ADD COLUMN run_at timestamptz;
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check CHECK (status IN
    ('scheduled', 'accepted', 'queued', 'processing', 'succeeded', 'failed', 'dead_lettered', 'replayed', 'cancelled'));

ALTER TABLE watermill_outbox ADD COLUMN deliver_at timestamptz;
CREATE INDEX watermill_outbox_ready ON watermill_outbox ("offset") WHERE deliver_at IS NULL AND NOT acked;
CREATE INDEX watermill_outbox_held ON watermill_outbox (deliver_at) WHERE deliver_at IS NOT NULL AND NOT acked;

-- A scheduled job may be cancelled at once, like an accepted one.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION switchyard_cancel_job(p_id uuid, p_client text) RETURNS TABLE (status text, cancelled_now boolean)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH target AS (
        SELECT j.id, j.status, j.cancel_requested_at IS NOT NULL AS requested
        FROM jobs j WHERE j.id = p_id AND j.client_id = p_client FOR UPDATE
    ), cancelled AS (
        UPDATE jobs j SET status = 'cancelled', cancel_requested_at = COALESCE(j.cancel_requested_at, now()),
            next_attempt_at = NULL, finished_at = now(), updated_at = now()
        FROM target t WHERE j.id = t.id AND t.status IN ('scheduled', 'accepted', 'queued', 'failed', 'replayed')
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

-- +goose Down
DROP INDEX watermill_outbox_held;
DROP INDEX watermill_outbox_ready;
ALTER TABLE watermill_outbox DROP COLUMN deliver_at;
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check CHECK (status IN
    ('accepted', 'queued', 'processing', 'succeeded', 'failed', 'dead_lettered', 'replayed', 'cancelled'));
ALTER TABLE jobs DROP COLUMN run_at;
