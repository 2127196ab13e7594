//! The write paths, over any SeaORM connection: the pool, or a caller's
//! transaction (where each write runs in a savepoint, so a refused write
//! leaves the caller's transaction usable).

use std::collections::HashSet;
use std::sync::LazyLock;

use governance_abstractions::provider::postgres_statements::HistoryRows;
use governance_abstractions::provider::{
    AppendStorage, InsertAttempt, TRANSITION_COLUMNS, append_history_with, check_commit_target, check_successor,
    postgres_statements, validate_checkpoint, validate_creation, validate_transition,
};
use governance_abstractions::{
    Checkpoint, Creation, EntityKind, GovernanceError, GovernanceRequest, HistoryRecord, RequestStatus, Result,
    SealEntry, Stored, Transition, WorkspaceId,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait, IdenStatic,
    Iterable, ModelTrait, QueryFilter, QueryResult, QuerySelect, SqliteTransactionMode, Statement, TransactionOptions,
    TransactionTrait,
};
use uuid::Uuid;

use crate::convert::{
    checkpoint_row, history_from, push_history_values, request_from, request_values, seal_row, transition_update,
};
use crate::entity::{bind_value, history, insert_rows, insert_statement, request, seal};
use crate::error::{invisible_collision, is_unique_violation, map, transaction_lost};
use crate::migration::SUCCESSOR_GUARD;

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

/// Inserts `rows` in one statement, each value bound as the connection's
/// backend stores its column ([`insert_statement`]: SeaORM's own insert
/// would bind the entities' MySQL and SQLite forms on PostgreSQL too).
async fn insert<C: ConnectionTrait, M: ModelTrait>(conn: &C, rows: &[M]) -> Result<(), DbErr> {
    match insert_statement(conn.get_database_backend(), rows)? {
        Some(statement) => conn.execute_raw(statement).await.map(drop),
        None => Ok(()),
    }
}

/// Inserts `records` in one statement ([`insert_rows`]: their values bound
/// straight from the records).
async fn insert_history<C: ConnectionTrait>(conn: &C, records: &[&HistoryRecord]) -> Result<(), DbErr> {
    if records.is_empty() {
        return Ok(());
    }
    let backend = conn.get_database_backend();
    let mut values = Vec::with_capacity(records.len() * HISTORY_COLUMNS);
    for record in records {
        push_history_values(backend, record, &mut values);
    }
    conn.execute_raw(insert_rows::<history::Entity>(backend, records.len(), values)).await.map(drop)
}

/// The history table's column count.
const HISTORY_COLUMNS: usize = 26;

