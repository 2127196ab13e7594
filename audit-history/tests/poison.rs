//! A record the store keeps refusing for good does not hold the spool back;
//! a store that refuses everything is not mistaken for one.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use audit_history::metrics::REJECTED;
use audit_history::{AuditError, Relay, Spool, SpoolOptions};
use common::{Refusing, json_lines, record, stored};
use governance_abstractions::HistoryRecord;

fn spool_with(dir: &std::path::Path, operations: &[&str]) -> (Arc<Spool>, Vec<HistoryRecord>) {
    let spool = Arc::new(Spool::open(dir, SpoolOptions::default()).unwrap());
    let records: Vec<HistoryRecord> = operations.iter().map(|op| record("ws", op)).collect();
    for r in &records {
        spool.append(r).unwrap();
    }
    (spool, records)
}

#[tokio::test]
async fn a_poison_record_ends_in_rejected_jsonl_after_n_refusals_and_the_records_behind_it_are_stored() {
    let name = common::counting("poison");
    let dir = tempfile::tempdir().unwrap();
    let (spool, records) = spool_with(dir.path(), &["a", "poison", "b", "c", "d"]);
    let store = Arc::new(Refusing::default());
    store.poison.lock().unwrap().insert("poison".into());
    // Batches of 2: the poison record is the last of its batch, so the
    // record that shows the store is fine comes from the next one.
    let relay = Relay::new(spool.clone(), store.clone())
        .batch_size(2)
        .poison_after(3)
        .poison_interval(Duration::ZERO)
        .named(&name);

    for attempt in 1..=2 {
        match relay.drain().await {
            Err(AuditError::Store(error)) => assert!(!error.is_retryable(), "attempt {attempt}: {error}"),
            other => panic!("attempt {attempt}: expected the drain to stop, got {other:?}"),
        }
        // "a" was stored, but its batch is not done: it waits (and replays).
        assert_eq!(spool.pending().unwrap(), 5, "attempt {attempt}: held until the third refusal");
    }
    let report = relay.drain().await.unwrap();
    assert_eq!(store.attempts.lock().unwrap()["poison"], 3 * 2, "twice a drain: in its batch, then alone");
    assert_eq!(report.rejected, 1);
    // "a" was stored by the first drain, which then stopped before saving
    // its progress; "b" was stored ahead of time, to show the store takes
    // other records. Reached in order, both replay.
    assert_eq!((report.stored, report.already_stored), (2, 2));
    assert_eq!(spool.pending().unwrap(), 0);
    assert_eq!(common::metric(REJECTED, &name), 1);

    let rejected = json_lines(dir.path().join("rejected.jsonl"));
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["record"]["id"], records[1].id().to_string());
    assert_eq!(rejected[0]["attempts"], 3);
    let reason = rejected[0]["reason"].as_str().unwrap();
    assert!(reason.contains("check constraint \"invoice_operation_allowed\""), "the driver's error is kept: {reason}");

    let mut got: Vec<_> = stored(&store.inner, "ws").await.iter().map(HistoryRecord::id).collect();
    got.sort();
    let mut want: Vec<_> = [0, 2, 3, 4].iter().map(|i| records[*i].id()).collect();
    want.sort();
    assert_eq!(got, want, "everything but the poison record, once");
}

#[tokio::test]
async fn a_store_that_refuses_everything_holds_the_spool_instead_of_rejecting_it() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = spool_with(dir.path(), &["a", "b", "c"]);
    let store = Arc::new(Refusing::default());
    store.refuse_all.store(true, Ordering::SeqCst);
    let relay = Relay::new(spool.clone(), store.clone()).poison_after(2).poison_interval(Duration::ZERO);
    for _ in 0..5 {
        assert!(matches!(relay.drain().await, Err(AuditError::Store(_))));
    }
    assert_eq!(spool.pending().unwrap(), 3, "a revoked grant must not empty the spool into rejected.jsonl");
    assert!(!dir.path().join("rejected.jsonl").exists());
    store.refuse_all.store(false, Ordering::SeqCst);
    assert_eq!(relay.drain().await.unwrap().stored, 3);
}

