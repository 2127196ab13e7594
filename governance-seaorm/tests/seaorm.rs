//! What the shared suite cannot see: the caller's transaction, migrations,
//! and the in-memory SQLite pool. Runs on SQLite always, and on PostgreSQL and
//! MySQL when their URLs are set (a failure when they must be).

use std::sync::Arc;

use conformance_tests::databases::{MYSQL_URL_ENV, POSTGRES_URL_ENV, fresh_database, server_url};
use conformance_tests::runner::databases_required;
use governance_abstractions::{
    Action, Actor, Decision, Evidence, GovernanceError, GovernanceService, HistoryReader, HistoryRecord, HistoryWriter,
    NewRequest, RequestId, RequestReader, RequestWriter, TargetRef, Timestamp, WorkspaceId, lifecycle,
};
use governance_seaorm::SeaOrmStore;
use governance_seaorm::sea_orm::{ConnectionTrait, DbBackend, Statement};

/// Stores to test on: a SQLite file, and each configured server.
async fn stores() -> Vec<(String, SeaOrmStore, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sqlite = SeaOrmStore::open_sqlite(dir.path().join("g.db")).await.expect("SQLite opens");
    let mut stores = vec![("sqlite".to_owned(), sqlite, dir)];
    for (variable, backend) in [(POSTGRES_URL_ENV, DbBackend::Postgres), (MYSQL_URL_ENV, DbBackend::MySql)] {
        let url = match server_url(variable).await {
            Ok(server) => fresh_database(&server, backend).await,
            Err(error) => Err(error),
        };
        match url {
            Ok(url) => {
                let store = SeaOrmStore::connect(&url).await.expect("server answers");
                store.migrate().await.expect("migrates");
                stores.push((format!("{backend:?}"), store, tempfile::tempdir().expect("temporary directory")));
            }
            Err(error) if databases_required() => panic!("{variable}: {error}"),
            Err(error) => {
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "SKIPPED {backend:?}: {error}");
            }
        }
    }
    stores
}

fn workspace() -> WorkspaceId {
    WorkspaceId::new(format!("t-{}", uuid::Uuid::now_v7().simple())).expect("valid id")
}

/// The application's own table, beside the governance tables.
async fn app_table(store: &SeaOrmStore) {
    let sql = "CREATE TABLE IF NOT EXISTS app_invoices (id VARCHAR(64) PRIMARY KEY, amount BIGINT NOT NULL)";
    store.connection().execute_unprepared(sql).await.expect("app table");
}

async fn invoice_count(store: &SeaOrmStore, id: &str) -> i64 {
    let db = store.connection();
    let backend = db.get_database_backend();
    let sql = format!("SELECT COUNT(*) AS n FROM app_invoices WHERE id = '{id}'");
    let row = db.query_one_raw(Statement::from_string(backend, sql)).await.expect("count").expect("a row");
    row.try_get::<i64>("", "n").expect("n")
}

/// Seed 000's write path inside the application's transaction: evidence,
/// a request transition and the domain row commit or roll back together.
#[tokio::test]
async fn caller_transaction_commits_or_rolls_back_everything() {
    for (name, store, _dir) in stores().await {
        app_table(&store).await;
        for commit in [false, true] {
            let ws = workspace();
            let spec = NewRequest::new(ws.clone(), TargetRef::new("invoice", "i-1"), "create", Actor::user("u"));
            let creation = lifecycle::create(spec, RequestId::new(), Timestamp::now()).expect("valid");
            let approve =
                lifecycle::apply(creation.request(), &Actor::user("u").into(), &Action::Approve, Timestamp::now())
                    .expect("allowed");
            let evidence = Evidence::decision(ws.clone(), Actor::user("u"), "invoice", "create", Decision::Approved);
            let record = HistoryRecord::new(evidence, Timestamp::now()).expect("valid");
            let invoice = uuid::Uuid::now_v7().simple().to_string();

            let txn = store.begin().await.expect("begin");
            store.append_history_in(&txn, std::slice::from_ref(&record)).await.expect("evidence");
            // A refused statement inside the transaction (same id, other
            // content) must not poison it: the savepoint takes the failure.
            let mut clash = record.evidence.clone();
            clash.reason = Some("different".into());
            let clash = HistoryRecord::with_id(record.id, clash, Timestamp::now()).expect("valid");
            let refused = store.append_history_in(&txn, &[clash]).await;
            assert!(matches!(refused, Err(GovernanceError::AlreadyExists { .. })), "{name}: {refused:?}");
            store.create_request_in(&txn, &creation).await.expect("create");
            store.commit_transition_in(&txn, &approve).await.expect("approve");
            // A refused write inside the transaction leaves it usable.
            let stale = store.commit_transition_in(&txn, &approve).await;
            assert!(matches!(stale, Err(GovernanceError::Conflict { .. })), "{name}: {stale:?}");
            let insert = format!("INSERT INTO app_invoices (id, amount) VALUES ('{invoice}', 100)");
            txn.execute_unprepared(&insert).await.expect("domain write");
            if commit {
                txn.commit().await.expect("commit");
            } else {
                txn.rollback().await.expect("rollback");
            }

            let request = store.get_request(&ws, creation.request().id).await;
            let stored_record = store.get_history_record(&ws, record.id).await;
            let invoices = invoice_count(&store, &invoice).await;
            if commit {
                assert_eq!(request.expect("request stored").revision, 2, "{name}");
                assert_eq!(stored_record.expect("evidence stored"), record, "{name}");
                assert_eq!(invoices, 1, "{name}");
            } else {
                assert!(request.is_err_and(|e| e.is_not_found()), "{name}: the request rolled back");
                assert!(stored_record.is_err_and(|e| e.is_not_found()), "{name}: the evidence rolled back");
                assert_eq!(invoices, 0, "{name}: the domain row rolled back");
            }
        }
    }
}

