//! What the shared suite cannot see on PostgreSQL: the server's own
//! append-only guard, the caller's transaction, the commit-safe feed under
//! late commits, checkpoint races, and index use on a large table. Needs
//! `GOVERNANCE_POSTGRES_URL` (skips with a notice without it; fails when
//! `GOVERNANCE_REQUIRE_DATABASES=1`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use governance_abstractions::provider::{CheckpointParts, TRANSITION_COLUMNS, decode_checkpoint};
use governance_abstractions::{
    Action, Actor, Checkpoint, CountBy, CountQuery, Decision, EntityKind, Evidence, GovernanceError, GovernanceRequest,
    HistoryReader, HistoryRecord, HistoryWriter, IntegrityStore, NewRequest, PageRequest, PendingReason, Position,
    ReadRecord, RecordId, RequestFilter, RequestId, RequestReader, RequestStatus, RequestWriter, StaleStrategy,
    TargetRef, TimeRange, Timestamp, Unreadable, WorkspaceId, lifecycle,
};
use governance_postgres::sqlx::{self, Row};
use governance_postgres::{FeedCursor, PostgresStore};
use governance_test_support::{Server, fresh_database, server_url, setup_fails};

/// A migrated store on a database of its own, or `None` (skip) when no
/// server is configured and none is required.
async fn store() -> Option<PostgresStore> {
    let url = match server_url(Server::Postgres).await {
        Ok(server) => fresh_database(&server, Server::Postgres).await,
        Err(error) => Err(error),
    };
    match url {
        Ok(url) => {
            let store = PostgresStore::connect(&url).await.expect("server answers");
            store.migrate().await.expect("migrates");
            store.migrate().await.expect("migrations re-run as a no-op");
            Some(store)
        }
        Err(error) if setup_fails(&error) => panic!("{error}"),
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
        seen.extend(page.records.iter().map(|r| r.id()));
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
            let query = if sql.contains("$1") { query.bind(ws.as_str()).bind(record.id().as_uuid()) } else { query };
            let outcome = query.execute(&mut *txn).await;
            let _ = txn.rollback().await;
            let error = outcome.expect_err(&format!("{sql} (replica: {replica}) must be refused"));
            assert!(error.to_string().contains("append-only"), "{sql}: {error}");
        }
    }
    assert_eq!(store.get_history_record(&ws, record.id()).await.expect("still there"), record);
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
        let mut clash = record.evidence().clone();
        clash.reason = Some("different".into());
        let clash = HistoryRecord::with_id(record.id(), clash, Timestamp::now()).expect("valid");
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
        let request = store.get_request(&ws, creation.request().id()).await;
        let stored = store.get_history_record(&ws, record.id()).await;
        if commit {
            assert_eq!(request.expect("request").revision(), 2);
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
    assert!(late.created_at() >= early.created_at());
    store.append_history(std::slice::from_ref(&late)).await.expect("fast append commits");

    let first = store.history_feed(&ws, &FeedCursor::start(), 100).await.expect("feed");
    assert!(first.records.is_empty(), "nothing shows while an older transaction may still commit: {:?}", first.records);
    slow.commit().await.expect("slow commit");
    let (ids, next) = feed_until(&store, &ws, &first.next, 2).await;
    assert_eq!(ids, vec![early.id(), late.id()], "both, in transaction order");
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
    assert!(later.created_at() >= earlier.created_at());
    store.append_history_in(&mut first, std::slice::from_ref(&later)).await.expect("append");
    first.commit().await.expect("commit");

    let (first_page, cursor) = feed_until(&store, &ws, &FeedCursor::start(), 1).await;
    assert_eq!(first_page, vec![later.id()], "the finished transaction's record");
    second.commit().await.expect("commit");
    let (resumed, _) = feed_until(&store, &ws, &cursor, 1).await;
    assert_eq!(
        resumed,
        vec![earlier.id()],
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
                written.push(record.id());
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
        seen.extend(page.records.iter().map(|r| r.id()));
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
    // Without a reason, the same index over pending requests only, in queue
    // order: no sort, and no index over every request's status.
    let queue = RequestFilter { statuses: vec![RequestStatus::Pending], ..RequestFilter::default() };
    let plan = store.explain_query_requests(&ws, &queue, &PageRequest::first(50)).await.expect("explain");
    assert!(
        plan.iter().any(|l| l.contains("Index Scan using governance_requests_pending ")),
        "the pending index serves the queue: {plan:#?}"
    );
    assert!(!plan.iter().any(|l| l.contains("Seq Scan") || l.contains("Sort")), "the queue sorts or scans: {plan:#?}");

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

/// Appends `n` decision records and returns them in `(created_at, id)` order.
async fn appended(store: &PostgresStore, ws: &WorkspaceId, n: usize) -> Vec<HistoryRecord> {
    let mut records: Vec<HistoryRecord> = (0..n).map(|_| evidence(ws)).collect();
    store.append_history(&records).await.expect("append");
    records.sort_by_key(|r| (r.created_at(), r.id().as_uuid()));
    records
}

/// Records as an integrity read returns them: every one decoded.
fn readable(records: &[HistoryRecord]) -> Vec<ReadRecord> {
    records.iter().cloned().map(Ok).collect()
}

/// Rows of `table` in the workspace: to show that a refused write left none.
async fn rows_in(store: &PostgresStore, table: &str, ws: &WorkspaceId) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table} WHERE workspace_id = $1")))
        .bind(ws.as_str())
        .fetch_one(store.pool())
        .await
        .expect("count")
        .get(0)
}

fn is_taken(outcome: &Result<(), GovernanceError>, kind: EntityKind, id: &str) -> bool {
    matches!(outcome, Err(GovernanceError::AlreadyExists { kind: k, id: i, .. }) if *k == kind && i == id)
}

