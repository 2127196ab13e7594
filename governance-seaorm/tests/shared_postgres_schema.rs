//! One PostgreSQL database, both providers: `governance-postgres` (sqlx)
//! and `governance-seaorm` create the same schema, in either order, and
//! each reads, continues and verifies what the other wrote. A database that
//! this crate migrated before the schema was shared is converted in place;
//! tables of the governance names that hold anything else are refused.
//!
//! Runs when `GOVERNANCE_POSTGRES_URL` is set (or a container can be
//! started); a failure when `GOVERNANCE_REQUIRE_DATABASES=1`.

use std::time::Duration;

use governance_abstractions::integrity::merkle_root;
use governance_abstractions::provider::postgres_schema::SchemaMismatch;
use governance_abstractions::{
    Action, Actor, Checkpoint, Count, CountBy, CountQuery, Decision, Evidence, GovernanceError, GovernanceRequest,
    GovernanceStore, HistoryFilter, HistoryReader, HistoryRecord, HistoryWriter, IntegrityStore, NewRequest,
    PageRequest, PendingReason, Principal, RequestFilter, RequestId, RequestStatus, RequestWriter, StaleStrategy,
    TargetRef, TimeRange, Timestamp, Verdict, WorkspaceId, lifecycle,
};
use governance_postgres::{FeedCursor, PostgresStore};
use governance_seaorm::entity::{checkpoint, history, request, seal};
use governance_seaorm::sea_orm::{
    ActiveModelTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, EntityTrait,
    IntoActiveModel, Statement,
};
use governance_seaorm::{Migrator, SeaOrmStore};
use governance_test_support::{Server, fresh_database_or_skip};
use sea_orm_migration::MigratorTrait;

async fn database() -> Option<String> {
    fresh_database_or_skip(Server::Postgres).await
}

/// A SeaORM store on one connection whose session is in a time zone far
/// from UTC (+12:45 or +13:45): a time that reached the server naive, or
/// left it through the session's zone, would move. (sqlx starts every
/// session in UTC, whatever the URL or the database's default say, so the
/// zone is set on the connection, which the pool of one keeps.)
async fn seaorm_far_from_utc(url: &str) -> SeaOrmStore {
    let mut options = ConnectOptions::new(url);
    options.max_connections(1).min_connections(1);
    let db = Database::connect(options).await.expect("governance-seaorm connects");
    db.execute_unprepared("SET TimeZone = 'Pacific/Chatham'").await.expect("a session time zone");
    let zone = db.query_one_raw(Statement::from_string(DbBackend::Postgres, "SHOW TimeZone")).await;
    let zone: String = zone.expect("show").expect("a row").try_get("", "TimeZone").expect("text");
    assert_eq!(zone, "Pacific/Chatham", "the session time zone is set");
    SeaOrmStore::new(db)
}

async fn sqlx_store(url: &str) -> PostgresStore {
    PostgresStore::connect(url).await.expect("governance-postgres connects")
}

async fn seaorm_store(url: &str) -> SeaOrmStore {
    SeaOrmStore::connect(url).await.expect("governance-seaorm connects")
}

fn workspace() -> WorkspaceId {
    WorkspaceId::new(format!("shared-{}", uuid::Uuid::now_v7().simple())).expect("valid id")
}

fn user(id: &str) -> Principal {
    Actor::user(id).into()
}

fn after(micros: i64) -> Timestamp {
    Timestamp::now().add_micros(micros).expect("in range")
}

/// What each provider's migration leaves in the schema, as lines to
/// compare: the governance tables' columns (position, type, nullability,
/// default), indexes, constraints (and whether validated), triggers (and
/// how enabled) and the functions of the governance names. The providers'
/// bookkeeping tables are their own and left out.
async fn catalog(db: &DatabaseConnection) -> Vec<String> {
    const TABLES: &str = "('governance_requests', 'governance_history', 'governance_checkpoints', 'governance_seals', \
                          'governance_count_rollups', 'governance_history_counts', \
                          'governance_history_daily_counts')";
    let queries = [
        "SELECT relname::text AS line FROM pg_class WHERE relnamespace = current_schema()::regnamespace \
         AND relkind = 'r' AND relname::text LIKE 'governance%' \
         AND relname NOT IN ('governance_migrations', 'governance_sqlx_migrations')"
            .to_owned(),
        format!(
            "SELECT format('column %s.%s #%s %s null=%s default=%s', table_name, column_name, ordinal_position, \
             udt_name, is_nullable, coalesce(column_default, '-')) AS line \
             FROM information_schema.columns WHERE table_schema = current_schema() AND table_name IN {TABLES}"
        ),
        format!(
            "SELECT indexdef AS line FROM pg_indexes WHERE schemaname = current_schema() AND tablename IN {TABLES}"
        ),
        format!(
            "SELECT format('constraint %s %s %s valid=%s %s', conrelid::regclass, conname, contype, convalidated, \
             pg_get_constraintdef(oid)) AS line FROM pg_constraint \
             WHERE conrelid::regclass::text IN {TABLES} AND connamespace = current_schema()::regnamespace"
        ),
        format!(
            "SELECT format('trigger %s %s', tgenabled, pg_get_triggerdef(oid)) AS line FROM pg_trigger \
             WHERE NOT tgisinternal AND tgrelid::regclass::text IN {TABLES}"
        ),
        "SELECT pg_get_functiondef(oid) AS line FROM pg_proc WHERE pronamespace = current_schema()::regnamespace \
         AND proname::text LIKE 'governance%'"
            .to_owned(),
    ];
    let mut lines = Vec::new();
    for sql in queries {
        let rows = db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql)).await.expect("catalog");
        let mut part: Vec<String> = rows.iter().map(|row| row.try_get("", "line").expect("text")).collect();
        part.sort();
        lines.extend(part);
    }
    lines
}

