//! The conformance suite's view of this provider (feature `testing`; never
//! in production): the privileged paths its append-only and
//! tamper-evidence cases use, over a pool connected as the tables' owner.
//!
//! - [`PostgresRawHistory`]: plain UPDATE, DELETE and TRUNCATE of history
//!   rows (under `session_replication_role = replica`, which skips ordinary
//!   triggers), which the server must refuse;
//! - [`PostgresTamper`]: what an attacker with the owner's rights does
//!   (disable the append-only triggers inside one transaction, change rows,
//!   re-enable them, commit), for `verify` to catch. Other sessions never see
//!   the tables unguarded.
//!
//! A factory needs a fresh database per test process: the workspace's test
//! support builds one from these parts and [`PostgresStore`](crate::PostgresStore).

use async_trait::async_trait;
use conformance_tests::{CheckpointChange, RawHistoryAccess, TamperAccess};
use governance_abstractions::{RecordId, RequestId, WorkspaceId};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

/// Plain SQL against the history table, bypassing the store.
#[derive(Clone, Debug)]
pub struct PostgresRawHistory(PgPool);

impl PostgresRawHistory {
    /// Raw access over `owner`, a pool connected as the tables' owner.
    pub fn new(owner: PgPool) -> Self {
        Self(owner)
    }

    /// Runs `sql` (bound to the record's key when given) and rolls back,
    /// whatever happened: nothing is kept.
    async fn run(&self, sql: &'static str, key: Option<(&WorkspaceId, RecordId)>) -> Result<(), String> {
        let mut txn = self.0.begin().await.map_err(|e| e.to_string())?;
        sqlx::query("SET LOCAL session_replication_role = replica")
            .execute(&mut *txn)
            .await
            .map_err(|e| e.to_string())?;
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some((workspace, id)) = key {
            query = query.bind(workspace.as_str()).bind(id.as_uuid());
        }
        let outcome = query.execute(&mut *txn).await.map_err(|e| e.to_string());
        let _ = txn.rollback().await;
        outcome.map(drop)
    }
}

#[async_trait]
impl RawHistoryAccess for PostgresRawHistory {
    async fn try_update(&self, workspace: &WorkspaceId, id: RecordId) -> Result<(), String> {
        let sql = "UPDATE governance_history SET reason = 'tampered' WHERE workspace_id = $1 AND id = $2";
        self.run(sql, Some((workspace, id))).await
    }

    async fn try_delete(&self, workspace: &WorkspaceId, id: RecordId) -> Result<(), String> {
        self.run("DELETE FROM governance_history WHERE workspace_id = $1 AND id = $2", Some((workspace, id))).await
    }

    async fn try_truncate(&self) -> Result<(), String> {
        self.run("TRUNCATE TABLE governance_history", None).await
    }
}

/// What a request's intent is changed to behind the store.
const EDITED_INTENT: &str = "edited behind the store";

/// Lifted in this order whatever the change, so two tamperings never deadlock.
const GUARDED_TABLES: [&str; 3] = ["governance_history", "governance_checkpoints", "governance_seals"];

/// The tamper path over a pool connected as the tables' owner.
#[derive(Clone, Debug)]
pub struct PostgresTamper(PgPool);

/// One bound value of a tampering statement.
enum Bind {
    Text(Option<String>),
    Uuid(Uuid),
    Int(i64),
}

impl PostgresTamper {
    /// Tampering over `owner`, a pool connected as the tables' owner.
    pub fn new(owner: PgPool) -> Self {
        Self(owner)
    }

    /// Runs `changes` with the triggers of `tables` disabled, re-enables
    /// them as they were, and commits.
    async fn unguarded(&self, tables: &[&str], changes: Vec<(String, Vec<Bind>)>) -> Result<(), String> {
        let mut txn = self.0.begin().await.map_err(|e| e.to_string())?;
        match lift_guards_and_run(&mut txn, tables, changes).await {
            Ok(()) => txn.commit().await.map_err(|e| e.to_string()),
            Err(error) => {
                let _ = txn.rollback().await;
                Err(error.to_string())
            }
        }
    }
}

async fn lift_guards_and_run(
    conn: &mut PgConnection,
    tables: &[&str],
    changes: Vec<(String, Vec<Bind>)>,
) -> Result<(), sqlx::Error> {
    let mut restore = Vec::new();
    for table in GUARDED_TABLES.iter().filter(|t| tables.contains(t)) {
        let triggers = sqlx::query(
            "SELECT tgname::text AS name, tgenabled::text AS mode FROM pg_trigger \
             WHERE tgrelid = $1::regclass AND NOT tgisinternal",
        )
        .bind(*table)
        .fetch_all(&mut *conn)
        .await?;
        for row in triggers {
            let (name, mode): (String, String) = (row.try_get("name")?, row.try_get("mode")?);
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ALTER TABLE {table} DISABLE TRIGGER {name}")))
                .execute(&mut *conn)
                .await?;
            let enable = match mode.as_str() {
                "A" => "ENABLE ALWAYS",
                "R" => "ENABLE REPLICA",
                "D" => continue,
                _ => "ENABLE",
            };
            restore.push(format!("ALTER TABLE {table} {enable} TRIGGER {name}"));
        }
    }
    for (sql, binds) in changes {
        // The tampering statements are this module's own text.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for bind in binds {
            query = match bind {
                Bind::Text(text) => query.bind(text),
                Bind::Uuid(id) => query.bind(id),
                Bind::Int(n) => query.bind(n),
            };
        }
        query.execute(&mut *conn).await?;
    }
    for sql in restore {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *conn).await?;
    }
    Ok(())
}

