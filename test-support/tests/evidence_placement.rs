//! The recorder against real providers where the suite's traits cannot
//! reach: evidence and the domain mutation in one caller transaction
//! (`Recorder::guard_in`), and servers that really do not answer. On the
//! servers the stores connect as the application role (the owner only
//! migrates, and creates the application's own table).

use std::sync::Arc;
use std::time::Duration;

use audit_history::{AuditError, Durability, Recorder, Relay, Spool, SpoolOptions};
use conformance_tests::random_workspace;
use governance_abstractions::{
    Actor, Decision, Evidence, GovernanceError, HistoryFilter, HistoryReader, HistoryRecord, PageRequest, WorkspaceId,
};
use governance_postgres::PostgresStore;
use governance_postgres::sqlx::{self, Postgres, Transaction};
use governance_seaorm::SeaOrmStore;
use governance_seaorm::sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseTransaction, DbBackend};
use governance_test_support::{RoleSplit, Server, postgres_role_split, seaorm_role_split, setup_fails};

/// A fresh PostgreSQL database migrated by its owner, or `None` (with a
/// notice) when none is configured and none is required.
async fn postgres_split() -> Option<RoleSplit> {
    match postgres_role_split().await {
        Ok(split) => Some(split),
        Err(why) if !setup_fails(&why) => {
            eprintln!("skipped: PostgreSQL {why}");
            None
        }
        Err(why) => panic!("PostgreSQL required: {why}"),
    }
}

/// The store on such a database, connected as the application role, and
/// the split itself: the database is dropped when it goes.
async fn postgres() -> Option<(PostgresStore, RoleSplit)> {
    let split = postgres_split().await?;
    let store = PostgresStore::connect(split.application_url()).await.expect("connect as the application role");
    Some((store, split))
}

fn evidence(workspace: &WorkspaceId, decision: Decision) -> Evidence {
    Evidence::decision(workspace.clone(), Actor::user("alice"), "invoice", "create", decision)
}

async fn history(store: &dyn HistoryReader, workspace: &WorkspaceId) -> Vec<HistoryRecord> {
    store.query_history(workspace, &HistoryFilter::default(), &PageRequest::all()).await.expect("history").items
}

async fn invoices(store: &PostgresStore, id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM invoices WHERE id = $1").bind(id).fetch_one(store.pool()).await.unwrap()
}

/// One guarded write in a PostgreSQL transaction, committed or rolled back.
async fn guarded_insert(
    store: &PostgresStore,
    recorder: &Recorder,
    workspace: &WorkspaceId,
    decision: Decision,
    invoice: &str,
    commit: bool,
) -> Result<bool, AuditError> {
    let mut tx: Transaction<'static, Postgres> = store.pool().begin().await.expect("begin");
    let guarded = recorder
        .guard_in(
            &mut tx,
            evidence(workspace, decision),
            async |tx, records| store.append_history_in(tx, records).await,
            async |tx, _evidence| {
                sqlx::query("INSERT INTO invoices (id) VALUES ($1)").bind(invoice).execute(&mut **tx).await
            },
        )
        .await?;
    if let Some(inserted) = &guarded.output {
        assert!(inserted.is_ok(), "the mutation runs in the caller's transaction");
    }
    if commit {
        tx.commit().await.expect("commit")
    } else {
        tx.rollback().await.expect("rollback")
    }
    Ok(guarded.approved())
}

#[tokio::test]
async fn postgres_evidence_and_mutation_share_the_callers_transaction() {
    let Some(split) = postgres_split().await else { return };
    // The application's own table: created by the owner, granted to the role.
    let owner = PostgresStore::connect(split.owner_url()).await.expect("connect as the owner");
    sqlx::query("CREATE TABLE invoices (id text PRIMARY KEY)").execute(owner.pool()).await.unwrap();
    let grant = format!("GRANT SELECT, INSERT ON invoices TO \"{}\"", split.login().name());
    sqlx::raw_sql(sqlx::AssertSqlSafe(grant)).execute(owner.pool()).await.unwrap();
    owner.pool().close().await;
    let store = PostgresStore::connect(split.application_url()).await.expect("connect as the application role");
    let recorder = Recorder::new(Arc::new(store.clone()));
    let workspace = random_workspace();

    assert!(guarded_insert(&store, &recorder, &workspace, Decision::Approved, "a", true).await.unwrap());
    assert_eq!((history(&store, &workspace).await.len(), invoices(&store, "a").await), (1, 1), "both committed");

    assert!(guarded_insert(&store, &recorder, &workspace, Decision::Approved, "b", false).await.unwrap());
    assert_eq!((history(&store, &workspace).await.len(), invoices(&store, "b").await), (1, 0), "both rolled back");

    assert!(!guarded_insert(&store, &recorder, &workspace, Decision::Denied, "c", true).await.unwrap());
    let stored = history(&store, &workspace).await;
    assert_eq!((stored.len(), invoices(&store, "c").await), (2, 0), "denied: evidence only");
    assert_eq!(stored[1].evidence().decision, Some(Decision::Denied));
}

