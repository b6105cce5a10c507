-- +goose Up

-- Paused job types: their workers stop receiving (within seconds, on
-- NOTIFY switchyard_job_pauses) and their messages wait in SQS until the
-- type is resumed. A row is a pause; resuming deletes it. Workers read
-- this table at start, so a pause survives their restarts.
CREATE TABLE job_type_pauses (
    job_type  text        PRIMARY KEY CHECK (length(job_type) BETWEEN 1 AND 200),
    paused_at timestamptz NOT NULL DEFAULT now(),
    paused_by text        NOT NULL,
    reason    text        NOT NULL DEFAULT '' CHECK (length(reason) <= 500)
);

-- +goose StatementBegin
CREATE FUNCTION switchyard_job_pauses_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('switchyard_job_pauses', '');
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER job_type_pauses_notify
    AFTER INSERT OR UPDATE OR DELETE ON job_type_pauses
    FOR EACH STATEMENT EXECUTE FUNCTION switchyard_job_pauses_notify();

GRANT SELECT ON job_type_pauses TO switchyard_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON job_type_pauses TO switchyard_replay;

-- +goose Down
DROP TABLE job_type_pauses;
DROP FUNCTION switchyard_job_pauses_notify();
