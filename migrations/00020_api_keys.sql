-- +goose Up

-- API keys: long-lived credentials a client may hold besides its OAuth2
-- secret, presented as X-API-Key or Authorization: ApiKey on the routes
-- that accept them. A key is "sy_" + id + "_" + secret + checksum; only
-- an HMAC-SHA256 of the whole key under a pepper kept outside the
-- database (pepper_id names it) is stored, so the key cannot be recovered
-- or checked from a copy of this table. Gateways keep every usable key in
-- memory (reloaded on NOTIFY switchyard_api_keys and by a poll), so that
-- checking a key, known or not, costs no query.
CREATE TABLE api_keys (
    id             text        PRIMARY KEY CHECK (id ~ '^[a-z2-7]{16}$'),
    client_id      text        NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    name           text        NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    hash           bytea       NOT NULL CHECK (length(hash) = 32),
    pepper_id      text        NOT NULL,
    -- A subset of the client's scopes, checked when the key is made.
    scopes         text[]      NOT NULL DEFAULT '{}',
    -- Source networks the key may be used from (empty: anywhere).
    allowed_cidrs  cidr[]      NOT NULL DEFAULT '{}',
    expires_at     timestamptz,
    -- The key's usage plan (all null: the route's own limits only).
    rate_per_second double precision CHECK (rate_per_second > 0),
    burst          integer     CHECK (burst > 0),
    quota          bigint      CHECK (quota > 0),
    quota_period   text        CHECK (quota_period IN ('day', 'month')),
    CHECK ((quota IS NULL) = (quota_period IS NULL)),
    CHECK (burst IS NULL OR rate_per_second IS NOT NULL),
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- The key this one replaced (rotate), which stays valid until its
    -- expires_at.
    rotated_from   text,
    revoked_at     timestamptz,
    -- Written by the gateways in batches, not per request.
    last_used_at   timestamptz
);
CREATE INDEX api_keys_client ON api_keys (client_id, created_at DESC);

-- +goose StatementBegin
CREATE FUNCTION switchyard_api_keys_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('switchyard_api_keys', '');
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- Any change but last_used_at reaches every gateway at once.
CREATE TRIGGER api_keys_notify
    AFTER INSERT OR DELETE OR UPDATE OF client_id, hash, pepper_id, scopes, allowed_cidrs, expires_at,
        rate_per_second, burst, quota, quota_period, revoked_at ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION switchyard_api_keys_notify();

-- A key never holds a scope its client no longer has: narrowing a
-- client's scopes narrows its keys' in the same transaction, whatever
-- path changed them (and the NOTIFY above reaches the gateways).
-- +goose StatementBegin
CREATE FUNCTION switchyard_api_keys_follow_client_scopes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE api_keys SET scopes = ARRAY(SELECT s FROM unnest(scopes) AS s WHERE s = ANY (NEW.scopes))
     WHERE client_id = NEW.client_id AND NOT (scopes <@ NEW.scopes);
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER oauth_clients_scopes_narrow_api_keys
    AFTER UPDATE OF scopes ON oauth_clients
    FOR EACH ROW EXECUTE FUNCTION switchyard_api_keys_follow_client_scopes();

-- Usage analytics count requests per key too (never the key: its id;
-- '' for requests with a token).
ALTER TABLE usage_minutes ADD COLUMN api_key_id text NOT NULL DEFAULT '';
ALTER TABLE usage_minutes DROP CONSTRAINT usage_minutes_pkey;
ALTER TABLE usage_minutes ADD PRIMARY KEY (minute, client_id, route, api_key_id);

-- Gateways read the keys and record when each was last used.
GRANT SELECT ON api_keys TO switchyard_gateway;
GRANT UPDATE (last_used_at) ON api_keys TO switchyard_gateway;
-- The replay service's admin API makes, rotates and revokes keys, and
-- checks a key's scopes against its client's.
GRANT SELECT, INSERT ON api_keys TO switchyard_replay;
GRANT UPDATE (expires_at, revoked_at) ON api_keys TO switchyard_replay;
GRANT SELECT (scopes) ON oauth_clients TO switchyard_replay;

-- +goose Down
REVOKE SELECT (scopes) ON oauth_clients FROM switchyard_replay;
DELETE FROM usage_minutes WHERE api_key_id <> '';
ALTER TABLE usage_minutes DROP CONSTRAINT usage_minutes_pkey;
ALTER TABLE usage_minutes ADD PRIMARY KEY (minute, client_id, route);
ALTER TABLE usage_minutes DROP COLUMN api_key_id;
DROP TRIGGER oauth_clients_scopes_narrow_api_keys ON oauth_clients;
DROP FUNCTION switchyard_api_keys_follow_client_scopes();
DROP TABLE api_keys;
DROP FUNCTION switchyard_api_keys_notify();
