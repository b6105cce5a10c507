-- +goose Up

-- Effects of the demo "text-stats" job type. Deliberately no unique
-- constraint on job_id: the inbox, not this table, prevents double effects,
-- and the end-to-end tests count rows per job to prove it.
CREATE TABLE demo_text_stats (
    id         bigserial   PRIMARY KEY,
    job_id     uuid        NOT NULL,
    words      integer     NOT NULL,
    lines      integer     NOT NULL,
    sha256     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX demo_text_stats_job ON demo_text_stats (job_id);

-- +goose Down
DROP TABLE demo_text_stats;
