//! Governance requests and audit history on **PostgreSQL**, with sqlx 0.9.
//!
//! ```no_run
//! use std::sync::Arc;
//! use governance_abstractions::GovernanceService;
//! use governance_postgres::PostgresStore;
//!
//! # async fn demo() -> Result<(), governance_abstractions::GovernanceError> {
//! let store = PostgresStore::connect("postgres://app@localhost/governance").await?;
//! store.migrate().await?; // explicit, re-runnable, safe from several processes
//! let service = GovernanceService::new(Arc::new(store));
//! # let _ = service;
//! # Ok(())
//! # }
//! ```
//!
//! # How it keeps the contract
//!
//! - **One statement per write.** A transition is a single statement: a
//!   conditional `UPDATE … WHERE revision = $n AND status = $s AND
//!   state_digest = $d` (of the state it was computed from) and the insert of
//!   its history rows as data-modifying CTEs, so both commit together or not
//!   at all without BEGIN/COMMIT round trips. It writes only the columns a
//!   transition may change; what creation fixed is never written again. A
//!   supersession's statement also locks the newer request (`FOR SHARE`) and
//!   updates only while that one is still at the revision it was computed
//!   against. Creation and appends are one statement each too. Only the
//!   sealer's `append_checkpoint` is a short transaction (read the latest
//!   checkpoint, validate, insert).
//! - **Append-only in the server**: triggers (enabled `ALWAYS`, so also under
//!   `session_replication_role = replica`) refuse UPDATE, DELETE and TRUNCATE
//!   of history rows, and of the checkpoints and seal entries that make it
//!   tamper-evident ([`IntegrityStore`]). `docs/providers/postgres.md` shows
//!   the grants for an INSERT-only application role. (The
//!   [`SchemaProfile::Distributed`] schema, for engines that take no
//!   triggers, keeps it by those privileges only.)
//! - **Same-transaction placement**: the `*_in` methods write inside the
//!   application's own [`sqlx::Transaction`], each in a savepoint, next to its
//!   domain writes (seed 000's pattern).
//! - **Errors**: unique violations become replays, `AlreadyExists` or
//!   `IdempotencyConflict`; serialization failures, deadlocks and lock
//!   timeouts are retryable `Backend` errors; lost connections `Unavailable`;
//!   the sqlx error is kept as the source.

mod error;
mod integrity;
mod read;
mod roles;
mod rows;
#[cfg(feature = "testing")]
pub mod testing;
mod write;

use async_trait::async_trait;
use governance_abstractions::ConnectionSettings;
use governance_abstractions::provider::rerun_rolled_back;
use governance_abstractions::{
    Checkpoint, Count, CountQuery, Creation, GovernanceError, GovernanceRequest, HistoryFilter, HistoryReader,
    HistoryRecord, HistoryWriter, IntegrityStore, Page, PageRequest, Position, ReadRecord, RecordId, RequestFilter,
    RequestId, RequestReader, RequestWriter, Result, SealEntry, SealedRecord, Stored, Transition, WorkspaceId,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};

pub use read::{FeedCursor, FeedPage};
pub use roles::{DERIVED_TABLES, GOVERNANCE_TABLES, application_role_grants, grant_application_role};
pub use sqlx;

/// Where the migrations record themselves: apart from the application's own
/// `_sqlx_migrations`, so the two never mistake each other's versions.
pub const MIGRATIONS_TABLE: &str = "governance_sqlx_migrations";

/// The embedded migrations (`migrations/` of this crate), recording
/// themselves in [`MIGRATIONS_TABLE`]. Run it yourself, or call
/// [`PostgresStore::migrate`].
pub fn migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

/// The migrations of [`SchemaProfile::Distributed`]
/// (`migrations-distributed/` of this crate), recording themselves in
/// [`MIGRATIONS_TABLE`] too: a database holds one profile or the other, and
/// either migrator refuses the other's history (its first version differs).
pub fn distributed_migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("./migrations-distributed");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

