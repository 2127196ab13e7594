//! The write paths, over any SeaORM connection: the pool, or a caller's
//! transaction (where each write runs in a savepoint, so a refused write
//! leaves the caller's transaction usable).

use std::collections::HashSet;

use governance_abstractions::provider::{
    AppendStorage, InsertAttempt, append_history_with, check_commit_target, check_successor, validate_checkpoint,
    validate_creation, validate_transition,
};
use governance_abstractions::{
    Checkpoint, Creation, EntityKind, GovernanceError, GovernanceRequest, HistoryRecord, RequestStatus, Result,
    SealEntry, Stored, Transition, WorkspaceId,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QuerySelect, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use uuid::Uuid;

use crate::convert::{
    checkpoint_row, history_from, history_row, request_from, request_row, seal_row, transition_update,
};
use crate::entity::{checkpoint, history, request, seal};
use crate::error::{invisible_collision, is_unique_violation, map, transaction_lost};

/// Opens a write transaction: `BEGIN IMMEDIATE` on SQLite (takes the write
/// lock up front, waiting out `busy_timeout`, instead of failing on upgrade),
/// a plain transaction elsewhere, a savepoint inside a caller's transaction.
pub(crate) async fn begin<C: TransactionTrait<Transaction = DatabaseTransaction>>(
    conn: &C,
) -> Result<DatabaseTransaction> {
    let options =
        TransactionOptions { sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate), ..Default::default() };
    conn.begin_with_options(options).await.map_err(map)
}

/// Rolls `txn` back after `error` and reports `error`, never the rollback's
/// own failure; when the server already rolled everything back (a MySQL
/// deadlock) there is nothing left to roll back.
async fn abandon(txn: DatabaseTransaction, error: DbErr) -> DbErr {
    if !transaction_lost(&error) {
        let _ = txn.rollback().await;
    }
    error
}

fn workspace_str(request: &GovernanceRequest) -> &str {
    request.workspace_id().as_str()
}

pub(crate) async fn create_request<C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>>(
    conn: &C,
    creation: &Creation,
) -> Result<Stored<GovernanceRequest>> {
    validate_creation(creation)?;
    let request = creation.request();
    let txn = begin(conn).await?;
    let inserted = async {
        request::Entity::insert(request_row(request).into_active_model().reset_all())
            .exec_without_returning(&txn)
            .await?;
        history::Entity::insert(history_row(creation.record()).into_active_model().reset_all())
            .exec_without_returning(&txn)
            .await
    }
    .await;
    match inserted {
        Ok(_) => {
            txn.commit().await.map_err(map)?;
            Ok(Stored::New(request.clone()))
        }
        Err(error) => {
            let error = abandon(txn, error).await;
            if is_unique_violation(&error) { resolve_create_clash(conn, creation).await } else { Err(map(error)) }
        }
    }
}

/// After a unique violation: a replay, an idempotency conflict, or a taken id.
async fn resolve_create_clash<C: ConnectionTrait>(conn: &C, creation: &Creation) -> Result<Stored<GovernanceRequest>> {
    let request = creation.request();
    let workspace = request.workspace_id();
    if let Some(key) = request.idempotency_key() {
        let original = request::Entity::find()
            .filter(request::Column::WorkspaceId.eq(workspace.as_str()))
            .filter(request::Column::IdempotencyKey.eq(key))
            .one(conn)
            .await
            .map_err(map)?;
        if let Some(original) = original {
            let original = request_from(original)?;
            if original.creation_digest() != request.creation_digest() {
                return Err(GovernanceError::IdempotencyConflict {
                    kind: EntityKind::Request,
                    workspace: workspace.clone(),
                    key: key.to_owned(),
                    existing: original.id().to_string(),
                });
            }
            return Ok(Stored::Replayed(original));
        }
    }
    let key = (workspace_str(request).to_owned(), request.id().as_uuid());
    if request::Entity::find_by_id(key).one(conn).await.map_err(map)?.is_some() {
        return Err(GovernanceError::AlreadyExists {
            kind: EntityKind::Request,
            workspace: workspace.clone(),
            id: request.id().to_string(),
        });
    }
    let record = (workspace_str(request).to_owned(), creation.record().id().as_uuid());
    if history::Entity::find_by_id(record).one(conn).await.map_err(map)?.is_some() {
        return Err(GovernanceError::AlreadyExists {
            kind: EntityKind::HistoryRecord,
            workspace: workspace.clone(),
            id: creation.record().id().to_string(),
        });
    }
    Err(invisible_collision())
}

