-- The daily counts are read only while they are known to hold what the
-- hourly counts hold (docs/providers/postgres.md, "Counts kept per hour and
-- per day").
--
-- An earlier version of governance_roll_up_counts folds records into the
-- hours only. It can still run after the daily counts exist: a roll-up that
-- looked the function up before the migration that replaced it committed,
-- or the other provider's older migration installing that version again.
-- Such a roll-up moves the watermark past records the days never received.
-- So the roll-up below records, in days_through_tx, the watermark up to
-- which it kept the days in step; older versions never write that column.
-- A count reads the days only when days_through_tx equals through_tx, and
-- the next roll-up of this version rebuilds a workspace's days from its
-- hours when the two differ. Every workspace starts out of step (NULL):
-- counts read the hours until its next roll-up.

ALTER TABLE governance_count_rollups ADD COLUMN IF NOT EXISTS days_through_tx xid8;

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
REVOKE ALL ON FUNCTION governance_roll_up_counts(text) FROM PUBLIC;
