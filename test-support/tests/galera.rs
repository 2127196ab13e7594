//! The SeaORM provider on a real MariaDB Galera cluster of three writable
//! nodes (`.ci/clusters/galera.sh start` prints `GOVERNANCE_GALERA_URLS`):
//! the conformance suite through one node, compare-and-set and idempotency
//! races with the writers spread over every node, and `migrate()` from every
//! node at once.
//!
//! Without the variable each test prints SKIPPED, unless
//! `GOVERNANCE_REQUIRE_CLUSTERS` is set, which fails it.

mod clusters;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clusters::{Counting, Failures, cluster_urls, history_matches};
use conformance_tests::{Capabilities, Capability, SetupError, StoreFactory, TestStore};
use governance_abstractions::{
    Action, Actor, GovernanceError, GovernanceService, GovernanceStore, NewRequest, PageRequest, Principal,
    RequestFilter, RequestReader, RequestWriter, RetryPolicy, TargetRef, WorkspaceId, codes,
};
use governance_seaorm::SeaOrmStore;
use governance_seaorm::sea_orm::{ConnectOptions, ConnectionTrait, Database, DbBackend, Statement};
use governance_test_support::{
    Login, Server, TestDatabase, application_login, fresh_test_database, unavailable, with_causes, with_database,
};
use serde_json::json;

const URLS: &str = "GOVERNANCE_GALERA_URLS";
const SCRIPT: &str = ".ci/clusters/galera.sh";

fn nodes() -> Option<Vec<String>> {
    cluster_urls(URLS, 3, SCRIPT)
}

fn workspace() -> WorkspaceId {
    WorkspaceId::new(format!("galera-{}", uuid::Uuid::now_v7().simple())).expect("valid id")
}

/// The name of the database a URL names.
fn database_of(url: &str) -> &str {
    let path = url.rsplit('/').next().unwrap_or_default();
    path.split('?').next().unwrap_or_default()
}

/// A pool of `connections` to `url`, statement logging off.
async fn pool(url: &str, connections: u32) -> SeaOrmStore {
    let mut options = ConnectOptions::new(url);
    options.max_connections(connections).min_connections(0).sqlx_logging(false);
    SeaOrmStore::new(Database::connect(options).await.expect("connects to a Galera node"))
}

/// One connection whose reads wait until the node has applied every write
/// set committed anywhere before them (`wsrep_sync_wait`): what "the same on
/// every node" is checked through.
async fn causal(url: &str) -> SeaOrmStore {
    let mut options = ConnectOptions::new(url);
    options.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None).sqlx_logging(false);
    let db = Database::connect(options).await.expect("connects to a Galera node");
    db.execute_unprepared("SET SESSION wsrep_sync_wait = 1").await.expect("causal reads");
    SeaOrmStore::new(db)
}

/// A fresh database, created through the first node, and its URL on every
/// node once every node has it: the other nodes apply the `CREATE DATABASE`
/// a moment after the first one returns.
async fn fresh_on_every_node(nodes: &[String]) -> (TestDatabase, Vec<String>) {
    let database = fresh_test_database(&nodes[0], Server::MySql).await.expect("a fresh database on the cluster");
    let urls: Vec<String> = nodes.iter().map(|node| with_database(node, database_of(database.url()))).collect();
    for url in &urls {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match Database::connect(ConnectOptions::new(url.as_str()).sqlx_logging(false).to_owned()).await {
                Ok(db) => {
                    let _ = db.close().await;
                    break;
                }
                Err(error) if Instant::now() < deadline => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("{} never got the database: {error}", database_of(url)),
            }
        }
    }
    (database, urls)
}

/// [`fresh_on_every_node`], migrated through the first node, once every
/// node has applied the migrations' DDL: `migrate()` returns when its own
/// node is done, and the others apply the same DDL in the same order a
/// moment later.
async fn migrated_database(nodes: &[String]) -> (TestDatabase, Vec<String>) {
    let (database, urls) = fresh_on_every_node(nodes).await;
    pool(&urls[0], 2).await.migrate().await.expect("migrates");
    for url in &urls {
        let store = causal(url).await;
        store.connection().execute_unprepared("SELECT 1").await.expect("a causal read waits for the DDL");
    }
    for url in &urls {
        warm_table_cache(url).await;
    }
    (database, urls)
}

