//! `governance-bench`: every provider against the hand-written SQL it
//! replaces, on the same server, in the same run, interleaved.
//!
//! ```text
//! cargo run --release -p governance-bench -- [--scale N|tiny] [--format markdown|json] [--provider NAME]… [--workload GROUP]…
//! cargo run --release -p governance-bench -- --cpu-per-record N [--format markdown|json]
//! ```
//!
//! PostgreSQL and MySQL providers run when `GOVERNANCE_POSTGRES_URL` /
//! `GOVERNANCE_MYSQL_URL` are set (each gets a fresh database); memory and
//! SQLite always run. `--scale N` seeds N history records (N/10 requests)
//! for the query workload (default 20 000, at most 1 000 000); `--scale tiny`
//! is a smoke run of every workload in seconds. `--explain` prints the plans
//! each SQL provider's database chooses for its four queries (`EXPLAIN`;
//! `EXPLAIN QUERY PLAN` on SQLite), on stderr.
//!
//! `--workload GROUP` (repeatable; default all) runs only some groups:
//! `sql-baseline` (every provider against the hand-written SQL on its own
//! tables: the `results` of the JSON), `event-sourced` (the SQL providers
//! against a hand-written event-sourced shape of the same domain work,
//! `vs-event-sourced/…` rows: `event_sourced` in the JSON), `bytes` (bytes
//! of table and index per create + transition of each side:
//! `bytes_per_operation` in the JSON).
//!
//! `--cpu-per-record N` measures something else, with no database: the
//! client CPU that recording one piece of evidence costs. N realistic
//! decision records (856 bytes of request JSON, 711 of response JSON, three
//! reason codes, an idempotency key, a token and an e-mail address for the
//! redaction to scrub) go one at a time through `Recorder::record` into a
//! `MemoryStore` on a single-threaded runtime, and it prints µs per record
//! for the whole call, for `Recorder::prepare` (no store), for
//! `HistoryRecord::new` alone (validation and one hash), and for the floor:
//! `serde_json::to_vec` of the record plus SHA-256 over its canonical JSON.
//! Use a release build; 10 000 records take a few seconds.
//!
//! See `docs/performance.md`.

mod baseline;
mod cpu;
mod event_sourced;
mod footprint;
mod measure;
mod sql;
mod vs_event_sourced;
mod workloads;

use std::sync::Arc;
use std::time::Duration;

use governance_memory::MemoryStore;
use governance_postgres::PostgresStore;
use governance_seaorm::SeaOrmStore;
use governance_seaorm::sea_orm::{ConnectOptions, Database};
use governance_test_support::{Server, fresh_database, server_url};

use crate::baseline::MemoryBaseline;
use crate::event_sourced::{pg_events, sea_events};
use crate::footprint::{Footprint, Sizer};
use crate::measure::Plan;
use crate::sql::{PgBaseline, SeaBaseline};
use crate::workloads::{Groups, Row, Sizes, Target};

const PROVIDERS: [&str; 5] = ["postgres", "seaorm-postgres", "seaorm-sqlite", "seaorm-mysql", "memory"];

const GROUPS: [&str; 3] = ["sql-baseline", "event-sourced", "bytes"];

/// Connections per server pool: enough for 32 writers.
const POOL: u32 = 40;

#[derive(Debug)]
struct Options {
    sizes: Sizes,
    json: bool,
    explain: bool,
    providers: Vec<String>,
    groups: Groups,
    /// `--cpu-per-record N`: records to time instead of the workloads.
    cpu_records: Option<u64>,
}

fn usage(problem: &str) -> ! {
    eprintln!("governance-bench: {problem}");
    eprintln!(
        "usage: governance-bench [--scale N|tiny] [--format markdown|json] [--provider NAME]... \
         [--workload GROUP]... [--explain]"
    );
    eprintln!("       governance-bench --cpu-per-record N [--format markdown|json]");
    eprintln!("providers: {}", PROVIDERS.join(", "));
    eprintln!("workload groups: {}", GROUPS.join(", "));
    eprintln!(
        "--cpu-per-record N: no databases; times N realistic records (1 ..= 10000000) through \
         Recorder::record into a MemoryStore on one thread and prints µs per record for the whole call, \
         Recorder::prepare, HistoryRecord::new, and the floor (serde_json::to_vec + SHA-256 of the \
         canonical JSON)"
    );
    std::process::exit(2)
}