/// Which schema the migrations create.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaProfile {
    /// PostgreSQL 14 or later: the schema `governance-seaorm` shares, with
    /// the commit-ordered [`history_feed`](PostgresStore::history_feed)
    /// (`tx_id xid8`, stamped by a trigger) and the append-only triggers
    /// that refuse UPDATE, DELETE and TRUNCATE of the history, checkpoints
    /// and seals for every role.
    #[default]
    Standard,
    /// For distributed PostgreSQL-compatible engines (Citus, YugabyteDB,
    /// CockroachDB): the same tables, keys and constraints, without what
    /// those engines cannot take — no `tx_id` column, so no
    /// `history_feed` (it answers a [`FeedUnsupported`] error); no
    /// triggers or functions, so the history is append-only by the
    /// application role's privileges only; no `INCLUDE` on the decision
    /// index. Pair it with [`MigrateOptions::without_locking`] where
    /// advisory locks are missing, and tell the store with
    /// [`PostgresStore::with_profile`]. Tested on PostgreSQL; on the
    /// engines themselves only on paper (docs/providers/postgres.md).
    Distributed,
}

/// How [`PostgresStore::migrate_with`] migrates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrateOptions {
    /// The schema to create.
    pub profile: SchemaProfile,
    /// Whether the run holds an advisory lock, so concurrent runs wait for
    /// each other (sqlx's migrator takes `pg_advisory_lock`).
    pub locking: bool,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self { profile: SchemaProfile::Standard, locking: true }
    }
}

impl MigrateOptions {
    /// `profile`, with the advisory lock.
    pub fn new(profile: SchemaProfile) -> Self {
        Self { profile, ..Self::default() }
    }

    /// Without the advisory lock (engines that have none): run one
    /// migration at a time yourself.
    pub fn without_locking(mut self) -> Self {
        self.locking = false;
        self
    }
}

/// What [`PostgresStore::history_feed`] answers on a
/// [`SchemaProfile::Distributed`] store, as the source of a non-retryable
/// [`GovernanceError::Backend`]: that schema has no commit-ordered
/// position to page by. Page `query_history` by `(created_at, id)`
/// instead, knowing that a record committed late can land behind a cursor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedUnsupported;

impl std::fmt::Display for FeedUnsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "the distributed schema profile has no commit-ordered history feed (no tx_id column); \
             page query_history by created_at instead",
        )
    }
}

impl std::error::Error for FeedUnsupported {}

/// Why [`PostgresStore::roll_up_counts`] refuses on the distributed
/// profile: it keeps no hourly counts, and its counts read the records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RollUpUnsupported;

impl std::fmt::Display for RollUpUnsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "the distributed schema profile keeps no hourly decision counts (no tx_id column to fold by); \
             count_history reads the records",
        )
    }
}

impl std::error::Error for RollUpUnsupported {}

/// A governance store over a [`PgPool`]. Cloning shares the pool.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    profile: SchemaProfile,
}

impl PostgresStore {
    /// Wraps a pool. Run [`migrate`](Self::migrate) before first use.
    pub fn new(pool: PgPool) -> Self {
        Self { pool, profile: SchemaProfile::Standard }
    }

    /// The store for a database migrated with `profile` (see
    /// [`SchemaProfile::Distributed`]): what it may ask of the schema.
    pub fn with_profile(mut self, profile: SchemaProfile) -> Self {
        self.profile = profile;
        self
    }

    /// The schema profile the store expects.
    pub fn profile(&self) -> SchemaProfile {
        self.profile
    }

