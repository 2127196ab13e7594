//! The hourly decision counts behind `count_history`: whatever has been
//! rolled up, and whatever is written meanwhile, every count equals the
//! count of the records themselves (computed here, in the test, from every
//! record of the workspace). Needs `GOVERNANCE_POSTGRES_URL` (skips with a
//! notice without it; fails when `GOVERNANCE_REQUIRE_DATABASES=1`).

use std::sync::Arc;

use governance_abstractions::provider::postgres_statements::{self, CountRow};
use governance_abstractions::provider::rank_counts;
use governance_abstractions::{
    Action, Actor, Count, CountBy, CountQuery, Decision, Evidence, GovernanceError, GovernanceService, HistoryReader,
    HistoryRecord, HistoryWriter, NewRequest, PageRequest, Principal, TargetRef, TimeRange, Timestamp, WorkspaceId,
};
use governance_postgres::sqlx;
use governance_postgres::{MigrateOptions, PostgresStore, RollUpUnsupported, SchemaProfile};
use governance_test_support::{Server, fresh_database_or_skip};

const HOUR: i64 = 3_600_000_000;
const MINUTE: i64 = 60_000_000;

/// An hour boundary some days back: the records spread over the 60 hours
/// after it.
fn base() -> i64 {
    (Timestamp::now().unix_micros() / HOUR - 24 * 5) * HOUR
}

async fn store() -> Option<PostgresStore> {
    let url = fresh_database_or_skip(Server::Postgres).await?;
    let store = PostgresStore::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    Some(store)
}

fn workspace() -> WorkspaceId {
    WorkspaceId::new(format!("counts-{}", uuid_suffix())).expect("valid")
}

fn uuid_suffix() -> String {
    governance_abstractions::RecordId::new().to_string()
}

/// A small deterministic generator: the same records on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// `n` decision records of `ws`, at times from `base`, with a mix of
/// decisions, operations, principals and reason codes (none, one or
/// several; some records sharing the exact hour boundary).
fn records(ws: &WorkspaceId, base: i64, n: usize, seed: u64) -> Vec<HistoryRecord> {
    let mut rng = Lcg(seed);
    (0..n)
        .map(|i| {
            let decision = if rng.next(3) == 0 { Decision::Approved } else { Decision::Denied };
            let operation = ["create", "update", "delete", "export"][rng.next(4) as usize];
            let actor = match rng.next(5) {
                0 => Actor::service(format!("svc-{}", rng.next(2))),
                _ => Actor::user(format!("u{}", rng.next(6))),
            };
            let codes: Vec<&str> =
                ["limit", "risk", "Limit", "region", "quota"].into_iter().filter(|_| rng.next(3) == 0).collect();
            let evidence = Evidence::decision(ws.clone(), actor, "invoice", operation, decision).reason_codes(codes);
            let at =
                if i % 17 == 0 { base + HOUR * rng.next(60) as i64 } else { base + rng.next(60 * HOUR as u64) as i64 };
            HistoryRecord::new(evidence, Timestamp::from_unix_micros(at).expect("in range")).expect("valid")
        })
        .collect()
}

/// Every record of `ws`, read back.
async fn all_records(store: &PostgresStore, ws: &WorkspaceId) -> Vec<HistoryRecord> {
    let page = store.query_history(ws, &Default::default(), &PageRequest::all()).await.expect("read every record");
    page.items
}

fn at(micros: i64) -> Timestamp {
    Timestamp::from_unix_micros(micros).expect("in range")
}

/// The windows that matter: unbounded, open on one side, hour-aligned,
/// with partial hours at either edge, inside one hour, one whole hour; one
/// whole UTC day, and one with whole hours and a partial one on either
/// side of a whole day.
fn windows(base: i64) -> Vec<TimeRange> {
    let day = 24 * HOUR;
    let midnight = (base + 3 * HOUR).div_euclid(day) * day + day;
    vec![
        TimeRange { from: Some(at(midnight)), until: Some(at(midnight + day)) },
        TimeRange { from: Some(at(midnight - 2 * HOUR - 5 * MINUTE)), until: Some(at(midnight + day + 3 * HOUR + 1)) },
        TimeRange::default(),
        TimeRange { from: Some(at(base + 17 * MINUTE)), until: None },
        TimeRange { from: None, until: Some(at(base + 30 * HOUR + 5 * MINUTE)) },
        TimeRange { from: Some(at(base)), until: Some(at(base + 24 * HOUR)) },
        TimeRange { from: Some(at(base + 17 * MINUTE)), until: Some(at(base + 50 * HOUR + 1)) },
        TimeRange { from: Some(at(base + 3 * HOUR + 10 * MINUTE)), until: Some(at(base + 3 * HOUR + 50 * MINUTE)) },
        TimeRange { from: Some(at(base + 7 * HOUR)), until: Some(at(base + 8 * HOUR)) },
        TimeRange { from: Some(at(base + 7 * HOUR - 1)), until: Some(at(base + 8 * HOUR + 1)) },
    ]
}