/// How many statements at once a race sends to one node, appliers
/// included, at most.
const WARM: usize = 12;

/// Opens every table of the database from [`WARM`] connections at once, so
/// the node's table cache holds that many ready instances before a race.
///
/// MariaDB 10.11 parses a table's triggers each time it opens a new
/// instance of it, and when Galera aborts the opening transaction mid-parse
/// (a certification conflict), the instance is kept with its triggers
/// marked unparseable: every statement that later draws it fails with
/// 1064 "Trigger … has an error in its body" until the table is flushed
/// (docs/operations.md). The races below are about the library's commits;
/// with the instances opened before any write, none is opened mid-race.
async fn warm_table_cache(url: &str) {
    let mut options = ConnectOptions::new(url);
    options.max_connections(WARM as u32).min_connections(0).sqlx_logging(false);
    let db = Database::connect(options).await.expect("connects to a Galera node");
    let tables: Vec<String> = db
        .query_all_raw(Statement::from_string(
            DbBackend::MySql,
            "SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() \
             AND TABLE_TYPE = 'BASE TABLE'",
        ))
        .await
        .expect("the tables")
        .iter()
        .map(|row| row.try_get::<String>("", "t").expect("a name"))
        .collect();
    // One statement holding every table open for a moment (the sleep runs
    // once, for the one aggregate row), from WARM connections at once.
    let hold = format!("SELECT SLEEP(0.3) AS s, COUNT(*) AS n FROM {}", tables.join(", "));
    let mut reads = tokio::task::JoinSet::new();
    for _ in 0..WARM {
        let (db, hold) = (db.clone(), hold.clone());
        reads.spawn(async move { db.execute_unprepared(&hold).await.map(drop) });
    }
    while let Some(read) = reads.join_next().await {
        read.expect("a warming task").expect("a warming read");
    }
    let _ = db.close().await;
}

/// Runs a cluster test within `limit`: a wedged node fails the test, named,
/// instead of stalling CI for its whole time limit.
async fn bounded(name: &str, limit: Duration, test: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(limit, test).await.is_err() {
        panic!("{name} did not finish within {limit:?}: is a node wedged? (SHOW PROCESSLIST on each node)");
    }
}

/// What each cluster test is given; a run takes 10–40 s.
const LIMIT: Duration = Duration::from_secs(300);

/// The suite's factory: a database on the cluster, migrated by its owner,
/// and an application login; every case's store goes through the first node.
struct GaleraFactory {
    owner_url: String,
    login: Login,
    _database: TestDatabase,
}

impl GaleraFactory {
    async fn new(node: &str) -> Result<Self, SetupError> {
        let database = fresh_test_database(node, Server::MySql).await?;
        let owner_url = database.url().to_owned();
        let owner = pool(&owner_url, 2).await;
        owner.migrate().await.map_err(|e| unavailable("migrating", &owner_url, with_causes(&e)))?;
        let login = application_login(&owner_url, Server::MySql).await?;
        let role = governance_seaorm::ApplicationRole::account(login.name(), login.host().unwrap_or("%"))
            .map_err(|e| unavailable("granting on", &owner_url, with_causes(&e)))?;
        let granted = owner
            .grant_application_role(&role)
            .await
            .map_err(|e| unavailable("granting on", &owner_url, with_causes(&e)))?;
        assert!(matches!(granted, governance_seaorm::RoleGrants::Granted(_)), "MariaDB has roles");
        Ok(Self { owner_url, login, _database: database })
    }
}

#[async_trait]
impl StoreFactory for GaleraFactory {
    fn name(&self) -> &str {
        "seaorm-galera"
    }

    fn capabilities(&self) -> Capabilities {
        // As on a single MySQL/MariaDB server.
        Capabilities::all().without(
            Capability::Tamper,
            "lifting MySQL triggers is non-transactional DDL that would unguard the cases running beside it",
        )
    }

    async fn open(&self) -> Result<TestStore, SetupError> {
        let store = pool(self.login.url(), 6).await;
        let owner = pool(&self.owner_url, 1).await.connection().clone();
        Ok(TestStore::new(Arc::new(store))
            .with_raw_history(Arc::new(governance_seaorm::testing::SeaOrmRawHistory::new(owner))))
    }
}

