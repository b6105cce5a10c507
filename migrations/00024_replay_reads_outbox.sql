-- +goose Up

-- The replay service's admin API (and its console's overview) reports the
-- outbox's backlog: how many messages wait for the relay, and how long the
-- oldest has waited.
GRANT SELECT ON watermill_outbox TO switchyard_replay;

-- +goose Down
REVOKE SELECT ON watermill_outbox FROM switchyard_replay;