fn text(value: impl Into<String>) -> Bind {
    Bind::Text(Some(value.into()))
}

fn record_key(workspace: &WorkspaceId, id: RecordId) -> [Bind; 2] {
    [text(workspace.as_str()), Bind::Uuid(id.as_uuid())]
}

fn seq_key(workspace: &WorkspaceId, seq: u64) -> [Bind; 2] {
    [text(workspace.as_str()), Bind::Int(seq as i64)]
}

#[async_trait]
impl TamperAccess for PostgresTamper {
    async fn alter_record(
        &self,
        workspace: &WorkspaceId,
        id: RecordId,
        content_hash: Option<String>,
    ) -> Result<(), String> {
        let sql = "UPDATE governance_history SET reason = 'tampered', content_hash = COALESCE($1, content_hash) \
                   WHERE workspace_id = $2 AND id = $3";
        let mut binds = vec![Bind::Text(content_hash)];
        binds.extend(record_key(workspace, id));
        self.unguarded(&["governance_history"], vec![(sql.into(), binds)]).await
    }

    async fn reassign_actor(&self, workspace: &WorkspaceId, id: RecordId, actor_id: &str) -> Result<(), String> {
        let sql =
            "UPDATE governance_history SET actor_kind = 'user', actor_id = $1 WHERE workspace_id = $2 AND id = $3";
        let mut binds = vec![Bind::Text(Some(actor_id.to_owned()))];
        binds.extend(record_key(workspace, id));
        self.unguarded(&["governance_history"], vec![(sql.into(), binds)]).await
    }

    async fn delete_record(&self, workspace: &WorkspaceId, id: RecordId) -> Result<(), String> {
        let sql = "DELETE FROM governance_history WHERE workspace_id = $1 AND id = $2";
        self.unguarded(&["governance_history"], vec![(sql.into(), record_key(workspace, id).into())]).await
    }

    async fn copy_record(&self, from: &WorkspaceId, id: RecordId, to: &WorkspaceId) -> Result<(), String> {
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'governance_history' ORDER BY ordinal_position",
        )
        .fetch_all(&self.0)
        .await
        .map_err(|e| e.to_string())?;
        let selected: Vec<&str> = columns.iter().map(|c| if c == "workspace_id" { "$1" } else { c.as_str() }).collect();
        let sql = format!(
            "INSERT INTO governance_history ({}) SELECT {} FROM governance_history WHERE workspace_id = $2 AND id = $3",
            columns.join(", "),
            selected.join(", ")
        );
        let mut binds = vec![text(to.as_str())];
        binds.extend(record_key(from, id));
        // Inserting needs no lifted guard: the store's own checks are bypassed by writing SQL.
        self.unguarded(&[], vec![(sql, binds)]).await
    }

    async fn alter_checkpoint(
        &self,
        workspace: &WorkspaceId,
        seq: u64,
        change: CheckpointChange,
    ) -> Result<(), String> {
        let sql = "UPDATE governance_checkpoints SET root = COALESCE($1, root), previous = COALESCE($2, previous), \
                   digest = COALESCE($3, digest) WHERE workspace_id = $4 AND seq = $5";
        let mut binds = vec![Bind::Text(change.root), Bind::Text(change.previous), Bind::Text(change.digest)];
        binds.extend(seq_key(workspace, seq));
        self.unguarded(&["governance_checkpoints"], vec![(sql.into(), binds)]).await
    }

    async fn delete_checkpoint(&self, workspace: &WorkspaceId, seq: u64) -> Result<(), String> {
        let seals = "DELETE FROM governance_seals WHERE workspace_id = $1 AND checkpoint_seq = $2";
        let checkpoint = "DELETE FROM governance_checkpoints WHERE workspace_id = $1 AND seq = $2";
        let changes =
            vec![(seals.into(), seq_key(workspace, seq).into()), (checkpoint.into(), seq_key(workspace, seq).into())];
        self.unguarded(&["governance_checkpoints", "governance_seals"], changes).await
    }

    async fn alter_request(&self, workspace: &WorkspaceId, id: RequestId) -> Result<(), String> {
        let sql = "UPDATE governance_requests SET intent = $1 WHERE workspace_id = $2 AND id = $3";
        let binds = vec![text(EDITED_INTENT), text(workspace.as_str()), Bind::Uuid(id.as_uuid())];
        self.unguarded(&[], vec![(sql.into(), binds)]).await
    }

    async fn clear_state_digest(&self, workspace: &WorkspaceId, id: RequestId) -> Result<(), String> {
        let sql = "UPDATE governance_requests SET state_digest = NULL WHERE workspace_id = $1 AND id = $2";
        let binds = vec![text(workspace.as_str()), Bind::Uuid(id.as_uuid())];
        self.unguarded(&[], vec![(sql.into(), binds)]).await
    }

    async fn alter_seal(&self, workspace: &WorkspaceId, index: u64, content_hash: String) -> Result<(), String> {
        let sql = "UPDATE governance_seals SET content_hash = $1 WHERE workspace_id = $2 AND leaf_index = $3";
        let mut binds = vec![text(content_hash)];
        binds.extend(seq_key(workspace, index));
        self.unguarded(&["governance_seals"], vec![(sql.into(), binds)]).await
    }

    async fn corrupt_record(&self, workspace: &WorkspaceId, id: RecordId) -> Result<(), String> {
        // No provider writes this category: the row no longer decodes.
        let sql = "UPDATE governance_history SET category = 'no-such-category' WHERE workspace_id = $1 AND id = $2";
        self.unguarded(&["governance_history"], vec![(sql.into(), record_key(workspace, id).into())]).await
    }
}
