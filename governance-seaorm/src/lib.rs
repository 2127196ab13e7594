//! Governance requests and audit history on SeaORM 2: **SQLite** (the
//! embedded default), **PostgreSQL** and **MySQL/MariaDB**, one code path.
//!
//! ```
//! use std::sync::Arc;
//! use governance_abstractions::{Actor, GovernanceService, NewRequest, TargetRef, WorkspaceId};
//! use governance_seaorm::SeaOrmStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("governance.db");
//! // Opens (creating if needed) a database file, tuned and migrated.
//! let store = SeaOrmStore::open_sqlite(&path).await?;
//! let service = GovernanceService::new(Arc::new(store));
//! let ws = WorkspaceId::new("acme")?;
//! let spec = NewRequest::new(ws, TargetRef::new("flag", "beta"), "enable", Actor::user("dev"));
//! let request = service.create(spec).await?.into_inner();
//! assert_eq!(request.revision(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # How it keeps the contract
//!
//! - **Optimistic concurrency by hand**: a transition is one
//!   `UPDATE … WHERE workspace_id = ? AND id = ? AND revision = ? AND status = ?
//!   AND state_digest = ?` whose affected-row count decides (sqlx reports
//!   *matched* rows on MySQL, and the revision always changes, so the count is
//!   exact everywhere), then the history rows, in one transaction. A row
//!   stored without a digest is read locked and checked against the digest of
//!   its stored content before the update runs again on `state_digest IS
//!   NULL`. The update sets only the columns a transition may change
//!   (status, approvals, metadata, revision, …): what was fixed at creation is
//!   never rewritten.
//! - **Supersession**: in the same transaction and before that update, a
//!   locking read of the successor (`FOR SHARE` on PostgreSQL; on
//!   MySQL/MariaDB a write of its `successor_guard` counter, then a read
//!   under that lock, since a multi-primary Galera cluster certifies written
//!   rows only; on SQLite `BEGIN IMMEDIATE` already holds the write lock)
//!   checks that it is still at the revision and state digest the
//!   supersession was computed against, and keeps it there until commit.
//! - **Append-only**: triggers refuse UPDATE and DELETE of history rows,
//!   checkpoints and seal entries on all three backends; TRUNCATE is refused
//!   by a trigger on PostgreSQL and by a foreign-key guard on MySQL (which
//!   `foreign_key_checks = 0` lifts: withhold the DROP privilege from the
//!   application's user). SQLite has no TRUNCATE; `INSERT OR REPLACE` is
//!   refused through recursive triggers.
//! - **Integrity**: a checkpoint and its seal entries are one transaction
//!   that validates against the latest checkpoint read inside it; the
//!   checkpoint's primary key settles two sealers racing for one `seq`.
//! - **Errors**: unique violations become replays, `AlreadyExists` or
//!   `IdempotencyConflict`; serialization failures, deadlocks and a busy
//!   SQLite database are retryable `Backend` errors; lost connections are
//!   `Unavailable`. The driver error is kept as the source. A write whose
//!   whole transaction the server rolled back (a deadlock victim; on Galera
//!   a transaction aborted by another node's write or by DDL) is run again
//!   by the store, up to
//!   [`ROLLED_BACK_ATTEMPTS`](governance_abstractions::provider::ROLLED_BACK_ATTEMPTS)
//!   times, before that error reaches the caller: nothing of it committed.
//! - **Same-transaction placement**: [`SeaOrmStore::append_history_in`],
//!   [`SeaOrmStore::commit_transition_in`] and
//!   [`SeaOrmStore::create_request_in`] write inside the application's own
//!   [`DatabaseTransaction`] (begin it with [`SeaOrmStore::begin`]), next to
//!   its domain writes. Each runs in a savepoint, so a refused write leaves
//!   the caller's transaction usable. A *retryable* error from a `*_in` call
//!   means the whole transaction must be retried: MySQL rolls back the whole
//!   transaction on a deadlock, and a snapshot may hide a concurrent write.

mod convert;
pub mod entity;
mod error;
pub mod migration;
mod read;
mod roles;
#[cfg(feature = "testing")]
pub mod testing;
mod write;