fn queries(base: i64) -> Vec<CountQuery> {
    let mut queries = Vec::new();
    for window in windows(base) {
        for by in [CountBy::ReasonCode, CountBy::Principal, CountBy::Operation, CountBy::Decision] {
            queries.push(CountQuery::new(by, window));
            queries.push(CountQuery::new(by, window).decision(Decision::Denied).limit(2));
            queries.push(CountQuery::new(by, window).decision(Decision::Approved));
        }
    }
    queries
}

/// The count of `query` over `records`, as the contract defines it.
fn expected(records: &[HistoryRecord], query: &CountQuery) -> Vec<Count> {
    let mut counts: std::collections::HashMap<String, u64> = Default::default();
    for record in records.iter().filter(|r| query.counts(r)) {
        for key in query.keys(record) {
            *counts.entry(key).or_default() += 1;
        }
    }
    rank_counts(counts.into_iter().map(|(key, count)| Count { key, count }).collect(), query.limit)
}

/// Rolls up `ws` until `expected` records in all (counting `folded`
/// already) are folded in, and never more. Any transaction on the server
/// holds the commit-safe position back while it runs (another test's,
/// say), so one roll-up may fold only part of what is there.
async fn roll_up_until(store: &PostgresStore, ws: &WorkspaceId, mut folded: u64, expected: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        folded += store.roll_up_counts(ws).await.expect("roll up");
        assert!(folded <= expected, "{folded} records folded, only {expected} written");
        if folded == expected {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "only {folded} of {expected} folded within a minute");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Every query of [`queries`] answers what the records say.
async fn assert_exact(store: &PostgresStore, ws: &WorkspaceId, base: i64, when: &str) {
    let records = all_records(store, ws).await;
    for query in queries(base) {
        let got = store.count_history(ws, &query).await.expect("count");
        assert_eq!(got, expected(&records, &query), "{when}: {query:?}");
    }
}

/// Runs `sql` over the workspace (`$1`) as the tables' owner: what a
/// restore, another database or a hand-written row leaves behind.
async fn as_owner(store: &PostgresStore, ws: &WorkspaceId, sql: &'static str) {
    sqlx::query(sql).bind(ws.as_str()).execute(store.pool()).await.expect("as the owner");
}

/// The workspace's watermark as a count reads it first.
async fn count_mark(store: &PostgresStore, ws: &WorkspaceId) -> Option<String> {
    sqlx::query_scalar(postgres_statements::COUNT_MARK)
        .bind(ws.as_str())
        .fetch_optional(store.pool())
        .await
        .expect("read the watermark")
}

#[tokio::test]
async fn counts_are_exact_before_and_after_every_roll_up() {
    let Some(store) = store().await else { return };
    let (ws, base) = (workspace(), base());
    // Lifecycle records too: they carry no decision and count nowhere.
    let service = GovernanceService::new(Arc::new(store.clone()));
    let requester = Principal::from(Actor::user("u1"));
    let request = service
        .create(NewRequest::new(ws.clone(), TargetRef::new("invoice", "1"), "update", requester.clone()))
        .await
        .expect("create");
    let cancel = Action::Cancel { reason: "no longer needed".into() };
    service.apply(&ws, request.value().id(), &requester, cancel).await.expect("cancel");

    let first = records(&ws, base, 400, 1);
    for batch in first.chunks(50) {
        store.append_history(batch).await.expect("append");
    }
    assert_exact(&store, &ws, base, "never rolled up").await;

    roll_up_until(&store, &ws, 0, 400).await;
    assert_exact(&store, &ws, base, "rolled up").await;
    assert_eq!(store.roll_up_counts(&ws).await.expect("roll up"), 0, "nothing new to fold");

    store.append_history(&records(&ws, base, 120, 2)).await.expect("append");
    assert_exact(&store, &ws, base, "records written after the roll-up").await;
    roll_up_until(&store, &ws, 0, 120).await;
    assert_exact(&store, &ws, base, "rolled up twice").await;

    // Another workspace's records and roll-ups change nothing here.
    let other = workspace();
    store.append_history(&records(&other, base, 60, 3)).await.expect("append");
    roll_up_until(&store, &other, 0, 60).await;
    assert_exact(&store, &ws, base, "another workspace rolled up").await;
}

/// A transaction still open during a roll-up is not folded in (its records
/// are not there yet), and once it commits its records count exactly once:
/// live until the next roll-up, folded after.
#[tokio::test]
async fn a_transaction_open_during_a_roll_up_counts_once() {
    let Some(store) = store().await else { return };
    let (ws, base) = (workspace(), base());
    store.append_history(&records(&ws, base, 50, 4)).await.expect("append");
    let mut open = store.pool().begin().await.expect("begin");
    let late = records(&ws, base, 30, 5);
    store.append_history_in(&mut open, &late).await.expect("append in the open transaction");
    // A transaction that started later and committed first.
    store.append_history(&records(&ws, base, 20, 6)).await.expect("append");
    // Neither the open transaction's records nor those of the one that
    // started after it: at most the first 50.
    let folded = store.roll_up_counts(&ws).await.expect("roll up");
    assert!(folded <= 50, "only what transactions older than every running one wrote: {folded}");
    assert_exact(&store, &ws, base, "rolled up with a transaction open").await;
    open.commit().await.expect("commit");
    assert_exact(&store, &ws, base, "the late transaction committed").await;
    roll_up_until(&store, &ws, folded, 100).await;
    assert_exact(&store, &ws, base, "everything folded").await;
}

/// Writers and roll-ups at once, two roll-ups racing each other: no record
/// is folded twice or lost.
#[tokio::test]
async fn concurrent_writers_and_roll_ups_fold_every_record_once() {
    let Some(store) = store().await else { return };
    let (ws, base) = (workspace(), base());
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..4u64 {
        let (store, ws) = (store.clone(), ws.clone());
        tasks.spawn(async move {
            for batch in 0..10 {
                store.append_history(&records(&ws, base, 10, 100 + writer * 10 + batch)).await.expect("append");
            }
            0
        });
    }
    for _ in 0..2 {
        let (store, ws) = (store.clone(), ws.clone());
        tasks.spawn(async move {
            let mut folded = 0;
            for _ in 0..15 {
                folded += store.roll_up_counts(&ws).await.expect("roll up");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            folded
        });
    }
    let mut folded = 0;
    while let Some(joined) = tasks.join_next().await {
        folded += joined.expect("task");
    }
    roll_up_until(&store, &ws, folded, 400).await;
    assert_exact(&store, &ws, base, "after the race").await;
}

/// Counts whose probe record no longer has the transaction id it was
/// folded in with (as after restoring a dump, where every record gets a new
/// one) are ignored, and the next roll-up rebuilds them.
#[tokio::test]
async fn counts_from_another_database_are_ignored_then_rebuilt() {
    let Some(store) = store().await else { return };
    let (ws, base) = (workspace(), base());
    store.append_history(&records(&ws, base, 200, 7)).await.expect("append");
    roll_up_until(&store, &ws, 0, 200).await;
    // What a restore elsewhere looks like: another database's watermark,
    // and counts that no longer match the records.
    as_owner(
        &store,
        &ws,
        "UPDATE governance_count_rollups SET probe_tx = '1', through_tx = '1' WHERE workspace_id = $1",
    )
    .await;
    as_owner(&store, &ws, "UPDATE governance_history_counts SET n = n + 1000 WHERE workspace_id = $1").await;
    assert_exact(&store, &ws, base, "foreign counts").await;
    // The first roll-up rebuilds from every record (as many as are
    // commit-safe yet), never adding to the foreign counts.
    roll_up_until(&store, &ws, 0, 200).await;
    assert_exact(&store, &ws, base, "rebuilt").await;
}

/// A copy that kept the records' transaction ids (a data-only restore with
/// triggers off) into a server whose counter is behind brings a watermark
/// from the future: its probe still matches, but records written now get
/// ids below it. Such a watermark is not this database's: counts read the
/// records, and the next roll-up starts over.
#[tokio::test]
async fn a_watermark_past_every_transaction_id_is_ignored_then_rebuilt() {
    let Some(store) = store().await else { return };
    let (ws, base) = (workspace(), base());
    store.append_history(&records(&ws, base, 100, 14)).await.expect("append");
    roll_up_until(&store, &ws, 0, 100).await;
    as_owner(&store, &ws, "UPDATE governance_count_rollups SET through_tx = '9000000000000' WHERE workspace_id = $1")
        .await;
    store.append_history(&records(&ws, base, 50, 15)).await.expect("append below the watermark");
    assert_eq!(count_mark(&store, &ws).await, None, "a watermark from the future is not this database's");
    assert_exact(&store, &ws, base, "watermark from the future").await;
    roll_up_until(&store, &ws, 0, 150).await;
    assert_exact(&store, &ws, base, "rebuilt").await;
}

/// The same copy, when every record of the workspace came with it: their
/// transaction ids lie past this server's counter too, so the first
/// roll-up folds nothing. It must still drop the foreign watermark, or that
/// would pass for this database's once the counter catches up, and the
/// records below it would never be counted.
#[tokio::test]
async fn a_roll_up_that_folds_nothing_still_drops_a_watermark_from_the_future() {
    let Some(store) = store().await else { return };
    let (ws, copy, base) = (workspace(), workspace(), base());
    store.append_history(&records(&ws, base, 40, 16)).await.expect("append");
    // What a data-only restore with triggers off leaves: the records with
    // the transaction ids of a server further along, and its watermark.
    let columns = postgres_statements::HISTORY_COLUMNS;
    let rest = columns.strip_prefix("workspace_id, ").expect("the workspace first");
    let copy_rows = format!(
        "INSERT INTO governance_history ({columns}, tx_id) \
         SELECT $2, {rest}, '9000000000000'::xid8 FROM governance_history WHERE workspace_id = $1"
    );
    let (pool, from, to) = (store.pool(), ws.as_str(), copy.as_str());
    let owner = |sql: String| async move {
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(from).bind(to).execute(pool).await.expect("as the owner");
    };
    owner("ALTER TABLE governance_history DISABLE TRIGGER ALL".into()).await;
    owner(copy_rows).await;
    for trigger in ["governance_history_stamp", "governance_history_no_rewrite", "governance_history_no_truncate"] {
        owner(format!("ALTER TABLE governance_history ENABLE ALWAYS TRIGGER {trigger}")).await;
    }
    owner(
        "INSERT INTO governance_count_rollups (workspace_id, through_tx, probe_id, probe_tx) \
         SELECT $2, '9000000000100', id, tx_id FROM governance_history WHERE workspace_id = $2 LIMIT 1"
            .into(),
    )
    .await;
    assert_eq!(count_mark(&store, &copy).await, None, "a watermark from the future is not this database's");
    assert_exact(&store, &copy, base, "copied with their transaction ids").await;
    assert_eq!(store.roll_up_counts(&copy).await.expect("roll up"), 0, "every record lies past the counter");
    let (through, probe): (String, Option<uuid::Uuid>) =
        sqlx::query_as("SELECT through_tx::text, probe_id FROM governance_count_rollups WHERE workspace_id = $1")
            .bind(copy.as_str())
            .fetch_one(store.pool())
            .await
            .expect("the watermark row");
    assert_eq!((through.as_str(), probe), ("0", None), "the foreign watermark is dropped");
    assert_exact(&store, &copy, base, "after the roll-up").await;
}

/// A store of this version on a database not migrated as far (in a
/// rolling upgrade, before `migrate()` ran): the watermark it would read is
/// not there, and counts read the records instead, exact.
#[tokio::test]
async fn counts_on_a_database_not_migrated_this_far_read_the_records() {
    let Some(store) = store().await else { return };
    let (ws, base) = (workspace(), base());
    store.append_history(&records(&ws, base, 60, 17)).await.expect("append");
    roll_up_until(&store, &ws, 0, 60).await;
    as_owner(&store, &ws, "UPDATE governance_history_counts SET n = n + 1000 WHERE workspace_id = $1").await;
    sqlx::query("ALTER TABLE governance_count_rollups DROP COLUMN days_through_tx")
        .execute(store.pool())
        .await
        .expect("as the owner");
    assert_exact(&store, &ws, base, "without the column").await;
    sqlx::query("DROP TABLE governance_count_rollups").execute(store.pool()).await.expect("as the owner");
    assert_exact(&store, &ws, base, "without the table").await;
}

/// Runs a count statement as the provider does, rows decoded the same way.
async fn count_rows(
    pool: &sqlx::PgPool,
    sql: String,
    params: Vec<postgres_statements::CountParam>,
) -> Result<Vec<CountRow>, GovernanceError> {
    use postgres_statements::CountParam;
    use sqlx::Row;
    let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql));
    for param in params {
        statement = match param {
            CountParam::Text(text) => statement.bind(text),
            CountParam::Int(n) => statement.bind(n),
            CountParam::Time(at) => statement.bind(at.as_datetime()),
            other => panic!("a parameter this test does not bind: {other:?}"),
        };
    }
    let rows = statement.fetch_all(pool).await.map_err(|e| GovernanceError::backend(false, e))?;
    Ok(rows.iter().map(|row| CountRow::from_columns(row.get("key"), row.get("n"))).collect())
}