/// Both providers' migrations, in order, on a fresh database. Returns its URL.
async fn migrated(order: &[&str]) -> Option<String> {
    let url = database().await?;
    for provider in order {
        match *provider {
            "sqlx" => sqlx_store(&url).await.migrate().await.expect("governance-postgres migrates"),
            _ => seaorm_store(&url).await.migrate().await.expect("governance-seaorm migrates"),
        }
    }
    Some(url)
}

/// Every way to migrate one database ends in the same schema, and
/// migrating again (with either provider) changes nothing.
#[tokio::test]
async fn every_order_of_migrations_leaves_the_same_schema() {
    let Some(reference) = migrated(&["sqlx"]).await else { return };
    let reference = catalog(seaorm_store(&reference).await.connection()).await;
    // The shape of what is compared: a catalog that lost its triggers or
    // functions would compare equal to another that lost them too.
    for wanted in [
        "column governance_history.tx_id #27 xid8 null=NO default=pg_current_xact_id()",
        "column governance_requests.tags #19 _text null=NO default=-",
        "column governance_history.created_at #25 timestamptz null=NO default=-",
    ] {
        assert!(reference.iter().any(|line| line == wanted), "{wanted} in {reference:#?}");
    }
    for (kind, count) in [
        ("governance_", 7),
        ("column ", 82),
        ("CREATE UNIQUE INDEX ", 10),
        ("CREATE INDEX ", 8),
        ("constraint ", 11),
        ("trigger A ", 7),
        ("CREATE OR REPLACE FUNCTION ", 4),
    ] {
        let found = reference.iter().filter(|line| line.starts_with(kind)).count();
        assert_eq!(found, count, "{kind} in {reference:#?}");
    }

    // The pending queue's index holds pending requests only, in queue
    // order; there is no index over every request's status.
    let pending = reference.iter().find(|line| line.starts_with("CREATE INDEX governance_requests_pending "));
    let pending = pending.expect("the pending index");
    assert!(pending.ends_with("(workspace_id, created_at, id) WHERE (status = 'pending'::text)"), "{pending}");
    assert!(!reference.iter().any(|line| line.contains("governance_requests_status ")), "{reference:#?}");

    for order in [&["seaorm"][..], &["sqlx", "seaorm"], &["seaorm", "sqlx"], &["seaorm", "sqlx", "seaorm", "sqlx"]] {
        let Some(url) = migrated(order).await else { return };
        let db = seaorm_store(&url).await;
        assert_eq!(catalog(db.connection()).await, reference, "migrated by {order:?}");
        // Again, each: nothing changes.
        sqlx_store(&url).await.migrate().await.expect("governance-postgres again");
        db.migrate().await.expect("governance-seaorm again");
        assert_eq!(catalog(db.connection()).await, reference, "migrated by {order:?}, then both again");
    }
}

/// A database with the request indexes of before (the pending index keyed
/// by reason first, the status index over every request) gets the lean
/// ones from either provider's migration, and then has the same schema.
#[tokio::test]
async fn the_earlier_request_indexes_are_replaced() {
    let Some(reference) = migrated(&["sqlx"]).await else { return };
    let reference = catalog(seaorm_store(&reference).await.connection()).await;
    for provider in ["sqlx", "seaorm"] {
        let Some(url) = migrated(&["sqlx", "seaorm"]).await else { return };
        let db = seaorm_store(&url).await;
        for statement in [
            "DROP INDEX governance_requests_pending",
            "CREATE INDEX governance_requests_pending
                ON governance_requests (workspace_id, pending_reason, created_at, id) WHERE status = 'pending'",
            "CREATE INDEX governance_requests_status ON governance_requests (workspace_id, status, created_at, id)",
            "DELETE FROM governance_sqlx_migrations WHERE version = 20261229000006",
            "DELETE FROM governance_migrations WHERE version = 'm20261229_000007_lean_request_indexes'",
        ] {
            db.connection().execute_unprepared(statement).await.expect("the earlier indexes");
        }
        assert_ne!(catalog(db.connection()).await, reference);
        match provider {
            "sqlx" => sqlx_store(&url).await.migrate().await.expect("governance-postgres migrates"),
            _ => db.migrate().await.expect("governance-seaorm migrates"),
        }
        assert_eq!(catalog(db.connection()).await, reference, "migrated by {provider}");
    }
}

/// Seals every unsealed record of `workspace` in one checkpoint after the
/// latest, through `store`; returns how many it sealed.
async fn seal_all(store: &dyn GovernanceStore, workspace: &WorkspaceId) -> usize {
    let records: Vec<HistoryRecord> = store
        .unsealed_history(workspace, None, 1000)
        .await
        .expect("unsealed")
        .into_iter()
        .map(|read| read.expect("every record decodes"))
        .collect();
    let latest = store.latest_checkpoint(workspace).await.expect("latest");
    let (checkpoint, entries) = Checkpoint::seal(latest.as_ref(), workspace, &records, Timestamp::now()).expect("seal");
    store.append_checkpoint(&checkpoint, &entries).await.expect("append checkpoint");
    records.len()
}