#[cfg(feature = "sqlite")]
use std::path::Path;
#[cfg(feature = "sqlite")]
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use governance_abstractions::provider::rerun_rolled_back;
use governance_abstractions::{
    Checkpoint, ConnectionSettings, Count, CountQuery, Creation, GovernanceError, GovernanceRequest, HistoryFilter,
    HistoryReader, HistoryRecord, HistoryWriter, IntegrityStore, Page, PageRequest, Position, ReadRecord, RecordId,
    RequestFilter, RequestId, RequestReader, RequestWriter, Result, SealEntry, SealedRecord, Stored, Transition,
    WorkspaceId,
};
#[cfg(feature = "sqlite")]
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, SqliteTransactionMode, Statement,
    TransactionOptions, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

pub use error::BrokenTriggerCache;

/// Why [`SeaOrmStore::roll_up_counts`] refuses: the backend keeps no hourly
/// decision counts (only the PostgreSQL schema has them), and its counts
/// read the records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollUpUnsupported {
    backend: String,
}

impl std::fmt::Display for RollUpUnsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} keeps no hourly decision counts (PostgreSQL only); count_history reads the records", self.backend)
    }
}

impl std::error::Error for RollUpUnsupported {}
pub use migration::Migrator;
pub use roles::{ApplicationRole, GOVERNANCE_TABLES, RoleGrants, application_role_grants};
pub use sea_orm;

/// How long a SQLite writer waits for the write lock before giving up.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Without a server driver built there is nothing to probe: SQLite is a file.
#[cfg(not(any(feature = "postgres", feature = "mysql")))]
async fn probe(_: &str, _: &ConnectionSettings) -> Result<()> {
    Ok(())
}

/// Opens and closes one connection to the server `url` names, within the
/// connect timeout (nothing to probe for SQLite: a file).
#[cfg(any(feature = "postgres", feature = "mysql"))]
async fn probe(url: &str, settings: &ConnectionSettings) -> Result<()> {
    use sea_orm::sqlx::Connection;
    let timeout = settings.connect_timeout();
    let silent = || GovernanceError::Unavailable {
        source: Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the server did not answer within {timeout:?}"),
        )),
    };
    // One arm per built driver: the connection is closed again at once.
    let opened: std::result::Result<(), sea_orm::sqlx::Error> = match url.split_once(':').map(|(scheme, _)| scheme) {
        #[cfg(feature = "postgres")]
        Some("postgres" | "postgresql") => {
            match tokio::time::timeout(timeout, sea_orm::sqlx::PgConnection::connect(url)).await {
                Err(_) => return Err(silent()),
                Ok(Ok(connection)) => {
                    let _ = connection.close().await;
                    Ok(())
                }
                Ok(Err(error)) => Err(error),
            }
        }
        #[cfg(feature = "mysql")]
        Some("mysql" | "mariadb") => {
            match tokio::time::timeout(timeout, sea_orm::sqlx::MySqlConnection::connect(url)).await {
                Err(_) => return Err(silent()),
                Ok(Ok(connection)) => {
                    let _ = connection.close().await;
                    Ok(())
                }
                Ok(Err(error)) => Err(error),
            }
        }
        _ => Ok(()),
    };
    opened.map_err(|e| error::map(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e.into()))))
}

/// Why `url` cannot be opened by this build: its backend's feature is off.
fn missing_driver(url: &str) -> Option<&'static str> {
    let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
    match scheme {
        "sqlite" if !cfg!(feature = "sqlite") => Some("built without the `sqlite` feature of governance-seaorm"),
        "postgres" | "postgresql" if !cfg!(feature = "postgres") => {
            Some("built without the `postgres` feature of governance-seaorm")
        }
        "mysql" | "mariadb" if !cfg!(feature = "mysql") => {
            Some("built without the `mysql` feature of governance-seaorm")
        }
        _ => None,
    }
}

/// A governance store over a SeaORM [`DatabaseConnection`]. Cloning shares the pool.
#[derive(Clone, Debug)]
pub struct SeaOrmStore {
    db: DatabaseConnection,
}

