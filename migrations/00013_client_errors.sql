-- +goose Up

-- What a job's submitter may see of a failure, apart from the detail only
-- operators see (security: a raw error can hold a target's full URL with
-- its query string, internal host names and addresses). job_attempts.error
-- and jobs.last_error keep the detail for operators (the admin API);
-- error_class and client_error are what GET /v1/jobs/{id} shows in
-- last_error and the timeline. Rows from before this migration have no
-- class: they are shown with a generic message, never their detail.
ALTER TABLE job_attempts ADD COLUMN error_class text, ADD COLUMN client_error text;
ALTER TABLE jobs ADD COLUMN last_error_class text, ADD COLUMN last_client_error text;

-- +goose Down
ALTER TABLE jobs DROP COLUMN last_error_class, DROP COLUMN last_client_error;
ALTER TABLE job_attempts DROP COLUMN error_class, DROP COLUMN client_error;
