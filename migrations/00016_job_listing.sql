-- +goose NO TRANSACTION
-- +goose Up

-- GET /v1/jobs lists a client's jobs newest first, by (created_at, id)
-- with a cursor (no OFFSET), optionally of one type or in one status. Each
-- filter has an index whose order is the listing's, so a page reads
-- limit+1 index entries however deep it is and however many jobs the
-- client has. type and created_at never change, so the first two indexes
-- cost an update nothing; the status index is updated with each move.
-- CONCURRENTLY: a deployment with millions of jobs keeps accepting while
-- the indexes build (a build that failed leaves an INVALID index: drop it
-- and migrate again).
CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_client_listing ON jobs (client_id, created_at DESC, id DESC);
CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_client_type_listing ON jobs (client_id, type, created_at DESC, id DESC);
CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_client_status_listing ON jobs (client_id, status, created_at DESC, id DESC);
-- jobs_client_listing serves everything this one did.
DROP INDEX CONCURRENTLY IF EXISTS jobs_client_created;

-- +goose Down
CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_client_created ON jobs (client_id, created_at DESC);
DROP INDEX CONCURRENTLY IF EXISTS jobs_client_status_listing;
DROP INDEX CONCURRENTLY IF EXISTS jobs_client_type_listing;
DROP INDEX CONCURRENTLY IF EXISTS jobs_client_listing;
