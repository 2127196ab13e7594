-- Fewer index entries per request write. Every request row version (the
-- creation, and each transition that changes the status) went into a
-- status index over all requests, although the only status query of the
-- contract with an order of its own is the pending queue: that is now
-- served by one index over pending requests only, in queue order, with or
-- without a reason (the reason is a filter over the pending set, which is
-- small against the whole table). A status filter on any other status walks
-- the request's `(created_at, id)` order like every other filter; the
-- expiry sweep has its own partial index.
--
-- The pending index keeps its name; an earlier definition (keyed by
-- reason first) is replaced, and a re-run finds the new one and keeps it.
-- Both statements lock the table while they build or drop: on a large
-- table, run them by hand first with CREATE INDEX CONCURRENTLY under a
-- temporary name, then rename (docs/operations.md).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index
               WHERE indexrelid = to_regclass('governance_requests_pending') AND indnatts = 4) THEN
        DROP INDEX governance_requests_pending;
    END IF;
END
$$;
CREATE INDEX IF NOT EXISTS governance_requests_pending
    ON governance_requests (workspace_id, created_at, id) WHERE status = 'pending';
DROP INDEX IF EXISTS governance_requests_status;
