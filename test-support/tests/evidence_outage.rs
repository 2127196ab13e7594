//! The recorder against real servers that fail, each test asserting its
//! figure (and printing it, for `--nocapture`):
//!
//! - a server that accepts connections and never answers, behind the
//!   providers' pools with their default 30 s acquire timeout: fail-open and
//!   fail-closed writes each cost at most the recorder's deadline;
//! - connections killed every 5–50 ms under load (PostgreSQL
//!   `pg_terminate_backend`, MySQL `KILL`): no acknowledged record lost, each
//!   stored once, the history verifies.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use audit_history::{AuditError, Durability, Recorder, Relay, Spool, SpoolOptions, verify};
use conformance_tests::random_workspace;
use governance_abstractions::{
    Actor, Decision, Evidence, GovernanceStore, HistoryFilter, HistoryWriter, PageRequest, RecordId, WorkspaceId,
};
use governance_postgres::PostgresStore;
use governance_seaorm::SeaOrmStore;
use governance_seaorm::sea_orm::{ConnectOptions, ConnectionTrait, Database, DbBackend, Statement};
use governance_test_support::{Server, databases_required, fresh_database, server_url, with_database};

/// Room over the recorder's deadline for scheduling, the spool's fsync and
/// a loaded (2-core CI) machine: the larger of 250 ms and half the deadline
/// (750 ms for the default 500 ms). Far below the pools' 30 s acquire
/// timeout, so a write that waits on the pool instead of the deadline
/// still fails the bound.
fn margin(deadline: Duration) -> Duration {
    Duration::from_millis(250).max(deadline / 2)
}

/// A fresh database on the server in `variable`, dropped when the guard
/// goes (the test passed or failed); `None` (with a notice) when no server
/// is configured and none is required.
async fn database(kind: Server, backend: DbBackend) -> Option<Scratch> {
    let variable = kind.variable();
    let server = match server_url(kind).await {
        Ok(server) => server,
        Err(why) if !databases_required() => {
            eprintln!("skipped: {variable}: {why}");
            return None;
        }
        Err(why) => panic!("{variable} required: {why}"),
    };
    let url = fresh_database(&server, kind).await.expect("fresh database");
    Some(Scratch { server, url, backend })
}

/// A test's own database.
struct Scratch {
    server: String,
    url: String,
    backend: DbBackend,
}

impl Scratch {
    fn name(&self) -> String {
        self.url.rsplit('/').next().unwrap_or_default().split('?').next().unwrap_or_default().to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (server, name, backend) = (self.server.clone(), self.name(), self.backend);
        // On a thread and runtime of its own: the test's runtime may be the
        // one dropping it, and cannot block on itself.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let admin = Database::connect(server.as_str()).await.ok()?;
                let statement = match backend {
                    DbBackend::Postgres => format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                    _ => format!("DROP DATABASE IF EXISTS `{name}`"),
                };
                admin.execute_unprepared(&statement).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop the test database {}; it goes with the next run's stale cleanup", self.name());
        }
    }
}

/// A TCP server that accepts every connection and never sends a byte.
fn blackhole() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream); // open, unanswered
        }
    });
    address
}