#[tokio::test]
async fn checkpoints_chain_and_read_back() {
    let Some(store) = store().await else { return };
    let ws = workspace();
    let first = appended(&store, &ws, 3).await;
    assert_eq!(store.unsealed_history(&ws, None, 100).await.expect("unsealed"), readable(&first));
    assert_eq!(store.latest_checkpoint(&ws).await.expect("latest"), None);
    assert!(store.checkpoints(&ws, 0, 10).await.expect("checkpoints").is_empty());

    let (one, one_entries) = Checkpoint::seal(None, &ws, &first, Timestamp::now()).expect("seal");
    store.append_checkpoint(&one, &one_entries).await.expect("first checkpoint");
    assert_eq!(store.latest_checkpoint(&ws).await.expect("latest"), Some(one.clone()));
    assert_eq!(store.checkpoints(&ws, 0, 10).await.expect("checkpoints"), vec![one.clone()]);
    let sealed = store.sealed_records(&ws, 0, 10).await.expect("sealed");
    let expected: Vec<_> = one_entries.iter().cloned().zip(readable(&first).into_iter().map(Some)).collect();
    assert_eq!(sealed, expected, "entries in index order, each with its record");
    assert!(store.unsealed_history(&ws, None, 100).await.expect("unsealed").is_empty());

    // The same checkpoint again: its seq is taken, nothing is added.
    let again = store.append_checkpoint(&one, &one_entries).await;
    assert!(is_taken(&again, EntityKind::Checkpoint, "1"), "{again:?}");

    // Only new records are unsealed, paged by (created_at, id).
    let second = appended(&store, &ws, 2).await;
    assert_eq!(store.unsealed_history(&ws, None, 100).await.expect("unsealed"), readable(&second));
    let after = Some(Position::of_record(&second[0]));
    assert_eq!(store.unsealed_history(&ws, after, 100).await.expect("unsealed"), readable(&second[1..]));
    assert_eq!(store.unsealed_history(&ws, None, 1).await.expect("unsealed"), readable(&second[..1]));

    let (two, two_entries) = Checkpoint::seal(Some(&one), &ws, &second, Timestamp::now()).expect("seal");
    assert_eq!((two.seq(), two.first_index(), two.previous()), (2, 3, Some(one.digest())));
    store.append_checkpoint(&two, &two_entries).await.expect("second checkpoint chains");
    assert_eq!(store.latest_checkpoint(&ws).await.expect("latest"), Some(two.clone()));
    assert_eq!(store.checkpoints(&ws, 0, 1).await.expect("checkpoints"), vec![one.clone()]);
    assert_eq!(store.checkpoints(&ws, 1, 10).await.expect("checkpoints"), vec![two.clone()]);
    assert!(store.checkpoints(&ws, 2, 10).await.expect("checkpoints").is_empty());
    let middle = store.sealed_records(&ws, 2, 2).await.expect("sealed");
    let indices: Vec<(u64, u64)> = middle.iter().map(|(e, _)| (e.index, e.checkpoint)).collect();
    assert_eq!(indices, vec![(2, 1), (3, 2)]);
    assert_eq!(middle[1].1, Some(Ok(second[0].clone())));
    assert!(store.sealed_records(&ws, u64::MAX, 10).await.expect("beyond i64").is_empty());
    assert!(store.checkpoints(&ws, u64::MAX, 10).await.expect("beyond i64").is_empty());

    // Stale sealers: a seq that is taken is AlreadyExists and writes nothing.
    let third = appended(&store, &ws, 2).await;
    let (stale, entries) = Checkpoint::seal(None, &ws, &third, Timestamp::now()).expect("seal");
    assert!(is_taken(&store.append_checkpoint(&stale, &entries).await, EntityKind::Checkpoint, "1"));
    let (stale, entries) = Checkpoint::seal(Some(&one), &ws, &third, Timestamp::now()).expect("seal");
    assert!(is_taken(&store.append_checkpoint(&stale, &entries).await, EntityKind::Checkpoint, "2"));

    // A record sealed before, or twice in one checkpoint: refused, nothing written.
    let resealed = [third[0].clone(), first[1].clone()];
    let (bad, entries) = Checkpoint::seal(Some(&two), &ws, &resealed, Timestamp::now()).expect("seal");
    let outcome = store.append_checkpoint(&bad, &entries).await;
    assert!(is_taken(&outcome, EntityKind::HistoryRecord, &first[1].id().to_string()), "{outcome:?}");
    let twice = [third[0].clone(), third[0].clone()];
    let (bad, entries) = Checkpoint::seal(Some(&two), &ws, &twice, Timestamp::now()).expect("seal");
    let outcome = store.append_checkpoint(&bad, &entries).await;
    assert!(is_taken(&outcome, EntityKind::HistoryRecord, &third[0].id().to_string()), "{outcome:?}");

    // A checkpoint that does not match its entries is a validation error.
    let (sealed, entries) = Checkpoint::seal(Some(&two), &ws, &third, Timestamp::now()).expect("seal");
    let forged = decode_checkpoint(CheckpointParts {
        workspace_id: sealed.workspace_id().clone(),
        seq: sealed.seq(),
        first_index: sealed.first_index(),
        record_count: sealed.record_count(),
        root: one.root().to_owned(),
        previous: sealed.previous().map(str::to_owned),
        created_at: sealed.created_at(),
        digest: sealed.digest().to_owned(),
    });
    let outcome = store.append_checkpoint(&forged, &entries).await;
    assert!(matches!(outcome, Err(GovernanceError::Validation { .. })), "{outcome:?}");

    assert_eq!(store.latest_checkpoint(&ws).await.expect("latest"), Some(two.clone()));
    assert_eq!(rows_in(&store, "governance_checkpoints", &ws).await, 2);
    assert_eq!(rows_in(&store, "governance_seals", &ws).await, 5);
    assert_eq!(store.unsealed_history(&ws, None, 100).await.expect("unsealed"), readable(&third));

    // Another workspace sees none of it.
    let other = workspace();
    assert_eq!(store.latest_checkpoint(&other).await.expect("latest"), None);
    assert!(store.sealed_records(&other, 0, 10).await.expect("sealed").is_empty());
    assert!(store.unsealed_history(&other, None, 10).await.expect("unsealed").is_empty());
}

