-- +goose Up

-- Least privilege: a group role per service, holding exactly the grants
-- the service's code needs. Vault's database engine creates each
-- service's short-lived users IN ROLE switchyard_<service> (switchyard
-- vault provision), so a compromised gateway cannot grant itself a scope
-- (it may read only client_id and disabled_at of oauth_clients), erase the
-- audit log (admin_audit is append-only for every service), or read dead
-- letters. Only the token service and the CLI (the owner) manage clients.
-- The roles are cluster-wide and may exist already (another database of
-- the same cluster). A table added later needs its grants here too:
-- migrations_test.TestEveryTableHasAnOwnerService checks it.
-- +goose StatementBegin
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['switchyard_gateway', 'switchyard_tokens', 'switchyard_relay', 'switchyard_worker', 'switchyard_replay'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), r);
    END LOOP;
END
$$;
-- +goose StatementEnd

GRANT USAGE ON SCHEMA public TO switchyard_gateway, switchyard_tokens, switchyard_relay, switchyard_worker, switchyard_replay;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public
    TO switchyard_gateway, switchyard_tokens, switchyard_relay, switchyard_worker, switchyard_replay;

-- gateway: accepts jobs (job + outbox message), reports them to their
-- owner, counts quotas and usage, reads which clients are disabled, and
-- writes blocks and refused admin calls to the audit log.
GRANT SELECT, INSERT ON jobs TO switchyard_gateway;
GRANT INSERT ON watermill_outbox TO switchyard_gateway;
GRANT SELECT ON job_attempts, job_events TO switchyard_gateway;
GRANT SELECT, INSERT, UPDATE, DELETE ON client_quota_usage, usage_minutes TO switchyard_gateway;
GRANT SELECT (client_id, disabled_at) ON oauth_clients TO switchyard_gateway;
GRANT INSERT ON admin_audit TO switchyard_gateway;

-- tokens: authenticates clients, and re-hashes a secret with the pepper.
GRANT SELECT ON oauth_clients TO switchyard_tokens;
GRANT UPDATE (secret_hash, updated_at) ON oauth_clients TO switchyard_tokens;

-- relay: claims and deletes outbox rows, marks jobs queued.
GRANT SELECT, UPDATE, DELETE ON watermill_outbox TO switchyard_relay;
GRANT SELECT, UPDATE ON jobs TO switchyard_relay;
GRANT INSERT ON job_events TO switchyard_relay;

-- worker: runs attempts, records them, dead-letters through the outbox;
-- the demo handler's effects. A team's own handlers' tables need grants
-- to switchyard_worker of their own.
GRANT SELECT, UPDATE ON jobs TO switchyard_worker;
GRANT SELECT, INSERT, UPDATE ON job_attempts TO switchyard_worker;
GRANT INSERT ON job_events TO switchyard_worker;
GRANT SELECT, INSERT ON inbox TO switchyard_worker;
GRANT INSERT ON watermill_outbox TO switchyard_worker;
GRANT SELECT, INSERT ON demo_text_stats TO switchyard_worker;

-- replay: the dead-letter store, replays (through the outbox), the admin
-- API's audit log (which it reads) and usage report.
GRANT SELECT, INSERT, UPDATE, DELETE ON dead_letters, replay_operations, replay_operation_items TO switchyard_replay;
GRANT SELECT, UPDATE ON jobs TO switchyard_replay;
GRANT SELECT ON job_attempts TO switchyard_replay;
GRANT SELECT, INSERT ON job_events TO switchyard_replay;
GRANT INSERT ON watermill_outbox TO switchyard_replay;
GRANT SELECT, INSERT ON admin_audit TO switchyard_replay;
GRANT SELECT (client_id, disabled_at) ON oauth_clients TO switchyard_replay;
GRANT SELECT ON usage_minutes TO switchyard_replay;

-- The old shared role keeps working for static-credential setups, but the
-- audit log is append-only for it too.
REVOKE UPDATE, DELETE, TRUNCATE ON admin_audit FROM switchyard_app;

-- +goose Down
GRANT UPDATE, DELETE ON admin_audit TO switchyard_app;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM switchyard_gateway, switchyard_tokens, switchyard_relay, switchyard_worker, switchyard_replay;
REVOKE ALL (client_id, disabled_at, secret_hash, updated_at) ON oauth_clients FROM switchyard_gateway, switchyard_tokens, switchyard_replay;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM switchyard_gateway, switchyard_tokens, switchyard_relay, switchyard_worker, switchyard_replay;
REVOKE USAGE ON SCHEMA public FROM switchyard_gateway, switchyard_tokens, switchyard_relay, switchyard_worker, switchyard_replay;