/// A roll-up that commits after a count read the watermark and before its
/// statement runs folds records the statement also finds after the old
/// watermark. The statement reports the watermark its snapshot saw, so
/// that count is refused and run again over the new one: exact, never
/// doubled.
#[tokio::test]
async fn a_roll_up_between_the_watermark_and_the_count_is_counted_once() {
    let Some(store) = store().await else { return };
    let (ws, base) = (workspace(), base());
    store.append_history(&records(&ws, base, 150, 9)).await.expect("append");
    roll_up_until(&store, &ws, 0, 150).await;
    store.append_history(&records(&ws, base, 90, 10)).await.expect("append the tail");
    let query = CountQuery::new(CountBy::Operation, TimeRange::default()).decision(Decision::Denied);
    let want = expected(&all_records(&store, &ws).await, &query);
    let mark = || async { count_mark(&store, &ws).await.expect("rolled up") };
    let stale = mark().await;

    // The first statement runs after a roll-up that committed once the
    // watermark was read.
    let mut count = postgres_statements::CountAttempts::new(&ws, &query, Some(stale.clone()));
    let mut attempts = 0;
    let got = loop {
        let (sql, params) = count.statement().expect("build");
        attempts += 1;
        if attempts == 1 {
            roll_up_until(&store, &ws, 0, 90).await;
        }
        let rows = count_rows(store.pool(), sql, params).await.expect("count");
        if let Some(counts) = count.finish(rows).expect("rows") {
            break counts;
        }
    };
    assert_eq!(got, want);
    assert_eq!(attempts, 2, "refused once, then counted over the watermark it saw");
    assert_ne!(mark().await, stale, "the roll-up moved the watermark");

    // What the refused attempt would have answered: the tail twice.
    let (sql, params) = postgres_statements::count_history(&ws, &query, Some(&stale)).expect("build");
    let doubled: i64 = count_rows(store.pool(), sql, params)
        .await
        .expect("count over the stale watermark")
        .into_iter()
        .map(|row| if let CountRow::Count { n, .. } = row { n } else { 0 })
        .sum();
    let exact: u64 = got.iter().map(|c| c.count).sum();
    assert!(u64::try_from(doubled).expect("positive") > exact, "{doubled} against {exact}");
}

