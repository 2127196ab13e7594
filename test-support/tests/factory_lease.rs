//! The server factories' shared database goes when the last case using it
//! is done, not with the process: alone in its binary, so no other test's
//! databases are counted.

use conformance_tests::StoreFactory;
use governance_postgres::sqlx::{self, Connection, PgConnection};
use governance_test_support::{PostgresFactory, Server, server_url, setup_fails};

/// This process's test databases on the server.
async fn ours(admin: &mut PgConnection) -> Vec<String> {
    let pattern = format!("gov\\_cf\\_l{}\\_%", std::process::id());
    sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE $1")
        .bind(pattern)
        .fetch_all(admin)
        .await
        .expect("listing databases")
}

#[tokio::test]
async fn the_shared_database_goes_with_the_last_lease() {
    let server = match server_url(Server::Postgres).await {
        Ok(server) => server,
        Err(why) if !setup_fails(&why) => return eprintln!("skipped: PostgreSQL {why}"),
        Err(why) => panic!("PostgreSQL required: {why}"),
    };
    let mut admin = PgConnection::connect(&server).await.expect("admin connection");
    let first = PostgresFactory.open().await.expect("opens");
    let second = PostgresFactory.open().await.expect("opens");
    let names = ours(&mut admin).await;
    assert_eq!(names.len(), 1, "cases open at once share one database: {names:?}");
    drop(first);
    assert_eq!(ours(&mut admin).await, names, "kept while a case still uses it");
    drop(second);
    assert!(ours(&mut admin).await.is_empty(), "dropped with the last lease");
}
