-- Tamper evidence (governance_abstractions::integrity, docs/audit.md):
-- checkpoints chained by digest, and the seal entries that give each sealed
-- record its leaf index. Insert-only like governance_history; the workspace
-- id leads every key, so both tables distribute by workspace.

CREATE TABLE IF NOT EXISTS governance_checkpoints (
    workspace_id text NOT NULL,
    seq bigint NOT NULL,
    first_index bigint NOT NULL,
    record_count bigint NOT NULL,
    root text NOT NULL,
    previous text,
    created_at timestamptz NOT NULL,
    digest text NOT NULL,
    -- Two sealers of the same seq: the second insert fails here.
    CONSTRAINT governance_checkpoints_pkey PRIMARY KEY (workspace_id, seq)
);

CREATE TABLE IF NOT EXISTS governance_seals (
    workspace_id text NOT NULL,
    leaf_index bigint NOT NULL,
    record_id uuid NOT NULL,
    content_hash text NOT NULL,
    checkpoint_seq bigint NOT NULL,
    -- sealed_records pages by leaf index.
    CONSTRAINT governance_seals_pkey PRIMARY KEY (workspace_id, leaf_index),
    -- A record is sealed once; also serves the sealer's anti-join.
    CONSTRAINT governance_seals_record UNIQUE (workspace_id, record_id)
);

-- Append-only, enforced by the server: UPDATE, DELETE and TRUNCATE fail
-- (same SQLSTATE as governance_history's guard).
CREATE OR REPLACE FUNCTION governance_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = '55000';
END
$$;

CREATE OR REPLACE TRIGGER governance_checkpoints_no_rewrite
    BEFORE UPDATE OR DELETE ON governance_checkpoints
    FOR EACH ROW EXECUTE FUNCTION governance_append_only();
CREATE OR REPLACE TRIGGER governance_checkpoints_no_truncate
    BEFORE TRUNCATE ON governance_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION governance_append_only();
CREATE OR REPLACE TRIGGER governance_seals_no_rewrite
    BEFORE UPDATE OR DELETE ON governance_seals
    FOR EACH ROW EXECUTE FUNCTION governance_append_only();
CREATE OR REPLACE TRIGGER governance_seals_no_truncate
    BEFORE TRUNCATE ON governance_seals
    FOR EACH STATEMENT EXECUTE FUNCTION governance_append_only();

-- ALWAYS: also under session_replication_role = replica, which skips
-- ordinary triggers.
ALTER TABLE governance_checkpoints ENABLE ALWAYS TRIGGER governance_checkpoints_no_rewrite;
ALTER TABLE governance_checkpoints ENABLE ALWAYS TRIGGER governance_checkpoints_no_truncate;
ALTER TABLE governance_seals ENABLE ALWAYS TRIGGER governance_seals_no_rewrite;
ALTER TABLE governance_seals ENABLE ALWAYS TRIGGER governance_seals_no_truncate;