/// Walks `workspace`'s checkpoints through `store` as verification does:
/// each digest recomputes, each links to the one before, each root is that
/// of its entries, and each sealed record is stored, intact, with the hash
/// its entry sealed. Returns the number of sealed records.
async fn verify(store: &dyn IntegrityStore, workspace: &WorkspaceId) -> u64 {
    let checkpoints = store.checkpoints(workspace, 0, 100).await.expect("checkpoints");
    let mut previous: Option<&Checkpoint> = None;
    for checkpoint in &checkpoints {
        assert_eq!(
            checkpoint.compute_digest().expect("digest"),
            checkpoint.digest(),
            "checkpoint {}",
            checkpoint.seq()
        );
        assert_eq!(checkpoint.previous(), previous.map(|p| p.digest()), "checkpoint {} links", checkpoint.seq());
        assert_eq!(checkpoint.first_index(), previous.map_or(0, |p| p.next_index()));
        let limit = u32::try_from(checkpoint.record_count()).expect("small");
        let sealed = store.sealed_records(workspace, checkpoint.first_index(), limit).await.expect("sealed");
        assert_eq!(sealed.len() as u64, checkpoint.record_count(), "checkpoint {}", checkpoint.seq());
        let leaves: Vec<[u8; 32]> = sealed.iter().map(|(entry, _)| entry.leaf_hash()).collect();
        assert_eq!(merkle_root(&leaves), checkpoint.root(), "checkpoint {} root", checkpoint.seq());
        for (entry, record) in &sealed {
            let record = record.clone().expect("the sealed record is stored").expect("and decodes");
            record.check().expect("intact");
            assert_eq!((record.id(), record.content_hash()), (entry.record_id, entry.content_hash.as_str()));
        }
        previous = Some(checkpoint);
    }
    previous.map_or(0, |p| p.next_index())
}

/// What the other provider continues: a request with everything the
/// shared columns carry (tags, expiry, approvals, metadata), and denied
/// evidence with reason codes.
struct Written {
    request: GovernanceRequest,
    evidence: Vec<HistoryRecord>,
}

async fn write_some(store: &dyn GovernanceStore, workspace: &WorkspaceId) -> Written {
    let spec = NewRequest::new(workspace.clone(), TargetRef::new("flag", "checkout"), "enable", Actor::user("dev"))
        .intent("roll out")
        .approval(Actor::user("lead"), 1)
        .expected_version(7, StaleStrategy::RequireRenewedApproval)
        .expires_at(after(3_600_000_000))
        .idempotency_key(format!("key-{}", uuid::Uuid::now_v7().simple()))
        .category("release")
        .tag("beta")
        .tag("wéb, \"quoted\" {braced}")
        .metadata(serde_json::json!({ "ticket": 42, "big": 1.5e16 }));
    let creation = lifecycle::create(spec, RequestId::new(), Timestamp::now()).expect("valid");
    store.create_request(&creation).await.expect("create");
    let submit = Action::Submit { reason: PendingReason::Approval };
    let submitted = lifecycle::apply(creation.request(), &user("dev"), &submit, Timestamp::now()).expect("allowed");
    store.commit_transition(&submitted).await.expect("submit");
    let evidence: Vec<HistoryRecord> = (0..3)
        .map(|n| {
            let e = Evidence::decision(workspace.clone(), Actor::user("u"), "invoice", "pay", Decision::Denied)
                .reason("over the limit")
                .reason_codes(["amount_limit", if n == 0 { "mfa_missing" } else { "amount_limit,comma" }]);
            HistoryRecord::new(e, after(n)).expect("valid")
        })
        .collect();
    store.append_history(&evidence).await.expect("append");
    Written { request: submitted.request().clone(), evidence }
}

