//! The schema profile for distributed PostgreSQL-compatible engines
//! (`SchemaProfile::Distributed`): its migrations use nothing those
//! engines lack, it applies (without the advisory lock) and re-runs on
//! PostgreSQL, the whole conformance suite passes on it, and what it gives
//! up is refused plainly. Needs `GOVERNANCE_POSTGRES_URL` for all but the
//! first test (skips with a notice without it; fails when
//! `GOVERNANCE_REQUIRE_DATABASES=1`).

use std::sync::Arc;

use governance_abstractions::{GovernanceError, WorkspaceId};
use governance_postgres::sqlx;
use governance_postgres::{FeedCursor, FeedUnsupported, MigrateOptions, PostgresStore, SchemaProfile};
use governance_test_support::{PostgresDistributedFactory, Server, fresh_database_or_skip};

const MIGRATIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations-distributed");

/// The statements of every distributed migration, comments removed.
fn distributed_sql() -> String {
    let mut files: Vec<_> = std::fs::read_dir(MIGRATIONS).expect("the migrations").map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty());
    files
        .iter()
        .flat_map(|path| {
            std::fs::read_to_string(path).expect("a migration").lines().map(str::to_owned).collect::<Vec<_>>()
        })
        .map(|line| line.split("--").next().unwrap_or_default().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// What CockroachDB, YugabyteDB ≤ 2024.2 or Citus's distributed tables do
/// not take (docs/providers/postgres.md).
#[test]
fn the_migrations_use_nothing_a_distributed_engine_lacks() {
    let sql = distributed_sql().to_lowercase();
    for missing in [
        "xid8",
        "pg_current_xact_id",
        "pg_snapshot",
        "trigger",
        "function",
        "plpgsql",
        "advisory",
        "do $$",
        "or replace",
        "include",
        "concurrently",
        "commit",
    ] {
        assert!(!sql.contains(missing), "the distributed migrations use `{missing}`");
    }
    for table in governance_postgres::GOVERNANCE_TABLES {
        assert!(sql.contains(&format!("create table if not exists {table} (")), "{table}");
    }
}

async fn database() -> Option<String> {
    fresh_database_or_skip(Server::Postgres).await
}

fn distributed() -> MigrateOptions {
    MigrateOptions::new(SchemaProfile::Distributed).without_locking()
}

#[tokio::test]
async fn it_applies_without_a_lock_re_runs_and_creates_no_trigger_function_or_feed_column() {
    let Some(url) = database().await else { return };
    let owner = PostgresStore::connect(&url).await.expect("connects");
    owner.migrate_with(distributed()).await.expect("migrates");
    owner.migrate_with(distributed()).await.expect("re-runs as a no-op");
    let pool = owner.pool();
    let triggers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
         WHERE NOT t.tgisinternal AND c.relname LIKE 'governance%'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(triggers, 0, "no triggers");
    let functions: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_proc WHERE proname LIKE 'governance%'")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(functions, 0, "no functions");
    let tx_id: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'governance_history' AND column_name = 'tx_id'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(tx_id, 0, "no tx_id column");
}

/// The advisory lock sqlx's migrator takes for a database (its key: a
/// CRC-32 of the database's name, as sqlx computes it).
fn migration_lock(database: &str) -> i64 {
    const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    0x3d32ad9e * i64::from(CRC.checksum(database.as_bytes()))
}

#[tokio::test]
async fn without_locking_no_advisory_lock_is_waited_for() {
    use std::time::Duration;
    let Some(url) = database().await else { return };
    let owner = PostgresStore::connect(&url).await.expect("connects");
    // Another session holds the migrator's lock.
    let mut holder = owner.pool().acquire().await.unwrap();
    let name: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&mut *holder).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)").bind(migration_lock(&name)).execute(&mut *holder).await.unwrap();
    // With the lock, a run waits for it ...
    let waiting = tokio::time::timeout(
        Duration::from_secs(2),
        owner.migrate_with(MigrateOptions::new(SchemaProfile::Distributed)),
    )
    .await;
    assert!(waiting.is_err(), "a locking run waits for the lock another session holds");
    // ... without it, it runs.
    tokio::time::timeout(Duration::from_secs(30), owner.migrate_with(distributed()))
        .await
        .expect("no wait for a lock")
        .expect("migrates");
    sqlx::query("SELECT pg_advisory_unlock_all()").execute(&mut *holder).await.unwrap();
}

#[tokio::test]
async fn one_profiles_migrator_refuses_a_database_of_the_other() {
    let Some(url) = database().await else { return };
    let owner = PostgresStore::connect(&url).await.expect("connects");
    owner.migrate_with(distributed()).await.expect("migrates");
    let refused = owner.migrate().await.expect_err("the standard migrations refuse a distributed database");
    assert!(matches!(refused, GovernanceError::Backend { retryable: false, .. }), "{refused:?}");
    let triggers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
         WHERE NOT t.tgisinternal AND c.relname LIKE 'governance%'",
    )
    .fetch_one(owner.pool())
    .await
    .unwrap();
    assert_eq!(triggers, 0, "nothing of the standard schema was added");

    let Some(url) = database().await else { return };
    let owner = PostgresStore::connect(&url).await.expect("connects");
    owner.migrate().await.expect("migrates");
    let refused = owner.migrate_with(distributed()).await.expect_err("and the other way round");
    assert!(matches!(refused, GovernanceError::Backend { retryable: false, .. }), "{refused:?}");
}

#[tokio::test]
async fn the_feed_is_refused_plainly_and_citus_is_asked_for_before_distributing() {
    let Some(url) = database().await else { return };
    let owner = PostgresStore::connect(&url).await.expect("connects");
    owner.migrate_with(distributed()).await.expect("migrates");
    let store = owner.with_profile(SchemaProfile::Distributed);
    assert_eq!(store.profile(), SchemaProfile::Distributed);
    let ws = WorkspaceId::new("acme").unwrap();
    let error = store.history_feed(&ws, &FeedCursor::start(), 10).await.expect_err("no feed");
    let GovernanceError::Backend { retryable: false, source } = &error else { panic!("{error:?}") };
    assert!(source.downcast_ref::<FeedUnsupported>().is_some(), "{error}");
    assert!(error.to_string().contains("query_history") || source.to_string().contains("query_history"));
    // Plain PostgreSQL has no citus extension: refused, nothing changed.
    let error = store.distribute_on_citus().await.expect_err("no citus here");
    assert!(matches!(error, GovernanceError::Validation { .. }), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_on_the_distributed_profile() {
    if database().await.is_none() {
        return;
    }
    let report = conformance_tests::runner::run_suite(Arc::new(PostgresDistributedFactory), 8).await;
    let failed = report.failures();
    assert_eq!(report.status, conformance_tests::runner::ProviderStatus::Ran, "{:?}", report.message);
    assert!(failed.is_empty(), "failed on the distributed profile:\n{}", failed.join("\n"));
    let skipped: Vec<&str> =
        report.cases_with(conformance_tests::runner::CaseStatus::Skipped).map(|c| c.name).collect();
    assert!(report.passed > 90, "only {} cases passed (skipped: {skipped:?})", report.passed);
    for name in skipped {
        assert!(name.contains("append_only"), "{name} skipped: only the database-enforced append-only cases may be");
    }
}