/// Commits a transition in one write transaction: for a supersession, a
/// locking read of the successor first; then one conditional `UPDATE` of
/// exactly the transition's columns; then its history rows.
pub(crate) async fn commit_transition<C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>>(
    conn: &C,
    transition: &Transition,
) -> Result<()> {
    validate_transition(transition)?;
    let next = transition.request();
    let txn = begin(conn).await?;
    match lock_successor(&txn, transition).await {
        Ok(Ok(())) => {}
        Ok(Err(refused)) => {
            let _ = txn.rollback().await;
            return Err(explain_refused_successor(conn, transition, refused).await);
        }
        Err(error) => return Err(map(abandon(txn, error).await)),
    }
    // A row written before state digests were stored has none: its
    // revision and status still decide.
    let digest = Condition::any()
        .add(request::Column::StateDigest.eq(transition.expected_digest()))
        .add(request::Column::StateDigest.is_null());
    let updated = request::Entity::update_many()
        .set(transition_update(&transition.write()))
        .filter(request::Column::WorkspaceId.eq(workspace_str(next)))
        .filter(request::Column::Id.eq(next.id().as_uuid()))
        .filter(request::Column::Revision.eq(revision(transition.expected_revision())))
        .filter(request::Column::Status.eq(transition.expected_status().as_str()))
        .filter(digest)
        .exec(&txn)
        .await;
    let updated = match updated {
        Ok(updated) => updated,
        Err(error) => return Err(map(abandon(txn, error).await)),
    };
    if updated.rows_affected == 0 {
        let _ = txn.rollback().await;
        return Err(explain_missed_update(conn, transition).await);
    }
    let records = transition.records().iter().map(|r| history_row(r).into_active_model().reset_all());
    match history::Entity::insert_many(records).exec_without_returning(&txn).await {
        Ok(_) => txn.commit().await.map_err(map),
        Err(error) => {
            let error = abandon(txn, error).await;
            if !is_unique_violation(&error) {
                return Err(map(error));
            }
            let taken = transition.records().iter().map(|r| r.id().to_string()).collect::<Vec<_>>().join(", ");
            Err(GovernanceError::AlreadyExists {
                kind: EntityKind::HistoryRecord,
                workspace: next.workspace_id().clone(),
                id: taken,
            })
        }
    }
}

