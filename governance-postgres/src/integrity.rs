//! Checkpoints and seal entries: insert-only like the history they seal,
//! every statement scoped to one workspace.

use std::collections::{HashMap, HashSet};

use governance_abstractions::provider::validate_checkpoint;
use governance_abstractions::{
    Checkpoint, EntityKind, GovernanceError, Position, ReadRecord, RecordId, Result, SealEntry, SealedRecord,
    ValidationProblem, WorkspaceId,
};
use sqlx::{PgConnection, PgExecutor, PgPool, Postgres, QueryBuilder};

use crate::error::{map, unique_constraint};
use crate::rows::{checkpoint_columns, checkpoint_from, history_columns, read_record_from, seal_columns, seal_from};

/// The unsealed records query after `prefix` (the select list, or `EXPLAIN`
/// and it). An anti-join on `governance_seals_record`, walking
/// `governance_history_created` from `after`.
pub(crate) fn unsealed_sql(
    prefix: &str,
    workspace: &WorkspaceId,
    after: Option<Position>,
    limit: u32,
) -> QueryBuilder<Postgres> {
    let mut sql = QueryBuilder::new(format!(
        "{prefix} FROM governance_history h WHERE NOT EXISTS (SELECT 1 FROM governance_seals s \
         WHERE s.workspace_id = h.workspace_id AND s.record_id = h.id) AND h.workspace_id = "
    ));
    sql.push_bind(workspace.as_str());
    if let Some(Position { created_at, id }) = after {
        sql.push(" AND (h.created_at, h.id) > (")
            .push_bind(created_at.as_datetime())
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    sql.push(" ORDER BY h.created_at, h.id LIMIT ").push_bind(i64::from(limit));
    sql
}

/// The select list of the unsealed query.
pub(crate) const SELECT_UNSEALED: &str = concat!("SELECT ", history_columns!());

pub(crate) async fn unsealed_history(
    pool: &PgPool,
    workspace: &WorkspaceId,
    after: Option<Position>,
    limit: u32,
) -> Result<Vec<ReadRecord>> {
    // A position outside the storable range is the same validation error on
    // every provider, before it reaches the server.
    after.as_ref().map(Position::validate).transpose()?;
    let rows = unsealed_sql(SELECT_UNSEALED, workspace, after, limit).build().fetch_all(pool).await.map_err(map)?;
    rows.iter().map(read_record_from).collect()
}

pub(crate) async fn latest_checkpoint<'e>(
    executor: impl PgExecutor<'e>,
    workspace: &WorkspaceId,
) -> Result<Option<Checkpoint>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        checkpoint_columns!(),
        " FROM governance_checkpoints WHERE workspace_id = $1 ORDER BY seq DESC LIMIT 1"
    ))
    .bind(workspace.as_str())
    .fetch_optional(executor)
    .await
    .map_err(map)?;
    row.as_ref().map(checkpoint_from).transpose()
}

