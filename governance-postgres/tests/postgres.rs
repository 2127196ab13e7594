//! What the shared suite cannot see on PostgreSQL: the server's own
//! append-only guard, the caller's transaction, the commit-safe feed under
//! late commits, checkpoint races, and index use on a large table. Needs
//! `GOVERNANCE_POSTGRES_URL` (skips with a notice without it; fails when
//! `GOVERNANCE_REQUIRE_DATABASES=1`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use conformance_tests::databases::{POSTGRES_URL_ENV, fresh_database, server_url};
use conformance_tests::runner::databases_required;
use governance_abstractions::{
    Action, Actor, Checkpoint, Decision, EntityKind, Evidence, GovernanceError, HistoryReader, HistoryRecord,
    HistoryWriter, IntegrityStore, NewRequest, PageRequest, PendingReason, Position, RecordId, RequestFilter,
    RequestId, RequestReader, RequestStatus, TargetRef, Timestamp, WorkspaceId, lifecycle,
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

/// Appends `n` decision records and returns them in `(created_at, id)` order.
async fn appended(store: &PostgresStore, ws: &WorkspaceId, n: usize) -> Vec<HistoryRecord> {
    let mut records: Vec<HistoryRecord> = (0..n).map(|_| evidence(ws)).collect();
    store.append_history(&records).await.expect("append");
    records.sort_by_key(|r| (r.created_at, r.id.as_uuid()));
    records
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
    assert_eq!(store.unsealed_history(&ws, None, 100).await.expect("unsealed"), first);
    assert_eq!(store.latest_checkpoint(&ws).await.expect("latest"), None);
    assert!(store.checkpoints(&ws, 0, 10).await.expect("checkpoints").is_empty());

    let (one, one_entries) = Checkpoint::seal(None, &ws, &first, Timestamp::now()).expect("seal");
    store.append_checkpoint(&one, &one_entries).await.expect("first checkpoint");
    assert_eq!(store.latest_checkpoint(&ws).await.expect("latest"), Some(one.clone()));
    assert_eq!(store.checkpoints(&ws, 0, 10).await.expect("checkpoints"), vec![one.clone()]);
    let sealed = store.sealed_records(&ws, 0, 10).await.expect("sealed");
    let expected: Vec<_> = one_entries.iter().cloned().zip(first.iter().cloned().map(Some)).collect();
    assert_eq!(sealed, expected, "entries in index order, each with its record");
    assert!(store.unsealed_history(&ws, None, 100).await.expect("unsealed").is_empty());

    // The same checkpoint again: its seq is taken, nothing is added.
    let again = store.append_checkpoint(&one, &one_entries).await;
    assert!(is_taken(&again, EntityKind::Checkpoint, "1"), "{again:?}");

    // Only new records are unsealed, paged by (created_at, id).
    let second = appended(&store, &ws, 2).await;
    assert_eq!(store.unsealed_history(&ws, None, 100).await.expect("unsealed"), second);
    let after = Some(Position::of_record(&second[0]));
    assert_eq!(store.unsealed_history(&ws, after, 100).await.expect("unsealed"), second[1..]);
    assert_eq!(store.unsealed_history(&ws, None, 1).await.expect("unsealed"), second[..1]);

    let (two, two_entries) = Checkpoint::seal(Some(&one), &ws, &second, Timestamp::now()).expect("seal");
    assert_eq!((two.seq, two.first_index, two.previous.as_deref()), (2, 3, Some(one.digest.as_str())));
    store.append_checkpoint(&two, &two_entries).await.expect("second checkpoint chains");
    assert_eq!(store.latest_checkpoint(&ws).await.expect("latest"), Some(two.clone()));
    assert_eq!(store.checkpoints(&ws, 0, 1).await.expect("checkpoints"), vec![one.clone()]);
    assert_eq!(store.checkpoints(&ws, 1, 10).await.expect("checkpoints"), vec![two.clone()]);
    assert!(store.checkpoints(&ws, 2, 10).await.expect("checkpoints").is_empty());
    let middle = store.sealed_records(&ws, 2, 2).await.expect("sealed");
    let indices: Vec<(u64, u64)> = middle.iter().map(|(e, _)| (e.index, e.checkpoint)).collect();
    assert_eq!(indices, vec![(2, 1), (3, 2)]);
    assert_eq!(middle[1].1.as_ref(), Some(&second[0]));
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
    assert!(is_taken(&outcome, EntityKind::HistoryRecord, &first[1].id.to_string()), "{outcome:?}");
    let twice = [third[0].clone(), third[0].clone()];
    let (bad, entries) = Checkpoint::seal(Some(&two), &ws, &twice, Timestamp::now()).expect("seal");
    let outcome = store.append_checkpoint(&bad, &entries).await;
    assert!(is_taken(&outcome, EntityKind::HistoryRecord, &third[0].id.to_string()), "{outcome:?}");

    // A checkpoint that does not match its entries is a validation error.
    let (mut forged, entries) = Checkpoint::seal(Some(&two), &ws, &third, Timestamp::now()).expect("seal");
    forged.root = one.root.clone();
    let outcome = store.append_checkpoint(&forged, &entries).await;
    assert!(matches!(outcome, Err(GovernanceError::Validation { .. })), "{outcome:?}");

    assert_eq!(store.latest_checkpoint(&ws).await.expect("latest"), Some(two.clone()));
    assert_eq!(rows_in(&store, "governance_checkpoints", &ws).await, 2);
    assert_eq!(rows_in(&store, "governance_seals", &ws).await, 5);
    assert_eq!(store.unsealed_history(&ws, None, 100).await.expect("unsealed"), third);

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