fn evidence(workspace: &WorkspaceId, n: usize) -> Evidence {
    Evidence::decision(workspace.clone(), Actor::user("alice"), "invoice", format!("op{n}"), Decision::Approved)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Fail-open then fail-closed writes against `dead` for a while; asserts
/// the p99 bound and returns the spool holding the fail-open records.
async fn against_silence(
    what: &str,
    dead: Arc<dyn HistoryWriter>,
    workspace: &WorkspaceId,
) -> (Arc<Spool>, usize, tempfile::TempDir) {
    let deadline = Recorder::DEFAULT_DEADLINE;
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path(), SpoolOptions::default()).unwrap());
    let open = Recorder::new(dead.clone()).fail_open(spool.clone());
    let closed = Recorder::new(dead);
    let (mut open_latencies, mut closed_latencies) = (Vec::new(), Vec::new());
    // Long enough for the breaker to open and the writes after it to be cheap.
    let until = Instant::now() + deadline * 10;
    let mut n = 0;
    while Instant::now() < until {
        let started = Instant::now();
        let receipt = open.record(evidence(workspace, n)).await.expect("fail-open spools");
        open_latencies.push(started.elapsed());
        assert_eq!(receipt.durability, Durability::Spooled);
        let started = Instant::now();
        match closed.record(evidence(workspace, n)).await {
            Err(error @ AuditError::NotStored(_)) => {
                assert!(error.is_deadline_exceeded() || error.is_breaker_open(), "{error}")
            }
            other => panic!("fail-closed must refuse, got {other:?}"),
        }
        closed_latencies.push(started.elapsed());
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (policy, latencies) in [("fail-open", &mut open_latencies), ("fail-closed", &mut closed_latencies)] {
        latencies.sort();
        let p99 = percentile(latencies, 0.99);
        println!(
            "{what}, server never answers, {policy}: {} writes, p50 {:?}, p99 {p99:?}, max {:?} (deadline {deadline:?}, pool acquire timeout 30 s)",
            latencies.len(),
            percentile(latencies, 0.5),
            latencies.last().unwrap(),
        );
        let bound = deadline + margin(deadline);
        assert!(bound < Duration::from_secs(30) / 10, "the bound tells a deadline from the pool's timeout");
        assert!(p99 <= bound, "{what} {policy}: p99 {p99:?} over the deadline ({deadline:?} + margin)");
    }
    (spool, n, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_server_that_never_answers_costs_each_write_at_most_the_deadline() {
    let Some(scratch) = database(Server::Postgres, DbBackend::Postgres).await else { return };
    let alive = PostgresStore::connect(&scratch.url).await.expect("connect");
    alive.migrate().await.expect("migrate");
    let address = blackhole();
    // The pool as users get it: default acquire timeout (30 s).
    let pool = governance_postgres::sqlx::postgres::PgPoolOptions::new()
        .connect_lazy(&format!("postgres://postgres@{address}/none"))
        .unwrap();
    let workspace = random_workspace();
    let (spool, spooled, _dir) = against_silence("PostgreSQL", Arc::new(PostgresStore::new(pool)), &workspace).await;
    let report = Relay::new(spool, Arc::new(alive.clone())).drain().await.unwrap();
    assert_eq!(report.stored as usize, spooled, "the spooled records reach the real server");
    alive.pool().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_server_that_never_answers_costs_each_write_at_most_the_deadline() {
    let Some(scratch) = database(Server::MySql, DbBackend::MySql).await else { return };
    let alive = SeaOrmStore::connect(&scratch.url).await.expect("connect");
    alive.migrate().await.expect("migrate");
    let address = blackhole();
    let mut dead = ConnectOptions::new(format!("mysql://root@{address}/none"));
    dead.connect_lazy(true).sqlx_logging(false);
    let dead = SeaOrmStore::new(Database::connect(dead).await.unwrap());
    let workspace = random_workspace();
    let (spool, spooled, _dir) = against_silence("MySQL", Arc::new(dead), &workspace).await;
    let report = Relay::new(spool, Arc::new(alive.clone())).drain().await.unwrap();
    assert_eq!(report.stored as usize, spooled, "the spooled records reach the real server");
}

/// Writers under fail-open while `kill` drops the store's connections
/// every 5–50 ms; then the relay; then the figures.
async fn under_connection_kills<K, F>(what: &str, store: Arc<dyn GovernanceStore>, kill: K)
where
    K: Fn() -> F + Send + 'static,
    F: std::future::Future<Output = usize> + Send,
{
    let workspace = random_workspace();
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path(), SpoolOptions::default()).unwrap());
    let recorder = Recorder::new(store.clone()).fail_open(spool.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
            let (mut rounds, mut killed) = (0, 0);
            while !stop.load(Ordering::SeqCst) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                tokio::time::sleep(Duration::from_millis(5 + seed % 45)).await;
                killed += kill().await;
                rounds += 1;
            }
            (rounds, killed)
        })
    };
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (recorder, workspace) = (recorder.clone(), workspace.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let until = Instant::now() + Duration::from_secs(4);
                let mut n = 0;
                while Instant::now() < until {
                    let started = Instant::now();
                    let receipt = recorder.record(evidence(&workspace, w * 1_000_000 + n)).await.expect("acknowledged");
                    acknowledged.push((receipt.record.id(), receipt.durability, started.elapsed()));
                    n += 1;
                }
                acknowledged
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    stop.store(true, Ordering::SeqCst);
    let (rounds, killed) = killer.await.unwrap();

    // The store is whole again: relay, retrying while the pool reconnects.
    let relay = Relay::new(spool.clone(), store.clone());
    let mut report = None;
    for _ in 0..50 {
        if let Ok(drained) = relay.drain().await {
            report = Some(drained);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = report.expect("the relay drains once the kills stop");
    let history = store.query_history(&workspace, &HistoryFilter::default(), &PageRequest::all()).await.unwrap().items;
    let stored: HashSet<RecordId> = history.iter().map(|r| r.id()).collect();
    let lost = acknowledged.iter().filter(|(id, _, _)| !stored.contains(id)).count();
    let spooled = acknowledged.iter().filter(|(_, d, _)| *d == Durability::Spooled).count();
    let mut latencies: Vec<Duration> = acknowledged.iter().map(|(_, _, latency)| *latency).collect();
    latencies.sort();
    let verification = verify(store.as_ref(), &workspace, None).await.unwrap();
    println!(
        "{what}, {killed} connections killed in {rounds} rounds: {} acknowledged ({spooled} spooled), relay stored {} \
         and found {} already stored, {lost} acknowledged lost, {} rows; write p50 {:?}, p99 {:?}, max {:?}",
        acknowledged.len(),
        report.stored,
        report.already_stored,
        history.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().unwrap(),
    );
    assert!(killed > 0, "the kills reached the store's connections");
    assert_eq!(lost, 0, "no acknowledged record lost");
    assert_eq!(stored.len(), history.len(), "each record stored once");
    assert!(verification.is_clean(), "the history verifies: {:?}", verification.problem);
    assert_eq!(spool.pending().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_connections_killed_under_load_lose_no_acknowledged_record() {
    let Some(scratch) = database(Server::Postgres, DbBackend::Postgres).await else { return };
    let store = PostgresStore::connect(&scratch.url).await.expect("connect");
    store.migrate().await.expect("migrate");
    let admin = Database::connect(with_database(&scratch.url, "postgres")).await.unwrap();
    let name = scratch.name();
    let admin = Arc::new(admin);
    under_connection_kills("PostgreSQL", Arc::new(store.clone()), move || {
        let (admin, name) = (admin.clone(), name.clone());
        async move {
            let sql = format!(
                "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            );
            admin.query_all_raw(Statement::from_string(DbBackend::Postgres, sql)).await.map_or(0, |rows| rows.len())
        }
    })
    .await;
    store.pool().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mysql_connections_killed_under_load_lose_no_acknowledged_record() {
    let Some(scratch) = database(Server::MySql, DbBackend::MySql).await else { return };
    let store = SeaOrmStore::connect(&scratch.url).await.expect("connect");
    store.migrate().await.expect("migrate");
    let admin = Arc::new(Database::connect(scratch.server.as_str()).await.unwrap());
    let name = scratch.name();
    under_connection_kills("MySQL", Arc::new(store.clone()), move || {
        let (admin, name) = (admin.clone(), name.clone());
        async move {
            let sql = format!(
                "SELECT ID AS id FROM information_schema.PROCESSLIST WHERE DB = '{name}' AND ID <> CONNECTION_ID()"
            );
            let Ok(rows) = admin.query_all_raw(Statement::from_string(DbBackend::MySql, sql)).await else { return 0 };
            let mut killed = 0;
            for row in rows {
                let Some(id) =
                    row.try_get::<u64>("", "id").ok().or_else(|| row.try_get::<i64>("", "id").ok().map(|id| id as u64))
                else {
                    continue;
                };
                // Gone already (it finished, or another round killed it): fine.
                if admin.execute_unprepared(&format!("KILL {id}")).await.is_ok() {
                    killed += 1;
                }
            }
            killed
        }
    })
    .await;
}
