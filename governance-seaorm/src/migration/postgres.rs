//! PostgreSQL: the schema of `governance-postgres`, so that one database
//! can be migrated by either provider, in either order, and used by both.
//!
//! Each migration's statements are those of the `governance-postgres`
//! migration of the same content (`governance-postgres/migrations/`), with
//! the same names, types and function bodies byte for byte (the bodies are
//! stored as written, so they are written here without indentation); every
//! statement is re-runnable, as the other provider may have created
//! everything already. `shared_postgres_schema` in this crate's tests
//! compares the whole catalog of databases migrated each way.
//!
//! Before that schema was shared, this crate created its own under the same
//! names (`timestamp` holding UTC, `jsonb` lists, no `tx_id`):
//! [`SharePostgresSchema`] converts such a database in place.

use governance_abstractions::GovernanceError;
use governance_abstractions::provider::postgres_schema::{
    LIVE_COLUMNS_QUERY, POSTGRES_COLUMNS, SchemaStage, check_postgres_columns,
};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use sea_orm_migration::prelude::*;

/// `governance-postgres`'s `20261123000001_governance.sql`: requests and
/// history, their indexes, the append-only guard and the `tx_id` stamp.
/// Without its `governance_history_decision` index, which the third of
/// those migrations replaces by a covering one: [`SharePostgresSchema`]
/// creates that directly, rather than building an index to drop it.
pub(super) const TABLES: &[&str] = &[
    r#"CREATE TABLE IF NOT EXISTS governance_requests (
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
    )"#,
    "CREATE UNIQUE INDEX IF NOT EXISTS governance_requests_idempotency
        ON governance_requests (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS governance_requests_created ON governance_requests (workspace_id, created_at, id)",
    "CREATE INDEX IF NOT EXISTS governance_requests_pending
        ON governance_requests (workspace_id, pending_reason, created_at, id) WHERE status = 'pending'",
    "CREATE INDEX IF NOT EXISTS governance_requests_status ON governance_requests (workspace_id, status, created_at, id)",
    "CREATE INDEX IF NOT EXISTS governance_requests_target
        ON governance_requests (workspace_id, state_type, state_id, created_at, id)",
    "CREATE INDEX IF NOT EXISTS governance_requests_expiry ON governance_requests (workspace_id, created_at, id)
        WHERE expires_at IS NOT NULL AND status IN ('created', 'pending', 'approved')",
    r#"CREATE TABLE IF NOT EXISTS governance_history (
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
        tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
        PRIMARY KEY (workspace_id, id)
    )"#,
    "CREATE UNIQUE INDEX IF NOT EXISTS governance_history_idempotency
        ON governance_history (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS governance_history_created ON governance_history (workspace_id, created_at, id)",
    "CREATE INDEX IF NOT EXISTS governance_history_request
        ON governance_history (workspace_id, request_id, request_revision, created_at, id) WHERE request_id IS NOT NULL",
    // The commit-safe feed of governance-postgres, in transaction order.
    "CREATE INDEX IF NOT EXISTS governance_history_feed ON governance_history (workspace_id, tx_id, id)",
    r#"CREATE OR REPLACE FUNCTION governance_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'governance_history is append-only: % refused', TG_OP USING ERRCODE = '55000';
END
$$"#,
    "CREATE OR REPLACE TRIGGER governance_history_no_rewrite BEFORE UPDATE OR DELETE ON governance_history
        FOR EACH ROW EXECUTE FUNCTION governance_history_append_only()",
    "CREATE OR REPLACE TRIGGER governance_history_no_truncate BEFORE TRUNCATE ON governance_history
        FOR EACH STATEMENT EXECUTE FUNCTION governance_history_append_only()",
    // The feed's order is the writing transaction, stamped by the server: a
    // writer cannot choose it (this store never writes the column).
    r#"CREATE OR REPLACE FUNCTION governance_history_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.tx_id := pg_current_xact_id();
    RETURN NEW;
END
$$"#,
    "CREATE OR REPLACE TRIGGER governance_history_stamp BEFORE INSERT ON governance_history
        FOR EACH ROW EXECUTE FUNCTION governance_history_stamp()",
    // ALWAYS: the triggers fire under session_replication_role = replica too.
    "ALTER TABLE governance_history ENABLE ALWAYS TRIGGER governance_history_stamp",
    "ALTER TABLE governance_history ENABLE ALWAYS TRIGGER governance_history_no_rewrite",
    "ALTER TABLE governance_history ENABLE ALWAYS TRIGGER governance_history_no_truncate",
];