/// Rows the store did not write: a seal whose record is not stored reads
/// back as `None`; out-of-range numbers are typed errors, not panics.
#[tokio::test]
async fn odd_rows_read_back_without_panics() {
    let Some(store) = store().await else { return };
    let ws = workspace();
    let missing = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO governance_seals VALUES ($1, 0, $2, 'hash', 1), ($1, 1, $3, 'hash', -1)")
        .bind(ws.as_str())
        .bind(missing)
        .bind(uuid::Uuid::now_v7())
        .execute(store.pool())
        .await
        .expect("raw seals");
    let sealed = store.sealed_records(&ws, 0, 1).await.expect("sealed");
    assert_eq!(sealed.len(), 1);
    assert_eq!((sealed[0].0.record_id.as_uuid(), &sealed[0].1), (missing, &None));
    let negative = store.sealed_records(&ws, 0, 10).await;
    assert!(matches!(negative, Err(GovernanceError::Backend { .. })), "{negative:?}");

    sqlx::query("INSERT INTO governance_checkpoints VALUES ($1, -1, 0, 1, 'root', NULL, now(), 'digest')")
        .bind(ws.as_str())
        .execute(store.pool())
        .await
        .expect("raw checkpoint");
    let latest = store.latest_checkpoint(&ws).await;
    assert!(matches!(latest, Err(GovernanceError::Backend { .. })), "{latest:?}");
}

/// Sealers racing for the same seq (over the same records): exactly one
/// wins, every other gets AlreadyExists(Checkpoint), never a record clash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sealers_of_one_seq_one_wins() {
    let Some(store) = store().await else { return };
    let store = Arc::new(store);
    for round in 0..5 {
        let ws = workspace();
        let records = appended(&store, &ws, 20).await;
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let mut sealers = tokio::task::JoinSet::new();
        for n in 0..8i64 {
            let (store, ws, records, barrier) = (store.clone(), ws.clone(), records.clone(), barrier.clone());
            sealers.spawn(async move {
                let at = Timestamp::now().add_micros(n).expect("in range");
                let (checkpoint, entries) = Checkpoint::seal(None, &ws, &records, at).expect("seal");
                barrier.wait().await;
                store.append_checkpoint(&checkpoint, &entries).await
            });
        }
        let (mut won, mut lost) = (0, 0);
        while let Some(done) = sealers.join_next().await {
            match done.expect("sealer") {
                Ok(()) => won += 1,
                outcome => {
                    assert!(is_taken(&outcome, EntityKind::Checkpoint, "1"), "round {round}: {outcome:?}");
                    lost += 1;
                }
            }
        }
        assert_eq!((won, lost), (1, 7), "round {round}");
        assert_eq!(rows_in(&store, "governance_checkpoints", &ws).await, 1);
        assert_eq!(rows_in(&store, "governance_seals", &ws).await, 20);
    }
}

#[tokio::test]
async fn server_refuses_update_delete_truncate_of_checkpoints_and_seals() {
    let Some(store) = store().await else { return };
    let ws = workspace();
    let records = appended(&store, &ws, 2).await;
    let (checkpoint, entries) = Checkpoint::seal(None, &ws, &records, Timestamp::now()).expect("seal");
    store.append_checkpoint(&checkpoint, &entries).await.expect("checkpoint");
    for replica in [false, true] {
        for sql in [
            "UPDATE governance_checkpoints SET root = 'x' WHERE workspace_id = $1",
            "DELETE FROM governance_checkpoints WHERE workspace_id = $1",
            "TRUNCATE governance_checkpoints",
            "UPDATE governance_seals SET content_hash = 'x' WHERE workspace_id = $1",
            "DELETE FROM governance_seals WHERE workspace_id = $1",
            "TRUNCATE governance_seals",
        ] {
            let mut txn = store.pool().begin().await.expect("begin");
            if replica {
                sqlx::query("SET LOCAL session_replication_role = replica").execute(&mut *txn).await.expect("role");
            }
            let query = sqlx::query(sqlx::AssertSqlSafe(sql));
            let query = if sql.contains("$1") { query.bind(ws.as_str()) } else { query };
            let outcome = query.execute(&mut *txn).await;
            let _ = txn.rollback().await;
            let error = outcome.expect_err(&format!("{sql} (replica: {replica}) must be refused"));
            let code = error.as_database_error().and_then(|e| e.code().map(|c| c.into_owned()));
            assert_eq!(code.as_deref(), Some("55000"), "{sql}: {error}");
            assert!(error.to_string().contains("append-only"), "{sql}: {error}");
        }
    }
    assert_eq!(store.latest_checkpoint(&ws).await.expect("latest"), Some(checkpoint));
    assert_eq!(store.sealed_records(&ws, 0, 10).await.expect("sealed").len(), 2);
}

/// The sealer's query on 50k records, most of them sealed: an index walk of
/// the history in (created_at, id) order, anti-joined on the seals' unique
/// key. Its cost grows with the sealed records it walks past.
#[tokio::test]
async fn unsealed_history_is_an_indexed_anti_join() {
    let Some(store) = store().await else { return };
    let pool = store.pool();
    sqlx::query(
        "INSERT INTO governance_history (workspace_id, id, category, code, actor_kind, actor_id, actor,
             object_type, operation, reason_codes, created_at, content_hash)
         SELECT 'big', gen_random_uuid(), 'decision', 'policy.evaluated', 'user', 'u',
                '{\"actor\":{\"kind\":\"user\",\"id\":\"u\"},\"delegation\":[]}', 'flag', 'update', '{}',
                now() - (50000 - g) * interval '1 second', 'hash'
         FROM generate_series(1, 50000) AS g",
    )
    .execute(pool)
    .await
    .expect("history");
    sqlx::query(
        "INSERT INTO governance_seals
         SELECT workspace_id, row_number() OVER (ORDER BY created_at, id) - 1, id, content_hash, 1
         FROM governance_history WHERE workspace_id = 'big' ORDER BY created_at, id LIMIT 49000",
    )
    .execute(pool)
    .await
    .expect("seals");
    sqlx::query("ANALYZE governance_history").execute(pool).await.expect("analyze");
    sqlx::query("ANALYZE governance_seals").execute(pool).await.expect("analyze");

    let ws = WorkspaceId::new("big").expect("valid");
    let plan = store.explain_unsealed_history(&ws, None, 100).await.expect("explain");
    assert!(plan.iter().any(|l| l.contains("Anti Join")), "an anti-join: {plan:#?}");
    assert!(plan.iter().any(|l| l.contains("governance_seals_record")), "the seals' key serves it: {plan:#?}");
    assert!(!plan.iter().any(|l| l.contains("Seq Scan on governance_history")), "scans the history: {plan:#?}");
    let unsealed = store.unsealed_history(&ws, None, 2000).await.expect("unsealed");
    assert_eq!(unsealed.len(), 1000);
}