fn revision(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn stored_revision(value: i64) -> u64 {
    // A negative revision was never written by this library: it matches no
    // transition, so it reads as a conflict.
    u64::try_from(value).unwrap_or(0)
}

/// For a supersession, reads the successor's revision and digest with a
/// lock that lasts until `txn` ends, so the successor cannot move on between
/// this check and the commit: `FOR SHARE` on PostgreSQL, `LOCK IN SHARE MODE`
/// on MySQL/MariaDB (both read the latest committed row, not the snapshot,
/// and wait for a writer holding it). SQLite has no row locks and needs none:
/// the write transaction began with `BEGIN IMMEDIATE` and holds the
/// database's write lock already. The outer error is the driver's, the inner
/// one the refusal of [`check_successor`].
async fn lock_successor(txn: &DatabaseTransaction, transition: &Transition) -> Result<Result<()>, DbErr> {
    let Some(successor) = transition.successor() else { return Ok(Ok(())) };
    let key = (workspace_str(transition.request()).to_owned(), successor.id.as_uuid());
    let stored = request::Entity::find_by_id(key)
        .select_only()
        .column(request::Column::Revision)
        .column(request::Column::StateDigest)
        .lock_shared()
        .into_tuple::<(i64, Option<String>)>()
        .one(txn)
        .await?;
    let stored = stored.map(|(revision, digest)| (stored_revision(revision), digest));
    Ok(check_successor(transition, stored.as_ref().map(|(revision, digest)| (*revision, digest.as_deref()))))
}

/// Checks the stored row of the transition's request the way the
/// conditional update does: missing, moved on, or forged is an error.
async fn check_stored_target<C: ConnectionTrait>(conn: &C, transition: &Transition) -> Result<()> {
    let next = transition.request();
    let stored = request::Entity::find_by_id((workspace_str(next).to_owned(), next.id().as_uuid()))
        .select_only()
        .column(request::Column::Revision)
        .column(request::Column::Status)
        .column(request::Column::StateDigest)
        .into_tuple::<(i64, String, Option<String>)>()
        .one(conn)
        .await
        .map_err(map)?;
    let Some((revision, status, digest)) = stored else {
        return Err(GovernanceError::NotFound {
            kind: EntityKind::Request,
            workspace: next.workspace_id().clone(),
            id: next.id().to_string(),
        });
    };
    let status: RequestStatus = status.parse()?;
    check_commit_target(transition, stored_revision(revision), status, digest.as_deref())
}

/// Why a conditional update matched no row: missing, moved on, or forged.
async fn explain_missed_update<C: ConnectionTrait>(conn: &C, transition: &Transition) -> GovernanceError {
    match check_stored_target(conn, transition).await {
        Err(error) => error,
        // The update saw a newer row than this read: the caller's
        // transaction reads an older snapshot.
        Ok(()) => invisible_collision(),
    }
}

/// Why a supersession's successor guard refused. The older request's own
/// refusal comes first, as on a store that checks both under one lock, so
/// every provider reports the same error for the same state.
async fn explain_refused_successor<C: ConnectionTrait>(
    conn: &C,
    transition: &Transition,
    refused: GovernanceError,
) -> GovernanceError {
    match check_stored_target(conn, transition).await {
        Err(error) => error,
        Ok(()) => refused,
    }
}

/// The connection as the shared append loop's storage.
struct Append<'c, C> {
    conn: &'c C,
    in_caller_transaction: bool,
}

#[async_trait::async_trait]
impl<C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>> AppendStorage for Append<'_, C> {
    async fn insert(&mut self, records: &[&HistoryRecord]) -> Result<InsertAttempt> {
        match insert_records(self.conn, records, self.in_caller_transaction).await {
            Ok(()) => Ok(InsertAttempt::Inserted),
            Err(error) if is_unique_violation(&error) => Ok(InsertAttempt::UniqueViolation),
            Err(error) => Err(map(error)),
        }
    }

    async fn related(&mut self, workspace: &WorkspaceId, records: &[HistoryRecord]) -> Result<Vec<HistoryRecord>> {
        related_records(self.conn, workspace.as_str(), records).await
    }
}

pub(crate) async fn append_history<C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>>(
    conn: &C,
    records: &[HistoryRecord],
    in_caller_transaction: bool,
) -> Result<Vec<Stored<HistoryRecord>>> {
    append_history_with(&mut Append { conn, in_caller_transaction }, records).await
}

/// Inserts `records` in one statement, in a savepoint inside a caller's
/// transaction (a failed statement would otherwise poison it on PostgreSQL).
async fn insert_records<C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>>(
    conn: &C,
    records: &[&HistoryRecord],
    savepoint: bool,
) -> Result<(), DbErr> {
    let rows = || records.iter().map(|r| history_row(r).into_active_model().reset_all());
    if !savepoint {
        return history::Entity::insert_many(rows()).exec_without_returning(conn).await.map(drop);
    }
    let point = conn.begin().await?;
    match history::Entity::insert_many(rows()).exec_without_returning(&point).await {
        Ok(_) => point.commit().await,
        Err(error) => Err(abandon(point, error).await),
    }
}