/// The counts read the daily and hourly rows: a window of whole hours
/// around a whole day reads both tables (seen in the plan), and a count
/// changes when the rows of either do — which is also why only the
/// tables' owner may write them.
#[tokio::test]
async fn rolled_up_days_and_hours_are_read_from_the_counts() {
    let Some(store) = store().await else { return };
    let (ws, base) = (workspace(), base());
    let day = 24 * HOUR;
    let midnight = (base + 3 * HOUR).div_euclid(day) * day + day;
    // Denied exports an hour before the day, within it and an hour after.
    let export = |at_micros: i64| {
        let evidence = Evidence::decision(ws.clone(), Actor::user("u"), "invoice", "export", Decision::Denied);
        HistoryRecord::new(evidence, at(at_micros)).expect("valid")
    };
    let mut written = records(&ws, base, 100, 8);
    written.extend([export(midnight - HOUR + MINUTE), export(midnight + 5 * HOUR), export(midnight + day + MINUTE)]);
    store.append_history(&written).await.expect("append");
    roll_up_until(&store, &ws, 0, written.len() as u64).await;
    let window = TimeRange { from: Some(at(midnight - 2 * HOUR)), until: Some(at(midnight + day + 2 * HOUR)) };
    let query = CountQuery::new(CountBy::Operation, window).decision(Decision::Denied);
    let plan = store.explain_count_history(&ws, &query).await.expect("explain").join("\n");
    assert!(plan.contains("governance_history_counts"), "{plan}");
    assert!(plan.contains("governance_history_daily_counts"), "{plan}");
    let exports = || async {
        let counts = store.count_history(&ws, &query).await.expect("count");
        counts.iter().find(|c| c.key == "export").map(|c| c.count).unwrap_or(0)
    };
    let before = exports().await;
    for table in ["governance_history_counts", "governance_history_daily_counts"] {
        let change = |by: &str| {
            let sql = format!(
                "UPDATE {table} SET n = n {by} WHERE workspace_id = $1 AND dimension = 'operation' \
                 AND decision = 'denied' AND key = 'export'"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(ws.as_str()).execute(store.pool())
        };
        assert!(change("+ 5").await.expect("as the owner").rows_affected() > 0, "{table}");
        let after = exports().await;
        assert!(after > before, "{table}: {before} → {after}");
        change("- 5").await.expect("as the owner");
        assert_eq!(exports().await, before, "{table}: restored");
    }
}

/// The records the daily counts hold for `ws` (its operation rows: one per
/// decision record).
async fn records_in_days(store: &PostgresStore, ws: &WorkspaceId) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(n), 0)::bigint FROM governance_history_daily_counts \
         WHERE workspace_id = $1 AND dimension = 'operation'",
    )
    .bind(ws.as_str())
    .fetch_one(store.pool())
    .await
    .expect("as the owner")
}

