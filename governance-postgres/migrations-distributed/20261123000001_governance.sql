-- The governance schema for distributed PostgreSQL-compatible engines
-- (Citus, YugabyteDB, CockroachDB): the tables, columns, keys, constraints
-- and indexes of the standard migrations (../migrations) as they stand
-- after the last one, less what such engines cannot take:
--
-- - no `tx_id xid8` column and no feed index: `pg_current_xact_id()` is
--   PostgreSQL 13's, and on a distributed engine a transaction id does not
--   order commits across nodes, so `history_feed` is unsupported here;
-- - no triggers and no functions: the append-only guarantee rests on the
--   application role's privileges (SELECT and INSERT only on the history,
--   checkpoints and seals), not on the server refusing UPDATE, DELETE and
--   TRUNCATE for every role;
-- - no `DO` blocks, no `CREATE OR REPLACE`, no `INCLUDE` (CockroachDB
--   spells covering columns differently): the decision index is a plain
--   one, so analytics visit the table rows;
-- - nothing outside a transaction, and the migrator takes no advisory lock
--   when asked not to (`MigrateOptions::without_locking`).
--
-- Plain statements, each re-runnable. The workspace id leads every primary
-- and unique key: every table distributes by `workspace_id`.

CREATE TABLE IF NOT EXISTS governance_requests (
    workspace_id text NOT NULL,
    id uuid NOT NULL,
    state_type text NOT NULL,
    state_id text NOT NULL,
    operation text NOT NULL,
    actor_kind text NOT NULL,
    actor_id text NOT NULL,
    requested_by jsonb NOT NULL,
    intent text NOT NULL,
    status text NOT NULL,
    pending_reason text,
    approvals jsonb NOT NULL,
    expected_state_version bigint,
    stale_strategy text NOT NULL,
    expires_at timestamptz,
    superseded_by uuid,
    idempotency_key text,
    category text,
    tags text[] NOT NULL,
    metadata jsonb NOT NULL,
    revision bigint NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    creation_digest text NOT NULL,
    state_digest text,
    PRIMARY KEY (workspace_id, id),
    -- The range of times the library stores (a NULL expiry passes).
    CONSTRAINT governance_requests_times_in_range CHECK (
        created_at >= '1970-01-01 00:00:00+00' AND created_at < '10000-01-01 00:00:00+00'
        AND updated_at >= '1970-01-01 00:00:00+00' AND updated_at < '10000-01-01 00:00:00+00'
        AND expires_at >= '1970-01-01 00:00:00+00' AND expires_at < '10000-01-01 00:00:00+00'
    )
);

CREATE UNIQUE INDEX IF NOT EXISTS governance_requests_idempotency
    ON governance_requests (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS governance_requests_created
    ON governance_requests (workspace_id, created_at, id);
CREATE INDEX IF NOT EXISTS governance_requests_pending
    ON governance_requests (workspace_id, created_at, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS governance_requests_target
    ON governance_requests (workspace_id, state_type, state_id, created_at, id);
CREATE INDEX IF NOT EXISTS governance_requests_expiry
    ON governance_requests (workspace_id, created_at, id)
    WHERE expires_at IS NOT NULL AND status IN ('created', 'pending', 'approved');

CREATE TABLE IF NOT EXISTS governance_history (
    workspace_id text NOT NULL,
    id uuid NOT NULL,
    request_id uuid,
    request_revision bigint,
    category text NOT NULL,
    code text NOT NULL,
    actor_kind text NOT NULL,
    actor_id text NOT NULL,
    actor jsonb NOT NULL,
    object_type text NOT NULL,
    operation text NOT NULL,
    decision text,
    outcome text,
    reason text,
    reason_codes text[] NOT NULL,
    correlation_id text,
    trace_hash text,
    idempotency_key text,
    policy_version text,
    latency_us bigint,
    request_json jsonb,
    response_json jsonb,
    redaction_policy text,
    redaction_version text,
    created_at timestamptz NOT NULL,
    content_hash text NOT NULL,
    PRIMARY KEY (workspace_id, id),
    CONSTRAINT governance_history_time_in_range CHECK (
        created_at >= '1970-01-01 00:00:00+00' AND created_at < '10000-01-01 00:00:00+00'
    )
);

CREATE UNIQUE INDEX IF NOT EXISTS governance_history_idempotency
    ON governance_history (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS governance_history_created
    ON governance_history (workspace_id, created_at, id);
CREATE INDEX IF NOT EXISTS governance_history_request
    ON governance_history (workspace_id, request_id, request_revision, created_at, id) WHERE request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS governance_history_decision
    ON governance_history (workspace_id, decision, created_at) WHERE decision IS NOT NULL;

CREATE TABLE IF NOT EXISTS governance_checkpoints (
    workspace_id text NOT NULL,
    seq bigint NOT NULL,
    first_index bigint NOT NULL,
    record_count bigint NOT NULL,
    root text NOT NULL,
    previous text,
    created_at timestamptz NOT NULL,
    digest text NOT NULL,
    CONSTRAINT governance_checkpoints_pkey PRIMARY KEY (workspace_id, seq),
    CONSTRAINT governance_checkpoints_time_in_range CHECK (
        created_at >= '1970-01-01 00:00:00+00' AND created_at < '10000-01-01 00:00:00+00'
    )
);

CREATE TABLE IF NOT EXISTS governance_seals (
    workspace_id text NOT NULL,
    leaf_index bigint NOT NULL,
    record_id uuid NOT NULL,
    content_hash text NOT NULL,
    checkpoint_seq bigint NOT NULL,
    CONSTRAINT governance_seals_pkey PRIMARY KEY (workspace_id, leaf_index),
    CONSTRAINT governance_seals_record UNIQUE (workspace_id, record_id)
);
