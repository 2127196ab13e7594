//! A write whose whole transaction the server rolls back is run again by
//! the store, so the caller never sees that deadlock.
//!
//! SeaORM on MySQL/MariaDB: another transaction is made to deadlock with the
//! store's own `create_request`, heavier than it so that the store's is the
//! one InnoDB rolls back: it holds the gap where the request's first history
//! row goes, waits until the store has inserted the request row and is
//! waiting for that gap, then asks for the request row itself. The store's
//! transaction is the deadlock victim (error 1213); once the other
//! transaction rolls back, the store's rerun must succeed, and exactly one
//! request with one creation record is stored.

use std::time::{Duration, Instant};

use conformance_tests::random_workspace;
use governance_abstractions::{
    Actor, HistoryReader, NewRequest, PageRequest, RequestFilter, RequestId, RequestReader, RequestWriter, TargetRef,
    Timestamp, lifecycle,
};
use governance_seaorm::SeaOrmStore;
use governance_seaorm::sea_orm::{ConnectionTrait, Database, DbBackend, Statement, TransactionTrait};
use governance_test_support::{Server, TestDatabase, fresh_test_database, server_url, setup_fails};

/// A fresh database on `server`, or `None` (with a notice) when the server
/// is not configured and not required.
async fn fresh(server: Server, name: &str) -> Option<TestDatabase> {
    let url = match server_url(server).await {
        Ok(url) => url,
        Err(why) if !setup_fails(&why) => {
            eprintln!("skipped: {name}: {why}");
            return None;
        }
        Err(why) => panic!("{name} required: {why}"),
    };
    Some(fresh_test_database(&url, server).await.expect("a fresh database"))
}