/// Stores a new request for `target` and returns it.
async fn created(store: &PostgresStore, spec: NewRequest) -> GovernanceRequest {
    let creation = lifecycle::create(spec, RequestId::new(), Timestamp::now()).expect("valid");
    store.create_request(&creation).await.expect("create").into_inner()
}

fn user(id: &str) -> governance_abstractions::Principal {
    Actor::user(id).into()
}

/// Every column of the stored row except [`TRANSITION_COLUMNS`], as JSON.
async fn frozen_columns(store: &PostgresStore, ws: &WorkspaceId, id: RequestId) -> serde_json::Value {
    sqlx::query("SELECT to_jsonb(r) - $3::text[] FROM governance_requests r WHERE workspace_id = $1 AND id = $2")
        .bind(ws.as_str())
        .bind(id.as_uuid())
        .bind(TRANSITION_COLUMNS)
        .fetch_one(store.pool())
        .await
        .expect("row")
        .get(0)
}

async fn stored_digest(store: &PostgresStore, ws: &WorkspaceId, id: RequestId) -> Option<String> {
    sqlx::query("SELECT state_digest FROM governance_requests WHERE workspace_id = $1 AND id = $2")
        .bind(ws.as_str())
        .bind(id.as_uuid())
        .fetch_one(store.pool())
        .await
        .expect("row")
        .get(0)
}

async fn raw(store: &PostgresStore, sql: &'static str, ws: &WorkspaceId, id: RequestId) {
    sqlx::query(sql).bind(ws.as_str()).bind(id.as_uuid()).execute(store.pool()).await.expect("raw update");
}

/// A transition writes the shared transition columns and nothing else: every
/// other column (target, requester, intent, idempotency key, created_at,
/// creation digest, …) keeps what creation wrote, and the stored state digest
/// is the new revision's.
#[tokio::test]
async fn transition_writes_only_the_transition_columns() {
    let Some(store) = store().await else { return };
    let ws = workspace();
    let spec = NewRequest::new(ws.clone(), TargetRef::new("invoice", "i-1"), "update", Actor::user("u"))
        .intent("raise the limit")
        .approval(Actor::user("boss"), 1)
        .expected_version(7, StaleStrategy::default())
        .expires_at(Timestamp::now().add_micros(3_600_000_000).expect("in range"))
        .idempotency_key("create-1")
        .category("finance")
        .tag("urgent")
        .metadata(serde_json::json!({ "ticket": 42 }));
    let mut request = created(&store, spec).await;
    assert_eq!(stored_digest(&store, &ws, request.id()).await.as_deref(), Some(request.state_digest()));
    let frozen = frozen_columns(&store, &ws, request.id()).await;
    assert_eq!(frozen["intent"], "raise the limit");

    let steps = [
        (user("u"), Action::Submit { reason: PendingReason::Approval }),
        (user("boss"), Action::Decide { verdict: governance_abstractions::Verdict::Approved, comment: None }),
        (user("u"), Action::Annotate { metadata: serde_json::json!({ "ticket": 43 }) }),
    ];
    for (by, action) in &steps {
        let transition = lifecycle::apply(&request, by, action, Timestamp::now()).expect("allowed");
        store.commit_transition(&transition).await.expect("commit");
        request = transition.request().clone();
        assert_eq!(frozen_columns(&store, &ws, request.id()).await, frozen, "after {action:?}");
        assert_eq!(stored_digest(&store, &ws, request.id()).await.as_deref(), Some(request.state_digest()));
        assert_eq!(store.get_request(&ws, request.id()).await.expect("read back"), request);
    }
    assert_eq!((request.status(), request.revision()), (RequestStatus::Approved, 4));

    // Proof that the statement does not name them: a frozen column changed
    // behind the store keeps the changed value through a transition (writing
    // it would have put the transition's copy back).
    raw(
        &store,
        "UPDATE governance_requests SET intent = 'changed' WHERE workspace_id = $1 AND id = $2",
        &ws,
        request.id(),
    )
    .await;
    let cancel = Action::Cancel { reason: "not needed".into() };
    let transition = lifecycle::apply(&request, &user("u"), &cancel, Timestamp::now()).expect("allowed");
    store.commit_transition(&transition).await.expect("commit");
    assert_eq!(frozen_columns(&store, &ws, request.id()).await["intent"], "changed");
    assert_eq!(stored_digest(&store, &ws, request.id()).await.as_deref(), Some(transition.request().state_digest()));
}

/// Rows written before the state digest column existed have none: they read
/// back with a digest computed from their fields and take a transition,
/// which stores its digest. A digest that is not the one a transition was
/// computed from refuses it.
#[tokio::test]
async fn rows_without_a_state_digest_and_forged_digests() {
    let Some(store) = store().await else { return };
    let ws = workspace();
    let request =
        created(&store, NewRequest::new(ws.clone(), TargetRef::new("t", "1"), "update", Actor::user("u"))).await;
    raw(
        &store,
        "UPDATE governance_requests SET state_digest = NULL WHERE workspace_id = $1 AND id = $2",
        &ws,
        request.id(),
    )
    .await;
    let read = store.get_request(&ws, request.id()).await.expect("a row without a digest decodes");
    assert_eq!(read, request, "its digest is computed from its fields");
    let approve = lifecycle::apply(&read, &user("u"), &Action::Approve, Timestamp::now()).expect("allowed");
    store.commit_transition(&approve).await.expect("commits over a row without a digest");
    assert_eq!(stored_digest(&store, &ws, request.id()).await.as_deref(), Some(approve.request().state_digest()));

    // Same revision and status, another digest: computed from a state never stored.
    let cancel = Action::Cancel { reason: "no".into() };
    let transition = lifecycle::apply(approve.request(), &user("u"), &cancel, Timestamp::now()).expect("allowed");
    raw(
        &store,
        "UPDATE governance_requests SET state_digest = 'other' WHERE workspace_id = $1 AND id = $2",
        &ws,
        request.id(),
    )
    .await;
    let refused = store.commit_transition(&transition).await;
    assert!(matches!(refused, Err(GovernanceError::Validation { .. })), "{refused:?}");
    assert_eq!(store.history_for_request(&ws, request.id()).await.expect("history").len(), 2, "nothing recorded");
}