/// (a) The whole conformance suite through one node of the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_through_one_node() {
    bounded("the_conformance_suite_passes_through_one_node", LIMIT, async {
        let Some(nodes) = nodes() else { return };
        let factory = Arc::new(GaleraFactory::new(&nodes[0]).await.expect("the suite's database"));
        let started = Instant::now();
        let report = conformance_tests::runner::run_suite(factory, 8).await;
        let failed = report.failures();
        eprintln!(
            "galera suite: {} passed, {} skipped, {} failed in {:?}",
            report.passed,
            report.skipped,
            report.failed,
            started.elapsed()
        );
        assert_eq!(report.status, conformance_tests::runner::ProviderStatus::Ran, "{:?}", report.message);
        assert!(failed.is_empty(), "failed on Galera:\n{}", failed.join("\n"));
        assert!(report.passed > 90, "only {} cases passed", report.passed);
        // Skipped only for the capability declared missing, as on one MySQL server.
        let other_skips: Vec<String> = report
            .cases_with(conformance_tests::runner::CaseStatus::Skipped)
            .filter(|c| !c.message.as_deref().unwrap_or_default().contains("lifting MySQL triggers"))
            .map(|c| format!("{}: {:?}", c.name, c.message))
            .collect();
        assert!(other_skips.is_empty(), "skipped for another reason: {other_skips:?}");
    })
    .await;
}

/// The retry policy of the cross-node races: more attempts than the
/// default's 10. With 16 writers on one row, a writer can lose the race (a
/// conflict here, a certification failure there) many times in a row; the
/// deadline, not the count, is what should bound it.
fn race_policy() -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(200)
        .with_delays(Duration::from_millis(2), Duration::from_millis(100))
        .with_deadline(Some(Duration::from_secs(60)))
}

/// (b) 16 tasks × 50 compare-and-set transitions on one request, the tasks
/// spread over the three nodes, through `GovernanceService`: no error
/// reaches a caller, and every node ends at revision 801 with 800 update
/// records, one record per revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_node_compare_and_set_race_loses_nothing() {
    bounded("cross_node_compare_and_set_race_loses_nothing", LIMIT, async {
        const TASKS: usize = 16;
        const TRANSITIONS: usize = 50;
        let Some(nodes) = nodes() else { return };
        let (_database, urls) = migrated_database(&nodes).await;
        let mut stores: Vec<Arc<dyn GovernanceStore>> = Vec::new();
        for url in &urls {
            stores.push(Arc::new(pool(url, 6).await));
        }
        let ws = workspace();
        let spec = NewRequest::new(ws.clone(), TargetRef::new("flag", "galera"), "enable", Actor::user("dana"));
        let request = GovernanceService::new(Arc::clone(&stores[0])).create(spec).await.expect("created").into_inner();
        // Every node has the request before the race: a node that has not
        // applied the creation yet would answer NotFound (see docs/operations.md
        // on wsrep_sync_wait); the race is about the commits.
        for url in &urls {
            causal(url).await.get_request(&ws, request.id()).await.expect("the request is on every node");
        }
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..TASKS {
            // Each task counts its own failures: the attempts each transition took.
            let failures = Arc::new(Failures::default());
            let counted = Arc::new(Counting::new(Arc::clone(&stores[task % stores.len()]), Arc::clone(&failures)));
            let service = GovernanceService::new(counted).with_retry_policy(race_policy());
            let (ws, id) = (ws.clone(), request.id());
            tasks.spawn(async move {
                let by: Principal = Actor::user(format!("writer-{task}")).into();
                let mut errors = Vec::new();
                let mut most_attempts = 0;
                for n in 0..TRANSITIONS {
                    let action = Action::Annotate { metadata: json!({"task": task, "n": n}) };
                    let before = failures.total();
                    if let Err(error) = service.apply(&ws, id, &by, action).await {
                        errors.push(format!("task {task} transition {n}: {error:?}"));
                    }
                    most_attempts = most_attempts.max(failures.total() - before + 1);
                }
                (errors, failures.counts(), most_attempts)
            });
        }
        let mut errors = Vec::new();
        let (mut conflicts, mut retryable, mut unavailable, mut other, mut most_attempts) = (0, 0, 0, 0, 0);
        while let Some(joined) = tasks.join_next().await {
            let (task_errors, counts, most) = joined.expect("a writer task");
            errors.extend(task_errors);
            conflicts += counts.0;
            retryable += counts.1;
            unavailable += counts.2;
            other += counts.3;
            most_attempts = most_attempts.max(most);
        }
        eprintln!(
            "galera race: {} transitions in {:?}; retried {conflicts} conflicts, {retryable} retryable backend errors \
             (certification failures), {unavailable} unavailable; {other} other failures; at most {most_attempts} \
             attempts for one transition; {} errors reached callers",
            TASKS * TRANSITIONS,
            started.elapsed(),
            errors.len()
        );
        assert!(
            errors.is_empty(),
            "{} errors reached the callers, e.g. {:?}",
            errors.len(),
            &errors[..errors.len().min(3)]
        );
        let total = (TASKS * TRANSITIONS) as u64;
        for url in &urls {
            let store = causal(url).await;
            let read = store.get_request(&ws, request.id()).await.expect("read back");
            assert_eq!(read.revision(), total + 1, "the revision on {}", database_of(url));
            let history = governance_abstractions::HistoryReader::history_for_request(&store, &ws, request.id())
                .await
                .expect("history");
            let updates = history.iter().filter(|r| r.evidence().code == codes::REQUEST_ANNOTATED).count() as u64;
            assert_eq!(updates, total, "one update record per transition");
            history_matches(read.revision(), &history).expect("one record per revision");
        }
    })
    .await;
}