/// An older version of the roll-up folds records into the hours only. The
/// other provider's older migration can install it again, and a roll-up
/// that looked the function up before the migration replacing it committed
/// still runs it. Such a roll-up moves the watermark past records the days
/// never received: counts then read the hours alone, until a roll-up of
/// this version rebuilds the days from the hours.
#[tokio::test]
async fn days_an_older_roll_up_left_behind_are_not_read_then_rebuilt() {
    let Some(store) = store().await else { return };
    let (ws, base) = (workspace(), base());
    let mark = || async { count_mark(&store, &ws).await.expect("rolled up") };
    let day = 24 * HOUR;
    let midnight = (base + 3 * HOUR).div_euclid(day) * day + day;
    let whole_day =
        CountQuery::new(CountBy::Operation, TimeRange { from: Some(at(midnight)), until: Some(at(midnight + day)) });
    let plan = || async { store.explain_count_history(&ws, &whole_day).await.expect("explain").join("\n") };

    store.append_history(&records(&ws, base, 120, 11)).await.expect("append");
    roll_up_until(&store, &ws, 0, 120).await;
    assert!(!mark().await.ends_with("/hours"), "{}", mark().await);
    assert!(plan().await.contains("governance_history_daily_counts"), "in step: the days are read");

    // The hourly-only version, as its migration installs it.
    sqlx::raw_sql(include_str!("../migrations/20261231000007_decision_counts.sql"))
        .execute(store.pool())
        .await
        .expect("the older roll-up");
    store.append_history(&records(&ws, base, 80, 12)).await.expect("append");
    roll_up_until(&store, &ws, 120, 200).await;
    assert_eq!(records_in_days(&store, &ws).await, 120, "the days did not receive the last 80");
    assert!(mark().await.ends_with("/hours"), "{}", mark().await);
    let plan_behind = plan().await;
    assert!(!plan_behind.contains("governance_history_daily_counts"), "{plan_behind}");
    assert!(plan_behind.contains("governance_history_counts"), "{plan_behind}");
    assert_exact(&store, &ws, base, "days behind the hours").await;

    // This version again: its next roll-up, with nothing new to fold,
    // rebuilds the days.
    sqlx::raw_sql(include_str!("../migrations/20270102000009_days_in_step.sql"))
        .execute(store.pool())
        .await
        .expect("this roll-up");
    roll_up_until(&store, &ws, 200, 200).await;
    assert_eq!(records_in_days(&store, &ws).await, 200, "rebuilt from the hours");
    assert!(!mark().await.ends_with("/hours"), "{}", mark().await);
    assert!(plan().await.contains("governance_history_daily_counts"), "in step again");
    assert_exact(&store, &ws, base, "days rebuilt").await;
}