/// `reader` reads what `writer` wrote through every read, continues the
/// request to its end, appends, seals and verifies; then `writer` reads and
/// verifies the result.
async fn continue_with(writer: &dyn GovernanceStore, reader: &dyn GovernanceStore, names: &str) {
    let ws = workspace();
    let Written { request, evidence } = write_some(writer, &ws).await;
    let id = request.id();

    // Every read of the other provider sees the same values.
    let read = reader.get_request(&ws, id).await.unwrap_or_else(|e| panic!("{names}: read: {e}"));
    assert_eq!(read, request, "{names}");
    read.check().unwrap_or_else(|e| panic!("{names}: digest: {e}"));
    let tagged = RequestFilter { tags: vec!["wéb, \"quoted\" {braced}".into()], ..Default::default() };
    assert_eq!(
        reader.query_requests(&ws, &tagged, &PageRequest::all()).await.expect("query").items,
        std::slice::from_ref(&read)
    );
    let untagged = RequestFilter { tags: vec!["web".into()], ..Default::default() };
    assert!(reader.query_requests(&ws, &untagged, &PageRequest::all()).await.expect("query").items.is_empty());
    let due = RequestFilter { expires_by: Some(after(7_200_000_000)), ..Default::default() };
    assert_eq!(reader.query_requests(&ws, &due, &PageRequest::all()).await.expect("due").items.len(), 1, "{names}");
    let created =
        TimeRange { from: Some(request.created_at()), until: Some(request.created_at().add_micros(1).expect("ok")) };
    let window = RequestFilter { created, ..Default::default() };
    assert_eq!(reader.query_requests(&ws, &window, &PageRequest::all()).await.expect("window").items.len(), 1);
    let history = reader.history_for_request(&ws, id).await.expect("history");
    assert_eq!(history, writer.history_for_request(&ws, id).await.expect("history"), "{names}");
    assert_eq!(history.len(), 2, "{names}: creation and submission");
    for record in &evidence {
        assert_eq!(&reader.get_history_record(&ws, record.id()).await.expect("record"), record, "{names}");
    }
    let denied = HistoryFilter { decision: Some(Decision::Denied), ..Default::default() };
    let page = reader.query_history(&ws, &denied, &PageRequest::all()).await.expect("query history");
    assert_eq!(page.items, evidence, "{names}");
    let top = CountQuery::new(CountBy::ReasonCode, TimeRange::default()).decision(Decision::Denied);
    let counts = reader.count_history(&ws, &top).await.expect("count");
    assert_eq!(
        counts,
        [
            Count { key: "amount_limit".into(), count: 3 },
            Count { key: "amount_limit,comma".into(), count: 2 },
            Count { key: "mfa_missing".into(), count: 1 }
        ],
        "{names}"
    );

    // The other provider continues: approve, a stale execution, cancel.
    let decide = Action::Decide { verdict: Verdict::Approved, comment: Some("fine".into()) };
    let approved = lifecycle::apply(&read, &user("lead"), &decide, Timestamp::now()).expect("allowed");
    reader.commit_transition(&approved).await.unwrap_or_else(|e| panic!("{names}: approve: {e}"));
    let stale = lifecycle::apply(
        approved.request(),
        &user("dev"),
        &Action::Execute { current_version: Some(8) },
        Timestamp::now(),
    )
    .expect("allowed");
    reader.commit_transition(&stale).await.unwrap_or_else(|e| panic!("{names}: execute: {e}"));
    let cancel = Action::Cancel { reason: "not now".into() };
    let canceled = lifecycle::apply(stale.request(), &user("dev"), &cancel, Timestamp::now()).expect("allowed");
    reader.commit_transition(&canceled).await.unwrap_or_else(|e| panic!("{names}: cancel: {e}"));
    // A write from the state the first provider read is stale now.
    let late = reader.commit_transition(&approved).await;
    assert!(matches!(late, Err(GovernanceError::Conflict { .. })), "{names}: {late:?}");
    let more =
        Evidence::decision(ws.clone(), Actor::user("u"), "invoice", "pay", Decision::Approved).reason_codes(["ok"]);
    let more = HistoryRecord::new(more, after(10)).expect("valid");
    reader.append_history(std::slice::from_ref(&more)).await.expect("append");
    // Replayed through the first provider: the same record, not a second.
    writer.append_history(std::slice::from_ref(&more)).await.expect("replay");

    // Sealed by one, then by the other, verified by both.
    let transitions = reader.history_for_request(&ws, id).await.expect("history");
    assert!(transitions.len() >= 5, "{names}: creation, submission and three more: {transitions:?}");
    let first = seal_all(reader, &ws).await;
    let next = Evidence::decision(ws.clone(), Actor::user("u"), "invoice", "pay", Decision::Approved);
    writer.append_history(&[HistoryRecord::new(next, after(20)).expect("valid")]).await.expect("append");
    let second = seal_all(writer, &ws).await;
    let total = transitions.len() + evidence.len() + 2;
    assert_eq!((first, second), (total - 1, 1), "{names}: every record sealed once");
    for store in [reader, writer] {
        assert_eq!(verify(store, &ws).await, total as u64, "{names}");
        assert!(store.unsealed_history(&ws, None, 10).await.expect("unsealed").is_empty(), "{names}");
    }

    // The first provider reads where the other left it.
    let last = writer.get_request(&ws, id).await.expect("read back");
    assert_eq!(&last, canceled.request(), "{names}");
    assert_eq!(last.status(), RequestStatus::Canceled);
    assert_eq!(writer.history_for_request(&ws, id).await.expect("history"), transitions, "{names}");
    let all = writer.query_history(&ws, &HistoryFilter::default(), &PageRequest::all()).await.expect("all");
    let other = reader.query_history(&ws, &HistoryFilter::default(), &PageRequest::all()).await.expect("all");
    assert_eq!(all.items, other.items, "{names}");
    assert_eq!(all.items.len(), total, "{names}");
}

/// On one database, each provider reads, continues, seals and verifies
/// what the other wrote, both ways. The SeaORM store's session is in a
/// time zone far from UTC: nothing it binds or reads may depend on it.
#[tokio::test]
async fn each_provider_continues_what_the_other_wrote() {
    let Some(url) = migrated(&["seaorm", "sqlx"]).await else { return };
    let sqlx = sqlx_store(&url).await;
    let seaorm = seaorm_far_from_utc(&url).await;
    continue_with(&seaorm, &sqlx, "seaorm → sqlx").await;
    continue_with(&sqlx, &seaorm, "sqlx → seaorm").await;
}

