//! The conformance suite's view of this provider (feature `testing`; never
//! in production): a SQLite factory, and the privileged paths the suite's
//! append-only and tamper-evidence cases use on any backend.
//!
//! - [`SqliteFactory`]: a new database file per case;
//! - [`SeaOrmRawHistory`]: plain UPDATE, DELETE and TRUNCATE of history
//!   rows, which the database itself must refuse;
//! - [`SeaOrmTamper`]: what an attacker with the owner's rights does (lift
//!   the append-only triggers inside one transaction, change rows, put the
//!   triggers back, commit), for `verify` to catch. PostgreSQL and SQLite:
//!   lifting MySQL triggers is non-transactional DDL.
//!
//! Server-backed factories need a fresh database and an application login
//! per test process: the workspace's test support builds them from these
//! parts.
//!
//! ```
//! mod seaorm_sqlite {
//!     conformance_tests::conformance_suite!(governance_seaorm::testing::SqliteFactory);
//! }
//! # fn main() {}
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use conformance_tests::{
    Capabilities, CheckpointChange, RawHistoryAccess, SetupError, StoreFactory, TamperAccess, TestStore,
};
use governance_abstractions::{RecordId, RequestId, WorkspaceId};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, Statement, TransactionTrait, Value,
};

use crate::SeaOrmStore;

/// SeaORM on SQLite: a new database file per case, in a temporary directory.
#[derive(Clone, Copy, Debug, Default)]
pub struct SqliteFactory;

#[async_trait]
impl StoreFactory for SqliteFactory {
    fn name(&self) -> &str {
        "seaorm-sqlite"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    async fn open(&self) -> Result<TestStore, SetupError> {
        let dir = tempfile::tempdir().map_err(|e| SetupError::Unavailable(format!("temporary directory: {e}")))?;
        let store = SeaOrmStore::open_sqlite(dir.path().join("governance.db"))
            .await
            .map_err(|e| SetupError::Unavailable(format!("SQLite: {e}")))?;
        let raw = Arc::new(SeaOrmRawHistory::new(store.connection().clone()));
        let tamper = Arc::new(SeaOrmTamper::new(store.connection().clone()));
        Ok(TestStore::new(Arc::new(store)).with_raw_history(raw).with_tamper(tamper).keeping(Arc::new(dir)))
    }
}

/// A statement from `sql` written with `?` placeholders, numbered `$1, $2, …`
/// on PostgreSQL (hand-written test statements are written once, `?`-style).
pub fn statement(backend: DbBackend, sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
    let sql = if backend == DbBackend::Postgres {
        let mut n = 0;
        let mut out = String::with_capacity(sql.len() + 16);
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(c);
            }
        }
        out
    } else {
        sql.to_owned()
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// Plain SQL against the history table, bypassing the store: connect it as
/// the tables' owner.
#[derive(Clone, Debug)]
pub struct SeaOrmRawHistory(DatabaseConnection);

impl SeaOrmRawHistory {
    /// Raw access over `owner`.
    pub fn new(owner: DatabaseConnection) -> Self {
        Self(owner)
    }

    fn statement(&self, sql: &str, workspace: &WorkspaceId, id: RecordId) -> Statement {
        statement(self.0.get_database_backend(), sql, key(workspace, id))
    }

    /// Whether the connection is to a Galera node that replicates its
    /// writes, and may run a statement unreplicated (`wsrep_on` is set by
    /// a privileged owner only).
    async fn on_galera(&self) -> bool {
        let probe = Statement::from_string(DbBackend::MySql, "SET STATEMENT wsrep_on = 0 FOR SELECT @@wsrep_on AS w");
        let replicating = Statement::from_string(DbBackend::MySql, "SELECT @@wsrep_on AS w");
        let flag = |row: Option<sea_orm::QueryResult>| row.and_then(|r| r.try_get::<i64>("", "w").ok());
        match (self.0.query_one_raw(replicating).await, self.0.query_one_raw(probe).await) {
            (Ok(on), Ok(off)) => flag(on) == Some(1) && flag(off) == Some(0),
            _ => false,
        }
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
impl RawHistoryAccess for SeaOrmRawHistory {
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
            DbBackend::MySql if self.on_galera().await => {
                // Galera runs DDL on every node at once, in isolation: a
                // TRUNCATE aborts every write in flight on the table and,
                // under load, has wedged a node's commits for minutes. The
                // guard is the same on every node, so it is tried on this
                // one only (never replicated; were the guard missing, only
                // this node would lose rows, and the case fails anyway).
                // `wsrep_on` may not change inside a transaction, and
                // TRUNCATE commits on its own whatever surrounds it.
                let sql = "SET STATEMENT wsrep_on = 0 FOR TRUNCATE TABLE governance_history";
                return self.0.execute_unprepared(sql).await.map(drop).map_err(|e| e.to_string());
            }
            _ => "TRUNCATE TABLE governance_history",
        };
        self.run(Statement::from_string(backend, sql)).await
    }
}

/// What a request's intent is changed to behind the store.
const EDITED_INTENT: &str = "edited behind the store";

/// Lifted in this order whatever the change, so two tamperings never deadlock.
const GUARDED_TABLES: [&str; 3] = ["governance_history", "governance_checkpoints", "governance_seals"];

/// The tamper path over the owner's connection (PostgreSQL: triggers
/// disabled inside the transaction; SQLite: dropped and re-created inside
/// it). Other sessions never see the tables unguarded.
#[derive(Clone, Debug)]
pub struct SeaOrmTamper(DatabaseConnection);

impl SeaOrmTamper {
    /// Tampering over `owner` (PostgreSQL or SQLite).
    pub fn new(owner: DatabaseConnection) -> Self {
        Self(owner)
    }

    fn backend(&self) -> DbBackend {
        self.0.get_database_backend()
    }

    fn statement(&self, sql: &str, values: Vec<Value>) -> Statement {
        statement(self.backend(), sql, values)
    }

    /// Runs `changes` with the guards of `tables` lifted, and commits.
    async fn unguarded(&self, tables: &[&str], changes: Vec<Statement>) -> Result<(), String> {
        let txn = self.0.begin().await.map_err(|e| e.to_string())?;
        match lift_guards_and_run(&txn, self.backend(), tables, changes).await {
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

async fn lift_guards_and_run(
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
            let sql = format!("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = '{table}'");
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

fn key(workspace: &WorkspaceId, id: RecordId) -> Vec<Value> {
    vec![Value::from(workspace.as_str()), Value::from(id.as_uuid())]
}

fn seq_key(workspace: &WorkspaceId, seq: u64) -> Vec<Value> {
    vec![Value::from(workspace.as_str()), Value::from(seq as i64)]
}

#[async_trait]
impl TamperAccess for SeaOrmTamper {
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

    async fn reassign_actor(&self, workspace: &WorkspaceId, id: RecordId, actor_id: &str) -> Result<(), String> {
        let sql = "UPDATE governance_history SET actor_kind = 'user', actor_id = ? WHERE workspace_id = ? AND id = ?";
        let mut values = vec![Value::from(actor_id)];
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

    async fn delete_checkpoint(&self, workspace: &WorkspaceId, seq: u64) -> Result<(), String> {
        let seals = "DELETE FROM governance_seals WHERE workspace_id = ? AND checkpoint_seq = ?";
        let checkpoint = "DELETE FROM governance_checkpoints WHERE workspace_id = ? AND seq = ?";
        let changes =
            vec![self.statement(seals, seq_key(workspace, seq)), self.statement(checkpoint, seq_key(workspace, seq))];
        self.unguarded(&["governance_checkpoints", "governance_seals"], changes).await
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
}
