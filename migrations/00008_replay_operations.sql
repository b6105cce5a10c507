-- +goose Up

-- Bulk replays. Creating one selects the dead letters it will replay, once,
-- into replay_operation_items (in the transaction that records the
-- operation and its audit row); the replay service then replays the items
-- in order at the operation's rate, each in its own transaction that also
-- marks the item, so a crash between two items replays neither twice nor
-- loses one: a restarted service resumes at the first pending item.
CREATE TABLE replay_operations (
    id                   uuid             PRIMARY KEY,
    created_at           timestamptz      NOT NULL DEFAULT now(),
    created_by           text             NOT NULL,
    request_id           text             NOT NULL DEFAULT '',
    -- The filter as asked (deadletterstore.Filter).
    filter               jsonb            NOT NULL,
    max_items            integer          CHECK (max_items > 0),
    rate_per_s           double precision NOT NULL CHECK (rate_per_s > 0),
    force                boolean          NOT NULL DEFAULT false,
    -- Staged release: the stages as asked ([1, "10%", "100%"]) and the
    -- cumulative item counts they came to when the items were selected.
    stages               jsonb            NOT NULL,
    stage_targets        integer[]        NOT NULL,
    -- Index into stage_targets of the stage being released.
    stage                integer          NOT NULL DEFAULT 0,
    -- When every item of the current stage had been processed; the next
    -- stage starts once their jobs have settled (or settle_timeout passed).
    stage_done_at        timestamptz,
    stop_if_failed_ratio double precision NOT NULL CHECK (stop_if_failed_ratio BETWEEN 0 AND 1),
    settle_timeout_ms    bigint           NOT NULL CHECK (settle_timeout_ms > 0),
    -- What the selection left out: {"matched", "deduplicated",
    -- "not_replayable": {reason: n}, "beyond_max"}.
    selection            jsonb            NOT NULL,
    status               text             NOT NULL DEFAULT 'running'
                             CHECK (status IN ('running', 'completed', 'stopped', 'cancelled')),
    stop_reason          text             NOT NULL DEFAULT '',
    cancelled_by         text,
    updated_at           timestamptz      NOT NULL DEFAULT now(),
    finished_at          timestamptz
);

CREATE INDEX replay_operations_running ON replay_operations (id) WHERE status = 'running';

CREATE TABLE replay_operation_items (
    operation_id   uuid        NOT NULL REFERENCES replay_operations (id) ON DELETE CASCADE,
    seq            integer     NOT NULL,
    -- No foreign key: a dead letter may be purged while its operation is
    -- kept for the record.
    dead_letter_id uuid        NOT NULL,
    job_id         uuid        NOT NULL,
    fingerprint    text        NOT NULL,
    -- pending -> replayed (a message went through the outbox)
    --         -> deduplicated (replayed by someone else meanwhile)
    --         -> skipped (no longer replayable: archived, purged, job moved on)
    state          text        NOT NULL DEFAULT 'pending'
                       CHECK (state IN ('pending', 'replayed', 'deduplicated', 'skipped')),
    detail         text        NOT NULL DEFAULT '',
    message_id     text,
    processed_at   timestamptz,
    PRIMARY KEY (operation_id, seq)
);

CREATE INDEX replay_operation_items_pending ON replay_operation_items (operation_id, seq) WHERE state = 'pending';
CREATE INDEX replay_operation_items_dead_letter ON replay_operation_items (dead_letter_id);

-- +goose Down
DROP TABLE replay_operation_items;
DROP TABLE replay_operations;
