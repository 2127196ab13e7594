//! The write paths. On the pool each write is one statement (data-modifying
//! CTEs make it atomic without BEGIN/COMMIT round trips); inside a caller's
//! transaction each runs in a savepoint so a refused write leaves the
//! caller's transaction usable.

use std::collections::HashSet;
use std::sync::LazyLock;

use governance_abstractions::{
    AppendStorage, Creation, EntityKind, GovernanceError, GovernanceRequest, HistoryRecord, InsertAttempt,
    RequestStatus, Result, Stored, Transition, WorkspaceId, append_history_with, check_commit_target,
    validate_creation, validate_transition,
};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{Acquire, PgConnection, Postgres, Row};

use crate::error::{invisible_collision, is_unique_violation, map};
use crate::rows::{
    bind_history, bind_history_row, bind_request, history_columns, history_from, history_unnest, request_columns,
    request_from, signed,
};

/// The statements that insert history rows, built once (their UNNEST part
/// depends on the number of parameters before it).
static CREATE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        concat!(
            "WITH created AS (INSERT INTO governance_requests (",
            request_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, \
             $21, $22, $23, $24) ON CONFLICT DO NOTHING RETURNING 1) INSERT INTO governance_history (",
            history_columns!(),
            ") {} WHERE EXISTS (SELECT 1 FROM created) RETURNING 1"
        ),
        history_unnest(25)
    )
});

static TRANSITION_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        concat!(
            "WITH moved AS (UPDATE governance_requests \
             SET status = $5, pending_reason = $6, approvals = $7, expected_state_version = $8, superseded_by = $9, \
             metadata = $10, revision = $11, updated_at = $12 \
             WHERE workspace_id = $1 AND id = $2 AND revision = $3 AND status = $4 RETURNING 1), \
             recorded AS (INSERT INTO governance_history (",
            history_columns!(),
            ") {} WHERE EXISTS (SELECT 1 FROM moved) RETURNING 1) SELECT (SELECT count(*) FROM moved) AS moved"
        ),
        history_unnest(13)
    )
});

const APPEND_ONE_SQL: &str = concat!(
    "INSERT INTO governance_history (",
    history_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, \
     $23, $24, $25, $26)"
);

static APPEND_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(concat!("INSERT INTO governance_history (", history_columns!(), ") {}"), history_unnest(1))
});

/// Runs one statement, in a savepoint when `isolate` (inside a caller's
/// transaction a failed statement would otherwise abort it).
async fn run(
    conn: &mut PgConnection,
    isolate: bool,
    query: Query<'_, Postgres, PgArguments>,
) -> sqlx::Result<Vec<PgRow>> {
    if !isolate {
        return query.fetch_all(conn).await;
    }
    let mut savepoint = conn.begin().await?;
    match query.fetch_all(&mut *savepoint).await {
        Ok(rows) => {
            savepoint.commit().await?;
            Ok(rows)
        }
        Err(error) => {
            // Report the statement's failure, not the rollback's.
            let _ = savepoint.rollback().await;
            Err(error)
        }
    }
}

pub(crate) async fn create_request(
    conn: &mut PgConnection,
    isolate: bool,
    creation: &Creation,
) -> Result<Stored<GovernanceRequest>> {
    validate_creation(creation)?;
    let request = creation.request();
    let query = bind_request(sqlx::query(sqlx::AssertSqlSafe(CREATE_SQL.as_str())), request);
    let query = bind_history(query, &[creation.record()]);
    match run(conn, isolate, query).await {
        Ok(rows) if !rows.is_empty() => Ok(Stored::New(request.clone())),
        Ok(_) => resolve_create_clash(conn, creation).await,
        Err(error) if is_unique_violation(&error) => resolve_create_clash(conn, creation).await,
        Err(error) => Err(map(error)),
    }
}

/// Nothing was created: a replay, an idempotency conflict, or a taken id.
async fn resolve_create_clash(conn: &mut PgConnection, creation: &Creation) -> Result<Stored<GovernanceRequest>> {
    let request = creation.request();
    let workspace = request.workspace_id();
    if let Some(key) = &request.spec.idempotency_key {
        let original = sqlx::query(concat!(
            "SELECT ",
            request_columns!(),
            " FROM governance_requests WHERE workspace_id = $1 AND idempotency_key = $2"
        ))
        .bind(workspace.as_str())
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map)?;
        if let Some(original) = original {
            let original = request_from(&original)?;
            if original.creation_digest != request.creation_digest {
                return Err(GovernanceError::IdempotencyConflict {
                    kind: EntityKind::Request,
                    workspace: workspace.clone(),
                    key: key.clone(),
                    existing: original.id.to_string(),
                });
            }
            return Ok(Stored::Replayed(original));
        }
    }
    for (kind, table, id) in [
        (EntityKind::Request, "governance_requests", request.id.as_uuid()),
        (EntityKind::HistoryRecord, "governance_history", creation.record().id.as_uuid()),
    ] {
        let sql = sqlx::AssertSqlSafe(format!("SELECT 1 FROM {table} WHERE workspace_id = $1 AND id = $2"));
        let taken = sqlx::query(sql).bind(workspace.as_str()).bind(id).fetch_optional(&mut *conn).await.map_err(map)?;
        if taken.is_some() {
            return Err(GovernanceError::AlreadyExists { kind, workspace: workspace.clone(), id: id.to_string() });
        }
    }
    Err(invisible_collision())
}

