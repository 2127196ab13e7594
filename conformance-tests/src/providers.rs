//! The providers this workspace ships, as suite factories. The runner tries
//! them in this order: embedded ones first.

use std::sync::Arc;

use async_trait::async_trait;
use governance_abstractions::{RecordId, WorkspaceId};
use governance_memory::MemoryStore;
use governance_seaorm::SeaOrmStore;
use governance_seaorm::sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait, Value};
use tokio::sync::OnceCell;

use crate::databases::{MYSQL_URL_ENV, POSTGRES_URL_ENV, fresh_database, server_url};
use crate::harness::{Capabilities, Capability, RawHistoryAccess, SetupError, StoreFactory, TestStore};

/// The in-memory provider: a new store per case.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryFactory;

#[async_trait]
impl StoreFactory for MemoryFactory {
    fn name(&self) -> &str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all().without(
            Capability::DatabaseEnforcedAppendOnly,
            "in-process store: history has no update or delete path at all",
        )
    }

    async fn open(&self) -> Result<TestStore, SetupError> {
        Ok(TestStore::new(Arc::new(MemoryStore::new())))
    }
}

/// SeaORM on SQLite: a new database file per case, in a temporary directory.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeaOrmSqliteFactory;

#[async_trait]
impl StoreFactory for SeaOrmSqliteFactory {
    fn name(&self) -> &str {
        "seaorm-sqlite"
    }

    async fn open(&self) -> Result<TestStore, SetupError> {
        let dir = tempfile::tempdir().map_err(|e| SetupError::Unavailable(format!("temporary directory: {e}")))?;
        let store = SeaOrmStore::open_sqlite(dir.path().join("governance.db"))
            .await
            .map_err(|e| SetupError::Unavailable(format!("SQLite: {e}")))?;
        let raw = Arc::new(SqlRawHistory(store.connection().clone()));
        Ok(TestStore::new(Arc::new(store)).with_raw_history(raw).keeping(Arc::new(dir)))
    }
}

/// SeaORM on a server (PostgreSQL or MySQL/MariaDB) named by an environment
/// variable: one fresh, migrated database per process, a pool per case.
#[derive(Debug)]
pub struct SeaOrmServerFactory {
    name: &'static str,
    variable: &'static str,
    backend: DbBackend,
}

impl SeaOrmServerFactory {
    /// SeaORM on PostgreSQL (`GOVERNANCE_POSTGRES_URL`).
    pub const fn postgres() -> Self {
        Self { name: "seaorm-postgres", variable: POSTGRES_URL_ENV, backend: DbBackend::Postgres }
    }

    /// SeaORM on MySQL/MariaDB (`GOVERNANCE_MYSQL_URL`).
    pub const fn mysql() -> Self {
        Self { name: "seaorm-mysql", variable: MYSQL_URL_ENV, backend: DbBackend::MySql }
    }

    /// This process's database, created and migrated on first use.
    async fn database_url(&self) -> Result<String, SetupError> {
        static POSTGRES: OnceCell<Result<String, SetupError>> = OnceCell::const_new();
        static MYSQL: OnceCell<Result<String, SetupError>> = OnceCell::const_new();
        let cell = if self.backend == DbBackend::Postgres { &POSTGRES } else { &MYSQL };
        cell.get_or_init(|| async {
            let server = server_url(self.variable).await?;
            let url = fresh_database(&server, self.backend).await?;
            let store = connect(&url, self.backend).await?;
            store.migrate().await.map_err(|e| SetupError::Unavailable(format!("migrating {url}: {e}")))?;
            let _ = store.connection().clone().close().await;
            Ok(url)
        })
        .await
        .clone()
    }
}

/// A small pool per case: the runner opens up to eight cases at once, and a
/// server's connection limit (PostgreSQL: 100) bounds them all together.
async fn connect(url: &str, backend: DbBackend) -> Result<SeaOrmStore, SetupError> {
    connect_with(url, backend, 6).await
}

async fn connect_with(url: &str, backend: DbBackend, connections: u32) -> Result<SeaOrmStore, SetupError> {
    use governance_seaorm::sea_orm::{ConnectOptions, Database};
    let mut options = ConnectOptions::new(url);
    options.max_connections(connections).min_connections(0).sqlx_logging(false);
    let db =
        Database::connect(options).await.map_err(|e| SetupError::Unavailable(format!("{backend:?} at {url}: {e}")))?;
    Ok(SeaOrmStore::new(db))
}

#[async_trait]
impl StoreFactory for SeaOrmServerFactory {
    fn name(&self) -> &str {
        self.name
    }