fn options() -> Options {
    let mut sizes = Sizes {
        plan: Plan { slice: Duration::from_millis(250), rounds: 4 },
        query_records: 20_000,
        query_samples: 200,
        cpu_records: 20_000,
        footprint_ops: 1_000,
    };
    let mut tiny = false;
    let mut groups = Vec::new();
    let (mut json, mut explain, mut providers, mut cpu_records) = (false, false, Vec::new(), None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--scale" => match value().as_str() {
                "tiny" => tiny = true,
                n => match n.parse::<u64>() {
                    Ok(n) if (1_000..=1_000_000).contains(&n) => {
                        sizes.query_records = n;
                        // Queries over large sets take up to a second each: fewer samples.
                        sizes.query_samples = if n > 100_000 { 100 } else { 200 };
                    }
                    _ => usage("--scale takes 1000 ..= 1000000 or tiny"),
                },
            },
            "--format" => match value().as_str() {
                "json" => json = true,
                "markdown" | "text" => json = false,
                other => usage(&format!("unknown format {other}")),
            },
            "--provider" => {
                let name = value();
                if !PROVIDERS.contains(&name.as_str()) {
                    usage(&format!("unknown provider {name}"));
                }
                providers.push(name);
            }
            "--workload" => {
                let group = value();
                if !GROUPS.contains(&group.as_str()) {
                    usage(&format!("unknown workload group {group}"));
                }
                groups.push(group);
            }
            "--explain" => explain = true,
            "--cpu-per-record" => match value().parse::<u64>() {
                Ok(n) if (1..=10_000_000).contains(&n) => cpu_records = Some(n),
                _ => usage("--cpu-per-record takes 1 ..= 10000000"),
            },
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if cpu_records.is_some() && (explain || !providers.is_empty() || !groups.is_empty()) {
        usage("--cpu-per-record runs no provider: it takes neither --provider, --workload nor --explain");
    }
    if tiny {
        sizes = Sizes {
            plan: Plan { slice: Duration::from_millis(20), rounds: 2 },
            query_records: 1_000,
            query_samples: 10,
            cpu_records: 500,
            footprint_ops: 40,
        };
    }
    let wants = |group: &str| groups.is_empty() || groups.iter().any(|g| g == group);
    let groups = Groups { sql: wants(GROUPS[0]), event_sourced: wants(GROUPS[1]), bytes: wants(GROUPS[2]) };
    Options { sizes, json, explain, providers, groups, cpu_records }
}

/// A fresh database on the server named by `variable`, or why not.
async fn database(server: Server) -> Result<String, String> {
    let url = server_url(server).await.map_err(|e| e.to_string())?;
    fresh_database(&url, server).await.map_err(|e| e.to_string())
}

async fn seaorm_server(url: &str) -> Result<SeaOrmStore, String> {
    let mut options = ConnectOptions::new(url);
    // Pools as the providers' own `connect` builds them: no ping before
    // each acquire.
    options.max_connections(POOL).min_connections(1).sqlx_logging(false).test_before_acquire(false);
    let store = SeaOrmStore::new(Database::connect(options).await.map_err(|e| e.to_string())?);
    store.migrate().await.map_err(|e| e.to_string())?;
    Ok(store)
}