    /// Connects with the default [`ConnectionSettings`] (a pool of 10, 5 s
    /// to open a connection); not migrated.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, &ConnectionSettings::default()).await
    }

    /// Connects with `settings` (not migrated). One connection is opened
    /// first, within the connect timeout, so a refused, unreachable or
    /// silent server is `Unavailable` at once with its cause (the driver's
    /// pool would retry a refused port until its acquire timeout and then
    /// report only that it timed out). For anything else, build the pool
    /// yourself and use [`new`](Self::new).
    pub async fn connect_with(url: &str, settings: &ConnectionSettings) -> Result<Self> {
        let mut options: PgConnectOptions = url.parse().map_err(error::map)?;
        if let Some(name) = settings.application_name() {
            options = options.application_name(name);
        }
        let probe = tokio::time::timeout(settings.connect_timeout(), PgConnection::connect_with(&options)).await;
        match probe {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
            }
            Ok(Err(error)) => return Err(error::map(error)),
            Err(_) => {
                let silent = format!(
                    "no answer from {}:{} within {:?}",
                    options.get_host(),
                    options.get_port(),
                    settings.connect_timeout()
                );
                return Err(GovernanceError::Unavailable {
                    source: Box::new(std::io::Error::new(std::io::ErrorKind::TimedOut, silent)),
                });
            }
        }
        // No ping before each acquire: it would add a round trip to every
        // write, and a dead connection surfaces as `Unavailable` anyway.
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections())
            .acquire_timeout(settings.acquire_timeout())
            .test_before_acquire(false)
            .connect_lazy_with(options);
        Ok(Self::new(pool))
    }

    /// The pool, for the application's own queries and transactions.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations. Re-runnable; concurrent runs wait on an
    /// advisory lock. Run it as the tables' owner, not as the application's
    /// INSERT-only role.
    ///
    /// The schema is the one `governance-seaorm` creates on PostgreSQL, so
    /// either may have migrated the database. Governance tables that hold
    /// another schema are refused before anything is created: a
    /// non-retryable [`GovernanceError::Backend`] whose source is a
    /// [`SchemaMismatch`](governance_abstractions::provider::postgres_schema::SchemaMismatch).
    pub async fn migrate(&self) -> Result<()> {
        self.migrate_with(MigrateOptions::default()).await
    }

    /// Applies pending migrations of `options.profile`, with or without the
    /// advisory lock. A database migrated with one profile is refused by
    /// the other's migrator (a non-retryable `Backend` error; nothing is
    /// changed).
    ///
    /// ```no_run
    /// # async fn run(owner: governance_postgres::PostgresStore) -> governance_abstractions::Result<()> {
    /// use governance_postgres::{MigrateOptions, SchemaProfile};
    /// // CockroachDB: no advisory locks either.
    /// owner.migrate_with(MigrateOptions::new(SchemaProfile::Distributed).without_locking()).await?;
    /// let store = owner.with_profile(SchemaProfile::Distributed);
    /// # let _ = store; Ok(()) }
    /// ```
    pub async fn migrate_with(&self, options: MigrateOptions) -> Result<()> {
        use governance_abstractions::provider::postgres_schema::SchemaStage;
        let mut conn = self.pool.acquire().await.map_err(error::map)?;
        // Tables of the governance names that hold another schema (or the
        // one governance-seaorm created before the schema was shared) are
        // refused before any migration touches them, and whatever is still
        // unlike the shared schema afterwards.
        read::check_schema(&mut conn, SchemaStage::BeforeMigrating, options.profile).await?;
        let mut migrator = match options.profile {
            SchemaProfile::Standard => migrator(),
            SchemaProfile::Distributed => distributed_migrator(),
        };
        migrator.set_locking(options.locking);
        // `run_direct` on the concrete connection: `run` with `&mut conn`
        // trips the compiler's "Acquire is not general enough" in async code.
        let outcome = migrator.run_direct(None, &mut *conn, false).await;
        if outcome.is_err() && options.locking {
            // sqlx leaves its advisory lock held when a migration fails; the
            // connection goes back to the pool, so release it here.
            let _ = sqlx::query("SELECT pg_advisory_unlock_all()").execute(&mut *conn).await;
        }
        outcome.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(error) => error::map(error),
            other => GovernanceError::backend(false, other),
        })?;
        read::check_schema(&mut conn, SchemaStage::Migrated, options.profile).await
    }

    /// Citus only: distributes the four tables by `workspace_id`, co-located
    /// with `governance_requests` (so every write and read of one workspace
    /// stays on one node). Run it once, as the tables' owner, after
    /// [`migrate_with`](Self::migrate_with) with
    /// [`SchemaProfile::Distributed`] (Citus refuses to distribute tables
    /// with triggers). Re-runnable: a table already distributed is left as
    /// it is. Where the `citus` extension is not installed it is a
    /// validation error and changes nothing.
    pub async fn distribute_on_citus(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(error::map)?;
        let citus: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
            .fetch_one(&mut *conn)
            .await
            .map_err(error::map)?;
        if !citus {
            return Err(GovernanceError::validation(
                "database",
                governance_abstractions::ValidationProblem::Inconsistent(
                    "the citus extension is not installed: there is nothing to distribute the tables over",
                ),
            ));
        }
        for table in GOVERNANCE_TABLES {
            let distributed: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = to_regclass($1))",
            )
            .bind(table)
            .fetch_one(&mut *conn)
            .await
            .map_err(error::map)?;
            if distributed {
                continue;
            }
            let statement = if table == "governance_requests" {
                "SELECT create_distributed_table($1, 'workspace_id')"
            } else {
                "SELECT create_distributed_table($1, 'workspace_id', colocate_with => 'governance_requests')"
            };
            sqlx::query(statement).bind(table).execute(&mut *conn).await.map_err(error::map)?;
        }
        Ok(())
    }

    /// Creates a request inside the caller's transaction (in a savepoint).
    pub async fn create_request_in(
        &self,
        txn: &mut Transaction<'_, Postgres>,
        creation: &Creation,
    ) -> Result<Stored<GovernanceRequest>> {
        write::create_request(txn, true, creation).await
    }

    /// Commits a transition inside the caller's transaction (in a savepoint):
    /// durable when, and only if, the caller commits.
    pub async fn commit_transition_in(
        &self,
        txn: &mut Transaction<'_, Postgres>,
        transition: &Transition,
    ) -> Result<()> {
        write::commit_transition(txn, true, transition, write::array_form(self.profile)).await
    }

    /// Appends evidence inside the caller's transaction (in a savepoint),
    /// next to the domain write it justifies.
    pub async fn append_history_in(
        &self,
        txn: &mut Transaction<'_, Postgres>,
        records: &[HistoryRecord],
    ) -> Result<Vec<Stored<HistoryRecord>>> {
        write::append_history(txn, true, records, write::array_form(self.profile)).await
    }

    /// The commit-safe feed of a workspace's history: records after `cursor`
    /// in the order of the transactions that wrote them, showing a record only
    /// once every transaction that started before it has finished. A reader
    /// that reaches the end and later resumes from its cursor therefore never
    /// misses a record that a slower transaction committed meanwhile (unlike
    /// paging by `created_at`, where such a record can land behind the cursor).
    /// For exporters, sealers and replicas.
    pub async fn history_feed(&self, workspace: &WorkspaceId, cursor: &FeedCursor, limit: u32) -> Result<FeedPage> {
        if self.profile == SchemaProfile::Distributed {
            return Err(GovernanceError::backend(false, FeedUnsupported));
        }
        read::history_feed(&self.pool, workspace, cursor, limit).await
    }

    /// Folds the decision records of `workspace` that finished
    /// transactions wrote since the last roll-up into the hourly and daily counts
    /// that [`count_history`](HistoryReader::count_history) reads; returns
    /// how many records it folded in.
    ///
    /// Counts are exact whether or not this runs: a count reads the daily
    /// and hourly rows for the records folded in and the records themselves
    /// for the rest. What it saves is reading: a count over a window reads
    /// the rows of the window's whole days and of its other whole hours, the records written since the last roll-up and
    /// those of the partial hours at the window's edges. Run it every few
    /// minutes per active workspace (or after bulk loads), from any
    /// connection of the primary: writers never wait on it, and concurrent
    /// roll-ups of one workspace take turns. The application role may call
    /// it ([`grant_application_role`]) but cannot write a count itself: the
    /// work is done by a function that runs as the tables' owner.
    ///
    /// On [`SchemaProfile::Distributed`] there are no derived counts (no
    /// transaction order to fold by): a non-retryable `Backend` error whose
    /// source is [`RollUpUnsupported`], and counts read the records.
    ///
    /// ```no_run
    /// # async fn run(store: governance_postgres::PostgresStore) -> governance_abstractions::Result<()> {
    /// use governance_abstractions::WorkspaceId;
    /// let folded = store.roll_up_counts(&WorkspaceId::new("acme")?).await?;
    /// println!("{folded} records folded into the counts");
    /// # Ok(()) }
    /// ```
    pub async fn roll_up_counts(&self, workspace: &WorkspaceId) -> Result<u64> {
        if self.profile == SchemaProfile::Distributed {
            return Err(GovernanceError::backend(false, RollUpUnsupported));
        }
        let folded: i64 = sqlx::query_scalar("SELECT governance_roll_up_counts($1)")
            .bind(workspace.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(error::map)?;
        Ok(u64::try_from(folded).unwrap_or(0))
    }

    /// The plan PostgreSQL chooses for a request query, one line per row of
    /// `EXPLAIN`: to check in operation that a query uses its index.
    pub async fn explain_query_requests(
        &self,
        workspace: &WorkspaceId,
        filter: &RequestFilter,
        page: &PageRequest,
    ) -> Result<Vec<String>> {
        let mut sql = read::requests_sql(&format!("EXPLAIN {}", read::SELECT_REQUESTS), workspace, filter, page)?;
        explain_lines(sql.build().fetch_all(&self.pool).await)
    }

    /// The plan of [`history_for_request`](HistoryReader::history_for_request).
    pub async fn explain_history_for_request(
        &self,
        workspace: &WorkspaceId,
        request: RequestId,
    ) -> Result<Vec<String>> {
        let sql = sqlx::AssertSqlSafe(format!("EXPLAIN {}", read::HISTORY_FOR_REQUEST));
        let rows = sqlx::query(sql).bind(workspace.as_str()).bind(request.as_uuid()).fetch_all(&self.pool).await;
        explain_lines(rows)
    }

    /// The plan of [`query_history`](HistoryReader::query_history).
    pub async fn explain_query_history(
        &self,
        workspace: &WorkspaceId,
        filter: &HistoryFilter,
        page: &PageRequest,
    ) -> Result<Vec<String>> {
        let mut sql = read::history_sql("EXPLAIN ", workspace, filter, page)?;
        explain_lines(sql.build().fetch_all(&self.pool).await)
    }

    /// The plan of [`count_history`](HistoryReader::count_history).
    pub async fn explain_count_history(&self, workspace: &WorkspaceId, query: &CountQuery) -> Result<Vec<String>> {
        let rows = read::explain_count_history(&self.pool, self.profile, workspace, query).await?;
        explain_lines(Ok(rows))
    }

    /// The plan of [`unsealed_history`](IntegrityStore::unsealed_history):
    /// an anti-join whose cost grows with the sealed records it walks past.
    pub async fn explain_unsealed_history(
        &self,
        workspace: &WorkspaceId,
        after: Option<Position>,
        limit: u32,
    ) -> Result<Vec<String>> {
        let mut sql =
            integrity::unsealed_sql(&format!("EXPLAIN {}", integrity::SELECT_UNSEALED), workspace, after, limit);
        explain_lines(sql.build().fetch_all(&self.pool).await)
    }

    async fn connection(&self) -> Result<sqlx::pool::PoolConnection<Postgres>> {
        self.pool.acquire().await.map_err(error::map)
    }
}

