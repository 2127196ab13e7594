-- Governance requests and their append-only history.
-- The workspace id leads every primary and unique key, so the tables can be
-- distributed by workspace (see docs/providers/postgres.md).

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
    PRIMARY KEY (workspace_id, id)
);

-- Idempotent creation.
CREATE UNIQUE INDEX IF NOT EXISTS governance_requests_idempotency
    ON governance_requests (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Paging any request query in (created_at, id) order.
CREATE INDEX IF NOT EXISTS governance_requests_created
    ON governance_requests (workspace_id, created_at, id);
-- The pending queue, optionally by reason.
CREATE INDEX IF NOT EXISTS governance_requests_pending
    ON governance_requests (workspace_id, pending_reason, created_at, id) WHERE status = 'pending';
-- Status filters.
CREATE INDEX IF NOT EXISTS governance_requests_status
    ON governance_requests (workspace_id, status, created_at, id);
-- Requests for one target.
CREATE INDEX IF NOT EXISTS governance_requests_target
    ON governance_requests (workspace_id, state_type, state_id, created_at, id);
-- The expiry sweep (it pages in creation order over unfinished requests
-- that can expire).
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
    -- The writing transaction: orders the commit-safe feed (see history_feed).
    tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (workspace_id, id)
);

-- Idempotent appends.
CREATE UNIQUE INDEX IF NOT EXISTS governance_history_idempotency
    ON governance_history (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Paging any history query in (created_at, id) order.
CREATE INDEX IF NOT EXISTS governance_history_created
    ON governance_history (workspace_id, created_at, id);
-- History of one request, in revision order.
CREATE INDEX IF NOT EXISTS governance_history_request
    ON governance_history (workspace_id, request_id, request_revision, created_at, id) WHERE request_id IS NOT NULL;
-- The commit-safe feed, in transaction order.
CREATE INDEX IF NOT EXISTS governance_history_feed
    ON governance_history (workspace_id, tx_id, id);
-- Decision analytics over a window (top deny reasons, per principal, ...).
CREATE INDEX IF NOT EXISTS governance_history_decision
    ON governance_history (workspace_id, decision, created_at) WHERE decision IS NOT NULL;

-- Append-only, enforced by the server: UPDATE, DELETE and TRUNCATE fail.
CREATE OR REPLACE FUNCTION governance_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'governance_history is append-only: % refused', TG_OP USING ERRCODE = '55000';
END
$$;

CREATE OR REPLACE TRIGGER governance_history_no_rewrite
    BEFORE UPDATE OR DELETE ON governance_history
    FOR EACH ROW EXECUTE FUNCTION governance_history_append_only();
CREATE OR REPLACE TRIGGER governance_history_no_truncate
    BEFORE TRUNCATE ON governance_history
    FOR EACH STATEMENT EXECUTE FUNCTION governance_history_append_only();

-- The feed's order is the writing transaction, stamped by the server: a
-- writer cannot choose it, and a restore or replication re-stamps it.
CREATE OR REPLACE FUNCTION governance_history_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.tx_id := pg_current_xact_id();
    RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER governance_history_stamp
    BEFORE INSERT ON governance_history
    FOR EACH ROW EXECUTE FUNCTION governance_history_stamp();
ALTER TABLE governance_history ENABLE ALWAYS TRIGGER governance_history_stamp;

-- ALWAYS: also under session_replication_role = replica, which skips
-- ordinary triggers.
ALTER TABLE governance_history ENABLE ALWAYS TRIGGER governance_history_no_rewrite;
ALTER TABLE governance_history ENABLE ALWAYS TRIGGER governance_history_no_truncate;
