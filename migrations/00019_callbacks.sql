-- +goose Up

-- Completion callbacks. A submission may name a callback URL on a host its
-- client may call back (client_callback_hosts, set by an operator); when
-- the job finishes (succeeded, dead-lettered, cancelled) a trigger writes,
-- in the transaction that finished it, a job of the built-in type
-- 'switchyard-callback' and its outbox message: the callback travels the
-- relay, SQS and the worker like any job, so it is retried with backoff
-- and ends in its DLQ, and no code path that finishes a job can forget it.
-- The worker signs each delivery per Standard Webhooks with the client's
-- current signing secrets (callback_secrets; two during a rotation's
-- overlap).
ALTER TABLE jobs ADD COLUMN callback_url text;

CREATE TABLE client_callback_hosts (
    client_id  text        NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    -- A host name or IP literal, lower case, optionally with :port; a
    -- leading "*." allows every subdomain.
    host       text        NOT NULL CHECK (length(host) <= 300 AND host ~ '^(\*\.)?[a-z0-9.:\[\]-]+$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, host)
);

CREATE TABLE callback_secrets (
    client_id  text        NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    id         bigserial   PRIMARY KEY,
    -- "whsec_" + base64 of 32 random bytes, as Standard Webhooks writes it.
    secret     text        NOT NULL CHECK (secret LIKE 'whsec\_%'),
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Set when a newer secret replaces this one: it keeps signing until
    -- then, so receivers can switch without missing a delivery.
    expires_at timestamptz
);
CREATE INDEX callback_secrets_client ON callback_secrets (client_id, id DESC);

-- The forwarder envelope libs/outbox writes (outbox.Encode), for rows
-- written in SQL: outbox_test.TestSQLEnvelopeMatchesEncode holds the two
-- together. payload is base64 as encoding/json writes []byte.
-- +goose StatementBegin
CREATE FUNCTION switchyard_outbox_envelope(topic text, message_id text, payload text, metadata jsonb) RETURNS json
LANGUAGE sql IMMUTABLE AS $$
    SELECT json_build_object('destination_topic', topic, 'uuid', message_id,
        'payload', translate(encode(convert_to(payload, 'UTF8'), 'base64'), E'\n', ''),
        'metadata', jsonb_strip_nulls(metadata))
$$;
-- +goose StatementEnd

-- The callback job's payload: where to POST, and the event to POST there
-- (Standard Webhooks' {type, timestamp, data}; data is the job's final
-- state as the client sees it). The callback job inherits the job's client
-- (it is listed with the client's jobs), request id and trace.
-- +goose StatementBegin
CREATE FUNCTION switchyard_job_finished_callback() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    callback_id uuid := gen_random_uuid();
    body jsonb;
BEGIN
    body := jsonb_build_object('url', NEW.callback_url, 'event', jsonb_build_object(
        'type', 'job.' || NEW.status,
        'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'data', jsonb_strip_nulls(jsonb_build_object(
            'id', NEW.id, 'type', NEW.type, 'status', NEW.status, 'attempts', NEW.attempts,
            'result', NEW.result, 'last_error', NEW.last_client_error, 'last_error_class', NEW.last_error_class,
            'idempotency_key', NEW.idempotency_key, 'request_id', NEW.request_id,
            'created_at', NEW.created_at, 'finished_at', NEW.finished_at))));
    INSERT INTO jobs (id, type, client_id, client_scopes, status, payload, request_hash, request_id, traceparent)
    VALUES (callback_id, 'switchyard-callback', NEW.client_id, '{}', 'accepted', body, '\x'::bytea, NEW.request_id, NEW.traceparent);
    INSERT INTO watermill_outbox (uuid, payload, metadata)
    VALUES (gen_random_uuid()::text, switchyard_outbox_envelope('switchyard-callback', gen_random_uuid()::text, body::text,
        jsonb_build_object('job_id', callback_id::text, 'job_type', 'switchyard-callback', 'client_id', NEW.client_id,
            'request_id', NEW.request_id, 'traceparent', NEW.traceparent)), '{}');
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER jobs_finished_callback AFTER UPDATE OF status ON jobs
    FOR EACH ROW WHEN (NEW.callback_url IS NOT NULL AND OLD.status IS DISTINCT FROM NEW.status
        AND NEW.status IN ('succeeded', 'dead_lettered', 'cancelled'))
    EXECUTE FUNCTION switchyard_job_finished_callback();

-- The gateway checks a submission's callback host; the worker checks it
-- again and signs with the secrets. Only the CLI (the owner) changes them.
GRANT SELECT ON client_callback_hosts TO switchyard_gateway, switchyard_worker;
GRANT SELECT ON callback_secrets TO switchyard_worker;

-- +goose Down
DROP TRIGGER jobs_finished_callback ON jobs;
DROP FUNCTION switchyard_job_finished_callback();
DROP FUNCTION switchyard_outbox_envelope(text, text, text, jsonb);
DROP TABLE callback_secrets;
DROP TABLE client_callback_hosts;
ALTER TABLE jobs DROP COLUMN callback_url;