impl SeaOrmStore {
    /// Wraps a connection. Run [`migrate`](Self::migrate) (or [`Migrator`])
    /// before first use.
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Connects to a `postgres://`, `mysql://` or `sqlite:` URL with the
    /// default [`ConnectionSettings`] (not migrated). For an in-memory SQLite
    /// database use [`open_sqlite_in_memory`](Self::open_sqlite_in_memory):
    /// through a URL, the database vanishes whenever the pool recycles its
    /// connection.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, &ConnectionSettings::default()).await
    }

    /// [`connect`](Self::connect) with `settings`. On a server, one
    /// connection is opened first, within the connect timeout, so a
    /// refused, unreachable or silent server is `Unavailable` at once with
    /// its cause (the driver's pool would retry a refused port until its
    /// acquire timeout and then report only that it timed out).
    pub async fn connect_with(url: &str, settings: &ConnectionSettings) -> Result<Self> {
        if url.starts_with("sqlite:") && (url.contains(":memory:") || url.contains("mode=memory")) {
            return Err(GovernanceError::validation(
                "url",
                governance_abstractions::ValidationProblem::Inconsistent(
                    "an in-memory SQLite database needs open_sqlite_in_memory()",
                ),
            ));
        }
        if let Some(feature) = missing_driver(url) {
            return Err(GovernanceError::validation(
                "url",
                governance_abstractions::ValidationProblem::Inconsistent(feature),
            ));
        }
        probe(url, settings).await?;
        let mut options = sea_orm::ConnectOptions::new(url);
        // No ping before each acquire: it would add a round trip to every
        // statement, and a dead connection surfaces as `Unavailable` anyway.
        options
            .max_connections(settings.max_connections())
            .connect_timeout(settings.connect_timeout())
            .acquire_timeout(settings.acquire_timeout())
            .test_before_acquire(false);
        #[cfg(feature = "postgres")]
        if let Some(name) = settings.application_name() {
            let name = name.to_owned();
            options.map_sqlx_postgres_opts(move |pg| pg.application_name(&name));
        }
        // Recursive triggers on every SQLite connection, as `open_sqlite`:
        // without them `INSERT OR REPLACE` deletes guarded rows unseen.
        #[cfg(feature = "sqlite")]
        options.map_sqlx_sqlite_opts(|sqlite| sqlite.pragma("recursive_triggers", "ON"));
        Database::connect(options).await.map(Self::new).map_err(error::map)
    }

    /// Opens (creating if needed) a SQLite database file with WAL journaling,
    /// `synchronous = FULL` (a commit survives power loss: evidence is never
    /// lost after the mutation it allowed), a busy timeout, foreign keys and
    /// recursive triggers (so `INSERT OR REPLACE` cannot bypass the
    /// append-only guard), and migrates it.
    #[cfg(feature = "sqlite")]
    pub async fn open_sqlite(path: impl AsRef<Path>) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .foreign_keys(true)
            .pragma("recursive_triggers", "ON");
        // No ping before each acquire: a connection to a file does not go
        // stale, and the ping is a hop to the connection's worker thread.
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        let store = Self::new(DatabaseConnection::from(pool));
        store.migrate().await?;
        Ok(store)
    }

    /// A migrated in-memory SQLite database. It lives on exactly one pooled
    /// connection that is never closed: with more, each connection would see
    /// its own empty database.
    #[cfg(feature = "sqlite")]
    pub async fn open_sqlite_in_memory() -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(unavailable)?
            .foreign_keys(true)
            .pragma("recursive_triggers", "ON");
        let pool = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        let store = Self::new(DatabaseConnection::from(pool));
        store.migrate().await?;
        Ok(store)
    }

    /// The connection, for the application's own queries.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The plan the database chooses for a request query, one line per row
    /// of its `EXPLAIN` (`EXPLAIN QUERY PLAN` on SQLite; on MySQL/MariaDB
    /// each row's table, access type, key and rows as `column=value`
    /// pairs): to check in operation that a query uses its index.
    ///
    /// ```no_run
    /// # async fn run(store: governance_seaorm::SeaOrmStore) -> governance_abstractions::Result<()> {
    /// use governance_abstractions::{PageRequest, RequestFilter, RequestStatus, WorkspaceId};
    /// let pending = RequestFilter { statuses: vec![RequestStatus::Pending], ..RequestFilter::default() };
    /// for line in store.explain_query_requests(&WorkspaceId::new("acme")?, &pending, &PageRequest::first(50)).await? {
    ///     println!("{line}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn explain_query_requests(
        &self,
        workspace: &WorkspaceId,
        filter: &RequestFilter,
        page: &PageRequest,
    ) -> Result<Vec<String>> {
        read::explain_query_requests(&self.db, workspace, filter, page).await
    }

    /// The plan of [`history_for_request`](HistoryReader::history_for_request).
    pub async fn explain_history_for_request(
        &self,
        workspace: &WorkspaceId,
        request: RequestId,
    ) -> Result<Vec<String>> {
        read::explain_history_for_request(&self.db, workspace, request).await
    }

    /// The plan of [`query_history`](HistoryReader::query_history).
    pub async fn explain_query_history(
        &self,
        workspace: &WorkspaceId,
        filter: &HistoryFilter,
        page: &PageRequest,
    ) -> Result<Vec<String>> {
        read::explain_query_history(&self.db, workspace, filter, page).await
    }

    /// On PostgreSQL, folds the workspace's decision records written since
    /// the last roll-up into the hourly and daily counts that
    /// [`count_history`](HistoryReader::count_history) reads; returns how
    /// many records it folded in. The schema, the counts and the function
    /// that keeps them are the ones `governance-postgres` keeps, so either
    /// provider (or `governance roll-up`) may run it.
    ///
    /// Counts are exact whether or not this runs; what it saves is reading:
    /// a count over a window then reads the rows of the window's whole days
    /// and of its other whole hours, the records written since the last roll-up and those of the partial
    /// hours at the window's edges. Run it every few minutes per active
    /// workspace, as the tables' owner or as the application role
    /// ([`grant_application_role`](Self::grant_application_role) grants
    /// `EXECUTE`; the role cannot write a count itself).
    ///
    /// On SQLite and MySQL/MariaDB there are no derived counts: a
    /// non-retryable `Backend` error whose source is [`RollUpUnsupported`],
    /// and counts read the records.
    ///
    /// ```no_run
    /// # async fn run(store: governance_seaorm::SeaOrmStore) -> governance_abstractions::Result<()> {
    /// use governance_abstractions::WorkspaceId;
    /// let folded = store.roll_up_counts(&WorkspaceId::new("acme")?).await?;
    /// println!("{folded} records folded into the counts");
    /// # Ok(()) }
    /// ```
    pub async fn roll_up_counts(&self, workspace: &WorkspaceId) -> Result<u64> {
        let backend = self.db.get_database_backend();
        if backend != DbBackend::Postgres {
            return Err(GovernanceError::backend(false, RollUpUnsupported { backend: format!("{backend:?}") }));
        }
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT governance_roll_up_counts($1)",
            [workspace.as_str().into()],
        );
        let row = self.db.query_one_raw(statement).await.map_err(error::map)?;
        let folded: i64 = match row {
            Some(row) => row.try_get_by_index(0).map_err(error::map)?,
            None => 0,
        };
        Ok(u64::try_from(folded).unwrap_or(0))
    }

    /// The plan of [`count_history`](HistoryReader::count_history).
    pub async fn explain_count_history(&self, workspace: &WorkspaceId, query: &CountQuery) -> Result<Vec<String>> {
        read::explain_count_history(&self.db, workspace, query).await
    }

    /// Begins a transaction for the `*_in` methods and the application's own
    /// writes: `BEGIN IMMEDIATE` on SQLite, so a transaction that reads before
    /// it writes waits for the write lock instead of failing with "database
    /// is locked"; a plain transaction elsewhere.
    pub async fn begin(&self) -> Result<DatabaseTransaction> {
        write::begin(&self.db).await
    }

    /// Applies pending migrations. Re-runnable, and safe when several
    /// processes start at once: the run holds a lock (PostgreSQL advisory
    /// lock, a MySQL `GET_LOCK` named after the database, the SQLite write
    /// lock). On a MariaDB Galera cluster, where `GET_LOCK` holds on one
    /// node only, the lock is a row in
    /// [`governance_migrations_lock`](migration::LOCK_TABLE) that one node's
    /// commit alone can take, with a lease that a crashed run's successor
    /// takes over; a run that waited [`migration::LOCK_WAIT`] in vain fails
    /// with a retryable [`GovernanceError::Backend`] whose source is a
    /// [`MigrationLocked`](migration::MigrationLocked).
    ///
    /// On PostgreSQL the schema is `governance-postgres`'s (either may have
    /// migrated the database), and governance tables that hold another
    /// schema are refused, in one transaction that then changes nothing: a
    /// non-retryable [`GovernanceError::Backend`] whose source is a
    /// [`SchemaMismatch`](governance_abstractions::provider::postgres_schema::SchemaMismatch).
    pub async fn migrate(&self) -> Result<()> {
        let db = &self.db;
        match db.get_database_backend() {
            DbBackend::Postgres => {
                use governance_abstractions::provider::postgres_schema::SchemaStage;
                let txn = db.begin().await.map_err(error::map)?;
                txn.execute_unprepared("SELECT pg_advisory_xact_lock(7254365001)").await.map_err(error::map)?;
                // Tables of the governance names that hold another schema are
                // refused before any migration touches them; anything still
                // unlike the shared schema afterwards is refused too, and the
                // transaction (DDL included) rolls back on drop.
                migration::check_postgres_schema(&txn, SchemaStage::BeforeMigrating).await?;
                Migrator::up(&txn, None).await.map_err(error::map)?;
                migration::check_postgres_schema(&txn, SchemaStage::Migrated).await?;
                txn.commit().await.map_err(error::map)
            }
            DbBackend::MySql if migration::lock::is_galera(db).await? => {
                // GET_LOCK is node-local on Galera: the lock is a row that
                // only one node's commit can insert (migration::lock).
                let held = migration::lock::acquire(db).await?;
                let migrated = Migrator::up(db, None).await.map_err(error::map);
                let released = held.release().await;
                migrated.and(released)
            }
            DbBackend::MySql => {
                // A transaction pins one pooled connection to hold the named lock;
                // MySQL DDL commits on its own, so the migration runs beside it.
                let lock = db.begin().await.map_err(error::map)?;
                let got = lock
                    .query_one_raw(Statement::from_string(
                        DbBackend::MySql,
                        "SELECT GET_LOCK(CONCAT('governance_migrations:', DATABASE()), 120) AS got",
                    ))
                    .await
                    .map_err(error::map)?
                    .map(|row| row.try_get::<Option<i64>>("", "got"))
                    .transpose()
                    .map_err(error::map)?
                    .flatten();
                if got != Some(1) {
                    return Err(GovernanceError::backend(true, "timed out waiting for the migration lock"));
                }
                let migrated = Migrator::up(db, None).await.map_err(error::map);
                lock.execute_unprepared("DO RELEASE_LOCK(CONCAT('governance_migrations:', DATABASE()))")
                    .await
                    .map_err(error::map)?;
                lock.rollback().await.map_err(error::map)?;
                migrated
            }
            _ => {
                let options = TransactionOptions {
                    sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                    ..Default::default()
                };
                let txn = db.begin_with_options(options).await.map_err(error::map)?;
                Migrator::up(&txn, None).await.map_err(error::map)?;
                txn.commit().await.map_err(error::map)
            }
        }
    }

    /// Creates a request inside the caller's transaction (in a savepoint).
    pub async fn create_request_in(
        &self,
        txn: &DatabaseTransaction,
        creation: &Creation,
    ) -> Result<Stored<GovernanceRequest>> {
        write::create_request(txn, creation, true).await
    }

    /// Commits a transition inside the caller's transaction (in a savepoint):
    /// it becomes durable when, and only if, the caller commits.
    pub async fn commit_transition_in(&self, txn: &DatabaseTransaction, transition: &Transition) -> Result<()> {
        write::commit_transition(txn, transition, true).await
    }

    /// Appends evidence inside the caller's transaction (in a savepoint),
    /// next to the domain write it justifies.
    pub async fn append_history_in(
        &self,
        txn: &DatabaseTransaction,
        records: &[HistoryRecord],
    ) -> Result<Vec<Stored<HistoryRecord>>> {
        write::append_history(txn, records, true).await
    }
}