/// A supersession commits only while its successor is stored at the
/// revision and digest it was computed against, checked in its own
/// statement; otherwise nothing is written.
#[tokio::test]
async fn supersession_checks_its_successor() {
    let Some(store) = store().await else { return };
    let ws = workspace();
    let spec = || NewRequest::new(ws.clone(), TargetRef::new("flag", "f-1"), "update", Actor::user("u"));
    let older = created(&store, spec()).await;
    let newer = created(&store, spec()).await;
    let unchanged = |store: &PostgresStore| {
        let (store, ws, older) = (store.clone(), ws.clone(), older.clone());
        async move {
            assert_eq!(store.get_request(&ws, older.id()).await.expect("older"), older, "older request untouched");
            assert_eq!(store.history_for_request(&ws, older.id()).await.expect("history").len(), 1);
        }
    };

    // The successor moved on after the supersession was computed.
    let supersede = lifecycle::supersede(&older, &newer, &user("u"), Timestamp::now()).expect("allowed");
    let annotate = Action::Annotate { metadata: serde_json::json!({ "n": 1 }) };
    let moved = lifecycle::apply(&newer, &user("u"), &annotate, Timestamp::now()).expect("allowed");
    store.commit_transition(&moved).await.expect("successor moves on");
    let outcome = store.commit_transition(&supersede).await;
    assert!(
        matches!(outcome, Err(GovernanceError::Conflict { id, expected: 1, actual: 2 }) if id == newer.id()),
        "{outcome:?}"
    );
    unchanged(&store).await;

    // The successor at its revision with another digest: forged.
    let newer = moved.request().clone();
    let supersede = lifecycle::supersede(&older, &newer, &user("u"), Timestamp::now()).expect("allowed");
    raw(
        &store,
        "UPDATE governance_requests SET state_digest = 'other' WHERE workspace_id = $1 AND id = $2",
        &ws,
        newer.id(),
    )
    .await;
    let outcome = store.commit_transition(&supersede).await;
    assert!(matches!(outcome, Err(GovernanceError::Validation { .. })), "{outcome:?}");
    unchanged(&store).await;
    // A successor row without a digest (written before digests) is accepted.
    raw(
        &store,
        "UPDATE governance_requests SET state_digest = NULL WHERE workspace_id = $1 AND id = $2",
        &ws,
        newer.id(),
    )
    .await;

    // A successor that was never stored.
    let ghost = lifecycle::create(spec(), RequestId::new(), Timestamp::now()).expect("valid");
    let to_ghost = lifecycle::supersede(&older, ghost.request(), &user("u"), Timestamp::now()).expect("allowed");
    let outcome = store.commit_transition(&to_ghost).await;
    assert!(
        matches!(&outcome, Err(GovernanceError::NotFound { id, .. }) if *id == ghost.request().id().to_string()),
        "{outcome:?}"
    );
    unchanged(&store).await;

    // A stale older request is reported before its successor.
    let stale = lifecycle::supersede(&older, &newer, &user("u"), Timestamp::now()).expect("allowed");
    store.commit_transition(&supersede).await.expect("supersedes");
    let stored = store.get_request(&ws, older.id()).await.expect("older");
    assert_eq!((stored.status(), stored.superseded_by()), (RequestStatus::Superseded, Some(newer.id())));
    assert_eq!(stored_digest(&store, &ws, older.id()).await.as_deref(), Some(supersede.request().state_digest()));
    let outcome = store.commit_transition(&stale).await;
    assert!(matches!(outcome, Err(GovernanceError::Conflict { id, .. }) if id == older.id()), "{outcome:?}");
}

/// The supersession's guard locks the successor: it waits for a
/// transaction that is changing the successor, then refuses; and while a
/// caller's transaction holds a supersession, the successor cannot change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supersession_locks_its_successor_until_commit() {
    let Some(store) = store().await else { return };
    let ws = workspace();
    let spec = || NewRequest::new(ws.clone(), TargetRef::new("flag", "f-2"), "update", Actor::user("u"));
    let older = created(&store, spec()).await;
    let newer = created(&store, spec()).await;
    let annotate = Action::Annotate { metadata: serde_json::json!({ "n": 1 }) };
    let wait = Duration::from_millis(300);

    // A transaction changes the successor; the supersession waits for it,
    // then sees the committed revision and refuses.
    let supersede = lifecycle::supersede(&older, &newer, &user("u"), Timestamp::now()).expect("allowed");
    let moved = lifecycle::apply(&newer, &user("u"), &annotate, Timestamp::now()).expect("allowed");
    let mut txn = store.pool().begin().await.expect("begin");
    store.commit_transition_in(&mut txn, &moved).await.expect("successor moves, uncommitted");
    let racing = tokio::spawn({
        let store = store.clone();
        async move { store.commit_transition(&supersede).await }
    });
    tokio::time::sleep(wait).await;
    assert!(!racing.is_finished(), "the guard waits for the successor's writer");
    txn.commit().await.expect("commit");
    let outcome = racing.await.expect("task");
    assert!(matches!(outcome, Err(GovernanceError::Conflict { id, .. }) if id == newer.id()), "{outcome:?}");
    assert_eq!(store.get_request(&ws, older.id()).await.expect("older"), older);

    // A caller's transaction that superseded holds the successor: a change
    // to it waits for that commit.
    let newer = moved.request().clone();
    let supersede = lifecycle::supersede(&older, &newer, &user("u"), Timestamp::now()).expect("allowed");
    let mut txn = store.pool().begin().await.expect("begin");
    store.commit_transition_in(&mut txn, &supersede).await.expect("supersedes, uncommitted");
    let again = Action::Annotate { metadata: serde_json::json!({ "n": 2 }) };
    let change = lifecycle::apply(&newer, &user("u"), &again, Timestamp::now()).expect("allowed");
    let racing = tokio::spawn({
        let store = store.clone();
        async move { store.commit_transition(&change).await }
    });
    tokio::time::sleep(wait).await;
    assert!(!racing.is_finished(), "the successor is locked until the supersession commits");
    txn.commit().await.expect("commit");
    racing.await.expect("task").expect("the successor changes after the commit");
    let stored = store.get_request(&ws, older.id()).await.expect("older");
    assert_eq!(stored.superseded_by(), Some(newer.id()));
}

