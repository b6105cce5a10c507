-- +goose Up

-- Operator console sessions (the replay service's /console/). The cookie
-- holds a random 32-byte secret; this table holds only its SHA-256 (id)
-- and, sealed with AES-256-GCM under a key derived from that secret, the
-- operator's client secret and current access token, with which the
-- console calls the admin API on the operator's behalf. A copy of this
-- table signs no one in.
CREATE TABLE console_sessions (
    id               bytea       PRIMARY KEY CHECK (length(id) = 32),
    client_id        text        NOT NULL CHECK (length(client_id) BETWEEN 1 AND 200),
    scopes           text[]      NOT NULL,
    sealed           bytea       NOT NULL,
    token_expires_at timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_seen_at     timestamptz NOT NULL DEFAULT now(),
    -- The absolute expiry; the idle one is last_seen_at + the configured
    -- idle timeout.
    expires_at       timestamptz NOT NULL,
    source_ip        text        NOT NULL DEFAULT '',
    user_agent       text        NOT NULL DEFAULT '' CHECK (length(user_agent) <= 300)
);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
CREATE INDEX console_sessions_client ON console_sessions (client_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON console_sessions TO switchyard_replay;

-- +goose Down
DROP TABLE console_sessions;