pub(crate) async fn checkpoints(
    pool: &PgPool,
    workspace: &WorkspaceId,
    after: u64,
    limit: u32,
) -> Result<Vec<Checkpoint>> {
    // No stored seq exceeds i64::MAX, so nothing comes after such a value.
    let Ok(after) = i64::try_from(after) else { return Ok(Vec::new()) };
    let rows = sqlx::query(concat!(
        "SELECT ",
        checkpoint_columns!(),
        " FROM governance_checkpoints WHERE workspace_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    ))
    .bind(workspace.as_str())
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(map)?;
    rows.iter().map(checkpoint_from).collect()
}

/// Seal entries from `from` (primary key range), then their records by id
/// (primary key lookups). Records are never deleted, so reading them after
/// the entries cannot miss one that existed.
pub(crate) async fn sealed_records(
    pool: &PgPool,
    workspace: &WorkspaceId,
    from: u64,
    limit: u32,
) -> Result<Vec<SealedRecord>> {
    let Ok(from) = i64::try_from(from) else { return Ok(Vec::new()) };
    let rows = sqlx::query(concat!(
        "SELECT ",
        seal_columns!(),
        " FROM governance_seals WHERE workspace_id = $1 AND leaf_index >= $2 ORDER BY leaf_index LIMIT $3"
    ))
    .bind(workspace.as_str())
    .bind(from)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(map)?;
    let entries = rows.iter().map(seal_from).collect::<Result<Vec<_>>>()?;
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<uuid::Uuid> = entries.iter().map(|e| e.record_id.as_uuid()).collect();
    let rows = sqlx::query(concat!(
        "SELECT ",
        history_columns!(),
        " FROM governance_history WHERE workspace_id = $1 AND id = ANY($2)"
    ))
    .bind(workspace.as_str())
    .bind(&ids)
    .fetch_all(pool)
    .await
    .map_err(map)?;
    let mut records: HashMap<RecordId, ReadRecord> =
        rows.iter().map(|row| read_record_from(row).map(|r| (read_id(&r), r))).collect::<Result<_>>()?;
    Ok(entries
        .into_iter()
        .map(|entry| {
            let record = records.remove(&entry.record_id);
            (entry, record)
        })
        .collect())
}

/// The id of a row an integrity read returned, decoded or not.
fn read_id(row: &ReadRecord) -> RecordId {
    match row {
        Ok(record) => record.id(),
        Err(unreadable) => unreadable.id,
    }
}

/// Why a checkpoint was not written.
enum Refusal {
    Error(GovernanceError),
    /// An entry's record is sealed already: which one is looked up after
    /// the rollback (the failed transaction cannot be queried).
    RecordSealed,
}

impl From<GovernanceError> for Refusal {
    fn from(error: GovernanceError) -> Self {
        Refusal::Error(error)
    }
}

/// A bigint column's value, refused when it does not fit.
fn bigint(field: &'static str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| GovernanceError::validation(field, ValidationProblem::OutOfRange))
}

fn checkpoint_taken(checkpoint: &Checkpoint) -> GovernanceError {
    GovernanceError::AlreadyExists {
        kind: EntityKind::Checkpoint,
        workspace: checkpoint.workspace_id().clone(),
        id: checkpoint.seq().to_string(),
    }
}

/// Validates against the latest checkpoint and stores it with its entries in
/// one transaction. Concurrent sealers need no lock: the checkpoint row goes
/// in first, so a second sealer of the same seq waits on the first's key and
/// then fails on it, before any of its entries.
pub(crate) async fn append_checkpoint(pool: &PgPool, checkpoint: &Checkpoint, entries: &[SealEntry]) -> Result<()> {
    let mut txn = pool.begin().await.map_err(map)?;
    let written = write_checkpoint(&mut txn, checkpoint, entries).await;
    let refusal = match written {
        Ok(()) => return txn.commit().await.map_err(map),
        Err(refusal) => refusal,
    };
    // Report the write's failure, not the rollback's.
    let _ = txn.rollback().await;
    match refusal {
        Refusal::Error(error) => Err(error),
        Refusal::RecordSealed => Err(already_sealed(pool, checkpoint.workspace_id(), entries).await),
    }
}

async fn write_checkpoint(
    conn: &mut PgConnection,
    checkpoint: &Checkpoint,
    entries: &[SealEntry],
) -> std::result::Result<(), Refusal> {
    let workspace = checkpoint.workspace_id();
    let latest = latest_checkpoint(&mut *conn, workspace).await?;
    validate_checkpoint(checkpoint, entries, latest.as_ref())?;
    let seq = bigint("checkpoint.seq", checkpoint.seq())?;
    let indices = entries.iter().map(|e| bigint("entries.index", e.index)).collect::<Result<Vec<_>>>()?;
    let ids: Vec<uuid::Uuid> = entries.iter().map(|e| e.record_id.as_uuid()).collect();
    let hashes: Vec<&str> = entries.iter().map(|e| e.content_hash.as_str()).collect();

    sqlx::query(concat!(
        "INSERT INTO governance_checkpoints (",
        checkpoint_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(workspace.as_str())
    .bind(seq)
    .bind(bigint("checkpoint.first_index", checkpoint.first_index())?)
    .bind(bigint("checkpoint.record_count", checkpoint.record_count())?)
    .bind(checkpoint.root())
    .bind(checkpoint.previous())
    .bind(checkpoint.created_at().as_datetime())
    .bind(checkpoint.digest())
    .execute(&mut *conn)
    .await
    .map_err(|error| match unique_constraint(&error) {
        Some(_) => checkpoint_taken(checkpoint),
        None => map(error),
    })?;

    // All entries in one statement, whatever their number (validation caps it
    // at MAX_CHECKPOINT_RECORDS); every entry belongs to this checkpoint.
    sqlx::query(concat!(
        "INSERT INTO governance_seals (workspace_id, ",
        seal_columns!(),
        ") SELECT $1, e.leaf_index, e.record_id, e.content_hash, $5 \
         FROM unnest($2::bigint[], $3::uuid[], $4::text[]) AS e(leaf_index, record_id, content_hash)"
    ))
    .bind(workspace.as_str())
    .bind(&indices)
    .bind(&ids)
    .bind(&hashes)
    .bind(seq)
    .execute(&mut *conn)
    .await
    .map_err(|error| match unique_constraint(&error) {
        Some("governance_seals_record") => Refusal::RecordSealed,
        // Leaf indices held by entries without this checkpoint: the log moved on.
        Some(_) => Refusal::Error(checkpoint_taken(checkpoint)),
        None => Refusal::Error(map(error)),
    })?;
    Ok(())
}

/// The error for an entry whose record is sealed: by a stored checkpoint, or
/// by an earlier entry of the same batch.
async fn already_sealed(pool: &PgPool, workspace: &WorkspaceId, entries: &[SealEntry]) -> GovernanceError {
    let ids: Vec<uuid::Uuid> = entries.iter().map(|e| e.record_id.as_uuid()).collect();
    let stored = sqlx::query_scalar::<_, uuid::Uuid>(
        "SELECT record_id FROM governance_seals WHERE workspace_id = $1 AND record_id = ANY($2) \
         ORDER BY leaf_index LIMIT 1",
    )
    .bind(workspace.as_str())
    .bind(&ids)
    .fetch_optional(pool)
    .await;
    let id = match stored {
        Err(error) => return map(error),
        Ok(Some(id)) => Some(id),
        Ok(None) => {
            let mut seen = HashSet::new();
            ids.iter().find(|id| !seen.insert(**id)).copied()
        }
    };
    GovernanceError::AlreadyExists {
        kind: EntityKind::HistoryRecord,
        workspace: workspace.clone(),
        id: id
            .map_or_else(|| ids.iter().map(uuid::Uuid::to_string).collect::<Vec<_>>().join(", "), |id| id.to_string()),
    }
}