/// The library never stores a `NULL` reason code, but a role that may
/// insert history can write one around it. That row must not stop every
/// roll-up of its workspace (the counts' keys are `NOT NULL`), nor be
/// mistaken for a count statement's watermark row: its code counts nowhere,
/// before or after a roll-up.
#[tokio::test]
async fn a_null_reason_code_written_around_the_library_counts_nowhere() {
    let Some(store) = store().await else { return };
    let (ws, base) = (workspace(), base());
    let written = records(&ws, base, 60, 13);
    store.append_history(&written).await.expect("append");
    roll_up_until(&store, &ws, 0, 60).await;
    // A copy of a denied record with codes {limit, NULL}, under a new id.
    let denied = written.iter().find(|r| r.evidence().decision == Some(Decision::Denied)).expect("a denial");
    sqlx::query(
        "INSERT INTO governance_history (workspace_id, id, category, code, actor_kind, actor_id, actor, object_type, \
         operation, decision, outcome, reason_codes, created_at, content_hash) \
         SELECT workspace_id, $3, category, code, actor_kind, actor_id, actor, object_type, operation, decision, \
         outcome, ARRAY['limit', NULL]::text[], created_at, content_hash FROM governance_history \
         WHERE workspace_id = $1 AND id = $2",
    )
    .bind(ws.as_str())
    .bind(denied.id().as_uuid())
    .bind(governance_abstractions::RecordId::new().as_uuid())
    .execute(store.pool())
    .await
    .expect("as the owner");
    let by_code = |window: TimeRange| CountQuery::new(CountBy::ReasonCode, window).decision(Decision::Denied);
    let limit = |counts: Vec<Count>| counts.into_iter().find(|c| c.key == "limit").map_or(0, |c| c.count);
    // The copy counts for its `limit` code wherever its record counts.
    let want = |window: TimeRange| {
        let query = by_code(window);
        limit(expected(&written, &query)) + u64::from(query.counts(denied))
    };
    let windows = [
        TimeRange::default(),
        TimeRange { from: Some(at(base + 17 * MINUTE)), until: None },
        TimeRange { from: Some(at(denied.created_at().unix_micros() - HOUR)), until: None },
        // Inside one hour: only records are read.
        TimeRange {
            from: Some(at(denied.created_at().unix_micros() - MINUTE)),
            until: Some(at(denied.created_at().unix_micros() + MINUTE)),
        },
    ];
    for (when, folded) in [("before the roll-up", 60), ("after it", 61)] {
        if folded == 61 {
            // The roll-up folds the copy (all but its NULL code) and goes on.
            roll_up_until(&store, &ws, 60, 61).await;
        }
        for window in windows {
            let got = store.count_history(&ws, &by_code(window)).await.expect("count");
            assert!(got.iter().all(|c| !c.key.is_empty()), "{when}: {got:?}");
            assert_eq!(limit(got), want(window), "{when}: {window:?}");
        }
    }
}

/// The distributed profile keeps no hourly counts: a roll-up is refused
/// with a typed source, and counts still answer from the records.
#[tokio::test]
async fn the_distributed_profile_refuses_a_roll_up() {
    let Some(url) = fresh_database_or_skip(Server::Postgres).await else { return };
    let store = PostgresStore::connect(&url).await.expect("connect");
    store.migrate_with(MigrateOptions::new(SchemaProfile::Distributed).without_locking()).await.expect("migrate");
    let store = store.with_profile(SchemaProfile::Distributed);
    let (ws, base) = (workspace(), base());
    store.append_history(&records(&ws, base, 40, 9)).await.expect("append");
    let refused = store.roll_up_counts(&ws).await.expect_err("refused");
    match &refused {
        GovernanceError::Backend { retryable: false, source } => {
            assert!(source.downcast_ref::<RollUpUnsupported>().is_some(), "{refused:?}")
        }
        other => panic!("expected Backend(RollUpUnsupported), got {other:?}"),
    }
    assert_exact(&store, &ws, base, "distributed").await;
}