    async fn open(&self) -> Result<TestStore, SetupError> {
        let url = self.database_url().await?;
        let store = connect(&url, self.backend).await?;
        let raw = Arc::new(SqlRawHistory(store.connection().clone()));
        Ok(TestStore::new(Arc::new(store)).with_raw_history(raw))
    }
}

/// The sqlx PostgreSQL provider (`GOVERNANCE_POSTGRES_URL`): one fresh,
/// migrated database per process, a pool per case.
#[derive(Clone, Copy, Debug, Default)]
pub struct PostgresFactory;

impl PostgresFactory {
    async fn database_url(&self) -> Result<String, SetupError> {
        static DATABASE: OnceCell<Result<String, SetupError>> = OnceCell::const_new();
        DATABASE
            .get_or_init(|| async {
                let url = fresh_database(&server_url(POSTGRES_URL_ENV).await?, DbBackend::Postgres).await?;
                let store = governance_postgres::PostgresStore::connect(&url)
                    .await
                    .map_err(|e| SetupError::Unavailable(format!("PostgreSQL at {url}: {e}")))?;
                store.migrate().await.map_err(|e| SetupError::Unavailable(format!("migrating {url}: {e}")))?;
                store.pool().close().await;
                Ok(url)
            })
            .await
            .clone()
    }
}

#[async_trait]
impl StoreFactory for PostgresFactory {
    fn name(&self) -> &str {
        "postgres"
    }

    async fn open(&self) -> Result<TestStore, SetupError> {
        let url = self.database_url().await?;
        let pool = governance_postgres::sqlx::postgres::PgPoolOptions::new()
            .max_connections(6)
            .connect(&url)
            .await
            .map_err(|e| SetupError::Unavailable(format!("PostgreSQL at {url}: {e}")))?;
        // Raw access goes through its own connection, bypassing the store.
        let raw = Arc::new(SqlRawHistory(connect_with(&url, DbBackend::Postgres, 1).await?.connection().clone()));
        Ok(TestStore::new(Arc::new(governance_postgres::PostgresStore::new(pool))).with_raw_history(raw))
    }
}

/// Plain SQL against the history table, bypassing the store.
struct SqlRawHistory(DatabaseConnection);

impl SqlRawHistory {
    fn statement(&self, sql: &str, workspace: &WorkspaceId, id: RecordId) -> Statement {
        let backend = self.0.get_database_backend();
        let sql = if backend == DbBackend::Postgres {
            sql.replacen('?', "$1", 1).replacen('?', "$2", 1)
        } else {
            sql.to_owned()
        };
        Statement::from_sql_and_values(backend, sql, [Value::from(workspace.as_str()), Value::from(id.as_uuid())])
    }

    /// Runs `statement`; on PostgreSQL under `session_replication_role =
    /// replica`, which skips ordinary triggers: the guard must hold anyway.
    async fn run(&self, statement: Statement) -> Result<(), String> {
        let txn = self.0.begin().await.map_err(|e| e.to_string())?;
        if self.0.get_database_backend() == DbBackend::Postgres {
            txn.execute_unprepared("SET LOCAL session_replication_role = replica").await.map_err(|e| e.to_string())?;
        }
        let outcome = txn.execute_raw(statement).await.map_err(|e| e.to_string());
        // Whatever happened, keep nothing.
        let _ = txn.rollback().await;
        outcome.map(drop)
    }
}

#[async_trait]
impl RawHistoryAccess for SqlRawHistory {
    async fn try_update(&self, workspace: &WorkspaceId, id: RecordId) -> Result<(), String> {
        let sql = "UPDATE governance_history SET reason = 'tampered' WHERE workspace_id = ? AND id = ?";
        self.run(self.statement(sql, workspace, id)).await
    }

    async fn try_delete(&self, workspace: &WorkspaceId, id: RecordId) -> Result<(), String> {
        self.run(self.statement("DELETE FROM governance_history WHERE workspace_id = ? AND id = ?", workspace, id))
            .await
    }

    async fn try_truncate(&self) -> Result<(), String> {
        let backend = self.0.get_database_backend();
        let sql = match backend {
            DbBackend::Sqlite => "DELETE FROM governance_history",
            _ => "TRUNCATE TABLE governance_history",
        };
        self.run(Statement::from_string(backend, sql)).await
    }
}

/// Every provider factory, embedded ones first.
pub fn all() -> Vec<Arc<dyn StoreFactory>> {
    vec![
        Arc::new(MemoryFactory),
        Arc::new(SeaOrmSqliteFactory),
        Arc::new(PostgresFactory),
        Arc::new(SeaOrmServerFactory::postgres()),
        Arc::new(SeaOrmServerFactory::mysql()),
    ]
}