#[tokio::test]
async fn seaorm_sqlite_evidence_and_mutation_share_the_callers_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = SeaOrmStore::open_sqlite(dir.path().join("app.db")).await.unwrap();
    store.connection().execute_unprepared("CREATE TABLE invoices (id TEXT PRIMARY KEY)").await.unwrap();
    let recorder = Recorder::new(Arc::new(store.clone()));
    let workspace = random_workspace();
    for (decision, commit) in [(Decision::Approved, false), (Decision::Approved, true), (Decision::Denied, true)] {
        let mut txn: DatabaseTransaction = store.begin().await.unwrap();
        let guarded = recorder
            .guard_in(
                &mut txn,
                evidence(&workspace, decision),
                async |txn, records| store.append_history_in(txn, records).await,
                async |txn, evidence| {
                    let sql = format!("INSERT INTO invoices (id) VALUES ('{}')", evidence.id());
                    txn.execute_unprepared(&sql).await.map(|r| r.rows_affected())
                },
            )
            .await
            .unwrap();
        assert_eq!(guarded.output.map(Result::unwrap), (decision == Decision::Approved).then_some(1));
        if commit { txn.commit().await.unwrap() } else { txn.rollback().await.unwrap() }
    }
    let stored = history(&store, &workspace).await;
    let decisions: Vec<_> = stored.iter().map(|r| r.evidence().decision).collect();
    assert_eq!(decisions, [Some(Decision::Approved), Some(Decision::Denied)], "the rolled-back one left nothing");
    let rows = store.connection().query_all_raw(governance_seaorm::sea_orm::Statement::from_string(
        DbBackend::Sqlite,
        "SELECT id FROM invoices",
    ));
    let rows = rows.await.unwrap();
    assert_eq!(rows.len(), 1, "only the committed approved mutation");
    assert_eq!(rows[0].try_get::<String>("", "id").unwrap(), stored[0].id().to_string(), "linked to its evidence");
}

/// Fail-closed and fail-open against a server that does not answer (a
/// closed port), then the relay into the real one.
async fn unreachable_then_relay(
    dead: Arc<dyn governance_abstractions::HistoryWriter>,
    alive: Arc<dyn governance_abstractions::GovernanceStore>,
) {
    let workspace = random_workspace();
    let closed = Recorder::new(dead.clone());
    match closed.guard(evidence(&workspace, Decision::Approved), async |_| panic!("must not run")).await {
        Err(AuditError::NotStored(GovernanceError::Unavailable { .. })) => {}
        other => panic!("expected NotStored(Unavailable), got {other:?}"),
    }
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path(), SpoolOptions::default()).unwrap());
    let open = Recorder::new(dead.clone()).fail_open(spool.clone());
    let guarded = open.guard(evidence(&workspace, Decision::Approved), async |_| "ran").await.unwrap();
    assert_eq!((guarded.output, guarded.receipt.durability), (Some("ran"), Durability::Spooled));
    assert!(matches!(Relay::new(spool.clone(), dead).drain().await, Err(AuditError::Store(_))));
    let report = Relay::new(spool, alive.clone()).drain().await.unwrap();
    assert_eq!(report.stored, 1);
    assert_eq!(history(alive.as_ref(), &workspace).await, vec![guarded.receipt.record]);
}

#[tokio::test]
async fn postgres_unreachable_server() {
    let Some((alive, _split)) = postgres().await else { return };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy("postgres://postgres@127.0.0.1:1/none")
        .unwrap();
    unreachable_then_relay(Arc::new(PostgresStore::new(pool)), Arc::new(alive)).await;
}

#[tokio::test]
async fn seaorm_mysql_unreachable_server() {
    let split = match seaorm_role_split(Server::MySql).await {
        Ok(split) => split,
        Err(why) if !setup_fails(&why) => return eprintln!("skipped: MySQL {why}"),
        Err(why) => panic!("MySQL required: {why}"),
    };
    let alive = SeaOrmStore::new(Database::connect(split.application_url()).await.unwrap());
    let mut dead = ConnectOptions::new("mysql://root@127.0.0.1:1/none");
    dead.connect_lazy(true).acquire_timeout(Duration::from_secs(2)).sqlx_logging(false);
    let dead = SeaOrmStore::new(Database::connect(dead).await.unwrap());
    unreachable_then_relay(Arc::new(dead), Arc::new(alive)).await;
}