/// A history row that decodes only as far as its id and time (a value this
/// library never writes) is `Unreadable` in the integrity reads, named for
/// `verify`; the other reads fail with a backend error.
#[tokio::test]
async fn undecodable_history_rows_are_unreadable_to_integrity_reads() {
    let Some(store) = store().await else { return };
    let ws = workspace();
    let good = appended(&store, &ws, 1).await.remove(0);
    let base = good.created_at();
    let mut odd = Vec::new();
    for (n, (category, actor)) in
        [("bogus", r#"{"actor":{"kind":"user","id":"u"},"delegation":[]}"#), ("decision", r#"{"nope":1}"#)]
            .into_iter()
            .enumerate()
    {
        let (id, at) = (RecordId::new(), base.add_micros(n as i64 + 1).expect("in range"));
        sqlx::query(
            "INSERT INTO governance_history (workspace_id, id, category, code, actor_kind, actor_id, actor,
                 object_type, operation, reason_codes, created_at, content_hash)
             VALUES ($1, $2, $3, 'decision.denied', 'user', 'u', $4::jsonb, 'flag', 'update', '{}', $5, 'hash')",
        )
        .bind(ws.as_str())
        .bind(id.as_uuid())
        .bind(category)
        .bind(actor)
        .bind(at.as_datetime())
        .execute(store.pool())
        .await
        .expect("raw row");
        odd.push((id, at));
    }

    let unsealed = store.unsealed_history(&ws, None, 10).await.expect("unsealed reads past odd rows");
    assert_eq!(unsealed.len(), 3);
    assert_eq!(unsealed[0], Ok(good.clone()));
    for ((row, (id, at)), column) in unsealed[1..].iter().zip(&odd).zip(["category", "actor"]) {
        match row {
            Err(Unreadable { id: i, created_at, problem }) => {
                assert_eq!((i, created_at), (id, at));
                assert!(problem.contains(column), "{problem}");
            }
            Ok(record) => panic!("decoded an odd row: {record:?}"),
        }
    }
    let after = Some(Position { created_at: odd[0].1, id: odd[0].0.as_uuid() });
    assert_eq!(store.unsealed_history(&ws, after, 10).await.expect("unsealed").len(), 1, "pages past them");

    // Sealed: the entry comes back with its unreadable row.
    sqlx::query("INSERT INTO governance_seals VALUES ($1, 0, $2, 'hash', 1)")
        .bind(ws.as_str())
        .bind(odd[0].0.as_uuid())
        .execute(store.pool())
        .await
        .expect("raw seal");
    let sealed = store.sealed_records(&ws, 0, 10).await.expect("sealed");
    assert!(matches!(&sealed[0].1, Some(Err(Unreadable { id, .. })) if *id == odd[0].0), "{sealed:?}");

    let one = store.get_history_record(&ws, odd[0].0).await;
    assert!(matches!(one, Err(GovernanceError::Backend { .. })), "{one:?}");
    let page = store.query_history(&ws, &Default::default(), &PageRequest::first(10)).await;
    assert!(matches!(page, Err(GovernanceError::Backend { .. })), "{page:?}");
}

#[tokio::test]
async fn count_history_refuses_a_window_beyond_the_storable_range() {
    let Some(store) = store().await else { return };
    let ws = workspace();
    appended(&store, &ws, 1).await;
    let year_10000 = Timestamp::from_unix_micros(Timestamp::MAX_MICROS + 1).expect("chrono has it");
    let window = TimeRange { from: None, until: Some(year_10000) };
    let refused = store.count_history(&ws, &CountQuery::new(CountBy::Decision, window)).await;
    assert!(matches!(refused, Err(GovernanceError::Validation { .. })), "{refused:?}");
    let all = store.count_history(&ws, &CountQuery::new(CountBy::Decision, TimeRange::default())).await;
    assert_eq!(all.expect("counts").iter().map(|c| c.count).sum::<u64>(), 1);
}

/// Every embedded migration is recorded once, and the state digest column
/// is nullable text.
#[tokio::test]
async fn migrations_are_all_applied_once() {
    let Some(store) = store().await else { return };
    let table = sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {}", governance_postgres::MIGRATIONS_TABLE));
    let applied: i64 = sqlx::query(table).fetch_one(store.pool()).await.expect("count").get(0);
    assert_eq!(applied, governance_postgres::migrator().iter().count() as i64);
    let column = sqlx::query(
        "SELECT data_type::text, is_nullable::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = 'governance_requests' AND column_name = 'state_digest'",
    )
    .fetch_one(store.pool())
    .await
    .expect("the column exists");
    assert_eq!((column.get::<String, _>(0), column.get::<String, _>(1)), ("text".to_owned(), "YES".to_owned()));
}

/// A consistent copy of `request` with `edit` applied and its state digest
/// recomputed: what a caller could build from a read (the copy checks).
fn forged(request: &GovernanceRequest, edit: impl FnOnce(&mut serde_json::Value)) -> GovernanceRequest {
    let mut json = serde_json::to_value(request).expect("serializes");
    edit(&mut json);
    let edited: GovernanceRequest = serde_json::from_value(json.clone()).expect("deserializes");
    json["state_digest"] = edited.compute_state_digest().expect("a digest").into();
    let forged: GovernanceRequest = serde_json::from_value(json).expect("deserializes");
    forged.check().expect("the forgery is self-consistent");
    assert_ne!(forged.state_digest(), request.state_digest());
    forged
}

const FORGET_DIGEST: &str = "UPDATE governance_requests SET state_digest = NULL WHERE workspace_id = $1 AND id = $2";

/// A row stored without a digest is checked against the digest of its
/// stored content: a transition computed from a forged copy (approvals
/// dropped, intent changed, digest recomputed) is a validation error and
/// changes nothing; an honest one commits and stores its digest.
#[tokio::test]
async fn forged_copies_of_rows_without_a_digest_are_refused() {
    let Some(store) = store().await else { return };
    let ws = workspace();
    let spec = NewRequest::new(ws.clone(), TargetRef::new("t", "1"), "update", Actor::user("u"))
        .intent("as asked")
        .approval(Actor::user("boss"), 1);
    let request = created(&store, spec).await;
    raw(&store, FORGET_DIGEST, &ws, request.id()).await;
    let read = store.get_request(&ws, request.id()).await.expect("reads");
    assert_eq!(read, request);

    let no_approvals = forged(&read, |json| json["approvals"] = serde_json::json!([]));
    let other_intent = forged(&read, |json| json["intent"] = "something else".into());
    let cancel = Action::Cancel { reason: "no".into() };
    for (copy, action) in [(&no_approvals, &Action::Approve), (&other_intent, &cancel)] {
        let transition = lifecycle::apply(copy, &user("u"), action, Timestamp::now()).expect("the copy allows it");
        let refused = store.commit_transition(&transition).await;
        assert!(matches!(refused, Err(GovernanceError::Validation { .. })), "{action:?}: {refused:?}");
        assert_eq!(store.get_request(&ws, request.id()).await.expect("reads"), request, "unchanged");
        assert_eq!(stored_digest(&store, &ws, request.id()).await, None, "still without a digest");
        assert_eq!(store.history_for_request(&ws, request.id()).await.expect("history").len(), 1);
    }
    // Inside a caller's transaction the refusal leaves it usable.
    let transition = lifecycle::apply(&no_approvals, &user("u"), &Action::Approve, Timestamp::now()).expect("ok");
    let mut txn = store.pool().begin().await.expect("begin");
    let refused = store.commit_transition_in(&mut txn, &transition).await;
    assert!(matches!(refused, Err(GovernanceError::Validation { .. })), "{refused:?}");
    sqlx::query("SELECT 1").execute(&mut *txn).await.expect("the transaction is usable");
    txn.rollback().await.expect("rollback");

    let submit = Action::Submit { reason: PendingReason::Approval };
    let honest = lifecycle::apply(&read, &user("u"), &submit, Timestamp::now()).expect("allowed");
    store.commit_transition(&honest).await.expect("an honest transition commits");
    assert_eq!(stored_digest(&store, &ws, request.id()).await.as_deref(), Some(honest.request().state_digest()));
    assert_eq!(&store.get_request(&ws, request.id()).await.expect("reads"), honest.request());

    // An honest one inside a caller's transaction commits with it.
    raw(&store, FORGET_DIGEST, &ws, request.id()).await;
    let read = store.get_request(&ws, request.id()).await.expect("reads");
    let decide = Action::Decide { verdict: governance_abstractions::Verdict::Approved, comment: None };
    let approve = lifecycle::apply(&read, &user("boss"), &decide, Timestamp::now()).expect("allowed");
    let mut txn = store.pool().begin().await.expect("begin");
    store.commit_transition_in(&mut txn, &approve).await.expect("commits in the caller's transaction");
    txn.commit().await.expect("commit");
    assert_eq!(stored_digest(&store, &ws, request.id()).await.as_deref(), Some(approve.request().state_digest()));
}

/// The same for a supersession's successor stored without a digest: a
/// forged copy of it is refused, the honest one accepted (also when the
/// older request has no digest either).
#[tokio::test]
async fn forged_successors_without_a_digest_are_refused() {
    let Some(store) = store().await else { return };
    let ws = workspace();
    let spec = || NewRequest::new(ws.clone(), TargetRef::new("flag", "f-3"), "update", Actor::user("u"));
    for older_without_digest in [false, true] {
        let older = created(&store, spec()).await;
        let newer = created(&store, spec().intent("the newer one")).await;
        raw(&store, FORGET_DIGEST, &ws, newer.id()).await;
        if older_without_digest {
            raw(&store, FORGET_DIGEST, &ws, older.id()).await;
        }
        let read_newer = store.get_request(&ws, newer.id()).await.expect("reads");
        let read_older = store.get_request(&ws, older.id()).await.expect("reads");

        let copy = forged(&read_newer, |json| json["intent"] = "another one".into());
        let supersede = lifecycle::supersede(&read_older, &copy, &user("u"), Timestamp::now()).expect("allowed");
        let refused = store.commit_transition(&supersede).await;
        assert!(matches!(refused, Err(GovernanceError::Validation { .. })), "{refused:?}");
        assert_eq!(store.get_request(&ws, older.id()).await.expect("older"), older, "nothing written");
        assert_eq!(store.history_for_request(&ws, older.id()).await.expect("history").len(), 1);

        let supersede = lifecycle::supersede(&read_older, &read_newer, &user("u"), Timestamp::now()).expect("ok");
        store.commit_transition(&supersede).await.expect("the honest successor is accepted");
        let stored = store.get_request(&ws, older.id()).await.expect("older");
        assert_eq!(stored.superseded_by(), Some(newer.id()));
        assert_eq!(stored_digest(&store, &ws, older.id()).await.as_deref(), Some(supersede.request().state_digest()));
        assert_eq!(stored_digest(&store, &ws, newer.id()).await, None, "the successor is not written");
    }
}

/// The server refuses a time outside 1970..=9999 in every time column, so
/// no read meets one (the driver's decoder panics on `infinity`).
#[tokio::test]
async fn the_server_refuses_times_outside_the_storable_range() {
    let Some(store) = store().await else { return };
    let ws = workspace();
    let request = created(
        &store,
        NewRequest::new(ws.clone(), TargetRef::new("t", "1"), "update", Actor::user("u"))
            .expires_at(Timestamp::now().add_micros(1_000_000).expect("in range")),
    )
    .await;
    appended(&store, &ws, 1).await;
    let check_violation = |outcome: Result<sqlx::postgres::PgQueryResult, sqlx::Error>, what: &str| {
        let error = outcome.expect_err(what);
        let code = error.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("23514"), "{what}: {error}");
    };
    for (column, value) in [
        ("updated_at", "infinity"),
        ("updated_at", "-infinity"),
        ("created_at", "1969-12-31 23:59:59.999999+00"),
        ("expires_at", "10000-01-01 00:00:00+00"),
        ("expires_at", "infinity"),
    ] {
        let sql = format!("UPDATE governance_requests SET {column} = '{value}' WHERE workspace_id = $1 AND id = $2");
        let outcome =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(ws.as_str()).bind(request.id().as_uuid()).execute(store.pool());
        check_violation(outcome.await, &format!("{column} = {value}"));
    }
    let insert = sqlx::query(
        "INSERT INTO governance_history (workspace_id, id, category, code, actor_kind, actor_id, actor,
             object_type, operation, reason_codes, created_at, content_hash)
         VALUES ($1, $2, 'decision', 'decision.denied', 'user', 'u', '{}', 'flag', 'update', '{}', 'infinity', 'h')",
    )
    .bind(ws.as_str())
    .bind(RecordId::new().as_uuid())
    .execute(store.pool())
    .await;
    check_violation(insert, "history created_at = infinity");
    let insert =
        sqlx::query("INSERT INTO governance_checkpoints VALUES ($1, 1, 0, 1, 'root', NULL, 'infinity', 'digest')")
            .bind(ws.as_str())
            .execute(store.pool())
            .await;
    check_violation(insert, "checkpoint created_at = infinity");

    // The edges of the range are stored and read back.
    sqlx::query(
        "UPDATE governance_requests SET expires_at = '9999-12-31 23:59:59.999999+00', \
         created_at = '1970-01-01 00:00:00+00' WHERE workspace_id = $1 AND id = $2",
    )
    .bind(ws.as_str())
    .bind(request.id().as_uuid())
    .execute(store.pool())
    .await
    .expect("the edges are in range");
    let read = store.get_request(&ws, request.id()).await.expect("reads without a panic");
    assert_eq!(read.expires_at().map(|t| t.unix_micros()), Some(Timestamp::MAX_MICROS));
    assert_eq!(read.created_at().unix_micros(), Timestamp::MIN_MICROS);
    // The creation record and the decision.
    assert_eq!(store.unsealed_history(&ws, None, 10).await.expect("unsealed").len(), 2);
}

