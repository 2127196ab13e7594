//! What a failover looks like to the SeaORM provider on PostgreSQL.

use governance_abstractions::{
    Actor, GovernanceError, NewRequest, RequestId, RequestReader, RequestWriter, TargetRef, Timestamp, WorkspaceId,
    lifecycle,
};
use governance_seaorm::SeaOrmStore;
use governance_test_support::{Server, fresh_database, server_url, setup_fails};

/// A write that reaches a read-only server (a standby, or a primary demoted
/// by a failover) is `Unavailable`: retrying against the node that now takes
/// writes can succeed, and nothing was written.
#[tokio::test]
async fn a_write_on_a_read_only_postgres_server_is_unavailable() {
    let url = match server_url(Server::Postgres).await {
        Ok(server) => fresh_database(&server, Server::Postgres).await.expect("fresh database"),
        Err(error) if setup_fails(&error) => panic!("{error}"),
        Err(error) => return eprintln!("SKIPPED PostgreSQL: {error}"),
    };
    let owner = SeaOrmStore::connect(&url).await.expect("connects");
    owner.migrate().await.expect("migrates");
    let separator = if url.contains('?') { '&' } else { '?' };
    let read_only_url = format!("{url}{separator}options=-c%20default_transaction_read_only%3Don");
    let read_only = SeaOrmStore::connect(&read_only_url).await.expect("connects");
    let ws = WorkspaceId::new(format!("t-{}", uuid::Uuid::now_v7().simple())).expect("valid id");
    let spec = NewRequest::new(ws.clone(), TargetRef::new("t", "1"), "update", Actor::user("u"));
    let creation = lifecycle::create(spec, RequestId::new(), Timestamp::now()).expect("valid");
    let error = read_only.create_request(&creation).await.expect_err("a read-only server refuses writes");
    assert!(matches!(error, GovernanceError::Unavailable { .. }), "{error:?}");
    let missing = owner.get_request(&ws, creation.request().id()).await.expect_err("nothing was written");
    assert!(missing.is_not_found(), "{missing:?}");
}
