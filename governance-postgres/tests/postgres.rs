//! What the shared suite cannot see on PostgreSQL: the server's own
//! append-only guard, the caller's transaction, the commit-safe feed under
//! late commits, and index use on a large table. Needs
//! `GOVERNANCE_POSTGRES_URL` (skips with a notice without it; fails when
//! `GOVERNANCE_REQUIRE_DATABASES=1`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use conformance_tests::databases::{POSTGRES_URL_ENV, fresh_database, server_url};
use conformance_tests::runner::databases_required;
use governance_abstractions::{
    Action, Actor, Decision, Evidence, GovernanceError, HistoryReader, HistoryRecord, HistoryWriter, NewRequest,
    PageRequest, PendingReason, RecordId, RequestFilter, RequestId, RequestReader, RequestStatus, TargetRef, Timestamp,
    WorkspaceId, lifecycle,
};
use governance_postgres::sqlx::{self, Row};
use governance_postgres::{FeedCursor, PostgresStore};
use governance_seaorm::sea_orm::DbBackend;

/// A migrated store on a database of its own, or `None` (skip) when no
/// server is configured and none is required.
async fn store() -> Option<PostgresStore> {
    let url = match server_url(POSTGRES_URL_ENV).await {
        Ok(server) => fresh_database(&server, DbBackend::Postgres).await,
        Err(error) => Err(error),
    };
    match url {
        Ok(url) => {
            let store = PostgresStore::connect(&url).await.expect("server answers");
            store.migrate().await.expect("migrates");
            store.migrate().await.expect("migrations re-run as a no-op");
            Some(store)
        }
        Err(error) if databases_required() => panic!("{error}"),
        Err(error) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED PostgreSQL: {error}");
            None
        }
    }
}

fn workspace() -> WorkspaceId {
    WorkspaceId::new(format!("t-{}", uuid::Uuid::now_v7().simple())).expect("valid id")
}

