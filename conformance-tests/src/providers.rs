//! The providers this workspace ships, as suite factories. The runner tries
//! them in this order: embedded ones first.

use std::sync::Arc;

use async_trait::async_trait;
use governance_abstractions::{RecordId, RequestId, WorkspaceId};
use governance_memory::MemoryStore;
use governance_seaorm::SeaOrmStore;
use governance_seaorm::sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait, Value};
use tokio::sync::OnceCell;

use crate::databases::{
    Login, MYSQL_URL_ENV, POSTGRES_URL_ENV, application_login, fresh_database, redacted, server_url, statement,
};
use crate::harness::{
    Capabilities, Capability, CheckpointChange, RawHistoryAccess, SetupError, StoreFactory, TamperAccess, TestStore,
};

/// The in-memory provider: a new store per case.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryFactory;

#[async_trait]
impl StoreFactory for MemoryFactory {
    fn name(&self) -> &str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
            .without(
                Capability::DatabaseEnforcedAppendOnly,
                "in-process store: history has no update or delete path at all",
            )
            .without(Capability::CorruptRows, MEMORY_HOLDS_TYPED_VALUES)
    }

    async fn open(&self) -> Result<TestStore, SetupError> {
        let store = MemoryStore::new();
        Ok(TestStore::new(Arc::new(store.clone())).with_tamper(Arc::new(MemoryTamper(store))))
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
        let tamper = Arc::new(SqlTamper(store.connection().clone()));
        Ok(TestStore::new(Arc::new(store)).with_raw_history(raw).with_tamper(tamper).keeping(Arc::new(dir)))
    }
}

