-- +goose Up

-- OAuth2 clients of the token service (client-credentials grant). Secrets
-- are stored only as argon2id hashes in PHC string format. A rotated
-- secret may keep working until previous_secret_expires_at so that callers
-- can switch without an outage.
CREATE TABLE oauth_clients (
    client_id                  text        PRIMARY KEY
                                   CHECK (client_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    name                       text        NOT NULL DEFAULT '',
    secret_hash                text        NOT NULL,
    previous_secret_hash       text,
    previous_secret_expires_at timestamptz,
    scopes                     text[]      NOT NULL DEFAULT '{}',
    disabled_at                timestamptz,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    secret_rotated_at          timestamptz
);

-- Tell gateways at once when a client is disabled or enabled, so that its
-- unexpired tokens stop (or start again) being accepted without waiting
-- for their poll.
-- +goose StatementBegin
CREATE FUNCTION switchyard_oauth_clients_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('switchyard_oauth_clients', '');
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER oauth_clients_notify
    AFTER INSERT OR UPDATE OF disabled_at OR DELETE ON oauth_clients
    FOR EACH STATEMENT EXECUTE FUNCTION switchyard_oauth_clients_notify();

-- The scopes a job's caller held when it was accepted.
ALTER TABLE jobs ADD COLUMN client_scopes text[] NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE jobs DROP COLUMN client_scopes;
DROP TABLE oauth_clients;
DROP FUNCTION switchyard_oauth_clients_notify();