/// Reads the feed from `cursor` until `want` records arrived (other
/// transactions anywhere on the server delay visibility, never order).
async fn feed_until(
    store: &PostgresStore,
    ws: &WorkspaceId,
    cursor: &FeedCursor,
    want: usize,
) -> (Vec<RecordId>, FeedCursor) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (mut seen, mut cursor) = (Vec::new(), cursor.clone());
    while seen.len() < want {
        assert!(std::time::Instant::now() < deadline, "the feed stalled at {seen:?}");
        let page = store.history_feed(ws, &cursor, 100).await.expect("feed");
        seen.extend(page.records.iter().map(|r| r.id));
        cursor = page.next;
        if seen.len() < want {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    (seen, cursor)
}

fn evidence(ws: &WorkspaceId) -> HistoryRecord {
    let e = Evidence::decision(ws.clone(), Actor::user("u"), "invoice", "create", Decision::Denied);
    HistoryRecord::new(e, Timestamp::now()).expect("valid")
}

#[tokio::test]
async fn server_refuses_update_delete_truncate_of_history() {
    let Some(store) = store().await else { return };
    let ws = workspace();
    let record = evidence(&ws);
    store.append_history(std::slice::from_ref(&record)).await.expect("append");
    for replica in [false, true] {
        for sql in [
            "UPDATE governance_history SET reason = 'x' WHERE workspace_id = $1 AND id = $2",
            "DELETE FROM governance_history WHERE workspace_id = $1 AND id = $2",
            "TRUNCATE governance_history",
        ] {
            let mut txn = store.pool().begin().await.expect("begin");
            if replica {
                sqlx::query("SET LOCAL session_replication_role = replica").execute(&mut *txn).await.expect("role");
            }
            let query = sqlx::query(sqlx::AssertSqlSafe(sql));
            let query = if sql.contains("$1") { query.bind(ws.as_str()).bind(record.id.as_uuid()) } else { query };
            let outcome = query.execute(&mut *txn).await;
            let _ = txn.rollback().await;
            let error = outcome.expect_err(&format!("{sql} (replica: {replica}) must be refused"));
            assert!(error.to_string().contains("append-only"), "{sql}: {error}");
        }
    }
    assert_eq!(store.get_history_record(&ws, record.id).await.expect("still there"), record);
}

#[tokio::test]
async fn caller_transaction_commits_or_rolls_back_everything() {
    let Some(store) = store().await else { return };
    sqlx::query("CREATE TABLE IF NOT EXISTS app_invoices (id text PRIMARY KEY, amount bigint NOT NULL)")
        .execute(store.pool())
        .await
        .expect("app table");
    for commit in [false, true] {
        let ws = workspace();
        let spec = NewRequest::new(ws.clone(), TargetRef::new("invoice", "i-1"), "create", Actor::user("u"));
        let creation = lifecycle::create(spec, RequestId::new(), Timestamp::now()).expect("valid");
        let approve =
            lifecycle::apply(creation.request(), &Actor::user("u").into(), &Action::Approve, Timestamp::now())
                .expect("allowed");
        let record = evidence(&ws);
        let invoice = uuid::Uuid::now_v7().to_string();

        let mut txn = store.pool().begin().await.expect("begin");
        store.append_history_in(&mut txn, std::slice::from_ref(&record)).await.expect("evidence");
        // A refused statement (same id, other content) must not abort the
        // caller's transaction: the savepoint takes the failure.
        let mut clash = record.evidence.clone();
        clash.reason = Some("different".into());
        let clash = HistoryRecord::with_id(record.id, clash, Timestamp::now()).expect("valid");
        let refused = store.append_history_in(&mut txn, &[clash]).await;
        assert!(matches!(refused, Err(GovernanceError::AlreadyExists { .. })), "{refused:?}");
        store.create_request_in(&mut txn, &creation).await.expect("create");
        store.commit_transition_in(&mut txn, &approve).await.expect("approve");
        let stale = store.commit_transition_in(&mut txn, &approve).await;
        assert!(matches!(stale, Err(GovernanceError::Conflict { .. })), "{stale:?}");
        sqlx::query("INSERT INTO app_invoices (id, amount) VALUES ($1, 100)")
            .bind(&invoice)
            .execute(&mut *txn)
            .await
            .expect("the transaction is still usable after a refused write");
        if commit {
            txn.commit().await.expect("commit")
        } else {
            txn.rollback().await.expect("rollback")
        }

        let invoices: i64 = sqlx::query("SELECT count(*) FROM app_invoices WHERE id = $1")
            .bind(&invoice)
            .fetch_one(store.pool())
            .await
            .expect("count")
            .get(0);
        let request = store.get_request(&ws, creation.request().id).await;
        let stored = store.get_history_record(&ws, record.id).await;
        if commit {
            assert_eq!(request.expect("request").revision, 2);
            assert_eq!(stored.expect("evidence"), record);
            assert_eq!(invoices, 1);
        } else {
            assert!(request.is_err_and(|e| e.is_not_found()));
            assert!(stored.is_err_and(|e| e.is_not_found()));
            assert_eq!(invoices, 0);
        }
    }
}

/// A slow transaction appends first and commits last; a reader that reached
/// the end in between resumes from its cursor and still gets its record.
#[tokio::test]
async fn feed_never_misses_a_late_commit() {
    let Some(store) = store().await else { return };
    let ws = workspace();
    let early = evidence(&ws);
    let mut slow = store.pool().begin().await.expect("begin");
    store.append_history_in(&mut slow, std::slice::from_ref(&early)).await.expect("slow append");
    let late = evidence(&ws);
    assert!(late.created_at >= early.created_at);
    store.append_history(std::slice::from_ref(&late)).await.expect("fast append commits");

    let first = store.history_feed(&ws, &FeedCursor::start(), 100).await.expect("feed");
    assert!(first.records.is_empty(), "nothing shows while an older transaction may still commit: {:?}", first.records);
    slow.commit().await.expect("slow commit");
    let (ids, next) = feed_until(&store, &ws, &first.next, 2).await;
    assert_eq!(ids, vec![early.id, late.id], "both, in transaction order");
    let after = store.history_feed(&ws, &next, 100).await.expect("feed");
    assert!(after.records.is_empty(), "no duplicates after the end");
    let bad = store.history_feed(&ws, &FeedCursor::from("nope".to_owned()), 10).await;
    assert!(matches!(bad, Err(GovernanceError::InvalidCursor { .. })), "{bad:?}");
}

/// The order that matters is the transactions', not the records' times: a
/// record stamped earlier whose transaction commits later still reaches a
/// reader that has already passed a later-stamped record.
#[tokio::test]
async fn feed_orders_by_transaction_not_by_time() {
    let Some(store) = store().await else { return };
    let ws = workspace();
    // The first transaction takes its id before the second starts writing.
    let mut first = store.pool().begin().await.expect("begin");
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut *first).await.expect("xid");
    let mut second = store.pool().begin().await.expect("begin");
    let earlier = evidence(&ws);
    store.append_history_in(&mut second, std::slice::from_ref(&earlier)).await.expect("append");
    let later = evidence(&ws);
    assert!(later.created_at >= earlier.created_at);
    store.append_history_in(&mut first, std::slice::from_ref(&later)).await.expect("append");
    first.commit().await.expect("commit");

    let (first_page, cursor) = feed_until(&store, &ws, &FeedCursor::start(), 1).await;
    assert_eq!(first_page, vec![later.id], "the finished transaction's record");
    second.commit().await.expect("commit");
    let (resumed, _) = feed_until(&store, &ws, &cursor, 1).await;
    assert_eq!(
        resumed,
        vec![earlier.id],
        "the earlier-stamped record that committed later is not lost behind the cursor"
    );
}