/// governance-postgres's commit-safe feed sees records SeaORM wrote, in the
/// order of their transactions, and none while an older writer is open.
#[tokio::test]
async fn the_history_feed_shows_seaorm_records_in_commit_order() {
    let Some(url) = migrated(&["seaorm"]).await else { return };
    let seaorm = seaorm_store(&url).await;
    let sqlx = sqlx_store(&url).await;
    sqlx.migrate().await.expect("governance-postgres migrates");
    let ws = workspace();
    let record = |n: i64| {
        let e = Evidence::decision(ws.clone(), Actor::user("u"), "o", "op", Decision::Approved);
        // Times run backwards: the feed follows transactions, not times.
        HistoryRecord::new(e, after(-n * 1_000_000)).expect("valid")
    };
    let (first, second) = (record(1), record(2));
    seaorm.append_history(std::slice::from_ref(&first)).await.expect("append");
    seaorm.append_history(std::slice::from_ref(&second)).await.expect("append");

    // An older transaction still open holds back what commits after it.
    let open = seaorm.begin().await.expect("begin");
    let slow = record(3);
    seaorm.append_history_in(&open, std::slice::from_ref(&slow)).await.expect("append in");
    let fast = record(4);
    seaorm.append_history(std::slice::from_ref(&fast)).await.expect("append");
    let (shown, cursor) = feed_until(&sqlx, &ws, &FeedCursor::start(), 2).await;
    assert_eq!(shown, [first, second], "the open transaction holds the rest back");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let held = sqlx.history_feed(&ws, &cursor, 10).await.expect("feed");
    assert!(held.records.is_empty(), "still held back: {:?}", held.records);
    open.commit().await.expect("commit");

    let (rest, cursor) = feed_until(&sqlx, &ws, &cursor, 2).await;
    assert_eq!(rest, [slow, fast], "in transaction order after the cursor");
    let again = sqlx.history_feed(&ws, &cursor, 10).await.expect("feed");
    assert!(again.records.is_empty(), "each record once");

    // SeaORM never writes tx_id: the server stamps each row.
    let stamped = "SELECT count(DISTINCT tx_id) AS n FROM governance_history WHERE workspace_id = $1";
    let row = seaorm
        .connection()
        .query_one_raw(Statement::from_sql_and_values(DbBackend::Postgres, stamped, [ws.as_str().into()]))
        .await
        .expect("count")
        .expect("a row");
    assert_eq!(row.try_get::<i64>("", "n").expect("n"), 4, "one transaction id per append");
}

/// Reads the feed from `cursor` until `want` records arrived: any
/// transaction on the server (other tests' too) delays what the feed shows,
/// never its order.
async fn feed_until(
    store: &PostgresStore,
    ws: &WorkspaceId,
    cursor: &FeedCursor,
    want: usize,
) -> (Vec<HistoryRecord>, FeedCursor) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (mut seen, mut cursor) = (Vec::new(), cursor.clone());
    while seen.len() < want {
        assert!(std::time::Instant::now() < deadline, "the feed stalled at {seen:?}");
        let page = store.history_feed(ws, &cursor, 100).await.expect("feed");
        seen.extend(page.records);
        cursor = page.next;
        if seen.len() < want {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    (seen, cursor)
}

/// The typed refusal of a migration.
fn mismatch(result: Result<(), GovernanceError>) -> SchemaMismatch {
    match result {
        Err(GovernanceError::Backend { retryable: false, source }) => match source.downcast::<SchemaMismatch>() {
            Ok(mismatch) => *mismatch,
            Err(other) => panic!("another error: {other}"),
        },
        other => panic!("not refused: {other:?}"),
    }
}

/// The governance tables of `db` (and the providers' bookkeeping tables).
async fn tables(db: &DatabaseConnection) -> Vec<String> {
    let sql = "SELECT relname::text AS name FROM pg_class WHERE relnamespace = current_schema()::regnamespace \
               AND relkind = 'r' ORDER BY 1";
    let rows = db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql)).await.expect("tables");
    rows.iter().map(|row| row.try_get("", "name").expect("text")).collect()
}

/// Tables of the governance names that hold another schema are refused by
/// both providers, with the table, the column, both types and what to do,
/// and nothing is created or changed.
#[tokio::test]
async fn both_providers_refuse_a_foreign_schema() {
    let Some(url) = database().await else { return };
    let seaorm = seaorm_store(&url).await;
    let db = seaorm.connection();
    let foreign = "CREATE TABLE governance_requests (workspace_id text, id uuid, created_at text, PRIMARY KEY (workspace_id, id))";
    db.execute_unprepared(foreign).await.expect("a foreign table");
    for (name, outcome) in [("sqlx", sqlx_store(&url).await.migrate().await), ("seaorm", seaorm.migrate().await)] {
        let refused = mismatch(outcome);
        assert_eq!(
            (refused.table.as_str(), refused.column.as_str(), refused.found.as_deref(), refused.expected),
            ("governance_requests", "state_type", None, "text"),
            "{name}: the first missing column"
        );
        let message = refused.to_string();
        assert!(message.contains("governance_requests.state_type is missing"), "{name}: {message}");
        assert!(message.contains("another database or schema"), "{name}: says what to do: {message}");
        assert_eq!(tables(db).await, ["governance_requests"], "{name}: nothing created");
    }

    // All columns there, one of another type.
    let Some(url) = migrated(&["sqlx"]).await else { return };
    let sqlx = sqlx_store(&url).await;
    let seaorm = seaorm_store(&url).await;
    let db = seaorm.connection();
    db.execute_unprepared("ALTER TABLE governance_seals ALTER COLUMN checkpoint_seq TYPE integer")
        .await
        .expect("alter");
    for (name, outcome) in [("sqlx", sqlx.migrate().await), ("seaorm", seaorm.migrate().await)] {
        let refused = mismatch(outcome);
        assert_eq!(
            (refused.table.as_str(), refused.column.as_str(), refused.found.as_deref(), refused.expected),
            ("governance_seals", "checkpoint_seq", Some("int4"), "int8"),
            "{name}"
        );
        assert!(
            refused.to_string().starts_with("governance_seals.checkpoint_seq is int4, the governance schema has int8")
        );
    }
    assert!(!tables(db).await.contains(&"governance_migrations".to_owned()), "SeaORM's migration rolled back");
}