#[async_trait]
impl RequestWriter for PostgresStore {
    async fn create_request(&self, creation: &Creation) -> Result<Stored<GovernanceRequest>> {
        rerun_rolled_back(error::rolled_back, || async {
            write::create_request(&mut *self.connection().await?, false, creation).await
        })
        .await
    }

    async fn commit_transition(&self, transition: &Transition) -> Result<()> {
        rerun_rolled_back(error::rolled_back, || async {
            write::commit_transition(&mut *self.connection().await?, false, transition, write::array_form(self.profile))
                .await
        })
        .await
    }
}

#[async_trait]
impl RequestReader for PostgresStore {
    async fn get_request(&self, workspace: &WorkspaceId, id: RequestId) -> Result<GovernanceRequest> {
        read::get_request(&self.pool, workspace, id).await
    }

    async fn query_requests(
        &self,
        workspace: &WorkspaceId,
        filter: &RequestFilter,
        page: &PageRequest,
    ) -> Result<Page<GovernanceRequest>> {
        read::query_requests(&self.pool, workspace, filter, page).await
    }
}

#[async_trait]
impl HistoryWriter for PostgresStore {
    async fn append_history(&self, records: &[HistoryRecord]) -> Result<Vec<Stored<HistoryRecord>>> {
        rerun_rolled_back(error::rolled_back, || async {
            write::append_history(&mut *self.connection().await?, false, records, write::array_form(self.profile)).await
        })
        .await
    }
}