/// Writers that hold their transactions open for random times while a
/// reader tails the feed: the reader sees every record exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_tail_under_concurrent_slow_writers() {
    let Some(store) = store().await else { return };
    let store = Arc::new(store);
    let ws = workspace();
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..4u64 {
        let (store, ws) = (store.clone(), ws.clone());
        writers.spawn(async move {
            let mut written = Vec::new();
            for n in 0..15u64 {
                let pause = Duration::from_millis((writer * 7 + n * 13) % 25);
                let mut txn = store.pool().begin().await.expect("begin");
                tokio::time::sleep(pause / 2).await;
                let record = evidence(&ws);
                store.append_history_in(&mut txn, std::slice::from_ref(&record)).await.expect("append");
                tokio::time::sleep(pause).await;
                txn.commit().await.expect("commit");
                written.push(record.id);
            }
            written
        });
    }
    let mut seen = Vec::new();
    let mut cursor = FeedCursor::start();
    let mut written = HashSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the tail never caught up: {} of {} seen",
            seen.len(),
            written.len()
        );
        let page = store.history_feed(&ws, &cursor, 7).await.expect("feed");
        seen.extend(page.records.iter().map(|r| r.id));
        cursor = page.next;
        if page.records.is_empty() {
            if writers.is_empty() && written.len() == seen.len() {
                break;
            }
            while let Some(done) = writers.try_join_next() {
                written.extend(done.expect("writer"));
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    let unique: HashSet<RecordId> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no record twice");
    assert_eq!(unique, written, "every committed record, none missed");
}

#[tokio::test]
async fn thirty_two_writers_of_one_key_leave_one_row() {
    let Some(store) = store().await else { return };
    let store = Arc::new(store);
    let ws = workspace();
    let mut e = Evidence::decision(ws.clone(), Actor::user("u"), "invoice", "create", Decision::Approved);
    e.idempotency_key = Some("one-key".into());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (store, e) = (store.clone(), e.clone());
        tasks.spawn(async move { store.append_history(&[HistoryRecord::new(e, Timestamp::now())?]).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task").expect("append or replay");
    }
    let rows: i64 =
        sqlx::query("SELECT count(*) FROM governance_history WHERE workspace_id = $1 AND idempotency_key = $2")
            .bind(ws.as_str())
            .bind("one-key")
            .fetch_one(store.pool())
            .await
            .expect("count")
            .get(0);
    assert_eq!(rows, 1);
}

/// On 100k rows the pending queue and the history of a request are index
/// scans, asked with the very SQL the store runs.
#[tokio::test]
async fn hot_queries_use_indexes_on_a_large_table() {
    let Some(store) = store().await else { return };
    let pool = store.pool();
    sqlx::query(
        "INSERT INTO governance_requests
         SELECT 'big', md5('r' || g)::uuid, 'flag', 's' || g, 'update', 'user', 'u',
                '{\"actor\":{\"kind\":\"user\",\"id\":\"u\"},\"delegation\":[]}', '',
                CASE WHEN g % 10 = 0 THEN 'pending' ELSE 'executed' END,
                CASE WHEN g % 10 = 0 THEN 'approval' END, '[]', NULL, 'reject_stale', NULL, NULL, NULL, NULL,
                '{}', 'null', 1, now() - g * interval '1 second', now(), 'digest'
         FROM generate_series(1, 100000) AS g",
    )
    .execute(pool)
    .await
    .expect("requests");
    sqlx::query(
        "INSERT INTO governance_history (workspace_id, id, request_id, request_revision, category, code, actor_kind,
             actor_id, actor, object_type, operation, decision, reason_codes, created_at, content_hash)
         SELECT 'big', gen_random_uuid(), md5('r' || (g % 20000))::uuid, 1 + g % 3, 'lifecycle', 'request.created',
                'user', 'u', '{\"actor\":{\"kind\":\"user\",\"id\":\"u\"},\"delegation\":[]}', 'flag', 'update',
                NULL, '{}', now() - g * interval '1 second', 'hash'
         FROM generate_series(1, 100000) AS g",
    )
    .execute(pool)
    .await
    .expect("history");
    sqlx::query("ANALYZE governance_requests").execute(pool).await.expect("analyze");
    sqlx::query("ANALYZE governance_history").execute(pool).await.expect("analyze");

    // One workspace of 100k rows: the workspace alone does not narrow it down.
    let ws = WorkspaceId::new("big").expect("valid");
    let pending = RequestFilter {
        statuses: vec![RequestStatus::Pending],
        pending_reason: Some(PendingReason::Approval),
        ..RequestFilter::default()
    };
    let plan = store.explain_query_requests(&ws, &pending, &PageRequest::first(50)).await.expect("explain");
    assert!(plan.iter().any(|l| l.contains("governance_requests_pending")), "the pending index serves it: {plan:#?}");
    assert!(!plan.iter().any(|l| l.contains("Seq Scan")), "the pending queue scans the table: {plan:#?}");

    let request: uuid::Uuid =
        sqlx::query("SELECT request_id FROM governance_history WHERE workspace_id = 'big' LIMIT 1")
            .fetch_one(pool)
            .await
            .expect("a request")
            .get(0);
    let plan = store.explain_history_for_request(&ws, RequestId::from_uuid(request)).await.expect("explain");
    assert!(plan.iter().any(|l| l.contains("governance_history_request")), "the request index serves it: {plan:#?}");
    assert!(!plan.iter().any(|l| l.contains("Seq Scan")), "history by request scans the table: {plan:#?}");
    let due = RequestFilter {
        statuses: vec![RequestStatus::Created, RequestStatus::Pending, RequestStatus::Approved],
        expires_by: Some(Timestamp::now()),
        ..RequestFilter::default()
    };
    let plan = store.explain_query_requests(&ws, &due, &PageRequest::first(100)).await.expect("explain");
    assert!(
        plan.iter().any(|l| l.contains("governance_requests_expiry")),
        "the expiry index serves the sweep: {plan:#?}"
    );
    let history = store.history_for_request(&ws, RequestId::from_uuid(request)).await.expect("history");
    assert!(!history.is_empty());
}
