//! The hand-written SQL baselines: sqlx against the PostgreSQL provider's
//! schema (the seeds' own style), and plain statements through the same
//! pool against the SeaORM provider's schema on each backend.

use async_trait::async_trait;
use governance_abstractions::{Evidence, GovernanceRequest, RequestId, Timestamp, WorkspaceId};
use governance_postgres::sqlx::{self, PgPool, QueryBuilder, types::Json};
use governance_seaorm::sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait, Value};
use serde_json::json;

use crate::baseline::{Baseline, Fresh, Move, Outcome};

const HISTORY_COLUMNS: &str = "workspace_id, id, request_id, request_revision, category, code, actor_kind, \
    actor_id, actor, object_type, operation, decision, outcome, reason, reason_codes, correlation_id, trace_hash, \
    idempotency_key, policy_version, latency_us, request_json, response_json, redaction_policy, redaction_version, \
    created_at, content_hash";

const REQUEST_COLUMNS: &str = "workspace_id, id, state_type, state_id, operation, actor_kind, actor_id, \
    requested_by, intent, status, pending_reason, approvals, expected_state_version, stale_strategy, expires_at, \
    superseded_by, idempotency_key, category, tags, metadata, revision, created_at, updated_at, creation_digest, \
    state_digest";

fn text<E: std::fmt::Display>(error: E) -> String {
    error.to_string()
}

fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------- sqlx, PostgreSQL provider schema

/// Hand-written sqlx against `governance-postgres`'s tables.
#[derive(Debug, Clone)]
pub(crate) struct PgBaseline(pub(crate) PgPool);

fn push_history_pg(row: &mut sqlx::query_builder::Separated<'_, sqlx::Postgres, &'static str>, fresh: &Fresh<'_>) {
    let e: &Evidence = fresh.evidence;
    row.push_bind(e.workspace_id.as_str().to_owned())
        .push_bind(fresh.id)
        .push_bind(e.request.map(|r| r.id.as_uuid()))
        .push_bind(e.request.map(|r| as_i64(r.revision)))
        .push_bind(e.category.as_str())
        .push_bind(e.code.clone())
        .push_bind(e.actor.actor.kind.as_str())
        .push_bind(e.actor.actor.id.clone())
        .push_bind(Json(governance_abstractions::provider::stored_delegation(&e.actor)))
        .push_bind(e.object_type.clone())
        .push_bind(e.operation.clone())
        .push_bind(e.decision.map(|d| d.as_str()))
        .push_bind(e.outcome.map(|o| o.as_str()))
        .push_bind(e.reason.clone())
        .push_bind(e.reason_codes.clone())
        .push_bind(e.correlation_id.clone())
        .push_bind(e.trace_hash.clone())
        .push_bind(e.idempotency_key.clone())
        .push_bind(e.policy_version.clone())
        .push_bind(e.latency_us.map(as_i64))
        .push_bind(e.request_json.clone().map(Json))
        .push_bind(e.response_json.clone().map(Json))
        .push_bind(e.redaction.as_ref().map(|r| r.policy.clone()))
        .push_bind(e.redaction.as_ref().map(|r| r.version.clone()))
        .push_bind(fresh.at.as_datetime())
        .push_bind("");
}

