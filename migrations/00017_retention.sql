-- +goose NO TRANSACTION
-- +goose Up

-- Retention (the replay service's janitor; docs/operations.md). Each table
-- is trimmed oldest first in bounded batches, so each predicate has an
-- index: finished jobs by finish time, jobs that still hold an
-- Idempotency-Key by creation time, inbox rows by processing time. Built
-- CONCURRENTLY, outside a transaction, so that a deployment with millions
-- of rows keeps working while they build.
CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_keyed_created ON jobs (created_at) WHERE idempotency_key IS NOT NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS inbox_processed ON inbox (processed_at);

-- The janitor deletes finished jobs (with their attempts and events) and
-- old inbox rows, and releases expired Idempotency-Keys.
GRANT DELETE ON jobs, job_events, job_attempts, inbox TO switchyard_replay;
GRANT SELECT ON inbox TO switchyard_replay;

-- The gateway releases a key it meets past its window (a key reused after
-- it creates a new job) through this function only, which never releases
-- a key younger than a minute: the gateway may not update jobs.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION switchyard_release_idempotency_keys(p_clients text[], p_keys text[], p_cutoff timestamptz) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    IF p_cutoff > now() - interval '1 minute' THEN
        RAISE EXCEPTION 'an idempotency key younger than a minute is never released (asked for keys before %)', p_cutoff
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE jobs SET idempotency_key = NULL
    WHERE (client_id, idempotency_key) IN (SELECT * FROM unnest(p_clients, p_keys)) AND created_at < p_cutoff;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION switchyard_release_idempotency_keys(text[], text[], timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchyard_release_idempotency_keys(text[], text[], timestamptz) TO switchyard_gateway, switchyard_app;

-- The audit log stays append-only for every service: old rows go only
-- through this function, which deletes at most max_rows rows older than
-- cutoff, and never a row younger than 30 days whatever it is asked.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION switchyard_trim_audit(cutoff timestamptz, max_rows integer) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    IF cutoff > now() - interval '30 days' THEN
        RAISE EXCEPTION 'audit rows younger than 30 days are never deleted (asked for rows before %)', cutoff
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    DELETE FROM admin_audit WHERE id IN (
        SELECT a.id FROM admin_audit a WHERE a.at < cutoff ORDER BY a.id LIMIT max_rows);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION switchyard_trim_audit(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchyard_trim_audit(timestamptz, integer) TO switchyard_replay, switchyard_app;

-- +goose Down
DROP FUNCTION IF EXISTS switchyard_trim_audit(timestamptz, integer);
DROP FUNCTION IF EXISTS switchyard_release_idempotency_keys(text[], text[], timestamptz);
REVOKE SELECT ON inbox FROM switchyard_replay;
REVOKE DELETE ON jobs, job_events, job_attempts, inbox FROM switchyard_replay;
DROP INDEX CONCURRENTLY IF EXISTS inbox_processed;
DROP INDEX CONCURRENTLY IF EXISTS jobs_keyed_created;
DROP INDEX CONCURRENTLY IF EXISTS jobs_finished;
