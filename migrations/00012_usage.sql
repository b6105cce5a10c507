-- +goose Up

-- Requests per client, route and UTC minute, for GET /admin/v1/usage
-- (API Gateway's usage reports): each gateway counts in memory and adds
-- its counts here every few seconds (ON CONFLICT ... + excluded), so
-- replicas sum up. latency_buckets counts requests per duration bucket
-- (libs/usage.Buckets, in order, the last one unbounded), so that a
-- percentile over any range of minutes and rows can be computed. Rows
-- older than the retention are deleted by the gateways.
CREATE TABLE usage_minutes (
    minute          timestamptz NOT NULL,
    client_id       text        NOT NULL,
    route           text        NOT NULL,
    requests        bigint      NOT NULL,
    client_errors   bigint      NOT NULL,
    server_errors   bigint      NOT NULL,
    duration_ms_sum double precision NOT NULL,
    latency_buckets bigint[]    NOT NULL,
    PRIMARY KEY (minute, client_id, route)
);

CREATE INDEX usage_minutes_client ON usage_minutes (client_id, minute);

-- Jobs by outcome over a time range, for the same report.
CREATE INDEX jobs_created ON jobs (created_at);

-- +goose Down
DROP INDEX jobs_created;
DROP TABLE usage_minutes;