/// Opens `name` with its baselines on the same pool, or says why it is skipped.
async fn target(name: &'static str, keep: &mut Vec<tempfile::TempDir>) -> Result<Target, String> {
    let sql = |store: Arc<dyn governance_abstractions::GovernanceStore>,
               baseline: Arc<dyn baseline::Baseline>,
               events: Arc<dyn event_sourced::EventStore>,
               sizer: Sizer| Target {
        name,
        store,
        baseline,
        writers: vec![1, 8, 32],
        queries: true,
        postgres: None,
        seaorm: None,
        explain: false,
        events: Some(events),
        sizer: Some(sizer),
    };
    match name {
        "memory" => Ok(Target {
            name,
            store: Arc::new(MemoryStore::new()),
            baseline: Arc::new(MemoryBaseline::default()),
            writers: vec![1, 2],
            queries: false,
            postgres: None,
            seaorm: None,
            explain: false,
            events: None,
            sizer: None,
        }),
        "postgres" => {
            let url = database(Server::Postgres).await?;
            let pool = governance_postgres::sqlx::postgres::PgPoolOptions::new()
                .max_connections(POOL)
                .test_before_acquire(false)
                .connect(&url)
                .await
                .map_err(|e| e.to_string())?;
            let store = PostgresStore::new(pool.clone());
            store.migrate().await.map_err(|e| e.to_string())?;
            let postgres = Some(store.clone());
            let events = pg_events(pool.clone()).await?;
            let sizer = Sizer::Postgres(pool.clone());
            Ok(Target { postgres, ..sql(Arc::new(store), Arc::new(PgBaseline(pool)), events, sizer) })
        }
        "seaorm-postgres" | "seaorm-mysql" => {
            let server = if name == "seaorm-postgres" { Server::Postgres } else { Server::MySql };
            let store = seaorm_server(&database(server).await?).await?;
            let connection = store.connection().clone();
            // The event-sourced baseline goes through SeaORM's raw statements
            // on the provider's pool, as a SeaORM user would write it.
            let events = sea_events(connection.clone()).await?;
            if server == Server::Postgres {
                // One PostgreSQL schema for both providers: the hand-written
                // baseline is the same SQL as the sqlx provider's, on
                // SeaORM's own pool.
                let pool = connection.get_postgres_connection_pool().clone();
                let sizer = Sizer::Postgres(pool.clone());
                let seaorm = Some(store.clone());
                return Ok(Target { seaorm, ..sql(Arc::new(store), Arc::new(PgBaseline(pool)), events, sizer) });
            }
            let seaorm = Some(store.clone());
            let baseline = Arc::new(SeaBaseline(connection.clone()));
            Ok(Target { seaorm, ..sql(Arc::new(store), baseline, events, Sizer::Sea(connection)) })
        }
        "seaorm-sqlite" => {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let store = SeaOrmStore::open_sqlite(dir.path().join("bench.db")).await.map_err(|e| e.to_string())?;
            keep.push(dir);
            let connection = store.connection().clone();
            warn_of_memory_statistics(&connection).await?;
            let events = sea_events(connection.clone()).await?;
            let seaorm = Some(store.clone());
            let baseline = Arc::new(SeaBaseline(connection.clone()));
            Ok(Target { seaorm, ..sql(Arc::new(store), baseline, events, Sizer::Sea(connection)) })
        }
        other => Err(format!("unknown provider {other}")),
    }
}

/// SQLite built with memory statistics (its default) takes one process-wide
/// mutex for every allocation: concurrent readers queue on it, and every
/// SQLite row of this run would read slower than an application that builds
/// it as `.cargo/config.toml` does here. Says so on stderr.
async fn warn_of_memory_statistics(connection: &governance_seaorm::sea_orm::DatabaseConnection) -> Result<(), String> {
    use governance_seaorm::sea_orm::{ConnectionTrait, Statement};
    let statement = Statement::from_string(connection.get_database_backend(), "PRAGMA compile_options");
    let options = connection.query_all_raw(statement).await.map_err(|e| e.to_string())?;
    let off = options.iter().any(|row| row.try_get_by_index::<String>(0).is_ok_and(|o| o == "DEFAULT_MEMSTATUS=0"));
    if !off {
        eprintln!(
            "governance-bench: warning: SQLite is built with memory statistics on (no SQLITE_DEFAULT_MEMSTATUS=0): \
             its concurrent readers contend on one mutex (see docs/providers/seaorm.md)"
        );
    }
    Ok(())
}

fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| provider | workload | writers | ops/s | p50 µs | p99 µs | baseline ops/s | ratio | notes |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for r in rows {
        let mut notes = Vec::new();
        if let Some(p50) = r.baseline_p50_us {
            notes.push(format!("baseline p50 {p50:.0} µs, p50 ratio {:.2}", r.p50_us / p50.max(1.0)));
        }
        if let (Some(ours), Some(theirs)) = (r.conflicts_per_s, r.baseline_conflicts_per_s) {
            notes.push(format!("conflicts/s {ours:.0} (baseline {theirs:.0})"));
        }
        if let Some(note) = &r.notes {
            notes.push(note.clone());
        }
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {} |\n",
            r.provider,
            r.workload,
            r.concurrency,
            r.ops_per_s,
            r.p50_us,
            r.p99_us,
            r.baseline_ops_per_s,
            r.ratio,
            notes.join("; ")
        ));
    }
    out
}

/// Bytes per operation: one line per side and provider with its total,
/// then every relation that grew.
fn markdown_bytes(lines: &[Footprint]) -> String {
    let mut out = String::from(
        "| provider | side | table | relation | kind | bytes/op |\n| --- | --- | --- | --- | --- | ---: |\n",
    );
    for l in lines {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.0} |\n",
            l.provider, l.side, l.table, l.relation, l.kind, l.bytes_per_op
        ));
    }
    out
}

fn main() {
    let options = options();
    if let Some(records) = options.cpu_records {
        // Single-threaded on purpose (its own current-thread runtime): the
        // time measured is one thread's CPU.
        if let Err(error) = cpu::run(records, options.json) {
            eprintln!("governance-bench: --cpu-per-record failed: {error}");
            std::process::exit(1);
        }
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
    match runtime {
        Ok(runtime) => runtime.block_on(workloads_main(options)),
        Err(error) => {
            eprintln!("governance-bench: no runtime: {error}");
            std::process::exit(1);
        }
    }
}

/// Every requested provider's workloads, reported.
async fn workloads_main(options: Options) {
    let wanted: Vec<&'static str> = PROVIDERS
        .into_iter()
        .filter(|p| options.providers.is_empty() || options.providers.iter().any(|w| w == p))
        .collect();
    let (mut rows, mut event_sourced, mut bytes) = (Vec::new(), Vec::new(), Vec::new());
    let mut skipped = Vec::new();
    let mut keep = Vec::new();
    let mut failed = false;
    for name in wanted {
        let target = match target(name, &mut keep).await {
            Ok(target) => Target { explain: options.explain, ..target },
            Err(why) => {
                eprintln!("governance-bench: {name} skipped: {why}");
                skipped.push(serde_json::json!({ "provider": name, "reason": why }));
                continue;
            }
        };
        eprintln!("governance-bench: {name} …");
        match workloads::run(&target, options.sizes, options.groups).await {
            Ok(done) => {
                rows.extend(done.rows);
                event_sourced.extend(done.event_sourced);
                bytes.extend(done.bytes);
            }
            Err(error) => {
                eprintln!("governance-bench: {name} failed: {error}");
                failed = true;
            }
        }
    }
    if options.json {
        let report = serde_json::json!({
            "results": rows,
            "event_sourced": event_sourced,
            "bytes_per_operation": bytes,
            "skipped": skipped,
            "query_records": options.sizes.query_records,
        });
        println!("{report}");
    } else {
        if !rows.is_empty() {
            print!("{}", markdown(&rows));
        }
        if !event_sourced.is_empty() {
            println!("\nAgainst the event-sourced shape (baseline = event-sourced):\n");
            print!("{}", markdown(&event_sourced));
        }
        if !bytes.is_empty() {
            println!("\nBytes of table and index per create + one transition:\n");
            print!("{}", markdown_bytes(&bytes));
        }
    }
    if failed {
        std::process::exit(1);
    }
}
