-- no-transaction
-- Every stored time lies in the range the library stores (1970-01-01 up to
-- the end of year 9999, `Timestamp::MIN_MICROS..=MAX_MICROS`). The library
-- never writes anything else, but a role that may update a request could
-- set `updated_at = 'infinity'` (or a year past 262143), and the driver's
-- time decoder panics on such a value: every read, `verify` and the sealer
-- would panic on the row instead of reporting it. The server now refuses
-- the write.
--
-- Added NOT VALID, then validated in a later transaction: adding a
-- constraint takes an ACCESS EXCLUSIVE lock on the table, but NOT VALID
-- skips the scan of existing rows, so that lock lasts an instant; VALIDATE
-- scans under a SHARE UPDATE EXCLUSIVE lock, which lets reads and writes go
-- on. Hence `no-transaction` above and the explicit COMMIT below: in one
-- transaction the exclusive lock would be held for the whole scan.
--
-- Re-runnable: a constraint that exists already (added by hand beforehand,
-- or by an interrupted run) is kept, and validating a valid constraint is a
-- no-op. If VALIDATE fails, a stored row is out of range: the constraints
-- already guard new writes; correct the row and migrate again. The
-- append-only triggers of history and checkpoints are row and TRUNCATE
-- triggers: ALTER TABLE (by the tables' owner, who runs migrations) does
-- not fire them, and validating only reads.
BEGIN;
DO $$
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
$$;
COMMIT;
ALTER TABLE governance_requests VALIDATE CONSTRAINT governance_requests_times_in_range;
ALTER TABLE governance_history VALIDATE CONSTRAINT governance_history_time_in_range;
ALTER TABLE governance_checkpoints VALIDATE CONSTRAINT governance_checkpoints_time_in_range;