/// A fresh database migrated by its owner (the server URL's user), and an
/// application login granted with the provider's own
/// `grant_application_role`: the store under test connects as the login;
/// only the privileged test paths (tamper, raw history) use the owner.
#[derive(Clone)]
pub struct RoleSplit {
    owner_url: String,
    login: Login,
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

/// Why a database is unavailable, with the error's causes (never a password:
/// the URL is redacted).
fn unavailable(what: &str, url: &str, error: impl std::fmt::Display) -> SetupError {
    let redacted = redacted(url);
    // Some driver errors quote the URL they were given.
    let error = error.to_string().replace(url, &redacted);
    SetupError::Unavailable(format!("{what} {redacted}: {error}"))
}

/// `error` with its chain of causes.
fn with_causes(error: &dyn std::error::Error) -> String {
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
pub async fn postgres_role_split() -> Result<RoleSplit, SetupError> {
    let owner_url = fresh_database(&server_url(POSTGRES_URL_ENV).await?, DbBackend::Postgres).await?;
    let owner = governance_postgres::PostgresStore::connect(&owner_url)
        .await
        .map_err(|e| unavailable("PostgreSQL at", &owner_url, with_causes(&e)))?;
    owner.migrate().await.map_err(|e| unavailable("migrating", &owner_url, with_causes(&e)))?;
    let login = application_login(&owner_url, DbBackend::Postgres).await?;
    owner
        .grant_application_role(login.name())
        .await
        .map_err(|e| unavailable("granting on", &owner_url, with_causes(&e)))?;
    owner.pool().close().await;
    Ok(RoleSplit { owner_url, login })
}

/// A fresh database on the server of `backend` (`GOVERNANCE_POSTGRES_URL`
/// or `GOVERNANCE_MYSQL_URL`) with the SeaORM provider's schema, and its
/// application login granted by `SeaOrmStore::grant_application_role`.
pub async fn seaorm_role_split(backend: DbBackend) -> Result<RoleSplit, SetupError> {
    let variable = if backend == DbBackend::Postgres { POSTGRES_URL_ENV } else { MYSQL_URL_ENV };
    let owner_url = fresh_database(&server_url(variable).await?, backend).await?;
    // Two connections: the MySQL migration holds its lock on one.
    let owner = connect_with(&owner_url, backend, 2).await?;
    owner.migrate().await.map_err(|e| unavailable("migrating", &owner_url, with_causes(&e)))?;
    let login = application_login(&owner_url, backend).await?;
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
    Ok(RoleSplit { owner_url, login })
}

/// SeaORM on a server (PostgreSQL or MySQL/MariaDB) named by an environment
/// variable: one fresh database per process, migrated by its owner; each
/// case opens a pool as the application role (see [`RoleSplit`]).
#[derive(Debug)]
pub struct SeaOrmServerFactory {
    name: &'static str,
    backend: DbBackend,
}

impl SeaOrmServerFactory {
    /// SeaORM on PostgreSQL (`GOVERNANCE_POSTGRES_URL`).
    pub const fn postgres() -> Self {
        Self { name: "seaorm-postgres", backend: DbBackend::Postgres }
    }

    /// SeaORM on MySQL/MariaDB (`GOVERNANCE_MYSQL_URL`).
    pub const fn mysql() -> Self {
        Self { name: "seaorm-mysql", backend: DbBackend::MySql }
    }

    /// This process's database and login, created on first use.
    async fn role_split(&self) -> Result<RoleSplit, SetupError> {
        static POSTGRES: OnceCell<Result<RoleSplit, SetupError>> = OnceCell::const_new();
        static MYSQL: OnceCell<Result<RoleSplit, SetupError>> = OnceCell::const_new();
        let cell = if self.backend == DbBackend::Postgres { &POSTGRES } else { &MYSQL };
        cell.get_or_init(|| seaorm_role_split(self.backend)).await.clone()
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
    let db = Database::connect(options).await.map_err(|e| unavailable(&format!("{backend:?} at"), url, e))?;
    Ok(SeaOrmStore::new(db))
}

#[async_trait]
impl StoreFactory for SeaOrmServerFactory {
    fn name(&self) -> &str {
        self.name
    }

    fn capabilities(&self) -> Capabilities {
        if self.backend == DbBackend::MySql {
            Capabilities::all().without(
                Capability::Tamper,
                "lifting MySQL triggers is non-transactional DDL that would unguard the cases running beside it",
            )
        } else {
            Capabilities::all()
        }
    }

    async fn open(&self) -> Result<TestStore, SetupError> {
        let split = self.role_split().await?;
        let store = connect(split.application_url(), self.backend).await?;
        // The privileged paths connect as the owner, bypassing the store.
        let owner = connect_with(split.owner_url(), self.backend, 1).await?.connection().clone();
        let opened = TestStore::new(Arc::new(store)).with_raw_history(Arc::new(SqlRawHistory(owner.clone())));
        Ok(if self.backend == DbBackend::MySql { opened } else { opened.with_tamper(Arc::new(SqlTamper(owner))) })
    }
}

/// The sqlx PostgreSQL provider (`GOVERNANCE_POSTGRES_URL`): one fresh
/// database per process, migrated by its owner; each case opens a pool as
/// the application role (see [`RoleSplit`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct PostgresFactory;

impl PostgresFactory {
    async fn role_split(&self) -> Result<RoleSplit, SetupError> {
        static DATABASE: OnceCell<Result<RoleSplit, SetupError>> = OnceCell::const_new();
        DATABASE.get_or_init(postgres_role_split).await.clone()
    }
}

#[async_trait]
impl StoreFactory for PostgresFactory {
    fn name(&self) -> &str {
        "postgres"
    }

    async fn open(&self) -> Result<TestStore, SetupError> {
        let split = self.role_split().await?;
        let pool = governance_postgres::sqlx::postgres::PgPoolOptions::new()
            .max_connections(6)
            .connect(split.application_url())
            .await
            .map_err(|e| unavailable("PostgreSQL at", split.application_url(), with_causes(&e)))?;
        // The privileged paths connect as the owner, bypassing the store.
        let side = connect_with(split.owner_url(), DbBackend::Postgres, 1).await?.connection().clone();
        Ok(TestStore::new(Arc::new(governance_postgres::PostgresStore::new(pool)))
            .with_raw_history(Arc::new(SqlRawHistory(side.clone())))
            .with_tamper(Arc::new(SqlTamper(side))))
    }
}

/// Plain SQL against the history table, bypassing the store.
struct SqlRawHistory(DatabaseConnection);

impl SqlRawHistory {
    fn statement(&self, sql: &str, workspace: &WorkspaceId, id: RecordId) -> Statement {
        statement(self.0.get_database_backend(), sql, key(workspace, id))
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

/// The memory provider's raw storage, changed directly.
struct MemoryTamper(MemoryStore);

#[async_trait]
impl TamperAccess for MemoryTamper {
    async fn alter_record(
        &self,
        workspace: &WorkspaceId,
        id: RecordId,
        content_hash: Option<String>,
    ) -> Result<(), String> {
        let found = self.0.tamper(workspace, |t| {
            t.rewrite_record(id, |evidence, hash| {
                evidence.reason = Some("tampered".into());
                if let Some(content_hash) = content_hash {
                    *hash = content_hash;
                }
            })
        });
        found.then_some(()).ok_or_else(|| format!("no record {id}"))
    }

    async fn delete_record(&self, workspace: &WorkspaceId, id: RecordId) -> Result<(), String> {
        self.0.tamper(workspace, |t| t.delete_record(id)).then_some(()).ok_or_else(|| format!("no record {id}"))
    }

    async fn copy_record(&self, from: &WorkspaceId, id: RecordId, to: &WorkspaceId) -> Result<(), String> {
        use governance_abstractions::HistoryReader;
        let record = self.0.get_history_record(from, id).await.map_err(|e| e.to_string())?;
        let mut evidence = record.evidence().clone();
        evidence.workspace_id = to.clone();
        let copy = governance_abstractions::provider::decode_record(
            record.id(),
            record.created_at(),
            evidence,
            record.content_hash().to_owned(),
        );
        self.0.tamper(to, |t| t.insert_record(copy));
        Ok(())
    }

    async fn alter_checkpoint(
        &self,
        workspace: &WorkspaceId,
        seq: u64,
        change: CheckpointChange,
    ) -> Result<(), String> {
        let found = self.0.tamper(workspace, |t| {
            t.edit_checkpoint(seq, |c| {
                c.root = change.root.unwrap_or_else(|| c.root.clone());
                c.previous = change.previous.or_else(|| c.previous.clone());
                c.digest = change.digest.unwrap_or_else(|| c.digest.clone());
            })
        });
        found.then_some(()).ok_or_else(|| format!("no checkpoint {seq}"))
    }

    async fn delete_checkpoint(&self, workspace: &WorkspaceId, seq: u64) -> Result<(), String> {
        self.0
            .tamper(workspace, |t| {
                t.delete_seals_of(seq);
                t.delete_checkpoint(seq)
            })
            .then_some(())
            .ok_or_else(|| format!("no checkpoint {seq}"))
    }

    async fn alter_request(&self, workspace: &WorkspaceId, id: RequestId) -> Result<(), String> {
        let found = self.0.tamper(workspace, |t| t.edit_request(id, |r| r.spec.intent = EDITED_INTENT.into()));
        found.then_some(()).ok_or_else(|| format!("no request {id}"))
    }

    async fn clear_state_digest(&self, workspace: &WorkspaceId, id: RequestId) -> Result<(), String> {
        let found = self.0.tamper(workspace, |t| t.edit_request(id, |r| r.state_digest = None));
        found.then_some(()).ok_or_else(|| format!("no request {id}"))
    }

    async fn alter_seal(&self, workspace: &WorkspaceId, index: u64, content_hash: String) -> Result<(), String> {
        let found = self.0.tamper(workspace, |t| t.edit_seal(index, |entry| entry.content_hash = content_hash));
        found.then_some(()).ok_or_else(|| format!("no seal entry {index}"))
    }

    async fn corrupt_record(&self, _: &WorkspaceId, _: RecordId) -> Result<(), String> {
        Err(MEMORY_HOLDS_TYPED_VALUES.into())
    }
}

/// What a request's intent is changed to behind the store.
const EDITED_INTENT: &str = "edited behind the store";

const MEMORY_HOLDS_TYPED_VALUES: &str = "in-process store: it holds typed values, so no row can fail to decode";

/// What an attacker with the database owner's rights does: lift the
/// append-only triggers inside one transaction (PostgreSQL: disable them;
/// SQLite: drop them), change rows, put the triggers back, commit. Other
/// sessions never see the tables unguarded.
struct SqlTamper(DatabaseConnection);

/// Lifted in this order whatever the change, so two tamperings never deadlock.
const GUARDED_TABLES: [&str; 3] = ["governance_history", "governance_checkpoints", "governance_seals"];

impl SqlTamper {
    fn backend(&self) -> DbBackend {
        self.0.get_database_backend()
    }

    fn statement(&self, sql: &str, values: Vec<Value>) -> Statement {
        statement(self.backend(), sql, values)
    }

    /// Runs `changes` with the guards of `tables` lifted, and commits.
    async fn unguarded(&self, tables: &[&str], changes: Vec<Statement>) -> Result<(), String> {
        use governance_seaorm::sea_orm::{DatabaseTransaction, DbErr};
        async fn run(
            txn: &DatabaseTransaction,
            backend: DbBackend,
            tables: &[&str],
            changes: Vec<Statement>,
        ) -> Result<(), DbErr> {
            let mut restore = Vec::new();
            for table in GUARDED_TABLES.iter().filter(|t| tables.contains(t)) {
                if backend == DbBackend::Postgres {
                    let sql = format!(
                        "SELECT tgname AS name, tgenabled::text AS mode FROM pg_trigger \
                         WHERE tgrelid = '{table}'::regclass AND NOT tgisinternal"
                    );
                    for row in txn.query_all_raw(Statement::from_string(backend, sql)).await? {
                        let (name, mode): (String, String) = (row.try_get("", "name")?, row.try_get("", "mode")?);
                        txn.execute_unprepared(&format!("ALTER TABLE {table} DISABLE TRIGGER {name}")).await?;
                        let enable = match mode.as_str() {
                            "A" => "ENABLE ALWAYS",
                            "R" => "ENABLE REPLICA",
                            "D" => continue,
                            _ => "ENABLE",
                        };
                        restore.push(format!("ALTER TABLE {table} {enable} TRIGGER {name}"));
                    }
                } else {
                    let sql =
                        format!("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = '{table}'");
                    for row in txn.query_all_raw(Statement::from_string(backend, sql)).await? {
                        let (name, create): (String, String) = (row.try_get("", "name")?, row.try_get("", "sql")?);
                        txn.execute_unprepared(&format!("DROP TRIGGER {name}")).await?;
                        restore.push(create);
                    }
                }
            }
            for change in changes {
                txn.execute_raw(change).await?;
            }
            for sql in restore {
                txn.execute_unprepared(&sql).await?;
            }
            Ok(())
        }
        let txn = self.0.begin().await.map_err(|e| e.to_string())?;
        match run(&txn, self.backend(), tables, changes).await {
            Ok(()) => txn.commit().await.map_err(|e| e.to_string()),
            Err(error) => {
                let _ = txn.rollback().await;
                Err(error.to_string())
            }
        }
    }

    /// The history table's columns, in order.
    async fn history_columns(&self) -> Result<Vec<String>, String> {
        let sql = if self.backend() == DbBackend::Postgres {
            "SELECT column_name::text AS name FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'governance_history' ORDER BY ordinal_position"
        } else {
            "SELECT name FROM pragma_table_info('governance_history') ORDER BY cid"
        };
        let rows =
            self.0.query_all_raw(Statement::from_string(self.backend(), sql)).await.map_err(|e| e.to_string())?;
        rows.iter().map(|row| row.try_get::<String>("", "name").map_err(|e| e.to_string())).collect()
    }
}

fn key(workspace: &WorkspaceId, id: RecordId) -> Vec<Value> {
    vec![Value::from(workspace.as_str()), Value::from(id.as_uuid())]
}

fn seq_key(workspace: &WorkspaceId, seq: u64) -> Vec<Value> {
    vec![Value::from(workspace.as_str()), Value::from(seq as i64)]
}

#[async_trait]
impl TamperAccess for SqlTamper {
    async fn alter_record(
        &self,
        workspace: &WorkspaceId,
        id: RecordId,
        content_hash: Option<String>,
    ) -> Result<(), String> {
        let sql = "UPDATE governance_history SET reason = 'tampered', content_hash = COALESCE(?, content_hash) \
                   WHERE workspace_id = ? AND id = ?";
        let mut values = vec![Value::from(content_hash)];
        values.extend(key(workspace, id));
        self.unguarded(&["governance_history"], vec![self.statement(sql, values)]).await
    }

    async fn delete_record(&self, workspace: &WorkspaceId, id: RecordId) -> Result<(), String> {
        let sql = "DELETE FROM governance_history WHERE workspace_id = ? AND id = ?";
        self.unguarded(&["governance_history"], vec![self.statement(sql, key(workspace, id))]).await
    }

    async fn copy_record(&self, from: &WorkspaceId, id: RecordId, to: &WorkspaceId) -> Result<(), String> {
        let columns = self.history_columns().await?;
        let selected: Vec<&str> = columns.iter().map(|c| if c == "workspace_id" { "?" } else { c.as_str() }).collect();
        let sql = format!(
            "INSERT INTO governance_history ({}) SELECT {} FROM governance_history WHERE workspace_id = ? AND id = ?",
            columns.join(", "),
            selected.join(", ")
        );
        let mut values = vec![Value::from(to.as_str())];
        values.extend(key(from, id));
        // Inserting needs no lifted guard: the store's own checks are bypassed by writing SQL.
        self.unguarded(&[], vec![self.statement(&sql, values)]).await
    }

    async fn alter_checkpoint(
        &self,
        workspace: &WorkspaceId,
        seq: u64,
        change: CheckpointChange,
    ) -> Result<(), String> {
        let sql = "UPDATE governance_checkpoints SET root = COALESCE(?, root), previous = COALESCE(?, previous), \
                   digest = COALESCE(?, digest) WHERE workspace_id = ? AND seq = ?";
        let mut values = vec![Value::from(change.root), Value::from(change.previous), Value::from(change.digest)];
        values.extend(seq_key(workspace, seq));
        self.unguarded(&["governance_checkpoints"], vec![self.statement(sql, values)]).await
    }

    async fn alter_request(&self, workspace: &WorkspaceId, id: RequestId) -> Result<(), String> {
        let sql = "UPDATE governance_requests SET intent = ? WHERE workspace_id = ? AND id = ?";
        let values = vec![Value::from(EDITED_INTENT), Value::from(workspace.as_str()), Value::from(id.as_uuid())];
        self.unguarded(&[], vec![self.statement(sql, values)]).await
    }

    async fn clear_state_digest(&self, workspace: &WorkspaceId, id: RequestId) -> Result<(), String> {
        let sql = "UPDATE governance_requests SET state_digest = NULL WHERE workspace_id = ? AND id = ?";
        let values = vec![Value::from(workspace.as_str()), Value::from(id.as_uuid())];
        self.unguarded(&[], vec![self.statement(sql, values)]).await
    }

    async fn alter_seal(&self, workspace: &WorkspaceId, index: u64, content_hash: String) -> Result<(), String> {
        let sql = "UPDATE governance_seals SET content_hash = ? WHERE workspace_id = ? AND leaf_index = ?";
        let mut values = vec![Value::from(content_hash)];
        values.extend(seq_key(workspace, index));
        self.unguarded(&["governance_seals"], vec![self.statement(sql, values)]).await
    }

    async fn corrupt_record(&self, workspace: &WorkspaceId, id: RecordId) -> Result<(), String> {
        // No provider writes this category: the row no longer decodes.
        let sql = "UPDATE governance_history SET category = 'no-such-category' WHERE workspace_id = ? AND id = ?";
        self.unguarded(&["governance_history"], vec![self.statement(sql, key(workspace, id))]).await
    }

    async fn delete_checkpoint(&self, workspace: &WorkspaceId, seq: u64) -> Result<(), String> {
        let seals = "DELETE FROM governance_seals WHERE workspace_id = ? AND checkpoint_seq = ?";
        let checkpoint = "DELETE FROM governance_checkpoints WHERE workspace_id = ? AND seq = ?";
        let changes =
            vec![self.statement(seals, seq_key(workspace, seq)), self.statement(checkpoint, seq_key(workspace, seq))];
        self.unguarded(&["governance_checkpoints", "governance_seals"], changes).await
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