/// The constraints are validated (the migration's second step ran).
#[tokio::test]
async fn the_time_range_constraints_are_validated() {
    let Some(store) = store().await else { return };
    let rows = sqlx::query(
        "SELECT conname::text, convalidated FROM pg_constraint WHERE conname LIKE 'governance_%in_range' ORDER BY 1",
    )
    .fetch_all(store.pool())
    .await
    .expect("catalog");
    let constraints: Vec<(String, bool)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(
        constraints,
        [
            ("governance_checkpoints_time_in_range".to_owned(), true),
            ("governance_history_time_in_range".to_owned(), true),
            ("governance_requests_times_in_range".to_owned(), true),
        ]
    );
}

/// A position past the storable range is a validation error, as on every provider.
#[tokio::test]
async fn unsealed_history_validates_its_position() {
    let Some(store) = store().await else { return };
    let ws = workspace();
    appended(&store, &ws, 1).await;
    let beyond = Timestamp::from_unix_micros(Timestamp::MAX_MICROS + 1).expect("chrono has it");
    let after = Position { created_at: beyond, id: uuid::Uuid::nil() };
    let refused = store.unsealed_history(&ws, Some(after), 10).await;
    assert!(matches!(refused, Err(GovernanceError::Validation { .. })), "{refused:?}");
}