// The PostgreSQL schema of governance-seaorm before it was shared (its
// first, second, third and fifth migrations as they were): `timestamp`
// holding UTC, `jsonb` lists, no `tx_id`, its own decision index and
// integrity trigger function.
const OLD_TABLES: &[&str] = &[
    r#"CREATE TABLE IF NOT EXISTS governance_requests (
        workspace_id text NOT NULL,
        id uuid NOT NULL,
        state_type text NOT NULL,
        state_id text NOT NULL,
        operation text NOT NULL,
        actor_kind text NOT NULL,
        actor_id text NOT NULL,
        requested_by jsonb NOT NULL,
        intent text NOT NULL,
        status text NOT NULL,
        pending_reason text,
        approvals jsonb NOT NULL,
        expected_state_version bigint,
        stale_strategy text NOT NULL,
        expires_at timestamp,
        superseded_by uuid,
        idempotency_key text,
        category text,
        tags jsonb NOT NULL,
        metadata jsonb NOT NULL,
        revision bigint NOT NULL,
        created_at timestamp NOT NULL,
        updated_at timestamp NOT NULL,
        creation_digest text NOT NULL,
        PRIMARY KEY (workspace_id, id)
    )"#,
    "CREATE UNIQUE INDEX IF NOT EXISTS governance_requests_idempotency
        ON governance_requests (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS governance_requests_created ON governance_requests (workspace_id, created_at, id)",
    "CREATE INDEX IF NOT EXISTS governance_requests_pending
        ON governance_requests (workspace_id, pending_reason, created_at, id) WHERE status = 'pending'",
    "CREATE INDEX IF NOT EXISTS governance_requests_status ON governance_requests (workspace_id, status, created_at, id)",
    "CREATE INDEX IF NOT EXISTS governance_requests_target
        ON governance_requests (workspace_id, state_type, state_id, created_at, id)",
    "CREATE INDEX IF NOT EXISTS governance_requests_expiry ON governance_requests (workspace_id, created_at, id)
        WHERE expires_at IS NOT NULL AND status IN ('created', 'pending', 'approved')",
    r#"CREATE TABLE IF NOT EXISTS governance_history (
        workspace_id text NOT NULL,
        id uuid NOT NULL,
        request_id uuid,
        request_revision bigint,
        category text NOT NULL,
        code text NOT NULL,
        actor_kind text NOT NULL,
        actor_id text NOT NULL,
        actor jsonb NOT NULL,
        object_type text NOT NULL,
        operation text NOT NULL,
        decision text,
        outcome text,
        reason text,
        reason_codes jsonb NOT NULL,
        correlation_id text,
        trace_hash text,
        idempotency_key text,
        policy_version text,
        latency_us bigint,
        request_json jsonb,
        response_json jsonb,
        redaction_policy text,
        redaction_version text,
        created_at timestamp NOT NULL,
        content_hash text NOT NULL,
        PRIMARY KEY (workspace_id, id)
    )"#,
    "CREATE UNIQUE INDEX IF NOT EXISTS governance_history_idempotency
        ON governance_history (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS governance_history_created ON governance_history (workspace_id, created_at, id)",
    "CREATE INDEX IF NOT EXISTS governance_history_request
        ON governance_history (workspace_id, request_id, request_revision, created_at, id) WHERE request_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS governance_history_decision
        ON governance_history (workspace_id, decision, created_at) WHERE decision IS NOT NULL",
    r#"CREATE OR REPLACE FUNCTION governance_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'governance_history is append-only: % refused', TG_OP USING ERRCODE = '55000';
        END
    $$"#,
    "CREATE OR REPLACE TRIGGER governance_history_no_rewrite BEFORE UPDATE OR DELETE ON governance_history
        FOR EACH ROW EXECUTE FUNCTION governance_history_append_only()",
    "CREATE OR REPLACE TRIGGER governance_history_no_truncate BEFORE TRUNCATE ON governance_history
        FOR EACH STATEMENT EXECUTE FUNCTION governance_history_append_only()",
    // ALWAYS: the triggers fire under session_replication_role = replica too.
    "ALTER TABLE governance_history ENABLE ALWAYS TRIGGER governance_history_no_rewrite",
    "ALTER TABLE governance_history ENABLE ALWAYS TRIGGER governance_history_no_truncate",
];

