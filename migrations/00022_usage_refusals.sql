-- +goose Up

-- Usage analytics tell the gateway's two 429s apart: requests refused by
-- a rate limit and by a quota (both also counted in client_errors).
ALTER TABLE usage_minutes
    ADD COLUMN rate_limited  bigint NOT NULL DEFAULT 0,
    ADD COLUMN quota_refused bigint NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE usage_minutes DROP COLUMN quota_refused, DROP COLUMN rate_limited;
