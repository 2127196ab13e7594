//! The server-backed providers' conformance factories: one fresh database
//! per test process, migrated by its owner (the server URL's user), and an
//! application login granted with the provider's own
//! `grant_application_role`. Each case opens a pool as that login; only
//! the privileged test paths (tamper, raw history) connect as the owner.

use std::sync::Arc;

use async_trait::async_trait;
use conformance_tests::{Capabilities, SetupError, StoreFactory, TestStore};

use crate::databases::{Login, Server, TestDatabase, application_login, fresh_test_database, server_url};
use crate::urls::{redacted, scrubbed};

/// A fresh database migrated by its owner, and its application login. The
/// database (and the login) is dropped when the last clone goes.
#[derive(Clone)]
pub struct RoleSplit {
    owner_url: String,
    login: Login,
    _database: TestDatabase,
}

impl RoleSplit {
    /// The owner's URL (migrations, tamper and raw-history paths).
    pub fn owner_url(&self) -> &str {
        &self.owner_url
    }

    /// The application role's login.
    pub fn login(&self) -> &Login {
        &self.login
    }

    /// The application role's URL (it holds a password: show it only
    /// through [`redacted`]).
    pub fn application_url(&self) -> &str {
        self.login.url()
    }
}

impl std::fmt::Debug for RoleSplit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleSplit").field("owner_url", &redacted(&self.owner_url)).field("login", &self.login).finish()
    }
}

/// A factory's database, shared by the cases open at once in this process
/// and dropped when the last of them is done.
///
/// Opening a database costs a create, a migration and a grant, so cases
/// share one; a case holds a [`Lease`] for as long as its store is open.
/// When the last lease goes, the database is dropped unless another case
/// takes a lease within [`LINGER`] (the test harness starts the next test
/// right after one ends); a later case creates a new one. The linger blocks
/// the thread dropping the last lease on purpose: the test that ends there
/// does not finish, and so its process does not exit, before the database
/// is gone. When cases come one at a time (a single test thread) and the
/// database is needed again right after it went, it is kept from then on and
/// goes with the process (the next run's sweep drops it). A failure to open
/// is kept for the process: every case reports it without trying again.
pub(crate) struct Shared {
    opening: tokio::sync::Mutex<()>,
    state: std::sync::Mutex<SharedState>,
}

struct SharedState {
    current: Option<Result<RoleSplit, SetupError>>,
    users: usize,
    generation: u64,
    /// When the last database was dropped for want of users.
    dropped_at: Option<std::time::Instant>,
    /// Keep the database until the process ends: cases here come one at a
    /// time (`--test-threads=1`), so each would otherwise drop it and the
    /// next create it again. The process's end then leaves it to the sweep.
    keep: bool,
}

/// How long a factory's database outlives its last lease.
const LINGER: std::time::Duration = std::time::Duration::from_millis(500);

/// A database created again this soon after the last one was dropped is
/// kept from then on (see `SharedState::keep`).
const RECREATED_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