const OLD_INTEGRITY: &[&str] = &[
    r#"CREATE TABLE IF NOT EXISTS governance_checkpoints (
        workspace_id text NOT NULL,
        seq bigint NOT NULL,
        first_index bigint NOT NULL,
        record_count bigint NOT NULL,
        root text NOT NULL,
        previous text,
        created_at timestamp NOT NULL,
        digest text NOT NULL,
        PRIMARY KEY (workspace_id, seq)
    )"#,
    r#"CREATE TABLE IF NOT EXISTS governance_seals (
        workspace_id text NOT NULL,
        leaf_index bigint NOT NULL,
        record_id uuid NOT NULL,
        content_hash text NOT NULL,
        checkpoint_seq bigint NOT NULL,
        PRIMARY KEY (workspace_id, leaf_index),
        CONSTRAINT governance_seals_record UNIQUE (workspace_id, record_id)
    )"#,
    r#"CREATE OR REPLACE FUNCTION governance_integrity_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = '55000';
        END
    $$"#,
    "CREATE OR REPLACE TRIGGER governance_checkpoints_no_rewrite BEFORE UPDATE OR DELETE ON governance_checkpoints
        FOR EACH ROW EXECUTE FUNCTION governance_integrity_append_only()",
    "CREATE OR REPLACE TRIGGER governance_checkpoints_no_truncate BEFORE TRUNCATE ON governance_checkpoints
        FOR EACH STATEMENT EXECUTE FUNCTION governance_integrity_append_only()",
    "CREATE OR REPLACE TRIGGER governance_seals_no_rewrite BEFORE UPDATE OR DELETE ON governance_seals
        FOR EACH ROW EXECUTE FUNCTION governance_integrity_append_only()",
    "CREATE OR REPLACE TRIGGER governance_seals_no_truncate BEFORE TRUNCATE ON governance_seals
        FOR EACH STATEMENT EXECUTE FUNCTION governance_integrity_append_only()",
    "ALTER TABLE governance_checkpoints ENABLE ALWAYS TRIGGER governance_checkpoints_no_rewrite",
    "ALTER TABLE governance_checkpoints ENABLE ALWAYS TRIGGER governance_checkpoints_no_truncate",
    "ALTER TABLE governance_seals ENABLE ALWAYS TRIGGER governance_seals_no_rewrite",
    "ALTER TABLE governance_seals ENABLE ALWAYS TRIGGER governance_seals_no_truncate",
];

const OLD_TIME_RANGE: &[&str] = &[
    r#"DO $$
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_constraint
                       WHERE conrelid = 'governance_requests'::regclass
                         AND conname = 'governance_requests_times_in_range') THEN
            ALTER TABLE governance_requests ADD CONSTRAINT governance_requests_times_in_range CHECK (
                created_at >= '1970-01-01 00:00:00' AND created_at < '10000-01-01 00:00:00'
                AND updated_at >= '1970-01-01 00:00:00' AND updated_at < '10000-01-01 00:00:00'
                -- NULL (no expiry) passes a CHECK.
                AND expires_at >= '1970-01-01 00:00:00' AND expires_at < '10000-01-01 00:00:00'
            ) NOT VALID;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_constraint
                       WHERE conrelid = 'governance_history'::regclass
                         AND conname = 'governance_history_time_in_range') THEN
            ALTER TABLE governance_history ADD CONSTRAINT governance_history_time_in_range CHECK (
                created_at >= '1970-01-01 00:00:00' AND created_at < '10000-01-01 00:00:00'
            ) NOT VALID;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_constraint
                       WHERE conrelid = 'governance_checkpoints'::regclass
                         AND conname = 'governance_checkpoints_time_in_range') THEN
            ALTER TABLE governance_checkpoints ADD CONSTRAINT governance_checkpoints_time_in_range CHECK (
                created_at >= '1970-01-01 00:00:00' AND created_at < '10000-01-01 00:00:00'
            ) NOT VALID;
        END IF;
    END
    $$"#,
    "ALTER TABLE governance_requests VALIDATE CONSTRAINT governance_requests_times_in_range",
    "ALTER TABLE governance_history VALIDATE CONSTRAINT governance_history_time_in_range",
    "ALTER TABLE governance_checkpoints VALIDATE CONSTRAINT governance_checkpoints_time_in_range",
];

const OLD_STATE_DIGEST: &str = "ALTER TABLE governance_requests ADD COLUMN IF NOT EXISTS state_digest text";

/// A database as governance-seaorm left it before the schema was shared:
/// the old DDL, and its five migrations recorded as applied.
async fn old_seaorm_database(db: &DatabaseConnection) {
    let statements = OLD_TABLES.iter().chain(OLD_INTEGRITY).chain([&OLD_STATE_DIGEST]).chain(OLD_TIME_RANGE);
    for statement in statements {
        db.execute_unprepared(statement).await.expect("old DDL");
    }
    Migrator::install(db).await.expect("bookkeeping");
    for migration in Migrator::migrations().iter().take(5) {
        let sql = "INSERT INTO governance_migrations (version, applied_at) VALUES ($1, 0)";
        let values = [migration.name().into()];
        db.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values)).await.expect("recorded");
    }
}

/// The rows of every governance table of `from`, inserted into `to`
/// through SeaORM's own insert: it binds the entities' values as they are
/// (naive UTC times, JSON lists), which is the old PostgreSQL layout.
async fn copy_rows(from: &DatabaseConnection, to: &DatabaseConnection) -> usize {
    async fn copy<E: EntityTrait>(from: &DatabaseConnection, to: &DatabaseConnection) -> usize
    where
        E::Model: IntoActiveModel<E::ActiveModel>,
    {
        let rows = E::find().all(from).await.expect("read");
        let n = rows.len();
        for row in rows {
            E::insert(row.into_active_model().reset_all()).exec_without_returning(to).await.expect("old layout insert");
        }
        n
    }
    copy::<request::Entity>(from, to).await
        + copy::<history::Entity>(from, to).await
        + copy::<checkpoint::Entity>(from, to).await
        + copy::<seal::Entity>(from, to).await
}

