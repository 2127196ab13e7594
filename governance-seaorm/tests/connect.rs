//! Connecting fails fast and says why, and never shows the password.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use governance_abstractions::{ConnectionSettings, GovernanceError};
use governance_seaorm::SeaOrmStore;

/// The error and its causes, as a log line would show them.
fn chain(error: &GovernanceError) -> String {
    governance_test_support::with_causes(error)
}

#[tokio::test]
async fn a_refused_port_is_unavailable_at_once_with_its_cause() {
    let url = format!("postgres://app:s3cret-pw@127.0.0.1:{}/db", governance_test_support::closed_port());
    let started = Instant::now();
    let error = SeaOrmStore::connect(&url).await.expect_err("nothing listens there");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(matches!(error, GovernanceError::Unavailable { .. }), "{error:?}");
    let shown = chain(&error);
    assert!(shown.to_lowercase().contains("refused"), "{shown}");
    assert!(!shown.contains("s3cret-pw") && !format!("{error:?}").contains("s3cret-pw"), "{shown}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_unavailable_within_the_connect_timeout() {
    // Accepts connections (the kernel's backlog does) and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("postgres://app:s3cret-pw@127.0.0.1:{}/db", silent.local_addr().unwrap().port());
    let settings = ConnectionSettings::default().with_connect_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let error = SeaOrmStore::connect_with(&url, &settings).await.expect_err("no answer");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(matches!(error, GovernanceError::Unavailable { .. }), "{error:?}");
    let shown = chain(&error);
    assert!(shown.contains("did not answer within"), "{shown}");
    assert!(!shown.contains("s3cret-pw"), "{shown}");
}

#[tokio::test]
async fn mysql_too_fails_fast_without_showing_the_password() {
    let url = format!("mysql://app:s3cret-pw@127.0.0.1:{}/db", governance_test_support::closed_port());
    let started = Instant::now();
    let error = SeaOrmStore::connect(&url).await.expect_err("nothing listens there");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(matches!(error, GovernanceError::Unavailable { .. }), "{error:?}");
    let shown = chain(&error);
    assert!(shown.to_lowercase().contains("refused"), "{shown}");
    assert!(!shown.contains("s3cret-pw") && !format!("{error:?}").contains("s3cret-pw"), "{shown}");
}