/// `20261123000002_integrity.sql`: checkpoints and seal entries, insert-only.
pub(super) const INTEGRITY: &[&str] = &[
    r#"CREATE TABLE IF NOT EXISTS governance_checkpoints (
        workspace_id text NOT NULL,
        seq bigint NOT NULL,
        first_index bigint NOT NULL,
        record_count bigint NOT NULL,
        root text NOT NULL,
        previous text,
        created_at timestamptz NOT NULL,
        digest text NOT NULL,
        CONSTRAINT governance_checkpoints_pkey PRIMARY KEY (workspace_id, seq)
    )"#,
    r#"CREATE TABLE IF NOT EXISTS governance_seals (
        workspace_id text NOT NULL,
        leaf_index bigint NOT NULL,
        record_id uuid NOT NULL,
        content_hash text NOT NULL,
        checkpoint_seq bigint NOT NULL,
        CONSTRAINT governance_seals_pkey PRIMARY KEY (workspace_id, leaf_index),
        CONSTRAINT governance_seals_record UNIQUE (workspace_id, record_id)
    )"#,
    r#"CREATE OR REPLACE FUNCTION governance_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = '55000';
END
$$"#,
    "CREATE OR REPLACE TRIGGER governance_checkpoints_no_rewrite BEFORE UPDATE OR DELETE ON governance_checkpoints
        FOR EACH ROW EXECUTE FUNCTION governance_append_only()",
    "CREATE OR REPLACE TRIGGER governance_checkpoints_no_truncate BEFORE TRUNCATE ON governance_checkpoints
        FOR EACH STATEMENT EXECUTE FUNCTION governance_append_only()",
    "CREATE OR REPLACE TRIGGER governance_seals_no_rewrite BEFORE UPDATE OR DELETE ON governance_seals
        FOR EACH ROW EXECUTE FUNCTION governance_append_only()",
    "CREATE OR REPLACE TRIGGER governance_seals_no_truncate BEFORE TRUNCATE ON governance_seals
        FOR EACH STATEMENT EXECUTE FUNCTION governance_append_only()",
    "ALTER TABLE governance_checkpoints ENABLE ALWAYS TRIGGER governance_checkpoints_no_rewrite",
    "ALTER TABLE governance_checkpoints ENABLE ALWAYS TRIGGER governance_checkpoints_no_truncate",
    "ALTER TABLE governance_seals ENABLE ALWAYS TRIGGER governance_seals_no_rewrite",
    "ALTER TABLE governance_seals ENABLE ALWAYS TRIGGER governance_seals_no_truncate",
];

/// `20261201000004_state_digest.sql`.
pub(super) const STATE_DIGEST: &[&str] =
    &["ALTER TABLE governance_requests ADD COLUMN IF NOT EXISTS state_digest text"];

/// `20261215000005_timestamp_range.sql`: every time within 1970..=9999.
///
/// Added NOT VALID, then validated: adding a constraint takes an ACCESS
/// EXCLUSIVE lock, and NOT VALID skips the scan of existing rows under it;
/// VALIDATE scans under a SHARE UPDATE EXCLUSIVE lock, which lets reads and
/// writes go on. `SeaOrmStore::migrate` runs every migration in one
/// transaction, which keeps the first lock until it commits: on a large
/// table run these statements by hand first, each in its own transaction
/// (the migration then finds the constraints, and validating a valid one is
/// a no-op). Adding and validating a constraint on the history and
/// checkpoint tables does not fire their append-only triggers (row and
/// TRUNCATE triggers). Zoned literals: the columns are `timestamptz`.
pub(super) const TIME_RANGE: &[&str] = &[
    r#"DO $$
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_constraint
                       WHERE conrelid = 'governance_requests'::regclass
                         AND conname = 'governance_requests_times_in_range') THEN
            ALTER TABLE governance_requests ADD CONSTRAINT governance_requests_times_in_range CHECK (
                created_at >= '1970-01-01 00:00:00+00' AND created_at < '10000-01-01 00:00:00+00'
                AND updated_at >= '1970-01-01 00:00:00+00' AND updated_at < '10000-01-01 00:00:00+00'
                -- NULL (no expiry) passes a CHECK.
                AND expires_at >= '1970-01-01 00:00:00+00' AND expires_at < '10000-01-01 00:00:00+00'
            ) NOT VALID;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_constraint
                       WHERE conrelid = 'governance_history'::regclass
                         AND conname = 'governance_history_time_in_range') THEN
            ALTER TABLE governance_history ADD CONSTRAINT governance_history_time_in_range CHECK (
                created_at >= '1970-01-01 00:00:00+00' AND created_at < '10000-01-01 00:00:00+00'
            ) NOT VALID;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_constraint
                       WHERE conrelid = 'governance_checkpoints'::regclass
                         AND conname = 'governance_checkpoints_time_in_range') THEN
            ALTER TABLE governance_checkpoints ADD CONSTRAINT governance_checkpoints_time_in_range CHECK (
                created_at >= '1970-01-01 00:00:00+00' AND created_at < '10000-01-01 00:00:00+00'
            ) NOT VALID;
        END IF;
    END
    $$"#,
    "ALTER TABLE governance_requests VALIDATE CONSTRAINT governance_requests_times_in_range",
    "ALTER TABLE governance_history VALIDATE CONSTRAINT governance_history_time_in_range",
    "ALTER TABLE governance_checkpoints VALIDATE CONSTRAINT governance_checkpoints_time_in_range",
];