/// A database migrated by governance-seaorm before the schema was shared is
/// refused by governance-postgres (naming the old type and the conversion),
/// converted in place by governance-seaorm's `migrate()` (under the
/// append-only triggers, whatever the session's time zone), keeps every row
/// and value, and is then exactly the shared schema, which both use.
#[tokio::test]
async fn an_old_seaorm_database_is_converted_in_place() {
    let Some(url) = database().await else { return };
    let Some(reference) = migrated(&["sqlx"]).await else { return };
    let reference = catalog(seaorm_store(&reference).await.connection()).await;

    // Rows written the old way: the domain values come from a store on
    // SQLite, whose layout the old PostgreSQL one shared.
    let source = SeaOrmStore::open_sqlite_in_memory().await.expect("SQLite");
    let ws = workspace();
    let Written { request, evidence } = write_some(&source, &ws).await;
    let plain = lifecycle::create(
        NewRequest::new(ws.clone(), TargetRef::new("flag", "other"), "disable", Actor::user("dev")),
        RequestId::new(),
        Timestamp::now(),
    )
    .expect("valid");
    source.create_request(&plain).await.expect("create");
    let sealed = seal_all(&source, &ws).await;
    assert_eq!(sealed, 2 + evidence.len() + 1, "two records of the request, its evidence, one of the other");
    let unsealed = Evidence::decision(ws.clone(), Actor::user("u"), "o", "op", Decision::Approved);
    let unsealed = HistoryRecord::new(unsealed, after(50)).expect("valid");
    source.append_history(std::slice::from_ref(&unsealed)).await.expect("append");

    let old = seaorm_store(&url).await;
    old_seaorm_database(old.connection()).await;
    let copied = copy_rows(source.connection(), old.connection()).await;
    assert_eq!(copied, 2 + (sealed + 1) + 1 + sealed, "requests, history, a checkpoint and its entries");
    let guard = old.connection().execute_unprepared("UPDATE governance_history SET reason = 'x'").await;
    assert!(guard.is_err(), "the old schema's append-only guard is on");

    // governance-postgres refuses it, and says how to convert it.
    let refused = mismatch(sqlx_store(&url).await.migrate().await);
    assert_eq!(
        (refused.table.as_str(), refused.column.as_str(), refused.found.as_deref(), refused.expected),
        ("governance_requests", "expires_at", Some("timestamp"), "timestamptz")
    );
    assert!(refused.to_string().contains("converted by governance-seaorm's `migrate()`"), "{refused}");

    // Converted by a session far from UTC: the conversion names its zone.
    let converting = seaorm_far_from_utc(&url).await;
    converting.migrate().await.expect("converts");
    converting.migrate().await.expect("and again");
    let sqlx = sqlx_store(&url).await;
    sqlx.migrate().await.expect("governance-postgres migrates now");
    let seaorm = seaorm_store(&url).await;
    assert_eq!(catalog(seaorm.connection()).await, reference, "exactly the shared schema");

    // Every row, every value, read by both.
    let mut records = evidence.clone();
    records.push(unsealed.clone());
    for store in [&seaorm as &dyn GovernanceStore, &sqlx] {
        assert_eq!(store.get_request(&ws, request.id()).await.expect("request"), request);
        assert_eq!(&store.get_request(&ws, plain.request().id()).await.expect("request"), plain.request());
        assert_eq!(
            store.history_for_request(&ws, request.id()).await.expect("history"),
            source.history_for_request(&ws, request.id()).await.expect("history")
        );
        for record in &records {
            assert_eq!(&store.get_history_record(&ws, record.id()).await.expect("record"), record);
        }
        assert_eq!(
            store.latest_checkpoint(&ws).await.expect("checkpoint"),
            source.latest_checkpoint(&ws).await.expect("checkpoint")
        );
        assert_eq!(verify(store, &ws).await, sealed as u64);
        let unsealed_now = store.unsealed_history(&ws, None, 10).await.expect("unsealed");
        assert_eq!(unsealed_now, [Ok(unsealed.clone())]);
    }
    let guard = seaorm.connection().execute_unprepared("UPDATE governance_history SET reason = 'x'").await;
    assert!(guard.is_err(), "still append-only");

    // The old rows are in the feed (stamped by the conversion), and new
    // ones from either provider follow.
    let (old_records, cursor) = feed_until(&sqlx, &ws, &FeedCursor::start(), sealed + 1).await;
    let mut ids: Vec<_> = old_records.iter().map(HistoryRecord::id).collect();
    ids.sort_by_key(|id| id.as_uuid());
    let in_feed: Vec<_> = old_records.iter().map(HistoryRecord::id).collect();
    assert_eq!(in_feed, ids, "one transaction stamped them all: in id order");
    let next = Evidence::decision(ws.clone(), Actor::user("u"), "o", "op", Decision::Denied).reason_codes(["late"]);
    let next = HistoryRecord::new(next, after(60)).expect("valid");
    seaorm.append_history(std::slice::from_ref(&next)).await.expect("append");
    assert_eq!(feed_until(&sqlx, &ws, &cursor, 1).await.0, [next]);
    let top = CountQuery::new(CountBy::ReasonCode, TimeRange::default()).decision(Decision::Denied);
    let counts = seaorm.count_history(&ws, &top).await.expect("count");
    assert_eq!(counts, sqlx.count_history(&ws, &top).await.expect("count"));
    assert_eq!(counts.iter().map(|c| c.count).sum::<u64>(), 3 * 2 + 1, "the converted lists and the new one");
}