/// Migrations are re-runnable, and two stores migrating one fresh database
/// at once both succeed.
#[tokio::test]
async fn migrations_rerun_and_race_safely() {
    for (name, store, _dir) in stores().await {
        store.migrate().await.unwrap_or_else(|e| panic!("{name}: second run: {e}"));
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = format!("sqlite://{}?mode=rwc", dir.path().join("race.db").display());
    let mut urls = vec![(file, DbBackend::Sqlite)];
    for (variable, backend) in [(POSTGRES_URL_ENV, DbBackend::Postgres), (MYSQL_URL_ENV, DbBackend::MySql)] {
        if let Ok(server) = server_url(variable).await {
            urls.push((fresh_database(&server, backend).await.expect("fresh database"), backend));
        }
    }
    for (url, backend) in urls {
        let (a, b) = (SeaOrmStore::connect(&url).await.expect("a"), SeaOrmStore::connect(&url).await.expect("b"));
        let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
        assert!(ra.is_ok() && rb.is_ok(), "{backend:?}: concurrent first runs: {ra:?} {rb:?}");
    }
}

/// SQLite: `INSERT OR REPLACE` cannot rewrite a history row behind the triggers.
#[tokio::test]
async fn sqlite_replace_cannot_rewrite_history() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SeaOrmStore::open_sqlite(dir.path().join("replace.db")).await.expect("opens");
    let ws = workspace();
    let record = HistoryRecord::new(
        Evidence::decision(ws.clone(), Actor::user("u"), "o", "op", Decision::Denied),
        Timestamp::now(),
    )
    .expect("valid");
    store.append_history(std::slice::from_ref(&record)).await.expect("append");
    let sql = "INSERT OR REPLACE INTO governance_history SELECT * FROM governance_history WHERE id = ?";
    let replace = Statement::from_sql_and_values(DbBackend::Sqlite, sql, [record.id.as_uuid().into()]);
    let outcome = store.connection().execute_raw(replace).await;
    assert!(outcome.is_err_and(|e| e.to_string().contains("append-only")), "REPLACE must hit the guard");
    assert_eq!(store.get_history_record(&ws, record.id).await.expect("kept"), record);
}

/// An in-memory database is one database, whichever task asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_sqlite_is_one_database() {
    let store = Arc::new(SeaOrmStore::open_sqlite_in_memory().await.expect("opens"));
    let service = GovernanceService::new(store.clone());
    let ws = workspace();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..8 {
        let (service, ws) = (service.clone(), ws.clone());
        tasks.spawn(async move {
            let spec = NewRequest::new(ws, TargetRef::new("t", format!("s{n}")), "op", Actor::user("u"));
            service.create(spec).await.map(|s| s.into_inner().id)
        });
    }
    let mut ids = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        ids.push(joined.expect("task").expect("created"));
    }
    for id in ids {
        store.get_request(&ws, id).await.expect("every task's request is visible to every other");
    }
}

/// Concurrent writers on a SQLite file wait for the write lock instead of
/// failing with "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_takes_concurrent_writers() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Arc::new(SeaOrmStore::open_sqlite(dir.path().join("busy.db")).await.expect("opens"));
    let ws = workspace();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (store, ws) = (store.clone(), ws.clone());
        tasks.spawn(async move {
            for _ in 0..25 {
                let e = Evidence::decision(ws.clone(), Actor::user("u"), "o", "op", Decision::Denied);
                store.append_history(&[HistoryRecord::new(e, Timestamp::now())?]).await?;
                let spec = NewRequest::new(ws.clone(), TargetRef::new("t", "s"), "op", Actor::user("u"));
                let creation = lifecycle::create(spec, RequestId::new(), Timestamp::now())?;
                store.create_request(&creation).await?;
            }
            Ok::<_, GovernanceError>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task").expect("no writer failed");
    }
}
