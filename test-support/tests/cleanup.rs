//! Test databases are dropped by whoever made them: a guard drops its
//! database when it goes, the sweep drops the databases of processes that
//! are gone (their lock is free) and never one whose process still holds
//! its lock; a server that does not answer is reported at once, with its
//! cause and without the password.

use std::time::{Duration, Instant};

use governance_postgres::sqlx::{self, Connection, PgConnection};
use governance_test_support::{Server, databases_required, fresh_database, fresh_test_database, redacted, server_url};

/// The PostgreSQL server URL, or `None` (with a notice) when none is
/// configured and none is required.
async fn postgres() -> Option<String> {
    match server_url(Server::Postgres).await {
        Ok(url) => Some(url),
        Err(why) if !databases_required() => {
            eprintln!("skipped: PostgreSQL {why}");
            None
        }
        Err(why) => panic!("PostgreSQL required: {why}"),
    }
}

async fn exists(admin: &mut PgConnection, name: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(admin)
        .await
        .expect("listing databases")
}

fn name_of(url: &str) -> String {
    url.rsplit('/').next().unwrap_or_default().split('?').next().unwrap_or_default().to_owned()
}

/// The lock key test-support takes for a database (FNV-1a, kept positive).
fn lock_key(name: &str) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    (hash & 0x7fff_ffff) as i32
}

#[tokio::test]
async fn a_guarded_database_is_dropped_with_its_guard() {
    let Some(server) = postgres().await else { return };
    let mut admin = PgConnection::connect(&server).await.expect("admin connection");
    let database = fresh_test_database(&server, Server::Postgres).await.expect("fresh database");
    let name = name_of(database.url());
    assert!(name.starts_with("gov_cf_l"), "{name}");
    assert!(exists(&mut admin, &name).await, "{name} was created");
    let clone = database.clone();
    drop(database);
    assert!(exists(&mut admin, &name).await, "{name} stays while a clone is held");
    drop(clone);
    assert!(!exists(&mut admin, &name).await, "{name} is dropped with its last guard");
}

#[tokio::test]
async fn the_sweep_drops_databases_of_gone_processes_and_keeps_live_ones() {
    let Some(server) = postgres().await else { return };
    let mut admin = PgConnection::connect(&server).await.expect("admin connection");
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let (gone, alive) = (format!("gov_cf_l1_{}", &unique[26..]), format!("gov_cf_l2_{}", &unique[26..]));
    // "alive": another session (standing in for another live process) holds its lock.
    let mut holder = PgConnection::connect(&server).await.expect("holder connection");
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
        .bind(0x676f_7663_i32)
        .bind(lock_key(&alive))
        .fetch_one(&mut holder)
        .await
        .expect("lock");
    assert!(locked);
    for name in [&gone, &alive] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .expect("create");
    }
    // Any process's next fresh database sweeps.
    let _mine = fresh_test_database(&server, Server::Postgres).await.expect("fresh database");
    assert!(!exists(&mut admin, &gone).await, "{gone}: nobody holds its lock, so its process is gone");
    assert!(exists(&mut admin, &alive).await, "{alive}: its process holds the lock");
    // Once the holder's session ends (its process exited or was killed), it goes too.
    holder.close().await.expect("close");
    let _again = fresh_test_database(&server, Server::Postgres).await.expect("fresh database");
    assert!(!exists(&mut admin, &alive).await, "{alive} is dropped once its holder is gone");
    let mine = name_of(_mine.url());
    assert!(exists(&mut admin, &mine).await, "{mine}: this process is alive, so its database stays");
}

#[tokio::test]
async fn a_closed_port_is_reported_at_once_with_its_cause_and_no_password() {
    // A port nobody listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    let url = format!("postgres://someone:hunter2secret@127.0.0.1:{port}/test");
    let started = Instant::now();
    let error = fresh_database(&url, Server::Postgres).await.expect_err("nothing listens there");
    let message = error.to_string();
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(message.contains("unavailable") && message.to_lowercase().contains("refused"), "{message}");
    assert!(message.contains(&redacted(&url)) && !message.contains("hunter2secret"), "{message}");
    let url = format!("mysql://someone:hunter2secret@127.0.0.1:{port}/test");
    let error = fresh_database(&url, Server::MySql).await.expect_err("nor there");
    assert!(!error.to_string().contains("hunter2secret"), "{error}");
}

#[test]
fn an_unguarded_database_goes_when_its_runtime_shuts_down() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let Some(server) = runtime.block_on(postgres()) else { return };
    let url = runtime.block_on(fresh_database(&server, Server::Postgres)).expect("fresh database");
    let name = name_of(&url);
    let check = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let exists_now = |check: &tokio::runtime::Runtime| {
        check.block_on(async {
            let mut admin = PgConnection::connect(&server).await.expect("admin connection");
            exists(&mut admin, &name).await
        })
    };
    assert!(exists_now(&check), "{name} lives while its runtime runs");
    drop(runtime);
    assert!(!exists_now(&check), "{name} is dropped with its runtime");
}
