//! The spool's durability rules, on disk: torn tails, corruption, bounds,
//! one process per directory, and records the store refuses for good.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;

use audit_history::{AuditError, Relay, Spool, SpoolOptions};
use governance_abstractions::{
    Actor, Decision, Evidence, HistoryFilter, HistoryReader, HistoryRecord, HistoryWriter, PageRequest, Timestamp,
    WorkspaceId,
};
use governance_memory::MemoryStore;

fn record(workspace: &str, key: Option<&str>, operation: &str) -> HistoryRecord {
    let mut evidence = Evidence::decision(
        WorkspaceId::new(workspace).unwrap(),
        Actor::user("alice"),
        "invoice",
        operation,
        Decision::Approved,
    );
    evidence.idempotency_key = key.map(str::to_owned);
    HistoryRecord::new(evidence, Timestamp::now()).unwrap()
}

fn append_raw(dir: &std::path::Path, bytes: &[u8]) {
    let mut file = OpenOptions::new().append(true).open(dir.join("evidence.jsonl")).unwrap();
    file.write_all(bytes).unwrap();
}

#[test]
fn a_torn_last_line_was_never_acknowledged_and_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    spool.append(&record("ws", None, "a")).unwrap();
    spool.append(&record("ws", None, "b")).unwrap();
    drop(spool);
    append_raw(dir.path(), br#"{"id":"0190"#); // a crash mid-write
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    assert_eq!(spool.pending().unwrap(), 2);
    spool.append(&record("ws", None, "c")).unwrap();
    drop(spool);
    assert_eq!(Spool::open(dir.path(), SpoolOptions::default()).unwrap().pending().unwrap(), 3);
}

#[test]
fn a_corrupt_acknowledged_line_is_an_error_not_a_skip() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    let first = record("ws", None, "a");
    spool.append(&first).unwrap();
    drop(spool);
    let mut forged = record("ws", None, "b");
    forged.evidence.operation = "other".into(); // the hash no longer matches
    let mut line = serde_json::to_vec(&forged).unwrap();
    line.push(b'\n');
    append_raw(dir.path(), &line);
    let offset = serde_json::to_vec(&first).unwrap().len() as u64 + 1;
    match Spool::open(dir.path(), SpoolOptions::default()) {
        Err(AuditError::SpoolCorrupt { offset: at, .. }) => assert_eq!(at, offset),
        other => panic!("expected SpoolCorrupt, got {other:?}"),
    }
}

#[test]
fn a_full_spool_refuses_and_keeps_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let one = serde_json::to_vec(&record("ws", None, "a")).unwrap().len() as u64 + 1;
    let spool = Spool::open(dir.path(), SpoolOptions { max_bytes: one + one / 2 }).unwrap();
    spool.append(&record("ws", None, "a")).unwrap();
    match spool.append(&record("ws", None, "b")) {
        Err(AuditError::SpoolFull { used, capacity }) => assert_eq!((used, capacity), (one, one + one / 2)),
        other => panic!("expected SpoolFull, got {other:?}"),
    }
    assert_eq!((spool.pending().unwrap(), spool.len_bytes()), (1, one));
}

#[test]
fn one_process_per_spool_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _held = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    assert!(matches!(Spool::open(dir.path(), SpoolOptions::default()), Err(AuditError::SpoolLocked(_))));
}

#[tokio::test]
async fn the_relay_sets_aside_what_the_store_refuses_for_good_and_stores_the_rest() {
    let store = Arc::new(MemoryStore::new());
    let taken = record("ws", Some("k"), "original");
    store.append_history(std::slice::from_ref(&taken)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path(), SpoolOptions::default()).unwrap());
    let before = record("ws", None, "before");
    let conflicting = record("ws", Some("k"), "different"); // same key, other content
    let after = record("ws", None, "after");
    for r in [&before, &conflicting, &after] {
        spool.append(r).unwrap();
    }
    let report = Relay::new(spool.clone(), store.clone()).drain().await.unwrap();
    assert_eq!((report.stored, report.rejected), (2, 1));
    assert_eq!(spool.pending().unwrap(), 0);
    let rejected = std::fs::read_to_string(dir.path().join("rejected.jsonl")).unwrap();
    assert!(rejected.contains(&conflicting.id.to_string()) && rejected.contains("idempotency key"));
    let workspace = WorkspaceId::new("ws").unwrap();
    let stored = store.query_history(&workspace, &HistoryFilter::default(), &PageRequest::all()).await.unwrap();
    let ids: Vec<_> = stored.items.iter().map(|r| r.id).collect();
    assert_eq!(ids, [taken.id, before.id, after.id]);
}
