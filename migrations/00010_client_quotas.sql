-- +goose Up

-- Requests each client made per UTC day and per UTC month, for the
-- gateway's quotas (routes file: edge.quota, edge.clients). Gateways count
-- in memory and add their counts here about once a second
-- (INSERT ... ON CONFLICT DO UPDATE SET used = used + n RETURNING used),
-- which also tells each replica what the others used; a restarted gateway
-- reads a client's usage before its first decision. Rows of periods long
-- past are deleted by the gateways.
CREATE TABLE client_quota_usage (
    client_id    text        NOT NULL,
    period       text        NOT NULL CHECK (period IN ('day', 'month')),
    period_start date        NOT NULL,
    used         bigint      NOT NULL DEFAULT 0 CHECK (used >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, period, period_start)
);

CREATE INDEX client_quota_usage_period_start ON client_quota_usage (period_start);

-- +goose Down
DROP TABLE client_quota_usage;
