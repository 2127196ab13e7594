-- Decision counts kept per hour, so that analytics over a window do not
-- read every record of it (docs/performance.md, "Counts kept per hour").
--
-- Writers never touch these tables: a roll-up (governance_roll_up_counts)
-- folds the records of finished transactions into hourly counts, in
-- transaction order, and moves the workspace's watermark past them in the
-- same transaction. A count adds the hourly rows of the window's whole
-- hours, the records of those hours written at or after the watermark,
-- and the records of the partial hours at the window's edges: exact at any
-- moment, however long ago the last roll-up ran.

CREATE TABLE IF NOT EXISTS governance_count_rollups (
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
REVOKE ALL ON FUNCTION governance_roll_up_counts(text) FROM PUBLIC;