/// `20261229000006_lean_request_indexes.sql`: the pending queue on one index
/// over pending requests only, in queue order, and no index over every
/// request's status (each row version of every request went into it, and no
/// query of the contract but the pending queue orders by status). An
/// earlier pending index (keyed by reason first: four columns) is replaced
/// under the same name; a re-run keeps the new one.
/// `governance-postgres`'s `20261231000007_decision_counts.sql`: the
/// hourly decision counts, their watermarks and the roll-up function that
/// folds records into them (run by `governance-postgres`'s
/// `roll_up_counts`; this crate's counts read the records). One string:
/// PostgreSQL runs it as one simple query.
pub(super) const DECISION_COUNTS: &[&str] = &[r#"CREATE TABLE IF NOT EXISTS governance_count_rollups (
    workspace_id text NOT NULL,
    -- Every decision record with tx_id below this is in the counts.
    through_tx xid8 NOT NULL,
    -- A record the counts hold, with the transaction id it had then. The
    -- watermark means something only while that record still has that id:
    -- a logical restore stamps every record anew, and the counts it brought
    -- along are then ignored, and rebuilt by the next roll-up. NULL: no
    -- record folded in yet.
    probe_id uuid,
    probe_tx xid8,
    CONSTRAINT governance_count_rollups_pkey PRIMARY KEY (workspace_id)
);

CREATE TABLE IF NOT EXISTS governance_history_counts (
    workspace_id text NOT NULL,
    -- 'reason_code', 'principal' (kind:id) or 'operation'; counts by
    -- decision are the operation rows summed per decision.
    dimension text NOT NULL,
    decision text NOT NULL,
    -- Hours since the Unix epoch (UTC) of the records' created_at.
    hour bigint NOT NULL,
    key text NOT NULL,
    n bigint NOT NULL,
    CONSTRAINT governance_history_counts_pkey PRIMARY KEY (workspace_id, dimension, decision, hour, key)
);

