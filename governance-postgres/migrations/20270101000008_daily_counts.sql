-- Decision counts kept per day beside the hourly ones, so that a count over
-- a long window reads one row per key for each of its whole days and the
-- hourly rows only for the hours at its edges (docs/performance.md,
-- "Counts kept per hour and per day").
--
-- The roll-up adds the same records to both tables in one statement: a
-- day's row is the sum of its hours' rows whenever a count can see them.

CREATE TABLE IF NOT EXISTS governance_history_daily_counts (
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
$$;