async fn insert_history_pg<'c, E: sqlx::PgExecutor<'c>>(executor: E, rows: &[Fresh<'_>]) -> Outcome<()> {
    let mut insert = QueryBuilder::new(format!("INSERT INTO governance_history ({HISTORY_COLUMNS}) "));
    insert.push_values(rows, |mut row, fresh| push_history_pg(&mut row, fresh));
    insert.build().persistent(true).execute(executor).await.map(drop).map_err(text)
}

async fn insert_requests_pg<'c, E: sqlx::PgExecutor<'c>>(executor: E, requests: &[GovernanceRequest]) -> Outcome<()> {
    let mut insert = QueryBuilder::new(format!("INSERT INTO governance_requests ({REQUEST_COLUMNS}) "));
    insert.push_values(requests, |mut row, r| {
        let s = r.spec();
        row.push_bind(s.workspace_id.as_str().to_owned())
            .push_bind(r.id().as_uuid())
            .push_bind(s.target.state_type.clone())
            .push_bind(s.target.state_id.clone())
            .push_bind(s.operation.clone())
            .push_bind(s.requested_by.actor.kind.as_str())
            .push_bind(s.requested_by.actor.id.clone())
            .push_bind(Json(governance_abstractions::provider::stored_delegation(&s.requested_by)))
            .push_bind(s.intent.clone())
            .push_bind(r.status().as_str())
            .push_bind(r.pending_reason().map(|p| p.as_str()))
            .push_bind(Json(json!(s.approvals)))
            .push_bind(s.expected_state_version)
            .push_bind(s.stale_strategy.as_str())
            .push_bind(s.expires_at.map(|t| t.as_datetime()))
            .push_bind(r.superseded_by().map(|id| id.as_uuid()))
            .push_bind(s.idempotency_key.clone())
            .push_bind(s.category.clone())
            .push_bind(s.tags.clone())
            .push_bind(Json(s.metadata.clone()))
            .push_bind(as_i64(r.revision()))
            .push_bind(r.created_at().as_datetime())
            .push_bind(r.updated_at().as_datetime())
            .push_bind(r.creation_digest().to_owned())
            // Written as the provider writes it; the hand-written code computes none.
            .push_bind(r.state_digest().to_owned());
    });
    insert.build().persistent(true).execute(executor).await.map(drop).map_err(text)
}

#[async_trait]
impl Baseline for PgBaseline {
    async fn insert_evidence(&self, rows: &[Fresh<'_>]) -> Outcome<()> {
        insert_history_pg(&self.0, rows).await
    }

    async fn create(&self, request: &GovernanceRequest, record: Fresh<'_>) -> Outcome<()> {
        let mut tx = self.0.begin().await.map_err(text)?;
        insert_requests_pg(&mut *tx, std::slice::from_ref(request)).await?;
        insert_history_pg(&mut *tx, &[record]).await?;
        tx.commit().await.map_err(text)
    }

    async fn transition(&self, change: Move<'_>, record: Fresh<'_>) -> Outcome<bool> {
        let mut tx = self.0.begin().await.map_err(text)?;
        let next = change.next;
        let updated = sqlx::query(
            "UPDATE governance_requests SET status = $1, pending_reason = $2, approvals = $3, \
             expected_state_version = $4, superseded_by = $5, metadata = $6, revision = $7, updated_at = $8, \
             state_digest = $9 WHERE workspace_id = $10 AND id = $11 AND revision = $12 AND status = $13 \
             AND state_digest IS NOT DISTINCT FROM $14",
        )
        .bind(next.status().as_str())
        .bind(next.pending_reason().map(|p| p.as_str()))
        .bind(Json(&next.spec().approvals))
        .bind(next.spec().expected_state_version)
        .bind(next.superseded_by().map(|id| id.as_uuid()))
        .bind(Json(&next.spec().metadata))
        .bind(as_i64(next.revision()))
        .bind(next.updated_at().as_datetime())
        .bind(next.state_digest())
        .bind(change.workspace.as_str())
        .bind(change.id.as_uuid())
        .bind(as_i64(change.from_revision))
        .bind(change.from_status)
        .bind(change.from_digest)
        .execute(&mut *tx)
        .await
        .map_err(text)?;
        if updated.rows_affected() == 0 {
            tx.rollback().await.map_err(text)?;
            return Ok(false);
        }
        insert_history_pg(&mut *tx, &[record]).await?;
        tx.commit().await.map_err(text)?;
        Ok(true)
    }

    async fn current(&self, workspace: &WorkspaceId, id: RequestId) -> Outcome<(u64, Option<String>)> {
        let (revision, digest): (i64, Option<String>) = sqlx::query_as(
            "SELECT revision, state_digest FROM governance_requests WHERE workspace_id = $1 AND id = $2",
        )
        .bind(workspace.as_str())
        .bind(id.as_uuid())
        .fetch_one(&self.0)
        .await
        .map_err(text)?;
        Ok((revision as u64, digest))
    }

    async fn pending_page(&self, workspace: &WorkspaceId, limit: u32) -> Outcome<usize> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM governance_requests WHERE workspace_id = $1 AND status = 'pending' \
             ORDER BY created_at, id LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(workspace.as_str())
            .bind(i64::from(limit))
            .fetch_all(&self.0)
            .await;
        rows.map_err(text)?.iter().map(pg_request).sum()
    }

    async fn request_history(&self, workspace: &WorkspaceId, id: RequestId) -> Outcome<usize> {
        let sql = format!(
            "SELECT {HISTORY_COLUMNS} FROM governance_history WHERE workspace_id = $1 AND request_id = $2 \
             ORDER BY request_revision, created_at, id"
        );
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(workspace.as_str()).bind(id.as_uuid()).fetch_all(&self.0).await;
        rows.map_err(text)?.iter().map(pg_history).sum()
    }

    async fn denied_page(&self, workspace: &WorkspaceId, operation: &str, limit: u32) -> Outcome<usize> {
        let sql = format!(
            "SELECT {HISTORY_COLUMNS} FROM governance_history WHERE workspace_id = $1 AND decision = 'denied' \
             AND operation = $2 ORDER BY created_at, id LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(workspace.as_str())
            .bind(operation)
            .bind(i64::from(limit))
            .fetch_all(&self.0)
            .await;
        rows.map_err(text)?.iter().map(pg_history).sum()
    }

    async fn top_deny_reasons(&self, workspace: &WorkspaceId, since: Timestamp, limit: u32) -> Outcome<usize> {
        let rows = sqlx::query(
            "SELECT r.reason, count(*) AS n FROM governance_history, unnest(reason_codes) AS r(reason) \
             WHERE workspace_id = $1 AND decision = 'denied' AND created_at >= $2 \
             GROUP BY r.reason ORDER BY n DESC, r.reason LIMIT $3",
        )
        .bind(workspace.as_str())
        .bind(since.as_datetime())
        .bind(i64::from(limit))
        .fetch_all(&self.0)
        .await;
        let rows = rows.map_err(text)?;
        for row in &rows {
            use sqlx::Row;
            std::hint::black_box((row.try_get::<String, _>(0).map_err(text)?, row.try_get::<i64, _>(1).map_err(text)?));
        }
        Ok(rows.len())
    }

    async fn seed_requests(&self, requests: &[GovernanceRequest]) -> Outcome<()> {
        for chunk in requests.chunks(500) {
            insert_requests_pg(&self.0, chunk).await?;
        }
        Ok(())
    }

    async fn analyze(&self) -> Outcome<()> {
        // VACUUM too: autovacuum would soon after a bulk insert, and index-only
        // scans need the visibility map it sets.
        sqlx::query("VACUUM ANALYZE governance_history, governance_requests")
            .execute(&self.0)
            .await
            .map(drop)
            .map_err(text)
    }
}

/// Reads every column of a request row into owned values, as a hand-written
/// repository maps rows to its struct. Returns 1 (a row).
fn pg_request(row: &sqlx::postgres::PgRow) -> Outcome<usize> {
    use sqlx::Row;
    let texts = ["workspace_id", "state_type", "state_id", "operation", "actor_kind", "actor_id", "intent", "status"];
    for column in texts.into_iter().chain(["stale_strategy", "creation_digest"]) {
        std::hint::black_box(row.try_get::<String, _>(column).map_err(text)?);
    }
    for column in ["pending_reason", "idempotency_key", "category", "state_digest"] {
        std::hint::black_box(row.try_get::<Option<String>, _>(column).map_err(text)?);
    }
    for column in ["requested_by", "approvals", "metadata"] {
        std::hint::black_box(row.try_get::<serde_json::Value, _>(column).map_err(text)?);
    }
    std::hint::black_box((
        row.try_get::<uuid::Uuid, _>("id").map_err(text)?,
        row.try_get::<Option<uuid::Uuid>, _>("superseded_by").map_err(text)?,
        row.try_get::<Option<i64>, _>("expected_state_version").map_err(text)?,
        row.try_get::<i64, _>("revision").map_err(text)?,
        row.try_get::<Vec<String>, _>("tags").map_err(text)?,
        row.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>("expires_at").map_err(text)?,
        row.try_get::<chrono::DateTime<chrono::Utc>, _>("created_at").map_err(text)?,
        row.try_get::<chrono::DateTime<chrono::Utc>, _>("updated_at").map_err(text)?,
    ));
    Ok(1)
}

/// Reads every column of a history row into owned values. Returns 1.
fn pg_history(row: &sqlx::postgres::PgRow) -> Outcome<usize> {
    use sqlx::Row;
    let texts = ["workspace_id", "category", "code", "actor_kind", "actor_id", "object_type", "operation"];
    for column in texts.into_iter().chain(["content_hash"]) {
        std::hint::black_box(row.try_get::<String, _>(column).map_err(text)?);
    }
    let optional = ["decision", "outcome", "reason", "correlation_id", "trace_hash", "idempotency_key"];
    for column in optional.into_iter().chain(["policy_version", "redaction_policy", "redaction_version"]) {
        std::hint::black_box(row.try_get::<Option<String>, _>(column).map_err(text)?);
    }
    for column in ["request_json", "response_json"] {
        std::hint::black_box(row.try_get::<Option<serde_json::Value>, _>(column).map_err(text)?);
    }
    std::hint::black_box((
        row.try_get::<uuid::Uuid, _>("id").map_err(text)?,
        row.try_get::<Option<uuid::Uuid>, _>("request_id").map_err(text)?,
        row.try_get::<Option<i64>, _>("request_revision").map_err(text)?,
        row.try_get::<serde_json::Value, _>("actor").map_err(text)?,
        row.try_get::<Vec<String>, _>("reason_codes").map_err(text)?,
        row.try_get::<Option<i64>, _>("latency_us").map_err(text)?,
        row.try_get::<chrono::DateTime<chrono::Utc>, _>("created_at").map_err(text)?,
    ));
    Ok(1)
}

// ---------------------------------------------------------------- SeaORM provider schema, any backend

/// Hand-written statements against `governance-seaorm`'s MySQL and SQLite
/// tables, through the provider's own pool (on PostgreSQL both providers
/// share one schema, and [`PgBaseline`] is the baseline of both).
#[derive(Debug, Clone)]
pub(crate) struct SeaBaseline(pub(crate) DatabaseConnection);

fn naive(at: Timestamp) -> Value {
    Value::from(at.as_datetime().naive_utc())
}

fn history_values(fresh: &Fresh<'_>) -> Vec<Value> {
    let e = fresh.evidence;
    vec![
        Value::from(e.workspace_id.as_str()),
        Value::from(fresh.id),
        Value::from(e.request.map(|r| r.id.as_uuid())),
        Value::from(e.request.map(|r| as_i64(r.revision))),
        Value::from(e.category.as_str()),
        Value::from(e.code.as_str()),
        Value::from(e.actor.actor.kind.as_str()),
        Value::from(e.actor.actor.id.as_str()),
        Value::from(json!(governance_abstractions::provider::stored_delegation(&e.actor))),
        Value::from(e.object_type.as_str()),
        Value::from(e.operation.as_str()),
        Value::from(e.decision.map(|d| d.as_str().to_owned())),
        Value::from(e.outcome.map(|o| o.as_str().to_owned())),
        Value::from(e.reason.clone()),
        Value::from(json!(e.reason_codes)),
        Value::from(e.correlation_id.clone()),
        Value::from(e.trace_hash.clone()),
        Value::from(e.idempotency_key.clone()),
        Value::from(e.policy_version.clone()),
        Value::from(e.latency_us.map(as_i64)),
        Value::from(e.request_json.clone()),
        Value::from(e.response_json.clone()),
        Value::from(e.redaction.as_ref().map(|r| r.policy.clone())),
        Value::from(e.redaction.as_ref().map(|r| r.version.clone())),
        naive(fresh.at),
        Value::from(""),
    ]
}

impl SeaBaseline {
    fn backend(&self) -> DbBackend {
        self.0.get_database_backend()
    }

    fn statement(&self, sql: &str, values: Vec<Value>) -> Statement {
        governance_seaorm::testing::statement(self.backend(), sql, values)
    }

    fn insert_history(&self, rows: &[Fresh<'_>]) -> Statement {
        let one = format!("({})", vec!["?"; 26].join(", "));
        let sql =
            format!("INSERT INTO governance_history ({HISTORY_COLUMNS}) VALUES {}", vec![one; rows.len()].join(", "));
        self.statement(&sql, rows.iter().flat_map(history_values).collect())
    }

    /// Runs `statements` in one transaction.
    async fn in_transaction(&self, statements: Vec<Statement>) -> Outcome<()> {
        let txn = self.0.begin().await.map_err(text)?;
        for statement in statements {
            txn.execute_raw(statement).await.map_err(text)?;
        }
        txn.commit().await.map_err(text)
    }

    /// Runs a query and reads every column of every row into owned values,
    /// as a hand-written repository maps rows to its struct.
    async fn fetch(&self, sql: &str, values: Vec<Value>, columns: &str) -> Outcome<usize> {
        let rows = self.0.query_all_raw(self.statement(sql, values)).await.map_err(text)?;
        for row in &rows {
            for column in columns.split(',').map(str::trim) {
                let value = match column {
                    "id" | "request_id" | "superseded_by" => {
                        row.try_get::<Option<uuid::Uuid>>("", column).map(|v| v.map(|u| u.to_string()))
                    }
                    "request_revision" | "latency_us" | "expected_state_version" | "revision" => {
                        row.try_get::<Option<i64>>("", column).map(|v| v.map(|n| n.to_string()))
                    }
                    "created_at" | "updated_at" | "expires_at" => {
                        row.try_get::<Option<chrono::NaiveDateTime>>("", column).map(|v| v.map(|t| t.to_string()))
                    }
                    "actor" | "reason_codes" | "request_json" | "response_json" | "requested_by" | "approvals"
                    | "tags" | "metadata" => {
                        row.try_get::<Option<serde_json::Value>>("", column).map(|v| v.map(|j| j.to_string()))
                    }
                    _ => row.try_get::<Option<String>>("", column),
                };
                std::hint::black_box(value.map_err(text)?);
            }
        }
        Ok(rows.len())
    }

    fn request_insert(&self, r: &GovernanceRequest) -> Statement {
        let s = r.spec();
        let values = vec![
            Value::from(s.workspace_id.as_str()),
            Value::from(r.id().as_uuid()),
            Value::from(s.target.state_type.as_str()),
            Value::from(s.target.state_id.as_str()),
            Value::from(s.operation.as_str()),
            Value::from(s.requested_by.actor.kind.as_str()),
            Value::from(s.requested_by.actor.id.as_str()),
            Value::from(json!(governance_abstractions::provider::stored_delegation(&s.requested_by))),
            Value::from(s.intent.as_str()),
            Value::from(r.status().as_str()),
            Value::from(r.pending_reason().map(|p| p.as_str().to_owned())),
            Value::from(json!(s.approvals)),
            Value::from(s.expected_state_version),
            Value::from(s.stale_strategy.as_str()),
            Value::from(s.expires_at.map(|t| t.as_datetime().naive_utc())),
            Value::from(r.superseded_by().map(|id| id.as_uuid())),
            Value::from(s.idempotency_key.clone()),
            Value::from(s.category.clone()),
            Value::from(json!(s.tags)),
            Value::from(s.metadata.clone()),
            Value::from(as_i64(r.revision())),
            naive(r.created_at()),
            naive(r.updated_at()),
            Value::from(r.creation_digest()),
            // Written as the provider writes it; the hand-written code computes none.
            Value::from(r.state_digest()),
        ];
        let sql = format!("INSERT INTO governance_requests ({REQUEST_COLUMNS}) VALUES ({})", vec!["?"; 25].join(", "));
        self.statement(&sql, values)
    }
}

#[async_trait]
impl Baseline for SeaBaseline {
    async fn insert_evidence(&self, rows: &[Fresh<'_>]) -> Outcome<()> {
        self.0.execute_raw(self.insert_history(rows)).await.map(drop).map_err(text)
    }

    async fn create(&self, request: &GovernanceRequest, record: Fresh<'_>) -> Outcome<()> {
        self.in_transaction(vec![self.request_insert(request), self.insert_history(&[record])]).await
    }

    async fn transition(&self, change: Move<'_>, record: Fresh<'_>) -> Outcome<bool> {
        let txn = self.0.begin().await.map_err(text)?;
        let next = change.next;
        let update = self.statement(
            "UPDATE governance_requests SET status = ?, pending_reason = ?, approvals = ?, \
             expected_state_version = ?, superseded_by = ?, metadata = ?, revision = ?, updated_at = ?, \
             state_digest = ? WHERE workspace_id = ? AND id = ? AND revision = ? AND status = ? \
             AND state_digest = ?",
            vec![
                Value::from(next.status().as_str()),
                Value::from(next.pending_reason().map(|p| p.as_str().to_owned())),
                Value::from(json!(next.spec().approvals)),
                Value::from(next.spec().expected_state_version),
                Value::from(next.superseded_by().map(|id| id.as_uuid())),
                Value::from(next.spec().metadata.clone()),
                Value::from(as_i64(next.revision())),
                naive(next.updated_at()),
                Value::from(next.state_digest()),
                Value::from(change.workspace.as_str()),
                Value::from(change.id.as_uuid()),
                Value::from(as_i64(change.from_revision)),
                Value::from(change.from_status),
                Value::from(change.from_digest.map(str::to_owned)),
            ],
        );
        let updated = txn.execute_raw(update).await.map_err(text)?;
        if updated.rows_affected() == 0 {
            txn.rollback().await.map_err(text)?;
            return Ok(false);
        }
        txn.execute_raw(self.insert_history(&[record])).await.map_err(text)?;
        txn.commit().await.map_err(text)?;
        Ok(true)
    }

    async fn current(&self, workspace: &WorkspaceId, id: RequestId) -> Outcome<(u64, Option<String>)> {
        let statement = self.statement(
            "SELECT revision, state_digest FROM governance_requests WHERE workspace_id = ? AND id = ?",
            vec![Value::from(workspace.as_str()), Value::from(id.as_uuid())],
        );
        let row = self.0.query_one_raw(statement).await.map_err(text)?.ok_or("no such request")?;
        let revision = row.try_get::<i64>("", "revision").map_err(text)?;
        Ok((revision as u64, row.try_get::<Option<String>>("", "state_digest").map_err(text)?))
    }

    async fn pending_page(&self, workspace: &WorkspaceId, limit: u32) -> Outcome<usize> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM governance_requests WHERE workspace_id = ? AND status = 'pending' \
             ORDER BY created_at, id LIMIT ?"
        );
        self.fetch(&sql, vec![Value::from(workspace.as_str()), Value::from(i64::from(limit))], REQUEST_COLUMNS).await
    }

    async fn request_history(&self, workspace: &WorkspaceId, id: RequestId) -> Outcome<usize> {
        let sql = format!(
            "SELECT {HISTORY_COLUMNS} FROM governance_history WHERE workspace_id = ? AND request_id = ? \
             ORDER BY request_revision, created_at, id"
        );
        self.fetch(&sql, vec![Value::from(workspace.as_str()), Value::from(id.as_uuid())], HISTORY_COLUMNS).await
    }

    async fn denied_page(&self, workspace: &WorkspaceId, operation: &str, limit: u32) -> Outcome<usize> {
        let sql = format!(
            "SELECT {HISTORY_COLUMNS} FROM governance_history WHERE workspace_id = ? AND decision = 'denied' \
             AND operation = ? ORDER BY created_at, id LIMIT ?"
        );
        let values = vec![Value::from(workspace.as_str()), Value::from(operation), Value::from(i64::from(limit))];
        self.fetch(&sql, values, HISTORY_COLUMNS).await
    }

    async fn top_deny_reasons(&self, workspace: &WorkspaceId, since: Timestamp, limit: u32) -> Outcome<usize> {
        let codes = match self.backend() {
            DbBackend::MySql => "JSON_TABLE(h.reason_codes, '$[*]' COLUMNS (code VARCHAR(255) PATH '$')) AS c",
            _ => "json_each(h.reason_codes) AS c",
        };
        let code = if self.backend() == DbBackend::Sqlite { "c.value" } else { "c.code" };
        let sql = format!(
            "SELECT {code} AS code, COUNT(*) AS n FROM governance_history h, {codes} \
             WHERE h.workspace_id = ? AND h.decision = 'denied' AND h.created_at >= ? \
             GROUP BY {code} ORDER BY n DESC, code LIMIT ?"
        );
        let values = vec![Value::from(workspace.as_str()), naive(since), Value::from(i64::from(limit))];
        self.fetch(&sql, values, "code").await
    }

    async fn analyze(&self) -> Outcome<()> {
        let sql = match self.backend() {
            DbBackend::Postgres => "VACUUM ANALYZE governance_history, governance_requests",
            DbBackend::MySql => "ANALYZE TABLE governance_history, governance_requests",
            _ => "ANALYZE",
        };
        self.0.execute_unprepared(sql).await.map(drop).map_err(text)
    }

    async fn seed_requests(&self, requests: &[GovernanceRequest]) -> Outcome<()> {
        for chunk in requests.chunks(200) {
            self.in_transaction(chunk.iter().map(|r| self.request_insert(r)).collect()).await?;
        }
        Ok(())
    }
}
