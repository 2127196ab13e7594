-- Decision analytics (top deny reasons, per principal, per operation) read
-- only these columns: carry them in the index so counts over a window are
-- index-only scans instead of heap visits (at a week of a busy workspace the
-- planner otherwise prefers a sequential scan). It replaces the plain
-- decision index, whose key it keeps. On a large table, build it by hand
-- first with CREATE INDEX CONCURRENTLY (docs/operations.md).
CREATE INDEX IF NOT EXISTS governance_history_decision_covering
    ON governance_history (workspace_id, decision, created_at)
    INCLUDE (reason_codes, operation, actor_kind, actor_id)
    WHERE decision IS NOT NULL;
DROP INDEX IF EXISTS governance_history_decision;