#[async_trait]
impl HistoryReader for PostgresStore {
    async fn get_history_record(&self, workspace: &WorkspaceId, id: RecordId) -> Result<HistoryRecord> {
        read::get_history_record(&self.pool, workspace, id).await
    }

    async fn history_for_request(&self, workspace: &WorkspaceId, request: RequestId) -> Result<Vec<HistoryRecord>> {
        read::history_for_request(&self.pool, workspace, request).await
    }

    async fn query_history(
        &self,
        workspace: &WorkspaceId,
        filter: &HistoryFilter,
        page: &PageRequest,
    ) -> Result<Page<HistoryRecord>> {
        read::query_history(&self.pool, workspace, filter, page).await
    }

    async fn count_history(&self, workspace: &WorkspaceId, query: &CountQuery) -> Result<Vec<Count>> {
        read::count_history(&self.pool, self.profile, workspace, query).await
    }
}

#[async_trait]
impl IntegrityStore for PostgresStore {
    async fn unsealed_history(
        &self,
        workspace: &WorkspaceId,
        after: Option<Position>,
        limit: u32,
    ) -> Result<Vec<ReadRecord>> {
        integrity::unsealed_history(&self.pool, workspace, after, limit).await
    }

    async fn append_checkpoint(&self, checkpoint: &Checkpoint, entries: &[SealEntry]) -> Result<()> {
        rerun_rolled_back(error::rolled_back, || integrity::append_checkpoint(&self.pool, checkpoint, entries)).await
    }

    async fn checkpoints(&self, workspace: &WorkspaceId, after: u64, limit: u32) -> Result<Vec<Checkpoint>> {
        integrity::checkpoints(&self.pool, workspace, after, limit).await
    }

    async fn latest_checkpoint(&self, workspace: &WorkspaceId) -> Result<Option<Checkpoint>> {
        integrity::latest_checkpoint(&self.pool, workspace).await
    }

    async fn sealed_records(&self, workspace: &WorkspaceId, from: u64, limit: u32) -> Result<Vec<SealedRecord>> {
        integrity::sealed_records(&self.pool, workspace, from, limit).await
    }
}

fn explain_lines(rows: sqlx::Result<Vec<sqlx::postgres::PgRow>>) -> Result<Vec<String>> {
    use sqlx::Row;
    rows.map_err(error::map)?.iter().map(|row| row.try_get::<String, _>(0).map_err(error::map)).collect()
}

/// The crate's README, compiled and run as documentation tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