impl Shared {
    pub(crate) const fn new() -> Self {
        Self {
            opening: tokio::sync::Mutex::const_new(()),
            state: std::sync::Mutex::new(SharedState {
                current: None,
                users: 0,
                generation: 0,
                dropped_at: None,
                keep: false,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A lease on the current database, created with `open` if there is none.
    pub(crate) async fn lease<F, Fut>(&'static self, open: F) -> Result<Lease, SetupError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<RoleSplit, SetupError>>,
    {
        let _opening = self.opening.lock().await;
        if let Some(lease) = self.current()? {
            return Ok(lease);
        }
        let opened = open().await;
        let mut state = self.state();
        state.current = Some(opened);
        state.generation += 1;
        // Needed again right after it went: stop dropping it.
        if state.dropped_at.is_some_and(|at| at.elapsed() < RECREATED_WITHIN) {
            state.keep = true;
        }
        drop(state);
        self.current()?.ok_or_else(|| SetupError::Unavailable("the test database went while it was opened".into()))
    }

    fn current(&'static self) -> Result<Option<Lease>, SetupError> {
        let mut state = self.state();
        match &state.current {
            None => Ok(None),
            Some(Err(error)) => Err(error.clone()),
            Some(Ok(split)) => {
                let split = split.clone();
                state.users += 1;
                Ok(Some(Lease { shared: self, split, generation: state.generation }))
            }
        }
    }
}

/// One case's hold on a factory's database (see [`Shared`]).
pub(crate) struct Lease {
    shared: &'static Shared,
    split: RoleSplit,
    generation: u64,
}

impl Lease {
    pub(crate) fn split(&self) -> &RoleSplit {
        &self.split
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        state.users -= 1;
        if state.users > 0 || state.generation != self.generation || state.keep {
            return;
        }
        drop(state);
        // Blocking, on purpose: the test that ends here must not finish
        // before its process's last database is dropped, or the process may
        // exit first and leave it to the next run's sweep.
        std::thread::sleep(LINGER);
        let mut state = self.shared.state();
        if state.users > 0 || state.generation != self.generation {
            return;
        }
        let split = state.current.take();
        state.dropped_at = Some(std::time::Instant::now());
        drop(state);
        // With this lease's own clone, dropped right after, the last ones:
        // the database goes with them.
        drop(split);
    }
}

/// Why a database is unavailable, with the error's causes (never a password:
/// the URL is redacted, also where the driver's error quotes it).
pub fn unavailable(what: &str, url: &str, error: impl std::fmt::Display) -> SetupError {
    SetupError::Unavailable(format!("{what} {}: {}", redacted(url), scrubbed(&error.to_string(), url)))
}

/// `error` with its chain of causes.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

/// A fresh database on the `GOVERNANCE_POSTGRES_URL` server with the sqlx
/// provider's schema, and its application login granted by
/// [`governance_postgres::grant_application_role`].
#[cfg(feature = "postgres")]
pub async fn postgres_role_split() -> Result<RoleSplit, SetupError> {
    postgres_role_split_with(governance_postgres::MigrateOptions::default()).await
}

/// [`postgres_role_split`], migrated with `options` (a schema profile).
#[cfg(feature = "postgres")]
pub async fn postgres_role_split_with(options: governance_postgres::MigrateOptions) -> Result<RoleSplit, SetupError> {
    let database = fresh_test_database(&server_url(Server::Postgres).await?, Server::Postgres).await?;
    let owner_url = database.url().to_owned();
    let owner = governance_postgres::PostgresStore::connect(&owner_url)
        .await
        .map_err(|e| unavailable("PostgreSQL at", &owner_url, with_causes(&e)))?;
    owner.migrate_with(options).await.map_err(|e| unavailable("migrating", &owner_url, with_causes(&e)))?;
    let login = application_login(&owner_url, Server::Postgres).await?;
    owner
        .grant_application_role(login.name())
        .await
        .map_err(|e| unavailable("granting on", &owner_url, with_causes(&e)))?;
    owner.pool().close().await;
    Ok(RoleSplit { owner_url, login, _database: database })
}

/// A pool of `connections` to `url` (the runner opens up to eight cases at
/// once, and a server's connection limit bounds them all together).
#[cfg(feature = "postgres")]
async fn postgres_pool(url: &str, connections: u32) -> Result<governance_postgres::sqlx::PgPool, SetupError> {
    governance_postgres::sqlx::postgres::PgPoolOptions::new()
        .max_connections(connections)
        .connect(url)
        .await
        .map_err(|e| unavailable("PostgreSQL at", url, with_causes(&e)))
}

/// The sqlx provider's roll-up of the hourly decision counts, for the
/// suite's [`CountRollUp`](conformance_tests::CountRollUp) hook.
#[cfg(feature = "postgres")]
struct PostgresRollUp(governance_postgres::PostgresStore);

#[cfg(feature = "postgres")]
#[async_trait]
impl conformance_tests::CountRollUp for PostgresRollUp {
    async fn roll_up(&self, workspace: &governance_abstractions::WorkspaceId) -> Result<u64, String> {
        self.0.roll_up_counts(workspace).await.map_err(|e| with_causes(&e))
    }
}

/// The sqlx PostgreSQL provider (`GOVERNANCE_POSTGRES_URL`).
#[cfg(feature = "postgres")]
#[derive(Clone, Copy, Debug, Default)]
pub struct PostgresFactory;

#[cfg(feature = "postgres")]
#[async_trait]
impl StoreFactory for PostgresFactory {
    fn name(&self) -> &str {
        "postgres"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    async fn open(&self) -> Result<TestStore, SetupError> {
        use governance_postgres::testing::{PostgresRawHistory, PostgresTamper};
        static DATABASE: Shared = Shared::new();
        let lease = DATABASE.lease(postgres_role_split).await?;
        let split = lease.split().clone();
        let pool = postgres_pool(split.application_url(), 6).await?;
        let owner = postgres_pool(split.owner_url(), 1).await?;
        // As the application role: it may run the roll-up (which writes as
        // the tables' owner), never write a count.
        let store = governance_postgres::PostgresStore::new(pool);
        Ok(TestStore::new(Arc::new(store.clone()))
            .with_raw_history(Arc::new(PostgresRawHistory::new(owner.clone())))
            .with_tamper(Arc::new(PostgresTamper::new(owner)))
            .with_roll_up(Arc::new(PostgresRollUp(store)))
            .keeping(Arc::new(lease)))
    }
}

/// The sqlx PostgreSQL provider on the schema of
/// [`SchemaProfile::Distributed`](governance_postgres::SchemaProfile::Distributed),
/// migrated without the advisory lock: no triggers, so the server does not
/// refuse rewrites of the history by its owner.
#[cfg(feature = "postgres")]
#[derive(Clone, Copy, Debug, Default)]
pub struct PostgresDistributedFactory;

#[cfg(feature = "postgres")]
#[async_trait]
impl StoreFactory for PostgresDistributedFactory {
    fn name(&self) -> &str {
        "postgres-distributed-profile"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all().without(
            conformance_tests::Capability::DatabaseEnforcedAppendOnly,
            "the distributed schema profile has no triggers: the history is append-only by the application \
             role's privileges only",
        )
    }

    async fn open(&self) -> Result<TestStore, SetupError> {
        use governance_postgres::testing::PostgresTamper;
        use governance_postgres::{MigrateOptions, SchemaProfile};
        static DATABASE: Shared = Shared::new();
        let options = MigrateOptions::new(SchemaProfile::Distributed).without_locking();
        let lease = DATABASE.lease(move || postgres_role_split_with(options)).await?;
        let split = lease.split().clone();
        let pool = postgres_pool(split.application_url(), 6).await?;
        let owner = postgres_pool(split.owner_url(), 1).await?;
        let store = governance_postgres::PostgresStore::new(pool).with_profile(SchemaProfile::Distributed);
        Ok(TestStore::new(Arc::new(store)).with_tamper(Arc::new(PostgresTamper::new(owner))).keeping(Arc::new(lease)))
    }
}

#[cfg(any(feature = "seaorm-postgres", feature = "seaorm-mysql"))]
mod seaorm {
    use governance_seaorm::SeaOrmStore;
    use governance_seaorm::sea_orm::{ConnectOptions, Database};
    use governance_seaorm::testing::{SeaOrmRawHistory, SeaOrmTamper};

    use super::*;

    /// A fresh database on `server` with the SeaORM provider's schema, and
    /// its application login granted by `SeaOrmStore::grant_application_role`.
    pub async fn seaorm_role_split(server: Server) -> Result<RoleSplit, SetupError> {
        let database = fresh_test_database(&server_url(server).await?, server).await?;
        let owner_url = database.url().to_owned();
        // Two connections: the MySQL migration holds its lock on one.
        let owner = connect(&owner_url, 2).await?;
        owner.migrate().await.map_err(|e| unavailable("migrating", &owner_url, with_causes(&e)))?;
        let login = application_login(&owner_url, server).await?;
        let role = match login.host() {
            Some(host) => governance_seaorm::ApplicationRole::account(login.name(), host),
            None => governance_seaorm::ApplicationRole::new(login.name()),
        }
        .map_err(|e| unavailable("granting on", &owner_url, with_causes(&e)))?;
        let granted = owner
            .grant_application_role(&role)
            .await
            .map_err(|e| unavailable("granting on", &owner_url, with_causes(&e)))?;
        if !matches!(granted, governance_seaorm::RoleGrants::Granted(_)) {
            return Err(unavailable("granting on", &owner_url, "the backend has no roles"));
        }
        let _ = owner.connection().clone().close().await;
        Ok(RoleSplit { owner_url, login, _database: database })
    }

    /// A pool of `connections`, statement logging off.
    async fn connect(url: &str, connections: u32) -> Result<SeaOrmStore, SetupError> {
        let mut options = ConnectOptions::new(url);
        options.max_connections(connections).min_connections(0).sqlx_logging(false);
        let db = Database::connect(options).await.map_err(|e| unavailable("connecting to", url, e))?;
        Ok(SeaOrmStore::new(db))
    }

    /// SeaORM on a server (PostgreSQL or MySQL/MariaDB).
    #[derive(Debug)]
    pub struct SeaOrmServerFactory {
        name: &'static str,
        server: Server,
    }

    impl SeaOrmServerFactory {
        /// SeaORM on PostgreSQL (`GOVERNANCE_POSTGRES_URL`).
        #[cfg(feature = "seaorm-postgres")]
        pub const fn postgres() -> Self {
            Self { name: "seaorm-postgres", server: Server::Postgres }
        }

        /// SeaORM on MySQL/MariaDB (`GOVERNANCE_MYSQL_URL`).
        #[cfg(feature = "seaorm-mysql")]
        pub const fn mysql() -> Self {
            Self { name: "seaorm-mysql", server: Server::MySql }
        }

        /// This process's database and login, created on first use.
        async fn role_split(&self) -> Result<Lease, SetupError> {
            match self.server {
                #[cfg(feature = "seaorm-postgres")]
                Server::Postgres => {
                    static POSTGRES: Shared = Shared::new();
                    POSTGRES.lease(|| seaorm_role_split(self.server)).await
                }
                #[cfg(feature = "seaorm-mysql")]
                Server::MySql => {
                    static MYSQL: Shared = Shared::new();
                    MYSQL.lease(|| seaorm_role_split(self.server)).await
                }
                #[allow(unreachable_patterns)]
                _ => Err(SetupError::NotConfigured(format!("{} is not built in", self.name))),
            }
        }

        fn is_mysql(&self) -> bool {
            self.name == "seaorm-mysql"
        }
    }

    /// SeaORM's roll-up of the hourly decision counts on PostgreSQL, for the
    /// suite's [`CountRollUp`](conformance_tests::CountRollUp) hook.
    struct SeaOrmRollUp(SeaOrmStore);

    #[async_trait]
    impl conformance_tests::CountRollUp for SeaOrmRollUp {
        async fn roll_up(&self, workspace: &governance_abstractions::WorkspaceId) -> Result<u64, String> {
            self.0.roll_up_counts(workspace).await.map_err(|e| with_causes(&e))
        }
    }

    #[async_trait]
    impl StoreFactory for SeaOrmServerFactory {
        fn name(&self) -> &str {
            self.name
        }

        fn capabilities(&self) -> Capabilities {
            if self.is_mysql() {
                Capabilities::all().without(
                    conformance_tests::Capability::Tamper,
                    "lifting MySQL triggers is non-transactional DDL that would unguard the cases running beside it",
                )
            } else {
                Capabilities::all()
            }
        }

        async fn open(&self) -> Result<TestStore, SetupError> {
            let lease = self.role_split().await?;
            let split = lease.split().clone();
            let store = connect(split.application_url(), 6).await?;
            // The privileged paths connect as the owner, bypassing the store.
            let owner = connect(split.owner_url(), 1).await?.connection().clone();
            let opened = TestStore::new(Arc::new(store.clone()))
                .with_raw_history(Arc::new(SeaOrmRawHistory::new(owner.clone())));
            let opened = if self.is_mysql() {
                opened
            } else {
                // PostgreSQL keeps hourly decision counts (the shared schema):
                // the suite rolls them up as the application role.
                opened.with_tamper(Arc::new(SeaOrmTamper::new(owner))).with_roll_up(Arc::new(SeaOrmRollUp(store)))
            };
            Ok(opened.keeping(Arc::new(lease)))
        }
    }
}

#[cfg(any(feature = "seaorm-postgres", feature = "seaorm-mysql"))]
pub use seaorm::{SeaOrmServerFactory, seaorm_role_split};