/// Stored records of `workspace` sharing an id or idempotency key with `records`.
async fn related_records<C: ConnectionTrait>(
    conn: &C,
    workspace: &str,
    records: &[HistoryRecord],
) -> Result<Vec<HistoryRecord>> {
    let ids: Vec<Uuid> = records.iter().map(|r| r.id().as_uuid()).collect();
    let keys: Vec<&str> = records.iter().filter_map(|r| r.evidence().idempotency_key.as_deref()).collect();
    let mut condition = sea_orm::Condition::any().add(history::Column::Id.is_in(ids));
    if !keys.is_empty() {
        condition = condition.add(history::Column::IdempotencyKey.is_in(keys));
    }
    let rows = history::Entity::find()
        .filter(history::Column::WorkspaceId.eq(workspace))
        .filter(condition)
        .all(conn)
        .await
        .map_err(map)?;
    let mut seen = HashSet::new();
    rows.into_iter().filter(|row| seen.insert(row.id)).map(history_from).collect()
}

/// Stores a checkpoint and its entries in one transaction, after validating
/// them against the latest stored checkpoint read inside it. The checkpoint
/// row goes first: of two sealers at one `seq`, the second waits on (or hits)
/// its primary key and reports `AlreadyExists` before writing any entry.
pub(crate) async fn append_checkpoint<C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>>(
    conn: &C,
    checkpoint: &Checkpoint,
    entries: &[SealEntry],
) -> Result<()> {
    let workspace = checkpoint.workspace_id();
    let row = checkpoint_row(checkpoint)?;
    let seals = entries.iter().map(|entry| seal_row(workspace, entry)).collect::<Result<Vec<_>>>()?;
    let txn = begin(conn).await?;
    let checked = match crate::read::latest_checkpoint(&txn, workspace).await {
        Ok(latest) => validate_checkpoint(checkpoint, entries, latest.as_ref()),
        Err(error) => Err(error),
    };
    if let Err(error) = checked {
        let _ = txn.rollback().await;
        return Err(error);
    }
    if let Err(error) =
        checkpoint::Entity::insert(row.into_active_model().reset_all()).exec_without_returning(&txn).await
    {
        let error = abandon(txn, error).await;
        if !is_unique_violation(&error) {
            return Err(map(error));
        }
        return Err(GovernanceError::AlreadyExists {
            kind: EntityKind::Checkpoint,
            workspace: workspace.clone(),
            id: checkpoint.seq().to_string(),
        });
    }
    let rows = seals.into_iter().map(|seal| seal.into_active_model().reset_all());
    match seal::Entity::insert_many(rows).exec_without_returning(&txn).await {
        Ok(_) => txn.commit().await.map_err(map),
        Err(error) => {
            let error = abandon(txn, error).await;
            if is_unique_violation(&error) {
                Err(explain_sealed(conn, workspace, entries).await)
            } else {
                Err(map(error))
            }
        }
    }
}

/// Why the entries hit a unique key: the first record sealed already (stored,
/// or twice in the batch), or leaf indices taken by entries that no
/// checkpoint covers (only possible when checkpoints were removed behind the
/// store).
async fn explain_sealed<C: ConnectionTrait>(
    conn: &C,
    workspace: &WorkspaceId,
    entries: &[SealEntry],
) -> GovernanceError {
    let ids: Vec<Uuid> = entries.iter().map(|entry| entry.record_id.as_uuid()).collect();
    let stored = seal::Entity::find()
        .select_only()
        .column(seal::Column::RecordId)
        .filter(seal::Column::WorkspaceId.eq(workspace.as_str()))
        .filter(seal::Column::RecordId.is_in(ids))
        .into_tuple::<Uuid>()
        .all(conn)
        .await;
    let stored: HashSet<Uuid> = match stored {
        Ok(stored) => stored.into_iter().collect(),
        Err(error) => return map(error),
    };
    let mut batch = HashSet::with_capacity(entries.len());
    match entries.iter().find(|entry| stored.contains(&entry.record_id.as_uuid()) || !batch.insert(entry.record_id)) {
        Some(entry) => GovernanceError::AlreadyExists {
            kind: EntityKind::HistoryRecord,
            workspace: workspace.clone(),
            id: entry.record_id.to_string(),
        },
        None => {
            GovernanceError::backend(false, "leaf indices are taken by seal entries that no stored checkpoint covers")
        }
    }
}