/// (c) 32 writers of one idempotency key, spread over the nodes: every
/// caller gets the one request, and every node holds exactly one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_node_idempotency_key_race_makes_one_request() {
    bounded("cross_node_idempotency_key_race_makes_one_request", LIMIT, async {
        const WRITERS: usize = 32;
        let Some(nodes) = nodes() else { return };
        let (_database, urls) = migrated_database(&nodes).await;
        let failures = Arc::new(Failures::default());
        let mut services = Vec::new();
        for url in &urls {
            let store: Arc<dyn GovernanceStore> = Arc::new(pool(url, 8).await);
            let counted = Arc::new(Counting::new(store, Arc::clone(&failures)));
            services.push(Arc::new(GovernanceService::new(counted).with_retry_policy(race_policy())));
        }
        for round in 0..3 {
            let ws = workspace();
            let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
            let mut tasks = tokio::task::JoinSet::new();
            for writer in 0..WRITERS {
                let (service, ws, barrier) =
                    (Arc::clone(&services[writer % services.len()]), ws.clone(), barrier.clone());
                tasks.spawn(async move {
                    let spec = NewRequest::new(ws, TargetRef::new("flag", "galera"), "enable", Actor::user("dana"))
                        .intent("one change, asked for 32 times")
                        .idempotency_key(format!("change-{round}"));
                    barrier.wait().await;
                    service.create(spec).await.map(|stored| stored.into_inner().id())
                });
            }
            let mut ids = Vec::new();
            let mut errors: Vec<GovernanceError> = Vec::new();
            while let Some(joined) = tasks.join_next().await {
                match joined.expect("a writer task") {
                    Ok(id) => ids.push(id),
                    Err(error) => errors.push(error),
                }
            }
            assert!(errors.is_empty(), "round {round}: errors reached callers: {errors:?}");
            ids.dedup();
            assert_eq!(ids.len(), 1, "round {round}: every caller gets the one request: {ids:?}");
            for url in &urls {
                let store = causal(url).await;
                let all =
                    store.query_requests(&ws, &RequestFilter::default(), &PageRequest::all()).await.expect("query");
                assert_eq!(all.items.len(), 1, "round {round}: one request on {}", database_of(url));
                assert_eq!(all.items[0].id(), ids[0]);
                let history = governance_abstractions::HistoryReader::history_for_request(&store, &ws, ids[0])
                    .await
                    .expect("history");
                history_matches(1, &history).expect("one creation record");
            }
        }
        let (conflicts, retryable, unavailable, other) = failures.counts();
        eprintln!(
            "galera key race: 3 rounds × {WRITERS} writers; {conflicts} conflicts, {retryable} retryable backend \
             errors, {unavailable} unavailable, {other} other failures (replays and idempotency lookups included)"
        );
    })
    .await;
}