#[cfg(feature = "sqlite")]
fn unavailable(error: sea_orm::sqlx::Error) -> GovernanceError {
    GovernanceError::Unavailable { source: Box::new(error) }
}

#[async_trait]
impl RequestWriter for SeaOrmStore {
    async fn create_request(&self, creation: &Creation) -> Result<Stored<GovernanceRequest>> {
        rerun_rolled_back(error::rolled_back, || write::create_request(&self.db, creation, false)).await
    }

    async fn commit_transition(&self, transition: &Transition) -> Result<()> {
        rerun_rolled_back(error::rolled_back, || write::commit_transition(&self.db, transition, false)).await
    }
}

#[async_trait]
impl RequestReader for SeaOrmStore {
    async fn get_request(&self, workspace: &WorkspaceId, id: RequestId) -> Result<GovernanceRequest> {
        read::get_request(&self.db, workspace, id).await
    }

    async fn query_requests(
        &self,
        workspace: &WorkspaceId,
        filter: &RequestFilter,
        page: &PageRequest,
    ) -> Result<Page<GovernanceRequest>> {
        read::query_requests(&self.db, workspace, filter, page).await
    }
}

#[async_trait]
impl HistoryWriter for SeaOrmStore {
    async fn append_history(&self, records: &[HistoryRecord]) -> Result<Vec<Stored<HistoryRecord>>> {
        rerun_rolled_back(error::rolled_back, || write::append_history(&self.db, records, false)).await
    }
}