pub(crate) async fn commit_transition(conn: &mut PgConnection, isolate: bool, transition: &Transition) -> Result<()> {
    validate_transition(transition)?;
    let next = transition.request();
    let spec = &next.spec;
    // Only what the lifecycle changes is written; the rest is immutable.
    let records: Vec<&HistoryRecord> = transition.records().iter().collect();
    let query = sqlx::query(sqlx::AssertSqlSafe(TRANSITION_SQL.as_str()))
        .bind(spec.workspace_id.as_str())
        .bind(next.id.as_uuid())
        .bind(signed(transition.expected_revision()))
        .bind(transition.expected_status().as_str())
        .bind(next.status.as_str())
        .bind(next.pending_reason.map(|r| r.as_str()))
        .bind(sqlx::types::Json(&spec.approvals))
        .bind(spec.expected_state_version)
        .bind(next.superseded_by.map(|id| id.as_uuid()))
        .bind(sqlx::types::Json(&spec.metadata))
        .bind(signed(next.revision))
        .bind(next.updated_at.as_datetime());
    let query = bind_history(query, &records);
    match run(conn, isolate, query).await {
        Ok(rows) => {
            let moved: i64 = rows.first().map_or(Ok(0), |row| row.try_get("moved")).map_err(map)?;
            if moved == 1 { Ok(()) } else { Err(explain_missed_update(conn, transition).await) }
        }
        Err(error) if is_unique_violation(&error) => Err(GovernanceError::AlreadyExists {
            kind: EntityKind::HistoryRecord,
            workspace: next.workspace_id().clone(),
            id: transition.records().iter().map(|r| r.id.to_string()).collect::<Vec<_>>().join(", "),
        }),
        Err(error) => Err(map(error)),
    }
}

/// Why the conditional update matched no row: missing, moved on, or forged.
async fn explain_missed_update(conn: &mut PgConnection, transition: &Transition) -> GovernanceError {
    let next = transition.request();
    let stored = sqlx::query("SELECT revision, status FROM governance_requests WHERE workspace_id = $1 AND id = $2")
        .bind(next.workspace_id().as_str())
        .bind(next.id.as_uuid())
        .fetch_optional(conn)
        .await;
    let row = match stored {
        Err(error) => return map(error),
        Ok(None) => {
            return GovernanceError::NotFound {
                kind: EntityKind::Request,
                workspace: next.workspace_id().clone(),
                id: next.id.to_string(),
            };
        }
        Ok(Some(row)) => row,
    };
    let (revision, status) = match (row.try_get::<i64, _>("revision"), row.try_get::<String, _>("status")) {
        (Ok(revision), Ok(status)) => (u64::try_from(revision).unwrap_or(0), status),
        (Err(error), _) | (_, Err(error)) => return map(error),
    };
    let status: RequestStatus = match status.parse() {
        Ok(status) => status,
        Err(error) => return error,
    };
    match check_commit_target(transition, revision, status) {
        Err(error) => error,
        // The update saw a newer row than this read: the caller's
        // transaction reads an older snapshot.
        Ok(()) => invisible_collision(),
    }
}

/// The connection as the shared append loop's storage.
struct Append<'c> {
    conn: &'c mut PgConnection,
    isolate: bool,
}

#[async_trait::async_trait]
impl AppendStorage for Append<'_> {
    async fn insert(&mut self, records: &[&HistoryRecord]) -> Result<InsertAttempt> {
        let query = match records {
            [one] => bind_history_row(sqlx::query(APPEND_ONE_SQL), one),
            _ => bind_history(sqlx::query(sqlx::AssertSqlSafe(APPEND_SQL.as_str())), records),
        };
        match run(self.conn, self.isolate, query).await {
            Ok(_) => Ok(InsertAttempt::Inserted),
            Err(error) if is_unique_violation(&error) => Ok(InsertAttempt::UniqueViolation),
            Err(error) => Err(map(error)),
        }
    }

    async fn related(&mut self, workspace: &WorkspaceId, records: &[HistoryRecord]) -> Result<Vec<HistoryRecord>> {
        related_records(self.conn, workspace.as_str(), records).await
    }
}

pub(crate) async fn append_history(
    conn: &mut PgConnection,
    isolate: bool,
    records: &[HistoryRecord],
) -> Result<Vec<Stored<HistoryRecord>>> {
    append_history_with(&mut Append { conn, isolate }, records).await
}

/// Stored records of `workspace` sharing an id or idempotency key with `records`.
async fn related_records(
    conn: &mut PgConnection,
    workspace: &str,
    records: &[HistoryRecord],
) -> Result<Vec<HistoryRecord>> {
    let ids: Vec<uuid::Uuid> = records.iter().map(|r| r.id.as_uuid()).collect();
    let keys: Vec<&str> = records.iter().filter_map(|r| r.evidence.idempotency_key.as_deref()).collect();
    let rows = sqlx::query(concat!(
        "SELECT ",
        history_columns!(),
        " FROM governance_history WHERE workspace_id = $1 AND (id = ANY($2) OR idempotency_key = ANY($3))"
    ))
    .bind(workspace)
    .bind(&ids)
    .bind(&keys)
    .fetch_all(conn)
    .await
    .map_err(map)?;
    let mut seen = HashSet::new();
    rows.iter().map(history_from).filter(|r| r.as_ref().map_or(true, |r| seen.insert(r.id))).collect()
}