/// What a complete MySQL/MariaDB schema holds: tables and triggers by name.
async fn schema(store: &SeaOrmStore) -> (Vec<String>, Vec<String>, i64, i64) {
    let db = store.connection();
    let names = |sql: &'static str| async move {
        let rows = db.query_all_raw(Statement::from_string(DbBackend::MySql, sql)).await.expect("schema query");
        rows.iter().map(|row| row.try_get::<String>("", "n").expect("a name")).collect::<Vec<_>>()
    };
    let tables = names(
        "SELECT TABLE_NAME AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME",
    )
    .await;
    let triggers = names(
        "SELECT TRIGGER_NAME AS n FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() ORDER BY TRIGGER_NAME",
    )
    .await;
    let count = |sql: &'static str| async move {
        let row = db.query_one_raw(Statement::from_string(DbBackend::MySql, sql)).await.expect("count query");
        row.map(|row| row.try_get::<i64>("", "n").expect("a count")).unwrap_or(-1)
    };
    let applied = count("SELECT COUNT(*) AS n FROM governance_migrations").await;
    let locks = count("SELECT COUNT(*) AS n FROM governance_migrations_lock").await;
    (tables, triggers, applied, locks)
}

const TABLES: [&str; 9] = [
    "governance_checkpoints",
    "governance_checkpoints_truncate_guard",
    "governance_history",
    "governance_history_truncate_guard",
    "governance_migrations",
    "governance_migrations_lock",
    "governance_requests",
    "governance_seals",
    "governance_seals_truncate_guard",
];

const TRIGGERS: [&str; 7] = [
    "governance_checkpoints_no_delete",
    "governance_checkpoints_no_update",
    "governance_history_no_delete",
    "governance_history_no_update",
    "governance_requests_frozen_columns",
    "governance_seals_no_delete",
    "governance_seals_no_update",
];

/// The lock table as `migrate()` creates it, for a lock row a test plants.
const LOCK_TABLE_DDL: &str = "CREATE TABLE governance_migrations_lock (name VARCHAR(64) NOT NULL PRIMARY KEY, \
     owner CHAR(36) NOT NULL, holder VARCHAR(255) NOT NULL, acquired_at DATETIME(6) NOT NULL, \
     expires_at DATETIME(6) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

/// Every node answers a write within a few seconds: none is wedged.
async fn every_node_takes_writes(urls: &[String]) {
    for url in urls {
        let store = pool(url, 1).await;
        let service = GovernanceService::new(Arc::new(store)).with_retry_policy(race_policy());
        let spec = NewRequest::new(workspace(), TargetRef::new("flag", "alive"), "enable", Actor::user("dana"));
        let created = tokio::time::timeout(Duration::from_secs(15), service.create(spec)).await;
        let created = created.unwrap_or_else(|_| panic!("{} did not take a write within 15 s", database_of(url)));
        created.expect("a node takes writes after the migrations");
    }
}

async fn node_state(node: &str) -> String {
    let store = pool(node, 1).await;
    let row = store
        .connection()
        .query_one_raw(Statement::from_string(DbBackend::MySql, "SHOW STATUS LIKE 'wsrep_local_state_comment'"))
        .await
        .expect("wsrep status");
    row.map(|row| row.try_get::<String>("", "Value").expect("a state")).unwrap_or_default()
}

/// A store over one connection that stays open, so that what the store's
/// last commit was can be asked of the same session afterwards.
async fn one_session(url: &str) -> SeaOrmStore {
    let mut options = ConnectOptions::new(url);
    options.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None).sqlx_logging(false);
    SeaOrmStore::new(Database::connect(options).await.expect("connects to a Galera node"))
}

/// Where the session's last write stands in the cluster's one commit order
/// (the sequence number of `WSREP_LAST_WRITTEN_GTID()`, the same on every
/// node).
async fn last_written(store: &SeaOrmStore) -> u64 {
    let row = store
        .connection()
        .query_one_raw(Statement::from_string(DbBackend::MySql, "SELECT WSREP_LAST_WRITTEN_GTID() AS g"))
        .await
        .expect("the session's last write")
        .expect("a row");
    let gtid: String = row.try_get("", "g").expect("a GTID");
    gtid.rsplit('-').next().and_then(|seqno| seqno.parse().ok()).unwrap_or_else(|| panic!("a GTID: {gtid}"))
}