/// Creates a request with its record. On PostgreSQL one statement
/// ([`postgres_statements::create_request`]); elsewhere a write transaction
/// of two inserts. `isolate`: inside a caller's transaction, where the one
/// statement runs in a savepoint.
pub(crate) async fn create_request<C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>>(
    conn: &C,
    creation: &Creation,
    isolate: bool,
) -> Result<Stored<GovernanceRequest>> {
    validate_creation(creation)?;
    let request = creation.request();
    if conn.get_database_backend() == DbBackend::Postgres {
        let mut values = request_values(DbBackend::Postgres, request);
        push_history_values(DbBackend::Postgres, creation.record(), &mut values);
        let statement = Statement::from_sql_and_values(DbBackend::Postgres, POSTGRES_CREATE.as_str(), values);
        return match run(conn, isolate, statement).await {
            Ok(rows) if !rows.is_empty() => Ok(Stored::New(request.clone())),
            Ok(_) => resolve_create_clash(conn, creation).await,
            Err(error) if is_unique_violation(&error) => resolve_create_clash(conn, creation).await,
            Err(error) => Err(map(error)),
        };
    }
    let txn = begin(conn).await?;
    let inserted = async {
        let backend = txn.get_database_backend();
        txn.execute_raw(insert_rows::<request::Entity>(backend, 1, request_values(backend, request))).await?;
        insert_history(&txn, &[creation.record()]).await
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

/// A creation on PostgreSQL, its record as 26 parameters.
static POSTGRES_CREATE: LazyLock<String> =
    LazyLock::new(|| postgres_statements::create_request(HistoryRows::Values(1)));

/// Runs one statement, in a savepoint when `isolate` (inside a caller's
/// transaction a failed statement would otherwise abort it on PostgreSQL).
async fn run<C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>>(
    conn: &C,
    isolate: bool,
    statement: Statement,
) -> Result<Vec<QueryResult>, DbErr> {
    if !isolate {
        return conn.query_all_raw(statement).await;
    }
    let point = conn.begin().await?;
    match point.query_all_raw(statement).await {
        Ok(rows) => point.commit().await.map(|()| rows),
        Err(error) => Err(abandon(point, error).await),
    }
}

/// Commits a transition.
///
/// The first attempt writes only over the row at the expected revision,
/// status and digest. On PostgreSQL it is one statement
/// ([`postgres_statements::transition`]); elsewhere a write transaction
/// that ends as soon as its update matches no row
/// ([`transition_over_digest`]). When the attempt matches no row, a light
/// read of the stored revision, status and digest names a lost race or a
/// missing request at once; anything else (a row stored without a digest,
/// a moved successor) goes the full way.
///
/// The full way is one write transaction: for a supersession, a locking
/// read of the successor first; then one conditional `UPDATE` of exactly
/// the transition's columns; then its history rows. A supersession on
/// MySQL/MariaDB and SQLite takes it from the start (its successor is
/// locked before the update), and so does any transition there inside a
/// caller's transaction.
pub(crate) async fn commit_transition<C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>>(
    conn: &C,
    transition: &Transition,
    isolate: bool,
) -> Result<()> {
    validate_transition(transition)?;
    let attempted = match (conn.get_database_backend(), transition.successor()) {
        (DbBackend::Postgres, _) => Some(transition_in_one_statement(conn, transition, isolate).await?),
        // Inside a caller's transaction the light read would see the
        // caller's snapshot, older than the row the update saw (MySQL's
        // `REPEATABLE READ`), and InnoDB keeps the lock after a rollback to a
        // savepoint anyway: the full way, whose locking read sees the row.
        (_, None) if !isolate => Some(transition_over_digest(conn, transition).await?),
        _ => None,
    };
    match attempted {
        Some(true) => return Ok(()),
        Some(false) => {
            if let Some(refusal) = refusal_from_stored_state(conn, transition).await? {
                return Err(refusal);
            }
        }
        None => {}
    }
    let txn = begin(conn).await?;
    match write_transition(&txn, transition).await {
        Ok(()) => txn.commit().await.map_err(map),
        Err(Failure::Driver(error)) => Err(map(abandon(txn, error).await)),
        Err(Failure::Refused(error)) => {
            // Report the refusal, not the rollback's failure.
            let _ = txn.rollback().await;
            Err(error)
        }
    }
}

/// A transition without a successor on MySQL/MariaDB and SQLite: the
/// update over the expected digest, then the records, in one write
/// transaction; whether it moved the request.
///
/// A lost race rolls back as soon as its update matched nothing, and only
/// then reads why. Under MySQL's `REPEATABLE READ` an update that matched
/// nothing still holds the lock it waited for, and on SQLite the write
/// transaction holds the database's write lock: a read inside it would
/// keep every writer queued behind it, the next winner too.
async fn transition_over_digest<C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>>(
    conn: &C,
    transition: &Transition,
) -> Result<bool> {
    let txn = begin(conn).await?;
    match update_target(&txn, transition, Some(transition.expected_digest())).await {
        Ok(0) => {
            // Nothing was written either way: the light read reports the
            // refusal, not the rollback's failure.
            let _ = txn.rollback().await;
            return Ok(false);
        }
        Ok(_) => {}
        Err(error) => return Err(map(abandon(txn, error).await)),
    }
    let records: Vec<&HistoryRecord> = transition.records().iter().collect();
    match insert_history(&txn, &records).await {
        Ok(()) => txn.commit().await.map_err(map).map(|()| true),
        Err(error) if is_unique_violation(&error) => {
            let _ = txn.rollback().await;
            Err(records_taken(transition))
        }
        Err(error) => Err(map(abandon(txn, error).await)),
    }
}

/// The transition as one PostgreSQL statement; whether it moved the request.
async fn transition_in_one_statement<C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>>(
    conn: &C,
    transition: &Transition,
    isolate: bool,
) -> Result<bool> {
    const PG: DbBackend = DbBackend::Postgres;
    let next = transition.request();
    let records = transition.records();
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(17 + records.len() * HISTORY_COLUMNS);
    values.extend([
        workspace_str(next).into(),
        next.id().as_uuid().into(),
        revision(transition.expected_revision()).into(),
        transition.expected_status().as_str().into(),
        transition.expected_digest().into(),
    ]);
    // The written columns in the shared order, each bound as stored.
    let written = transition_update(&transition.write());
    for name in TRANSITION_COLUMNS {
        let column = request::Column::iter().find(|column| column.as_str() == *name);
        let value = column.and_then(|column| Some(bind_value(PG, column, written.get(column).into_value()?)));
        // Every transition column is an entity column, set by the update
        // (a unit test holds both).
        values.push(value.ok_or_else(|| GovernanceError::backend(false, format!("no value for column {name}")))?);
    }
    if let Some(successor) = transition.successor() {
        values.extend([
            successor.id.as_uuid().into(),
            revision(successor.revision).into(),
            successor.state_digest.as_str().into(),
        ]);
    }
    for record in records {
        push_history_values(PG, record, &mut values);
    }
    let text = postgres_statements::transition(HistoryRows::Values(records.len()), transition.successor().is_some());
    match run(conn, isolate, Statement::from_sql_and_values(PG, text, values)).await {
        Ok(rows) => {
            let moved = rows.first().map_or(Ok(0), |row| row.try_get_by_index::<i64>(0)).map_err(map)?;
            Ok(moved == 1)
        }
        Err(error) if is_unique_violation(&error) => Err(records_taken(transition)),
        Err(error) => Err(map(error)),
    }
}

/// The transition's record ids, taken.
fn records_taken(transition: &Transition) -> GovernanceError {
    GovernanceError::AlreadyExists {
        kind: EntityKind::HistoryRecord,
        workspace: transition.request().workspace_id().clone(),
        id: transition.records().iter().map(|r| r.id().to_string()).collect::<Vec<_>>().join(", "),
    }
}

/// After the first attempt matched no row: the refusal that the stored
/// revision, status and digest of the request name (read without a lock: a
/// lost race is the common miss and costs this one light read), or `None`
/// when they do not tell (a row stored without a digest, a supersession
/// whose successor must be checked, a snapshot older than the statement's).
async fn refusal_from_stored_state<C: ConnectionTrait>(
    conn: &C,
    transition: &Transition,
) -> Result<Option<GovernanceError>> {
    let next = transition.request();
    let text = match conn.get_database_backend() {
        DbBackend::Postgres => {
            "SELECT revision, status, state_digest FROM governance_requests WHERE workspace_id = $1 AND id = $2"
        }
        _ => "SELECT revision, status, state_digest FROM governance_requests WHERE workspace_id = ? AND id = ?",
    };
    let read = Statement::from_sql_and_values(
        conn.get_database_backend(),
        text,
        [workspace_str(next).into(), next.id().as_uuid().into()],
    );
    let Some(row) = conn.query_one_raw(read).await.map_err(map)? else {
        return Ok(Some(GovernanceError::NotFound {
            kind: EntityKind::Request,
            workspace: next.workspace_id().clone(),
            id: next.id().to_string(),
        }));
    };
    let stored: i64 = row.try_get_by_index(0).map_err(map)?;
    let status: String = row.try_get_by_index(1).map_err(map)?;
    let Some(digest) = row.try_get_by_index::<Option<String>>(2).map_err(map)? else { return Ok(None) };
    Ok(check_commit_target(transition, stored_revision(stored), status.parse()?, &digest).err())
}

/// Why a write transaction ends without committing.
enum Failure {
    /// The driver failed.
    Driver(DbErr),
    /// The store refuses the write.
    Refused(GovernanceError),
}

impl From<DbErr> for Failure {
    fn from(error: DbErr) -> Self {
        Failure::Driver(error)
    }
}

impl From<GovernanceError> for Failure {
    fn from(error: GovernanceError) -> Self {
        Failure::Refused(error)
    }
}

/// The transition's writes inside `txn`.
///
/// The update matches the stored digest only. When it matches no row, the
/// request's row is read locked (`FOR UPDATE` on PostgreSQL and MySQL; on
/// SQLite `BEGIN IMMEDIATE` already holds the write lock) and decoded: a
/// row stored without a digest gets the digest of its stored content. At
/// the revision, status and digest the transition was computed from, and
/// without a stored digest, the update runs once more, matching on `NULL`,
/// while the lock keeps the row as checked. Otherwise [`check_commit_target`]
/// names the refusal: a forged copy of a row without a digest computes
/// another digest, a validation error.
async fn write_transition(txn: &DatabaseTransaction, transition: &Transition) -> Result<(), Failure> {
    if let Err(refused) = check_locked_successor(txn, transition).await? {
        // The older request's own refusal comes first, as on a store that
        // checks both under one lock, so every provider reports the same
        // error for the same state.
        check_target(transition, locked_target(txn, transition).await?)?;
        return Err(refused.into());
    }
    if update_target(txn, transition, Some(transition.expected_digest())).await? == 0 {
        let target = check_target(transition, locked_target(txn, transition).await?)?;
        // A row that stores the expected digest, yet the update missed it:
        // the caller's transaction reads an older snapshot.
        if target.stored || update_target(txn, transition, None).await? == 0 {
            return Err(invisible_collision().into());
        }
    }
    let records: Vec<&HistoryRecord> = transition.records().iter().collect();
    match insert_history(txn, &records).await {
        Ok(_) => Ok(()),
        Err(error) if is_unique_violation(&error) => Err(Failure::Refused(records_taken(transition))),
        Err(error) => Err(error.into()),
    }
}

/// The conditional update of exactly the transition's columns, over the
/// row at the expected revision and status whose stored digest is `digest`
/// (`None`: a row stored without one). Returns the rows it matched.
async fn update_target(txn: &DatabaseTransaction, transition: &Transition, digest: Option<&str>) -> Result<u64, DbErr> {
    let next = transition.request();
    let digest = match digest {
        Some(digest) => request::Column::StateDigest.eq(digest),
        None => request::Column::StateDigest.is_null(),
    };
    // The transition's columns, each bound as the backend stores it.
    let backend = txn.get_database_backend();
    let values = transition_update(&transition.write());
    let mut update = request::Entity::update_many();
    for column in request::Column::iter() {
        if let Some(value) = values.get(column).into_value() {
            update = update.col_expr(column, Expr::val(bind_value(backend, column, value)));
        }
    }
    let updated = update
        .filter(request::Column::WorkspaceId.eq(workspace_str(next)))
        .filter(request::Column::Id.eq(next.id().as_uuid()))
        .filter(request::Column::Revision.eq(revision(transition.expected_revision())))
        .filter(request::Column::Status.eq(transition.expected_status().as_str()))
        .filter(digest)
        .exec(txn)
        .await?;
    Ok(updated.rows_affected)
}

fn revision(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn stored_revision(value: i64) -> u64 {
    // A negative revision was never written by this library: it matches no
    // transition, so it reads as a conflict.
    u64::try_from(value).unwrap_or(0)
}

/// A stored request as a commit depends on it.
struct RowState {
    revision: u64,
    status: RequestStatus,
    /// The stored digest, or for a row without one the digest of its content.
    digest: String,
    /// Whether the row stores a digest.
    stored: bool,
}

impl RowState {
    fn of(row: request::Model) -> Result<Self> {
        match &row.state_digest {
            Some(digest) => Ok(Self {
                revision: stored_revision(row.revision),
                status: row.status.parse()?,
                digest: digest.clone(),
                stored: true,
            }),
            // The decoder computes the digest of what the row holds.
            None => {
                let request = request_from(row)?;
                Ok(Self {
                    revision: request.revision(),
                    status: request.status(),
                    digest: request.state_digest().to_owned(),
                    stored: false,
                })
            }
        }
    }
}

/// The stored row of the transition's request, locked until `txn` ends.
async fn locked_target(txn: &DatabaseTransaction, transition: &Transition) -> Result<Option<RowState>, Failure> {
    let next = transition.request();
    let row = request::Entity::find_by_id((workspace_str(next).to_owned(), next.id().as_uuid()))
        .lock_exclusive()
        .one(txn)
        .await?;
    Ok(row.map(RowState::of).transpose()?)
}

/// Checks the stored row of the transition's request: missing, moved on,
/// or forged is an error.
fn check_target(transition: &Transition, stored: Option<RowState>) -> Result<RowState> {
    let Some(stored) = stored else {
        let next = transition.request();
        return Err(GovernanceError::NotFound {
            kind: EntityKind::Request,
            workspace: next.workspace_id().clone(),
            id: next.id().to_string(),
        });
    };
    check_commit_target(transition, stored.revision, stored.status, &stored.digest)?;
    Ok(stored)
}

/// For a supersession, reads the successor with a lock that lasts until
/// `txn` ends, so it cannot move on between this check and the commit:
/// `FOR SHARE` on PostgreSQL (it reads the latest committed row, not the
/// snapshot, and waits for a writer holding it). On MySQL/MariaDB the
/// successor's row is written first (its `successor_guard` counter, which
/// nothing reads) and then read under that exclusive lock: a lock holds on
/// its own server only, and a multi-primary Galera cluster certifies the
/// rows a transaction writes, so only a write makes a concurrent change of
/// the successor through another node conflict with this commit. SQLite
/// has no row locks and needs none: the write transaction began with
/// `BEGIN IMMEDIATE` and holds the database's write lock already. A
/// successor stored without a digest is checked against the digest of its
/// stored content. The outer error is the driver's, the inner one the
/// refusal of [`check_successor`].
async fn check_locked_successor(txn: &DatabaseTransaction, transition: &Transition) -> Result<Result<()>, Failure> {
    let Some(successor) = transition.successor() else { return Ok(Ok(())) };
    let key = (workspace_str(transition.request()).to_owned(), successor.id.as_uuid());
    let find = request::Entity::find_by_id(key.clone());
    let row = if txn.get_database_backend() == DbBackend::MySql {
        let touch = Statement::from_sql_and_values(
            DbBackend::MySql,
            format!(
                "UPDATE governance_requests SET {SUCCESSOR_GUARD} = {SUCCESSOR_GUARD} + 1 WHERE workspace_id = ? AND id = ?"
            ),
            [key.0.into(), key.1.into()],
        );
        txn.execute_raw(touch).await?;
        find.lock_exclusive().one(txn).await?
    } else {
        find.lock_shared().one(txn).await?
    };
    let stored = row.map(RowState::of).transpose()?;
    Ok(check_successor(transition, stored.as_ref().map(|s| (s.revision, s.digest.as_str()))))
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
    if !savepoint {
        return insert_history(conn, records).await;
    }
    let point = conn.begin().await?;
    match insert_history(&point, records).await {
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
    if let Err(error) = insert(&txn, &[row]).await {
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
    match insert(&txn, &seals).await {
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