-- Runs as the tables' owner, so the application role needs only EXECUTE
-- (granted by grant_application_role) and cannot write a count itself.
-- Returns how many decision records it folded in.
CREATE OR REPLACE FUNCTION governance_roll_up_counts(workspace text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    -- Taken first, before this transaction has an id of its own: every
    -- transaction below it has finished, so its records are all visible
    -- to the statements below and no record below it can appear later.
    upto xid8 := pg_snapshot_xmin(pg_current_snapshot());
    done governance_count_rollups%ROWTYPE;
    since xid8 := '0';
    folded bigint;
    last_id uuid;
    last_tx xid8;
BEGIN
    INSERT INTO governance_count_rollups VALUES (workspace, '0', NULL, NULL) ON CONFLICT DO NOTHING;
    -- Roll-ups of one workspace take turns here; writers never wait on it.
    SELECT * INTO done FROM governance_count_rollups r WHERE r.workspace_id = workspace FOR UPDATE;
    IF EXISTS (SELECT 1 FROM governance_history h
               WHERE h.workspace_id = workspace AND h.id = done.probe_id AND h.tx_id = done.probe_tx) THEN
        since := done.through_tx;
    ELSE
        -- Nothing folded yet, or counts whose transaction ids are not this
        -- database's: start over from every record.
        DELETE FROM governance_history_counts c WHERE c.workspace_id = workspace;
    END IF;
    IF upto <= since THEN
        RETURN 0;
    END IF;
    WITH fresh AS (
        SELECT d.dimension, h.decision, floor(extract(epoch FROM h.created_at) / 3600)::bigint AS hour, d.key,
               count(*) AS n
        FROM governance_history h
        CROSS JOIN LATERAL (
            SELECT 'operation', h.operation
            UNION ALL SELECT 'principal', h.actor_kind || ':' || h.actor_id
            UNION ALL SELECT 'reason_code', code FROM unnest(h.reason_codes) AS code
        ) AS d(dimension, key)
        WHERE h.workspace_id = workspace AND h.decision IS NOT NULL AND h.tx_id >= since AND h.tx_id < upto
        GROUP BY 1, 2, 3, 4
    ), added AS (
        INSERT INTO governance_history_counts AS c (workspace_id, dimension, decision, hour, key, n)
        SELECT workspace, f.dimension, f.decision, f.hour, f.key, f.n FROM fresh f
        ON CONFLICT (workspace_id, dimension, decision, hour, key) DO UPDATE SET n = c.n + EXCLUDED.n
    )
    SELECT coalesce(sum(f.n) FILTER (WHERE f.dimension = 'operation'), 0) INTO folded FROM fresh f;
    SELECT h.id, h.tx_id INTO last_id, last_tx FROM governance_history h
        WHERE h.workspace_id = workspace AND h.tx_id >= since AND h.tx_id < upto
        ORDER BY h.tx_id DESC, h.id DESC LIMIT 1;
    IF last_id IS NOT NULL THEN
        UPDATE governance_count_rollups r SET through_tx = upto, probe_id = last_id, probe_tx = last_tx
            WHERE r.workspace_id = workspace;
    ELSIF done.probe_id IS NOT NULL AND since > '0' THEN
        -- Nothing new, and the watermark is this database's: move it on.
        UPDATE governance_count_rollups r SET through_tx = upto WHERE r.workspace_id = workspace;
    END IF;
    RETURN folded;
END
$$;

-- A SECURITY DEFINER function resolves names through a path no caller
-- can put a table of the same name on (pg_temp last), and nobody but the
-- owner runs it until it is granted.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION governance_roll_up_counts(text) SET search_path = %I, pg_temp', current_schema());
END
$$;
REVOKE ALL ON FUNCTION governance_roll_up_counts(text) FROM PUBLIC;"#];

/// `governance-postgres`'s `20270101000008_daily_counts.sql`: the daily
/// decision counts beside the hourly ones, filled in from the hours folded
/// so far, and the roll-up function that now folds records into both. One
/// string: PostgreSQL runs it as one simple query, in one transaction (the
/// lock it takes holds roll-ups off until the days are filled in).
pub(super) const DAILY_COUNTS: &[&str] = &[r#"CREATE TABLE IF NOT EXISTS governance_history_daily_counts (
    workspace_id text NOT NULL,
    -- As in governance_history_counts.
    dimension text NOT NULL,
    decision text NOT NULL,
    -- Days since the Unix epoch (UTC) of the records' created_at.
    day bigint NOT NULL,
    key text NOT NULL,
    n bigint NOT NULL,
    CONSTRAINT governance_history_daily_counts_pkey PRIMARY KEY (workspace_id, dimension, decision, day, key)
);

-- No roll-up runs until this transaction ends (each one first writes its
-- workspace's watermark row), so the days filled in below are the sums of
-- every hour folded so far. Plain reads, counts among them, go on.
LOCK TABLE governance_count_rollups IN EXCLUSIVE MODE;

-- The days of the hours folded before this migration. A workspace that
-- has days already was rolled up by the function below (the other
-- provider's migration ran first): its days are complete.
INSERT INTO governance_history_daily_counts (workspace_id, dimension, decision, day, key, n)
SELECT c.workspace_id, c.dimension, c.decision, floor(c.hour / 24.0)::bigint, c.key, sum(c.n)::bigint
FROM governance_history_counts c
WHERE NOT EXISTS (SELECT 1 FROM governance_history_daily_counts d WHERE d.workspace_id = c.workspace_id)
GROUP BY 1, 2, 3, 4, 5;

-- Runs as the tables' owner, so the application role needs only EXECUTE
-- (granted by grant_application_role) and cannot write a count itself.
-- Returns how many decision records it folded in.
CREATE OR REPLACE FUNCTION governance_roll_up_counts(workspace text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    -- Taken first, before this transaction has an id of its own: every
    -- transaction below it has finished, so its records are all visible
    -- to the statements below and no record below it can appear later.
    upto xid8 := pg_snapshot_xmin(pg_current_snapshot());
    done governance_count_rollups%ROWTYPE;
    since xid8 := '0';
    folded bigint;
    last_id uuid;
    last_tx xid8;
BEGIN
    INSERT INTO governance_count_rollups VALUES (workspace, '0', NULL, NULL) ON CONFLICT DO NOTHING;
    -- Roll-ups of one workspace take turns here; writers never wait on it.
    SELECT * INTO done FROM governance_count_rollups r WHERE r.workspace_id = workspace FOR UPDATE;
    IF EXISTS (SELECT 1 FROM governance_history h
               WHERE h.workspace_id = workspace AND h.id = done.probe_id AND h.tx_id = done.probe_tx) THEN
        since := done.through_tx;
    ELSE
        -- Nothing folded yet, or counts whose transaction ids are not this
        -- database's: start over from every record.
        DELETE FROM governance_history_counts c WHERE c.workspace_id = workspace;
        DELETE FROM governance_history_daily_counts c WHERE c.workspace_id = workspace;
    END IF;
    IF upto <= since THEN
        RETURN 0;
    END IF;
    WITH fresh AS (
        SELECT d.dimension, h.decision, floor(extract(epoch FROM h.created_at) / 3600)::bigint AS hour, d.key,
               count(*) AS n
        FROM governance_history h
        CROSS JOIN LATERAL (
            SELECT 'operation', h.operation
            UNION ALL SELECT 'principal', h.actor_kind || ':' || h.actor_id
            UNION ALL SELECT 'reason_code', code FROM unnest(h.reason_codes) AS code
        ) AS d(dimension, key)
        WHERE h.workspace_id = workspace AND h.decision IS NOT NULL AND h.tx_id >= since AND h.tx_id < upto
        GROUP BY 1, 2, 3, 4
    ), added AS (
        INSERT INTO governance_history_counts AS c (workspace_id, dimension, decision, hour, key, n)
        SELECT workspace, f.dimension, f.decision, f.hour, f.key, f.n FROM fresh f
        ON CONFLICT (workspace_id, dimension, decision, hour, key) DO UPDATE SET n = c.n + EXCLUDED.n
    ), added_days AS (
        INSERT INTO governance_history_daily_counts AS c (workspace_id, dimension, decision, day, key, n)
        SELECT workspace, f.dimension, f.decision, floor(f.hour / 24.0)::bigint, f.key, sum(f.n)::bigint
        FROM fresh f GROUP BY 2, 3, 4, 5
        ON CONFLICT (workspace_id, dimension, decision, day, key) DO UPDATE SET n = c.n + EXCLUDED.n
    )
    SELECT coalesce(sum(f.n) FILTER (WHERE f.dimension = 'operation'), 0) INTO folded FROM fresh f;
    SELECT h.id, h.tx_id INTO last_id, last_tx FROM governance_history h
        WHERE h.workspace_id = workspace AND h.tx_id >= since AND h.tx_id < upto
        ORDER BY h.tx_id DESC, h.id DESC LIMIT 1;
    IF last_id IS NOT NULL THEN
        UPDATE governance_count_rollups r SET through_tx = upto, probe_id = last_id, probe_tx = last_tx
            WHERE r.workspace_id = workspace;
    ELSIF done.probe_id IS NOT NULL AND since > '0' THEN
        -- Nothing new, and the watermark is this database's: move it on.
        UPDATE governance_count_rollups r SET through_tx = upto WHERE r.workspace_id = workspace;
    END IF;
    RETURN folded;
END
$$;

-- Replacing a function resets its settings: the path again, as before.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION governance_roll_up_counts(text) SET search_path = %I, pg_temp', current_schema());
END
$$;
REVOKE ALL ON FUNCTION governance_roll_up_counts(text) FROM PUBLIC;

-- Whoever may read the hourly counts (the application role, once granted)
-- may read the daily ones: a count reads both.
DO $$
DECLARE
    reader regrole;
BEGIN
    FOR reader IN
        SELECT DISTINCT a.grantee::regrole FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = 'governance_history_counts'::regclass AND a.privilege_type = 'SELECT'
            AND a.grantee <> 0 AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT SELECT ON governance_history_daily_counts TO %s', reader);
    END LOOP;
END
$$;"#];

/// `governance-postgres`'s `20270102000009_days_in_step.sql`: the watermark
/// up to which the daily counts are in step with the hourly ones, and the
/// roll-up function that keeps it (and rebuilds the days after a roll-up of
/// an older version folded records into the hours only). One string, one
/// simple query, one transaction.
pub(super) const DAYS_IN_STEP: &[&str] =
    &[r#"ALTER TABLE governance_count_rollups ADD COLUMN IF NOT EXISTS days_through_tx xid8;

-- Runs as the tables' owner, so the application role needs only EXECUTE
-- (granted by grant_application_role) and cannot write a count itself.
-- Returns how many decision records it folded in.
CREATE OR REPLACE FUNCTION governance_roll_up_counts(workspace text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    -- Taken first, before this transaction has an id of its own: every
    -- transaction below it has finished, so its records are all visible
    -- to the statements below and no record below it can appear later.
    upto xid8 := pg_snapshot_xmin(pg_current_snapshot());
    done governance_count_rollups%ROWTYPE;
    since xid8 := '0';
    folded bigint := 0;
    last_id uuid;
    last_tx xid8;
BEGIN
    INSERT INTO governance_count_rollups (workspace_id, through_tx) VALUES (workspace, '0') ON CONFLICT DO NOTHING;
    -- Roll-ups of one workspace take turns here; writers never wait on it.
    SELECT * INTO done FROM governance_count_rollups r WHERE r.workspace_id = workspace FOR UPDATE;
    -- A watermark past every transaction id this database has handed out
    -- came from elsewhere along with its records (a copy that kept their
    -- transaction ids): it is not this database's either.
    IF done.through_tx <= pg_snapshot_xmax(pg_current_snapshot())
       AND EXISTS (SELECT 1 FROM governance_history h
                   WHERE h.workspace_id = workspace AND h.id = done.probe_id AND h.tx_id = done.probe_tx) THEN
        since := done.through_tx;
    ELSE
        -- Nothing folded yet, or counts whose transaction ids are not this
        -- database's: start over from every record, and forget the old
        -- watermark now (should nothing be folded below, a watermark from
        -- the future would otherwise pass for this database's once the
        -- counter has passed it).
        DELETE FROM governance_history_counts c WHERE c.workspace_id = workspace;
        DELETE FROM governance_history_daily_counts c WHERE c.workspace_id = workspace;
        UPDATE governance_count_rollups r
            SET through_tx = '0', probe_id = NULL, probe_tx = NULL, days_through_tx = NULL
            WHERE r.workspace_id = workspace;
    END IF;
    IF since > '0' AND done.days_through_tx IS DISTINCT FROM done.through_tx THEN
        -- An older roll-up folded records into the hours only: the days
        -- are rebuilt from the hours, which hold every record folded so far.
        DELETE FROM governance_history_daily_counts c WHERE c.workspace_id = workspace;
        INSERT INTO governance_history_daily_counts (workspace_id, dimension, decision, day, key, n)
        SELECT c.workspace_id, c.dimension, c.decision, floor(c.hour / 24.0)::bigint, c.key, sum(c.n)::bigint
        FROM governance_history_counts c WHERE c.workspace_id = workspace
        GROUP BY 1, 2, 3, 4, 5;
    END IF;
    IF upto > since THEN
        WITH fresh AS (
            SELECT d.dimension, h.decision, floor(extract(epoch FROM h.created_at) / 3600)::bigint AS hour, d.key,
                   count(*) AS n
            FROM governance_history h
            CROSS JOIN LATERAL (
                SELECT 'operation', h.operation
                UNION ALL SELECT 'principal', h.actor_kind || ':' || h.actor_id
                -- The library never stores a NULL code; a row written
                -- around it with one must not stop every roll-up (the
                -- counts' key is NOT NULL), and counts skip it too.
                UNION ALL SELECT 'reason_code', code FROM unnest(h.reason_codes) AS code WHERE code IS NOT NULL
            ) AS d(dimension, key)
            WHERE h.workspace_id = workspace AND h.decision IS NOT NULL AND h.tx_id >= since AND h.tx_id < upto
            GROUP BY 1, 2, 3, 4
        ), added AS (
            INSERT INTO governance_history_counts AS c (workspace_id, dimension, decision, hour, key, n)
            SELECT workspace, f.dimension, f.decision, f.hour, f.key, f.n FROM fresh f
            ON CONFLICT (workspace_id, dimension, decision, hour, key) DO UPDATE SET n = c.n + EXCLUDED.n
        ), added_days AS (
            INSERT INTO governance_history_daily_counts AS c (workspace_id, dimension, decision, day, key, n)
            SELECT workspace, f.dimension, f.decision, floor(f.hour / 24.0)::bigint, f.key, sum(f.n)::bigint
            FROM fresh f GROUP BY 2, 3, 4, 5
            ON CONFLICT (workspace_id, dimension, decision, day, key) DO UPDATE SET n = c.n + EXCLUDED.n
        )
        SELECT coalesce(sum(f.n) FILTER (WHERE f.dimension = 'operation'), 0) INTO folded FROM fresh f;
        SELECT h.id, h.tx_id INTO last_id, last_tx FROM governance_history h
            WHERE h.workspace_id = workspace AND h.tx_id >= since AND h.tx_id < upto
            ORDER BY h.tx_id DESC, h.id DESC LIMIT 1;
        IF last_id IS NOT NULL THEN
            UPDATE governance_count_rollups r SET through_tx = upto, probe_id = last_id, probe_tx = last_tx
                WHERE r.workspace_id = workspace;
        ELSIF done.probe_id IS NOT NULL AND since > '0' THEN
            -- Nothing new, and the watermark is this database's: move it on.
            UPDATE governance_count_rollups r SET through_tx = upto WHERE r.workspace_id = workspace;
        END IF;
    END IF;
    -- The days now hold what the hours hold, up to the watermark.
    UPDATE governance_count_rollups r SET days_through_tx = r.through_tx
        WHERE r.workspace_id = workspace AND r.days_through_tx IS DISTINCT FROM r.through_tx;
    RETURN folded;
END
$$;

-- Replacing a function resets its settings: the path again, as before.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION governance_roll_up_counts(text) SET search_path = %I, pg_temp', current_schema());
END
$$;
REVOKE ALL ON FUNCTION governance_roll_up_counts(text) FROM PUBLIC;"#];

pub(super) const LEAN_REQUEST_INDEXES: &[&str] = &[
    r#"DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index
               WHERE indexrelid = to_regclass('governance_requests_pending') AND indnatts = 4) THEN
        DROP INDEX governance_requests_pending;
    END IF;
END
$$"#,
    "CREATE INDEX IF NOT EXISTS governance_requests_pending
    ON governance_requests (workspace_id, created_at, id) WHERE status = 'pending'",
    "DROP INDEX IF EXISTS governance_requests_status",
];

/// `20261123000003_covering_decision_index.sql`, and what is left of the
/// schema this crate created before it was shared: its decision index and
/// the integrity tables' trigger function under another name (the triggers
/// point to `governance_append_only` once [`INTEGRITY`] has run again).
const COVERING_AND_LEFTOVERS: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS governance_history_decision_covering
        ON governance_history (workspace_id, decision, created_at)
        INCLUDE (reason_codes, operation, actor_kind, actor_id)
        WHERE decision IS NOT NULL",
    "DROP INDEX IF EXISTS governance_history_decision",
    "DROP FUNCTION IF EXISTS governance_integrity_append_only()",
];

/// A column this crate created with another type before the schema was
/// shared, and its conversion.
pub(crate) struct Legacy {
    table: &'static str,
    column: &'static str,
    /// Its type then (`udt_name`).
    udt_name: &'static str,
    /// `ALTER COLUMN … TYPE` of the conversion.
    conversion: &'static str,
}

const fn utc(table: &'static str, column: &'static str, conversion: &'static str) -> Legacy {
    Legacy { table, column, udt_name: "timestamp", conversion }
}

const fn list(table: &'static str, column: &'static str, conversion: &'static str) -> Legacy {
    Legacy { table, column, udt_name: "jsonb", conversion }
}

/// Times were naive UTC: `AT TIME ZONE 'UTC'` makes each the instant it
/// meant, whatever the session's time zone. Lists were JSON arrays of
/// strings; `ALTER COLUMN … USING` allows no subquery, so a function of the
/// migration's own unpacks them, in order.
const LEGACY: &[Legacy] = &[
    utc("governance_requests", "expires_at", "timestamptz USING expires_at AT TIME ZONE 'UTC'"),
    list("governance_requests", "tags", "text[] USING governance_jsonb_text_array(tags)"),
    utc("governance_requests", "created_at", "timestamptz USING created_at AT TIME ZONE 'UTC'"),
    utc("governance_requests", "updated_at", "timestamptz USING updated_at AT TIME ZONE 'UTC'"),
    list("governance_history", "reason_codes", "text[] USING governance_jsonb_text_array(reason_codes)"),
    utc("governance_history", "created_at", "timestamptz USING created_at AT TIME ZONE 'UTC'"),
    utc("governance_checkpoints", "created_at", "timestamptz USING created_at AT TIME ZONE 'UTC'"),
];

/// The time range constraint of each table with a time column. Its
/// expression was written for `timestamp`: dropped before the conversion
/// and added again as [`TIME_RANGE`] writes it.
const TIME_RANGE_CONSTRAINTS: [(&str, &str); 3] = [
    ("governance_requests", "governance_requests_times_in_range"),
    ("governance_history", "governance_history_time_in_range"),
    ("governance_checkpoints", "governance_checkpoints_time_in_range"),
];

const LIST_FUNCTION: &str = r#"CREATE FUNCTION governance_jsonb_text_array(list jsonb) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT AS $$
        SELECT coalesce(array_agg(item ORDER BY n), '{}')
        FROM jsonb_array_elements_text(list) WITH ORDINALITY AS e(item, n)
    $$"#;

/// PostgreSQL only: makes a database that this crate migrated before the
/// schema was shared exactly `governance-postgres`'s, keeping every row.
///
/// Each table with old column types is converted by one `ALTER TABLE` (one
/// rewrite of the table, under its exclusive lock, in the migration's
/// transaction): `ALTER COLUMN … TYPE` fires no row trigger, so the
/// append-only guards neither refuse it nor need lifting. `tx_id` is added
/// with its default, which stamps the existing history rows with this
/// migration's transaction (they come first in governance-postgres's feed,
/// by id). Then every statement of the shared schema runs again (each is
/// re-runnable): the `tx_id` stamp, the feed and covering indexes, the
/// function bodies as governance-postgres writes them, the integrity
/// triggers on `governance_append_only`, and the time range constraints
/// over the new types. On a database created with the shared schema (or by
/// governance-postgres) nothing needs converting and nothing changes.
pub(super) struct SharePostgresSchema;

impl MigrationName for SharePostgresSchema {
    fn name(&self) -> &str {
        "m20261222_000006_share_postgres_schema"
    }
}

#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for SharePostgresSchema {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let connection = manager.get_connection();
        let live = live_columns(connection).await?;
        let old: Vec<&Legacy> = LEGACY
            .iter()
            .filter(|legacy| live.iter().any(|(t, c, u)| (t.as_str(), c.as_str(), u.as_str()) == legacy.key()))
            .collect();
        let lists = old.iter().any(|legacy| legacy.udt_name == "jsonb");
        if lists {
            connection.execute_unprepared(LIST_FUNCTION).await?;
        }
        for (table, constraint) in TIME_RANGE_CONSTRAINTS {
            let converted: Vec<String> = old
                .iter()
                .filter(|legacy| legacy.table == table)
                .map(|legacy| format!("ALTER COLUMN {} TYPE {}", legacy.column, legacy.conversion))
                .collect();
            if converted.is_empty() {
                continue;
            }
            connection
                .execute_unprepared(&format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {constraint}"))
                .await?;
            connection.execute_unprepared(&format!("ALTER TABLE {table} {}", converted.join(", "))).await?;
        }
        if lists {
            connection.execute_unprepared("DROP FUNCTION governance_jsonb_text_array(jsonb)").await?;
        }
        // `CREATE TABLE IF NOT EXISTS` of TABLES keeps the old table as it is.
        connection
            .execute_unprepared(
                "ALTER TABLE governance_history ADD COLUMN IF NOT EXISTS tx_id xid8 NOT NULL DEFAULT pg_current_xact_id()",
            )
            .await?;
        for statement in TABLES.iter().chain(INTEGRITY).chain(COVERING_AND_LEFTOVERS).chain(TIME_RANGE) {
            connection.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}

impl Legacy {
    fn key(&self) -> (&'static str, &'static str, &'static str) {
        (self.table, self.column, self.udt_name)
    }
}

/// The live columns of the governance tables: `(table, column, udt_name)`.
async fn live_columns<C: ConnectionTrait>(connection: &C) -> Result<Vec<(String, String, String)>, DbErr> {
    let rows =
        connection.query_all_raw(Statement::from_string(DbBackend::Postgres, LIVE_COLUMNS_QUERY.to_owned())).await?;
    rows.iter()
        .map(|row| Ok((row.try_get("", "table_name")?, row.try_get("", "column_name")?, row.try_get("", "udt_name")?)))
        .collect()
}

/// Compares the governance tables with the shared schema: refuses, with a
/// [`SchemaMismatch`](governance_abstractions::provider::postgres_schema::SchemaMismatch)
/// as the source of a non-retryable `Backend` error, tables of the
/// governance names that hold something else. Before migrating, the old
/// types that [`SharePostgresSchema`] converts pass.
pub(crate) async fn check_schema<C: ConnectionTrait>(
    connection: &C,
    stage: SchemaStage,
) -> Result<(), GovernanceError> {
    let mut live = live_columns(connection).await.map_err(crate::error::map)?;
    if stage == SchemaStage::BeforeMigrating {
        for (table, column, udt_name) in &mut live {
            if let Some(legacy) =
                LEGACY.iter().find(|l| l.key() == (table.as_str(), column.as_str(), udt_name.as_str()))
            {
                *udt_name = current_type(legacy).to_owned();
            }
        }
    }
    check_postgres_columns(live.iter().map(|(t, c, u)| (t.as_str(), c.as_str(), u.as_str())), stage)
        .map_err(|mismatch| GovernanceError::backend(false, mismatch))
}

/// The shared schema's type of a legacy column.
fn current_type(legacy: &Legacy) -> &'static str {
    POSTGRES_COLUMNS
        .iter()
        .find(|column| (column.table, column.column) == (legacy.table, legacy.column))
        .map_or(legacy.udt_name, |column| column.udt_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each column converted is a shared column of another type today.
    #[test]
    fn legacy_columns_convert_to_the_shared_types() {
        for legacy in LEGACY {
            let shared = current_type(legacy);
            assert_ne!(shared, legacy.udt_name, "{}.{}", legacy.table, legacy.column);
            let spelled = if shared == "_text" { "text[] " } else { "timestamptz " };
            assert!(legacy.conversion.starts_with(spelled), "{}.{}", legacy.table, legacy.column);
            assert!(legacy.conversion.contains(legacy.column), "{}.{} converts itself", legacy.table, legacy.column);
            assert!(TIME_RANGE_CONSTRAINTS.iter().any(|(table, _)| *table == legacy.table));
        }
    }
}
