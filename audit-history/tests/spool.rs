//! The spool's durability rules, on disk: torn tails, corruption, bounds,
//! one process per directory, and records the store refuses for good.
//! (Damage and loss in detail: `spool_damage.rs`.)

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

/// The bytes one record takes in a fresh spool (sequence number 1).
fn line_len(record: &HistoryRecord) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    spool.append(record).unwrap();
    spool.len_bytes()
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
fn a_complete_line_that_no_longer_matches_its_hash_is_quarantined_not_relayed() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    spool.append(&record("ws", None, "a")).unwrap();
    drop(spool);
    // A line of the first format (bare JSON, no checksum) whose record was
    // changed after hashing: only the content hash can tell.
    let mut forged = serde_json::to_value(record("ws", None, "b")).unwrap();
    forged["evidence"]["operation"] = "other".into();
    let mut line = serde_json::to_vec(&forged).unwrap();
    line.push(b'\n');
    let offset = std::fs::metadata(dir.path().join("evidence.jsonl")).unwrap().len();
    append_raw(dir.path(), &line);
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    assert_eq!(spool.open_report().quarantined, 1);
    assert_eq!(spool.pending().unwrap(), 1, "the intact record still waits, the forged one does not");
    let quarantine = std::fs::read_to_string(dir.path().join("quarantine.jsonl")).unwrap();
    let entry: serde_json::Value = serde_json::from_str(quarantine.trim()).unwrap();
    assert_eq!(entry["position"], offset);
    assert!(entry["problem"].as_str().unwrap().contains("content_hash"), "{entry}");
}

#[test]
fn a_full_spool_refuses_and_keeps_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let one = line_len(&record("ws", None, "a"));
    let spool = Spool::open(dir.path(), SpoolOptions { max_bytes: one + one / 2, ..Default::default() }).unwrap();
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
    assert!(rejected.contains(&conflicting.id().to_string()) && rejected.contains("idempotency key"));
    let workspace = WorkspaceId::new("ws").unwrap();
    let stored = store.query_history(&workspace, &HistoryFilter::default(), &PageRequest::all()).await.unwrap();
    let ids: Vec<_> = stored.items.iter().map(HistoryRecord::id).collect();
    assert_eq!(ids, [taken.id(), before.id(), after.id()]);
}

#[tokio::test]
async fn two_relays_on_one_spool_store_each_record_once() {
    let store = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path(), SpoolOptions::default()).unwrap());
    let records: Vec<HistoryRecord> = (0..40).map(|n| record("ws", None, &format!("op{n}"))).collect();
    for r in &records {
        spool.append(r).unwrap();
    }
    let (a, b) = (Relay::new(spool.clone(), store.clone()).batch_size(3), Relay::new(spool.clone(), store.clone()));
    let appender = {
        let spool = spool.clone();
        tokio::task::spawn_blocking(move || {
            (0..20).map(|n| record("ws", None, &format!("late{n}"))).inspect(|r| spool.append(r).unwrap()).count()
        })
    };
    let (ra, rb) = tokio::join!(a.drain(), b.drain());
    assert_eq!(appender.await.unwrap(), 20);
    let rest = a.drain().await.unwrap();
    let stored = ra.unwrap().stored + rb.unwrap().stored + rest.stored;
    assert_eq!(stored, 60, "every record stored once");
    let workspace = WorkspaceId::new("ws").unwrap();
    let all = store.query_history(&workspace, &HistoryFilter::default(), &PageRequest::all()).await.unwrap();
    assert_eq!(all.items.len(), 60);
    assert_eq!(spool.pending().unwrap(), 0);
}

/// Lets the first `n` appends through, then refuses as unavailable.
struct FailsAfter(MemoryStore, std::sync::atomic::AtomicUsize);

#[async_trait::async_trait]
impl HistoryWriter for FailsAfter {
    async fn append_history(
        &self,
        records: &[HistoryRecord],
    ) -> governance_abstractions::Result<Vec<governance_abstractions::Stored<HistoryRecord>>> {
        if self.1.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            let down = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "down");
            return Err(governance_abstractions::GovernanceError::Unavailable { source: Box::new(down) });
        }
        self.0.append_history(records).await
    }
}

#[tokio::test]
async fn a_spool_mostly_relayed_is_compacted_so_its_bound_counts_what_waits() {
    let dir = tempfile::tempdir().unwrap();
    let line = line_len(&record("ws", None, "op0"));
    let options = SpoolOptions { max_bytes: line * 7 + 64, ..Default::default() };
    let spool = Arc::new(Spool::open(dir.path(), options.clone()).unwrap());
    let records: Vec<HistoryRecord> = (0..6).map(|n| record("ws", None, &format!("op{n}"))).collect();
    for r in &records {
        spool.append(r).unwrap();
    }
    let store = Arc::new(FailsAfter(MemoryStore::new(), 1.into()));
    let relay = Relay::new(spool.clone(), store.clone()).batch_size(4);
    assert!(matches!(relay.drain().await, Err(AuditError::Store(_))), "the second batch meets an outage");
    assert_eq!(spool.pending().unwrap(), 2);
    assert_eq!(spool.len_bytes(), 2 * line, "the relayed four are gone from the file");
    for n in 0..5 {
        spool.append(&record("ws", None, &format!("more{n}"))).unwrap();
    }
    drop(relay);
    drop(spool);
    let spool = Arc::new(Spool::open(dir.path(), options).unwrap());
    assert_eq!(spool.pending().unwrap(), 7, "compaction and offset survive reopening");
    store.1.store(100, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(Relay::new(spool.clone(), store.clone()).drain().await.unwrap().stored, 7);
    let workspace = WorkspaceId::new("ws").unwrap();
    let all = store.0.query_history(&workspace, &HistoryFilter::default(), &PageRequest::all()).await.unwrap();
    assert_eq!(all.items.len(), 11);
}