/// A write that reaches a read-only server (a standby, or a primary demoted
/// by a failover) is `Unavailable`: retrying against the node that now takes
/// writes can succeed, and nothing was written.
#[tokio::test]
async fn a_write_on_a_read_only_server_is_unavailable() {
    let Some(store) = store().await else { return };
    let options = store.pool().connect_options().as_ref().clone().options([("default_transaction_read_only", "on")]);
    let read_only = PostgresStore::new(
        sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_with(options).await.expect("connects"),
    );
    let ws = workspace();
    let spec = NewRequest::new(ws.clone(), TargetRef::new("t", "1"), "update", Actor::user("u"));
    let creation = lifecycle::create(spec, RequestId::new(), Timestamp::now()).expect("valid");
    let error = read_only.create_request(&creation).await.expect_err("a read-only server refuses writes");
    assert!(matches!(error, GovernanceError::Unavailable { .. }), "{error:?}");
    assert!(error.is_retryable());
    let missing = store.get_request(&ws, creation.request().id()).await.expect_err("nothing was written");
    assert!(missing.is_not_found(), "{missing:?}");
}

/// Reads can be served from a standby: a store over a read-only pool
/// answers every read the application makes (and the feed), while writes
/// stay with the primary's store.
#[tokio::test]
async fn a_store_over_a_read_only_pool_serves_reads() {
    let Some(primary) = store().await else { return };
    let options = primary.pool().connect_options().as_ref().clone().options([("default_transaction_read_only", "on")]);
    let standby = PostgresStore::new(
        sqlx::postgres::PgPoolOptions::new().max_connections(2).connect_with(options).await.expect("connects"),
    );
    let ws = workspace();
    let spec = NewRequest::new(ws.clone(), TargetRef::new("t", "1"), "update", Actor::user("u"));
    let creation = lifecycle::create(spec, RequestId::new(), Timestamp::now()).expect("valid");
    primary.create_request(&creation).await.expect("the primary takes the write");
    let id = creation.request().id();
    assert_eq!(standby.get_request(&ws, id).await.expect("read").revision(), 1);
    let page = standby.query_requests(&ws, &RequestFilter::default(), &PageRequest::first(10)).await.expect("query");
    assert_eq!(page.items.len(), 1);
    assert_eq!(standby.history_for_request(&ws, id).await.expect("history").len(), 1);
    // The feed holds a record back while older transactions may still
    // commit (anywhere on the server); it arrives.
    let (seen, _) = feed_until(&standby, &ws, &FeedCursor::start(), 1).await;
    assert_eq!(seen, vec![creation.record().id()]);
}