/// (e) A supersession through one node races a cancel of its successor
/// through another, round after round, both computed from the same reads
/// so that their commits meet. A supersession may commit only while its
/// successor is unfinished: when both commit, the supersession must come
/// first in the cluster's one commit order. (A lock on the successor holds
/// on its own node only; Galera certifies written rows, so the store
/// writes the successor's row.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_node_supersession_never_follows_its_successors_end() {
    bounded("cross_node_supersession_never_follows_its_successors_end", LIMIT, async {
        const ROUNDS: u64 = 96;
        let Some(nodes) = nodes() else { return };
        let (_database, urls) = migrated_database(&nodes).await;
        let (first, second) = (one_session(&urls[0]).await, one_session(&urls[1]).await);
        let service = GovernanceService::new(Arc::new(first.clone()));
        let by: Principal = Actor::user("dana").into();
        let (mut both, mut refused, mut out_of_order) = (0, 0, Vec::new());
        for round in 0..ROUNDS {
            let ws = workspace();
            let spec = || NewRequest::new(ws.clone(), TargetRef::new("flag", "galera"), "enable", Actor::user("dana"));
            let older = service.create(spec()).await.expect("older").into_inner();
            let newer = service.create(spec()).await.expect("newer").into_inner();
            // Both requests are on the second node before the race.
            causal(&urls[1]).await.get_request(&ws, newer.id()).await.expect("on the second node");
            let now = governance_abstractions::Timestamp::now();
            let cancel = Action::Cancel { reason: "withdrawn".into() };
            let cancel = governance_abstractions::lifecycle::apply(&newer, &by, &cancel, now).expect("a cancel");
            let supersede = governance_abstractions::lifecycle::supersede(&older, &newer, &by, now).expect("valid");
            // One side a little later each round, so that the commits meet
            // at every point of each other's transaction.
            let delay = Duration::from_micros(200 * (round % 16));
            let (cancel_after, supersede_after) =
                if round % 2 == 0 { (delay, Duration::ZERO) } else { (Duration::ZERO, delay) };
            let (canceled, superseded) = tokio::join!(
                async {
                    tokio::time::sleep(cancel_after).await;
                    first.commit_transition(&cancel).await
                },
                async {
                    tokio::time::sleep(supersede_after).await;
                    second.commit_transition(&supersede).await
                }
            );
            canceled.unwrap_or_else(|e| panic!("round {round}: the cancel is refused: {e:?}"));
            match superseded {
                Ok(()) => {
                    both += 1;
                    let (c, s) = (last_written(&first).await, last_written(&second).await);
                    if c < s {
                        out_of_order.push(format!("round {round}: the cancel at {c}, then the supersession at {s}"));
                    }
                }
                // The successor moved on: a conflict, or (after a rerun
                // that read it finished) a refusal.
                Err(GovernanceError::Conflict { .. } | GovernanceError::InvalidTransition { .. }) => refused += 1,
                Err(error) => panic!("round {round}: the supersession failed otherwise: {error:?}"),
            }
        }
        eprintln!(
            "galera supersession race: {ROUNDS} rounds; both committed in {both}, the supersession refused in \
             {refused}; {} out of order",
            out_of_order.len()
        );
        assert!(out_of_order.is_empty(), "a supersession committed after its successor ended: {out_of_order:?}");
    })
    .await;
}