#[tokio::test]
async fn a_refused_record_with_nothing_behind_it_stays_spooled() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = spool_with(dir.path(), &["a", "poison"]);
    let store = Arc::new(Refusing::default());
    store.poison.lock().unwrap().insert("poison".into());
    let relay = Relay::new(spool.clone(), store.clone()).poison_after(1).poison_interval(Duration::ZERO);
    for _ in 0..3 {
        assert!(relay.drain().await.is_err());
    }
    assert_eq!(spool.pending().unwrap(), 2, "it holds nothing back, so it is not set aside");
    spool.append(&record("ws", "late")).unwrap();
    let report = relay.drain().await.unwrap();
    assert_eq!((report.rejected, report.already_stored), (1, 2), "\"a\", and \"late\" stored as the witness");
}

#[tokio::test]
async fn an_outage_between_refusals_keeps_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = spool_with(dir.path(), &["poison", "b"]);
    let store = Arc::new(Refusing::default());
    store.poison.lock().unwrap().insert("poison".into());
    let relay = Relay::new(spool.clone(), store.clone()).poison_after(2).poison_interval(Duration::ZERO);
    assert!(relay.drain().await.is_err(), "refusal 1 of 2");
    // Between the attempts the store was unreachable: not a refusal, and
    // the count is kept.
    let down = Relay::new(spool.clone(), common::Hanging::down()).deadline(Duration::from_millis(20));
    assert!(down.drain().await.unwrap_err().is_deadline_exceeded());
    let report = relay.drain().await.unwrap();
    assert_eq!(report.rejected, 1, "refusal 2 of 2");
}

#[tokio::test]
async fn two_poison_records_in_a_row_are_both_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, records) = spool_with(dir.path(), &["bad1", "bad2", "good"]);
    let store = Arc::new(Refusing::default());
    store.poison.lock().unwrap().extend(["bad1".to_owned(), "bad2".to_owned()]);
    let relay = Relay::new(spool.clone(), store.clone()).poison_after(2).poison_interval(Duration::ZERO);
    let mut rounds = 0;
    let report = loop {
        rounds += 1;
        assert!(rounds <= 4, "not set aside within 2 x 2 rounds");
        if let Ok(report) = relay.drain().await {
            break report;
        }
    };
    // The first was set aside by a drain that then stopped at the second;
    // read again, the batch skipped it rather than setting it aside twice.
    assert_eq!(report.rejected, 1);
    let rejected = json_lines(dir.path().join("rejected.jsonl"));
    let ids: Vec<_> = rejected.iter().map(|entry| entry["record"]["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, [records[0].id().to_string(), records[1].id().to_string()], "both, once each");
    assert_eq!(stored(&store.inner, "ws").await, vec![records[2].clone()]);
}

#[tokio::test]
async fn refusals_in_quick_succession_count_once_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = spool_with(dir.path(), &["poison", "b"]);
    let store = Arc::new(Refusing::default());
    store.poison.lock().unwrap().insert("poison".into());
    let relay = Relay::new(spool.clone(), store.clone()).poison_after(2).poison_interval(Duration::from_millis(300));
    // A transient refusal (a lock timeout) over a few quick rounds: one attempt.
    for round in 0..4 {
        assert!(relay.drain().await.is_err(), "round {round}");
    }
    assert_eq!(spool.pending().unwrap(), 2, "not set aside within the interval");
    assert!(!dir.path().join("rejected.jsonl").exists());
    tokio::time::sleep(Duration::from_millis(320)).await;
    let report = relay.drain().await.unwrap();
    assert_eq!(report.rejected, 1, "the second counted refusal, an interval later");
    assert_eq!(json_lines(dir.path().join("rejected.jsonl"))[0]["attempts"], 2);
}

#[tokio::test]
async fn only_a_record_of_the_same_workspace_is_a_witness() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path(), SpoolOptions::default()).unwrap());
    let poison = record("ws", "poison");
    spool.append(&poison).unwrap();
    for op in ["x", "y"] {
        spool.append(&record("other", op)).unwrap();
    }
    let store = Arc::new(Refusing::default());
    store.poison.lock().unwrap().insert("poison".into());
    let relay = Relay::new(spool.clone(), store.clone()).batch_size(2).poison_after(1).poison_interval(Duration::ZERO);
    for _ in 0..3 {
        assert!(relay.drain().await.is_err());
    }
    assert_eq!(spool.pending().unwrap(), 3, "another workspace's records witness nothing about this one");
    assert!(!dir.path().join("rejected.jsonl").exists());
    spool.append(&record("ws", "late")).unwrap();
    let report = relay.drain().await.unwrap();
    assert_eq!(report.rejected, 1, "a record of its own workspace behind it: set aside");
    assert_eq!(json_lines(dir.path().join("rejected.jsonl"))[0]["record"]["id"], poison.id().to_string());
}