fn stmt(sql: &str, values: Vec<governance_seaorm::sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::MySql, sql, values)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_victim_is_run_again_by_the_store() {
    let Some(database) = fresh(Server::MySql, "MySQL").await else { return };
    let db = Database::connect(database.url()).await.expect("connects");
    let store = SeaOrmStore::new(db.clone());
    store.migrate().await.expect("migrates");
    db.execute_unprepared("CREATE TABLE ballast (n INT PRIMARY KEY)").await.expect("a ballast table");

    let workspace = random_workspace();
    let spec = NewRequest::new(workspace.clone(), TargetRef::new("flag", "beta"), "enable", Actor::user("dev"));
    let creation = lifecycle::create(spec, RequestId::new(), Timestamp::now()).expect("a valid creation");
    let id = creation.request().id();

    // The other transaction: heavy (a hundred undo records), then holding
    // the workspace's gap of the history's primary key.
    let other = db.begin().await.expect("begins");
    let ballast: Vec<String> = (0..100).map(|n| format!("({n})")).collect();
    other.execute_unprepared(&format!("INSERT INTO ballast VALUES {}", ballast.join(","))).await.expect("ballast");
    other
        .execute_raw(stmt(
            "SELECT id FROM governance_history WHERE workspace_id = ? FOR UPDATE",
            vec![workspace.as_str().into()],
        ))
        .await
        .expect("locks the workspace's gap");

    let writer = {
        let (store, creation) = (store.clone(), creation.clone());
        tokio::spawn(async move { store.create_request(&creation).await })
    };

    // Until the store's transaction holds the request row and is inserting
    // its history row into the gap.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting = db
            .query_one_raw(stmt(
                // The history insert runs once the request row is in, and
                // then waits for the gap held above.
                "SELECT COUNT(*) AS n FROM information_schema.processlist \
                 WHERE db = DATABASE() AND info LIKE 'INSERT INTO `governance_history`%'",
                vec![],
            ))
            .await
            .expect("reads the process list")
            .map(|row| row.try_get::<i64>("", "n").expect("a count"))
            .unwrap_or(0);
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the store's insert never waited for the gap");
        assert!(!writer.is_finished(), "the store's create ended before it waited: {:?}", writer.await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Closes the cycle: InnoDB rolls back the lighter transaction, the store's.
    other
        .execute_raw(stmt(
            "SELECT id FROM governance_requests WHERE workspace_id = ? AND id = ? FOR UPDATE",
            vec![workspace.as_str().into(), id.as_uuid().as_bytes().to_vec().into()],
        ))
        .await
        .expect("the other transaction survives the deadlock: the store's was rolled back");
    // The rerun waits for this transaction's locks, and then goes through.
    other.rollback().await.expect("rolls back");

    let stored = writer.await.expect("the writer task").expect("the store ran its rolled-back create again");
    assert!(!stored.is_replay(), "a new request, not a replay: {stored:?}");
    assert_eq!(store.get_request(&workspace, id).await.expect("stored").revision(), 1);
    let history = store.history_for_request(&workspace, id).await.expect("its history");
    assert_eq!(history.len(), 1, "one creation record: {history:?}");
    let all =
        store.query_requests(&workspace, &RequestFilter::default(), &PageRequest::first(10)).await.expect("lists");
    assert_eq!(all.items.len(), 1, "exactly one request in the workspace");
}

/// On PostgreSQL the sqlx store's supersession is one statement that
/// share-locks the successor, then updates the older request. Another
/// transaction holds the older request, waits until the store's statement
/// waits for it, then asks for the successor: a deadlock, and the store's
/// statement, waiting longest, is the one PostgreSQL aborts (`40P01`). The
/// store must run it again once the other transaction is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_deadlock_victim_is_run_again_by_the_store() {
    use governance_postgres::PostgresStore;
    use governance_seaorm::sea_orm::sqlx::{self, Connection, PgConnection};

    let Some(database) = fresh(Server::Postgres, "PostgreSQL").await else { return };
    let store = PostgresStore::connect(database.url()).await.expect("connects");
    store.migrate().await.expect("migrates");

    let workspace = random_workspace();
    let by: governance_abstractions::Principal = Actor::user("dev").into();
    let target = TargetRef::new("flag", "beta");
    let mut created = Vec::new();
    for _ in 0..2 {
        let spec = NewRequest::new(workspace.clone(), target.clone(), "enable", by.clone());
        let creation = lifecycle::create(spec, RequestId::new(), Timestamp::now()).expect("a valid creation");
        created.push(store.create_request(&creation).await.expect("created").into_inner());
    }
    let (older, newer) = (&created[0], &created[1]);
    let transition = lifecycle::supersede(older, newer, &by, Timestamp::now()).expect("a supersession");

    let mut other = PgConnection::connect(database.url()).await.expect("connects");
    sqlx::query("BEGIN").execute(&mut other).await.expect("begins");
    let lock = "SELECT 1 FROM governance_requests WHERE workspace_id = $1 AND id = $2 FOR UPDATE";
    sqlx::query(lock)
        .bind(workspace.as_str())
        .bind(older.id().as_uuid())
        .execute(&mut other)
        .await
        .expect("holds the older request");

    let writer = {
        let (store, transition) = (store.clone(), transition.clone());
        tokio::spawn(async move { store.commit_transition(&transition).await })
    };
    let mut watcher = PgConnection::connect(database.url()).await.expect("connects");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE 'WITH guard AS%'",
        )
        .fetch_one(&mut watcher)
        .await
        .expect("reads the activity");
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the store's supersession never waited for the older request");
        assert!(!writer.is_finished(), "the store's supersession ended before it waited: {:?}", writer.await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Closes the cycle; the store's statement has waited longer, so its
    // deadlock check runs first and aborts it.
    sqlx::query(lock)
        .bind(workspace.as_str())
        .bind(newer.id().as_uuid())
        .execute(&mut other)
        .await
        .expect("the other transaction survives the deadlock: the store's statement was aborted");
    sqlx::query("ROLLBACK").execute(&mut other).await.expect("rolls back");

    writer.await.expect("the writer task").expect("the store ran its aborted supersession again");
    let stored = store.get_request(&workspace, older.id()).await.expect("stored");
    assert_eq!(stored.superseded_by(), Some(newer.id()), "superseded once, by the newer request");
    assert_eq!(stored.revision(), 2);
    assert_eq!(store.get_request(&workspace, newer.id()).await.expect("stored").revision(), 1);
}