/// (d) `migrate()` from every node at once — two migrators per node — on a
/// fresh database, round after round: every run succeeds (a refusal would be
/// a typed retryable error, and a retry must clear it), the schema is whole
/// on every node, the lock is released, and every node still takes writes.
/// A last round starts over a stale lock left by a "crashed" migrator; then
/// a live holder's lock keeps them all waiting until it is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_from_every_node_at_once_is_serialised() {
    bounded("migrate_from_every_node_at_once_is_serialised", LIMIT, async {
        const ROUNDS: usize = 4;
        const PER_NODE: usize = 2;
        let Some(nodes) = nodes() else { return };
        // What one migration alone leaves, on a database of its own.
        let (_reference, reference_urls) = migrated_database(&nodes).await;
        let expected = schema(&causal(&reference_urls[0]).await).await;
        assert_eq!(expected.0, TABLES, "the tables of a lone migration");
        assert_eq!(expected.1, TRIGGERS, "the triggers of a lone migration");
        assert_eq!(expected.3, 0, "a lone migration releases its lock");
        let started = Instant::now();
        let mut refused = 0;
        for round in 0..=ROUNDS {
            let (_database, urls) = fresh_on_every_node(&nodes).await;
            let stale = round == ROUNDS;
            if stale {
                // A migrator that took the lock and died: its lease ran out.
                let store = pool(&urls[1], 1).await;
                let db = store.connection();
                db.execute_unprepared(LOCK_TABLE_DDL).await.expect("the lock table");
                db.execute_unprepared(
                    "INSERT INTO governance_migrations_lock VALUES ('migrate', 'crashed', 'crashed:0/0', \
                     UTC_TIMESTAMP(6) - INTERVAL 5 MINUTE, UTC_TIMESTAMP(6) - INTERVAL 1 SECOND)",
                )
                .await
                .expect("a stale lock");
            }
            let mut runs = tokio::task::JoinSet::new();
            for (node, url) in urls.iter().enumerate() {
                for _ in 0..PER_NODE {
                    let url = url.clone();
                    runs.spawn(async move {
                        let store = pool(&url, 3).await;
                        let first = tokio::time::timeout(Duration::from_secs(150), store.migrate()).await;
                        let first = first.unwrap_or_else(|_| panic!("migrate on node {node} hangs"));
                        match first {
                            Ok(()) => Ok(false),
                            Err(error) if error.is_retryable() => {
                                // A refusal is typed and retryable; the retry clears it.
                                store.migrate().await.map(|()| true).map_err(|e| (node, e))
                            }
                            Err(error) => Err((node, error)),
                        }
                    });
                }
            }
            while let Some(joined) = runs.join_next().await {
                match joined.expect("a migrator task") {
                    Ok(retried) => refused += usize::from(retried),
                    Err((node, error)) => panic!("round {round}: migrate on node {node} failed: {error:?}"),
                }
            }
            for url in &urls {
                let found = schema(&causal(url).await).await;
                assert_eq!(
                    found,
                    expected,
                    "round {round}: tables, triggers, migrations recorded, locks held on {}",
                    database_of(url)
                );
            }
            every_node_takes_writes(&urls).await;
        }
        // A live holder (its lease still running) keeps every node's migrator
        // waiting, and they all go on once it releases.
        let (_database, urls) = fresh_on_every_node(&nodes).await;
        let holder = pool(&urls[2], 1).await;
        holder.connection().execute_unprepared(LOCK_TABLE_DDL).await.expect("the lock table");
        holder
            .connection()
            .execute_unprepared(
                "INSERT INTO governance_migrations_lock VALUES ('migrate', 'holder', 'a live run', \
                 UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL 1 MINUTE)",
            )
            .await
            .expect("a held lock");
        let mut waiting = tokio::task::JoinSet::new();
        for url in urls.clone() {
            waiting.spawn(async move { pool(&url, 3).await.migrate().await });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(waiting.try_join_next().is_none(), "a migrator went ahead while the lock was held");
        let reader = causal(&urls[0]).await;
        let count = "SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()";
        let row = reader.connection().query_one_raw(Statement::from_string(DbBackend::MySql, count)).await;
        let tables = row.expect("a count").map(|row| row.try_get::<i64>("", "n").expect("n"));
        assert_eq!(tables, Some(1), "nothing but the lock table while the lock is held");
        holder
            .connection()
            .execute_unprepared("DELETE FROM governance_migrations_lock")
            .await
            .expect("the holder releases");
        while let Some(joined) = waiting.join_next().await {
            joined.expect("a migrator task").expect("migrates once the lock is free");
        }
        for url in &urls {
            assert_eq!(schema(&causal(url).await).await, expected, "after waiting, on {}", database_of(url));
        }
        for node in &nodes {
            assert_eq!(node_state(node).await, "Synced", "every node stays in the cluster");
        }
        eprintln!(
            "galera migrate: {} rounds × {} nodes × {PER_NODE} migrators (the last over a stale lock), then 3 waiting on a held lock, in {:?}; \
             {refused} refused with a retryable error and cleared by a retry",
            ROUNDS + 1,
            nodes.len(),
            started.elapsed()
        );
    })
    .await;
}