#[async_trait]
impl HistoryReader for SeaOrmStore {
    async fn get_history_record(&self, workspace: &WorkspaceId, id: RecordId) -> Result<HistoryRecord> {
        read::get_history_record(&self.db, workspace, id).await
    }

    async fn history_for_request(&self, workspace: &WorkspaceId, request: RequestId) -> Result<Vec<HistoryRecord>> {
        read::history_for_request(&self.db, workspace, request).await
    }

    async fn query_history(
        &self,
        workspace: &WorkspaceId,
        filter: &HistoryFilter,
        page: &PageRequest,
    ) -> Result<Page<HistoryRecord>> {
        read::query_history(&self.db, workspace, filter, page).await
    }

    async fn count_history(&self, workspace: &WorkspaceId, query: &CountQuery) -> Result<Vec<Count>> {
        read::count_history(&self.db, workspace, query).await
    }
}

#[async_trait]
impl IntegrityStore for SeaOrmStore {
    async fn unsealed_history(
        &self,
        workspace: &WorkspaceId,
        after: Option<Position>,
        limit: u32,
    ) -> Result<Vec<ReadRecord>> {
        read::unsealed_history(&self.db, workspace, after, limit).await
    }

    async fn append_checkpoint(&self, checkpoint: &Checkpoint, entries: &[SealEntry]) -> Result<()> {
        rerun_rolled_back(error::rolled_back, || write::append_checkpoint(&self.db, checkpoint, entries)).await
    }

    async fn checkpoints(&self, workspace: &WorkspaceId, after: u64, limit: u32) -> Result<Vec<Checkpoint>> {
        read::checkpoints(&self.db, workspace, after, limit).await
    }

    async fn latest_checkpoint(&self, workspace: &WorkspaceId) -> Result<Option<Checkpoint>> {
        read::latest_checkpoint(&self.db, workspace).await
    }

    async fn sealed_records(&self, workspace: &WorkspaceId, from: u64, limit: u32) -> Result<Vec<SealedRecord>> {
        read::sealed_records(&self.db, workspace, from, limit).await
    }
}

/// The crate's README, compiled and run as documentation tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
