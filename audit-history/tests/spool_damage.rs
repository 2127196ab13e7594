//! A damaged spool tells what it lost and keeps working: lines cut out of
//! the middle, a file cut inside an earlier line, a flipped byte, a torn
//! end, leftovers of a killed relay, and spools in the first line format.

mod common;

use std::sync::Arc;

use audit_history::metrics::{SPOOL_LOST, SPOOL_QUARANTINED, SPOOL_TORN};
use audit_history::{Relay, Spool, SpoolOptions};
use common::{json_lines, record, spool_lines, stored, write_spool_lines};
use governance_abstractions::HistoryRecord;
use governance_memory::MemoryStore;

fn options(name: &str) -> SpoolOptions {
    SpoolOptions { name: name.to_owned(), ..Default::default() }
}

/// A spool in `dir` holding `n` records (sequence numbers 1 ..= n).
fn filled(dir: &std::path::Path, name: &str, n: usize) -> Vec<HistoryRecord> {
    let spool = Spool::open(dir, options(name)).unwrap();
    let records: Vec<HistoryRecord> = (0..n).map(|i| record("ws", &format!("op{i}"))).collect();
    for r in &records {
        spool.append(r).unwrap();
    }
    records
}

async fn drain_into(spool: Spool, store: &Arc<MemoryStore>) -> audit_history::DrainReport {
    Relay::new(Arc::new(spool), store.clone()).drain().await.unwrap()
}

#[tokio::test]
async fn lines_cut_out_of_the_middle_are_reported_as_the_exact_lost_range_once() {
    let logs = common::logs();
    let name = common::counting("cut");
    let dir = tempfile::tempdir().unwrap();
    let records = filled(dir.path(), &name, 10);
    let mut lines = spool_lines(dir.path());
    lines.drain(5..7); // sequence numbers 6 and 7
    lines.remove(3); // sequence number 4
    write_spool_lines(dir.path(), &lines);

    let spool = Spool::open(dir.path(), options(&name)).unwrap();
    assert_eq!(spool.open_report().lost, vec![4..=4, 6..=7]);
    assert_eq!(spool.open_report().quarantined, 0);
    assert_eq!(common::metric(SPOOL_LOST, &name), 3, "lost records counted");
    let logged: Vec<String> = logs.text().lines().filter(|l| l.contains(&name)).map(str::to_owned).collect();
    let line = logged.iter().find(|l| l.contains("acknowledged evidence is missing")).expect("logged");
    assert!(line.contains("4..=4") && line.contains("6..=7") && line.contains("records=3"), "{line}");
    assert!(!logged.iter().any(|l| l.contains("never acknowledged")), "lost lines are not called unacknowledged");
    let recorded = json_lines(dir.path().join("lost.jsonl"));
    assert_eq!(recorded.len(), 2);
    assert_eq!((recorded[1]["first"].as_u64(), recorded[1]["last"].as_u64()), (Some(6), Some(7)));

    let store = Arc::new(MemoryStore::new());
    let report = drain_into(spool, &store).await;
    assert_eq!((report.stored, report.lost.clone(), report.lost_records()), (7, vec![4..=4, 6..=7], 3));
    let mut want: Vec<_> =
        records.iter().enumerate().filter(|(i, _)| ![3, 5, 6].contains(i)).map(|(_, r)| r.id()).collect();
    want.sort();
    let mut got: Vec<_> = stored(&store, "ws").await.iter().map(HistoryRecord::id).collect();
    got.sort();
    assert_eq!(got, want, "every intact record relayed");

    // Reported once: not again on reopening, nor by the next drain.
    let spool = Spool::open(dir.path(), options(&name)).unwrap();
    assert!(spool.open_report().lost.is_empty());
    assert!(drain_into(spool, &store).await.lost.is_empty());
    assert_eq!(common::metric(SPOOL_LOST, &name), 3);
}

#[tokio::test]
async fn lines_lost_while_a_gap_waits_are_reported_once_even_with_later_appends() {
    let name = common::counting("later");
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), &name, 5);
    let mut lines = spool_lines(dir.path());
    lines.remove(2);
    write_spool_lines(dir.path(), &lines);
    let spool = Spool::open(dir.path(), options(&name)).unwrap();
    assert_eq!(spool.open_report().lost, vec![3..=3]);
    spool.append(&record("ws", "after")).unwrap();
    drop(spool);
    // Reopened before any drain: the gap is still in the file, already known.
    let spool = Spool::open(dir.path(), options(&name)).unwrap();
    assert!(spool.open_report().lost.is_empty());
    let store = Arc::new(MemoryStore::new());
    let report = drain_into(spool, &store).await;
    assert_eq!((report.stored, report.lost), (5, vec![]), "the first open's findings went to the first drain only");
}

#[tokio::test]
async fn a_file_cut_inside_an_earlier_line_reports_everything_after_it_as_lost() {
    let logs = common::logs();
    let name = common::counting("truncated");
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), &name, 10);
    let lines = spool_lines(dir.path());
    let cut = lines[..3].concat().len() + lines[3].len() / 2; // inside line 4
    let file = std::fs::OpenOptions::new().write(true).open(dir.path().join("evidence.jsonl")).unwrap();
    file.set_len(cut as u64).unwrap();

    let spool = Spool::open(dir.path(), options(&name)).unwrap();
    let opened = spool.open_report().clone();
    // Line 4 is in the quarantine (what is left of it), 5 ..= 10 are gone.
    assert_eq!((opened.lost, opened.quarantined, opened.torn), (vec![5..=10], 1, 0));
    assert_eq!(spool.pending().unwrap(), 3);
    assert_eq!((common::metric(SPOOL_LOST, &name), common::metric(SPOOL_TORN, &name)), (6, 0));
    let torn_logged = logs.text().lines().any(|l| l.contains("torn last spool line") && l.contains(&name));
    assert!(!torn_logged, "not logged as a torn, never acknowledged line");
    let quarantined = json_lines(dir.path().join("quarantine.jsonl"));
    assert_eq!(
        (quarantined[0]["seq"].as_u64(), quarantined[0]["position"].as_u64()),
        (Some(4), Some(lines[..3].concat().len() as u64))
    );

    // New appends continue after the acknowledged numbers.
    spool.append(&record("ws", "new")).unwrap();
    let store = Arc::new(MemoryStore::new());
    let report = drain_into(spool, &store).await;
    assert_eq!((report.stored, report.lost, report.quarantined), (4, vec![5..=10], 1));
}

#[tokio::test]
async fn one_corrupt_line_is_quarantined_and_every_intact_record_relayed() {
    let name = common::counting("flipped");
    let dir = tempfile::tempdir().unwrap();
    let records = filled(dir.path(), &name, 5);
    let mut lines = spool_lines(dir.path());
    let position = lines[..2].concat().len() as u64;
    let middle = lines[2].len() / 2;
    lines[2][middle] ^= 0x01; // one bit, inside the JSON of sequence number 3
    write_spool_lines(dir.path(), &lines);

    let spool = Spool::open(dir.path(), options(&name)).unwrap();
    let opened = spool.open_report().clone();
    assert_eq!((opened.quarantined, opened.lost.len()), (1, 0), "in the quarantine, so not lost");
    assert_eq!(common::metric(SPOOL_QUARANTINED, &name), 1);
    let quarantined = json_lines(dir.path().join("quarantine.jsonl"));
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0]["position"].as_u64(), Some(position));
    assert_eq!(quarantined[0]["seq"].as_u64(), Some(3));
    assert_eq!(quarantined[0]["problem"], "checksum mismatch");
    assert_eq!(
        quarantined[0]["line"].as_str().unwrap().as_bytes(),
        &lines[2][..lines[2].len() - 1],
        "the bytes as found"
    );

    let store = Arc::new(MemoryStore::new());
    let report = drain_into(spool, &store).await;
    assert_eq!((report.stored, report.quarantined, report.lost.len()), (4, 1, 0));
    let mut got: Vec<_> = stored(&store, "ws").await.iter().map(HistoryRecord::id).collect();
    got.sort();
    let mut want: Vec<_> = [0, 1, 3, 4].iter().map(|i| records[*i].id()).collect();
    want.sort();
    assert_eq!(got, want);

    // Set aside once: reopening neither quarantines it again nor calls it lost.
    let spool = Spool::open(dir.path(), options(&name)).unwrap();
    assert_eq!((spool.open_report().quarantined, spool.open_report().lost.len()), (0, 0));
    assert_eq!(json_lines(dir.path().join("quarantine.jsonl")).len(), 1);
}

#[tokio::test]
async fn a_line_damaged_while_the_spool_is_open_is_quarantined_by_the_relay() {
    let name = common::counting("live");
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path(), options(&name)).unwrap());
    for i in 0..4 {
        spool.append(&record("ws", &format!("op{i}"))).unwrap();
    }
    let mut lines = spool_lines(dir.path());
    let last = lines[1].len() - 3;
    lines[1][last] ^= 0x20;
    write_spool_lines(dir.path(), &lines); // same length: the open spool does not notice
    let store = Arc::new(MemoryStore::new());
    let report = Relay::new(spool.clone(), store.clone()).drain().await.unwrap();
    assert_eq!((report.stored, report.quarantined, report.lost.len()), (3, 1, 0));
    assert_eq!(json_lines(dir.path().join("quarantine.jsonl")).len(), 1);
    assert_eq!(spool.pending().unwrap(), 0);
}

#[test]
fn a_torn_last_line_is_logged_with_what_can_be_read_and_counted() {
    let logs = common::logs();
    let name = common::counting("torn");
    let dir = tempfile::tempdir().unwrap();
    let records = filled(dir.path(), &name, 3);
    // A crash mid-append: the line for sequence number 4 cut short, never
    // acknowledged (acknowledged.seq still says 3).
    let spool = Spool::open(dir.path(), options(&name)).unwrap();
    let next = record("ws", "cut");
    spool.append(&next).unwrap();
    drop(spool);
    let mut lines = spool_lines(dir.path());
    let torn = lines.pop().unwrap();
    lines.push(torn[..torn.len() - 40].to_vec());
    write_spool_lines(dir.path(), &lines);
    std::fs::write(dir.path().join("acknowledged.seq"), format!("{:020}\n", 3)).unwrap();

    let spool = Spool::open(dir.path(), options(&name)).unwrap();
    let opened = spool.open_report().clone();
    assert_eq!((opened.torn, opened.quarantined, opened.lost.len()), (1, 0, 0));
    assert_eq!(spool.pending().unwrap(), records.len());
    assert_eq!(common::metric(SPOOL_TORN, &name), 1);
    let logged = logs.text();
    let line = logged.lines().find(|l| l.contains("torn last spool line") && l.contains(&name)).unwrap();
    assert!(line.contains("seq=Some(4)") && line.contains(&next.id().to_string()), "{line}");
    // The next append takes the torn line's place and number.
    spool.append(&record("ws", "again")).unwrap();
    drop(spool);
    let spool = Spool::open(dir.path(), options(&name)).unwrap();
    assert_eq!((spool.pending().unwrap(), spool.open_report().lost.len()), (4, 0));
}

#[test]
fn temporary_files_of_a_killed_relay_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), "tmp", 2);
    for name in [".relay.offset.4242.0.tmp", ".relay.offset.4242.17.tmp", ".evidence.jsonl.compact"] {
        std::fs::write(dir.path().join(name), "left by a kill").unwrap();
    }
    std::fs::write(dir.path().join("keep.tmp"), "not ours").unwrap();
    let spool = Spool::open(dir.path(), options("tmp")).unwrap();
    assert_eq!(spool.open_report().stale_files, 3);
    let mut left: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    assert_eq!(left, ["acknowledged.seq", "evidence.jsonl", "keep.tmp", "relay.offset", "spool.lock"]);
    assert_eq!(spool.pending().unwrap(), 2);
}

#[tokio::test]
async fn a_spool_in_the_first_format_is_still_read_and_relayed() {
    let dir = tempfile::tempdir().unwrap();
    // What the first format left: bare JSON lines, a byte offset alone.
    let old: Vec<HistoryRecord> = (0..3).map(|i| record("ws", &format!("old{i}"))).collect();
    let lines: Vec<Vec<u8>> = old
        .iter()
        .map(|r| {
            let mut line = serde_json::to_vec(r).unwrap();
            line.push(b'\n');
            line
        })
        .collect();
    write_spool_lines(dir.path(), &lines);
    std::fs::write(dir.path().join("relay.offset"), lines[0].len().to_string()).unwrap();

    let spool = Spool::open(dir.path(), options("legacy")).unwrap();
    assert_eq!((spool.open_report().legacy_lines, spool.open_report().lost.len()), (2, 0));
    spool.append(&record("ws", "new")).unwrap();
    drop(spool);
    let spool = Spool::open(dir.path(), options("legacy")).unwrap();
    assert_eq!(spool.pending().unwrap(), 3, "two old lines after the offset, one new");
    let store = Arc::new(MemoryStore::new());
    let report = drain_into(spool, &store).await;
    assert_eq!((report.stored, report.lost.len()), (3, 0));
    assert!(!stored(&store, "ws").await.iter().any(|r| r.id() == old[0].id()), "the stored one is not sent again");
}

#[tokio::test]
async fn numbers_that_do_not_parse_or_cannot_be_replay_rather_than_fail() {
    for (offset, mark) in [("garbage", None), ("0 0", Some(u64::MAX)), ("0 18446744073709551615", Some(0))] {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path(), "offset", 3);
        std::fs::write(dir.path().join("relay.offset"), offset).unwrap();
        if let Some(mark) = mark {
            std::fs::write(dir.path().join("acknowledged.seq"), format!("{mark}\n")).unwrap();
        }
        let spool = Spool::open(dir.path(), options("offset")).unwrap();
        assert_eq!((spool.pending().unwrap(), spool.open_report().lost.len()), (3, 0), "{offset:?}, {mark:?}");
        let store = Arc::new(MemoryStore::new());
        assert_eq!(drain_into(spool, &store).await.stored, 3);
    }
}

/// A memory store whose calls fail (store unavailable) while `down`, or
/// when their number (1-based) is in `fail_calls`.
#[derive(Default)]
struct Flaky {
    inner: MemoryStore,
    down: std::sync::atomic::AtomicBool,
    calls: std::sync::atomic::AtomicUsize,
    fail_calls: Vec<usize>,
}

#[async_trait::async_trait]
impl governance_abstractions::HistoryWriter for Flaky {
    async fn append_history(
        &self,
        records: &[HistoryRecord],
    ) -> governance_abstractions::Result<Vec<governance_abstractions::Stored<HistoryRecord>>> {
        use std::sync::atomic::Ordering;
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.down.load(Ordering::SeqCst) || self.fail_calls.contains(&call) {
            let down = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused (test)");
            return Err(governance_abstractions::GovernanceError::Unavailable { source: Box::new(down) });
        }
        self.inner.append_history(records).await
    }
}

/// `n` records whose spool lines all have the same length, so a line can
/// be replaced by another in the file of an open spool.
fn same_length_records(n: usize) -> Vec<HistoryRecord> {
    let mut by_len: std::collections::HashMap<usize, Vec<HistoryRecord>> = Default::default();
    for i in 0.. {
        let r = record("ws", &format!("op{}", i % 10));
        let group = by_len.entry(serde_json::to_vec(&r).unwrap().len()).or_default();
        group.push(r);
        if group.len() == n {
            return std::mem::take(group);
        }
    }
    unreachable!()
}

#[tokio::test]
async fn a_loss_found_by_a_drain_that_then_fails_is_reported_by_the_next_one_that_succeeds() {
    let name = common::counting("lostfail");
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path(), options(&name)).unwrap());
    for r in same_length_records(6) {
        spool.append(&r).unwrap();
    }
    // Sequence number 2 is overwritten with a copy of 3 (same length: the
    // open spool does not notice): 2 is lost, 3 replays.
    let mut lines = spool_lines(dir.path());
    lines[1] = lines[2].clone();
    write_spool_lines(dir.path(), &lines);

    // The first batch (1, 3) finds the loss and is stored; the second fails.
    let store = Arc::new(Flaky { fail_calls: vec![2], ..Default::default() });
    let relay = Relay::new(spool.clone(), store.clone()).batch_size(2);
    assert!(relay.drain().await.is_err(), "the second batch fails");
    assert_eq!(common::metric(SPOOL_LOST, &name), 1, "counted when found");
    assert_eq!(json_lines(dir.path().join("lost.jsonl")).len(), 1);

    let report = relay.drain().await.unwrap();
    assert_eq!((report.lost.clone(), report.lost_records()), (vec![2..=2], 1), "reported by the next drain");
    assert_eq!(common::metric(SPOOL_LOST, &name), 1, "counted once (totals)");
    assert_eq!(json_lines(dir.path().join("lost.jsonl")).len(), 1, "recorded once");
    assert!(relay.drain().await.unwrap().lost.is_empty(), "reported once");
}

#[tokio::test]
async fn a_corrupt_line_is_quarantined_once_however_often_the_store_is_down() {
    let name = common::counting("quaronce");
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path(), options(&name)).unwrap());
    for i in 0..4 {
        spool.append(&record("ws", &format!("op{i}"))).unwrap();
    }
    let mut lines = spool_lines(dir.path());
    let last = lines[1].len() - 3;
    lines[1][last] ^= 0x20;
    write_spool_lines(dir.path(), &lines);

    let store = Arc::new(Flaky::default());
    store.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let relay = Relay::new(spool.clone(), store.clone());
    for round in 0..4 {
        assert!(relay.drain().await.is_err(), "round {round}");
    }
    assert_eq!(json_lines(dir.path().join("quarantine.jsonl")).len(), 1, "copied once");
    assert_eq!(common::metric(SPOOL_QUARANTINED, &name), 1, "counted once");

    // Restarted before any drain succeeded: the line is still in the file,
    // and known to be in the quarantine.
    drop(relay);
    drop(spool);
    let spool = Arc::new(Spool::open(dir.path(), options(&name)).unwrap());
    assert_eq!(spool.open_report().quarantined, 0);
    assert_eq!(json_lines(dir.path().join("quarantine.jsonl")).len(), 1);
    assert_eq!(common::metric(SPOOL_QUARANTINED, &name), 1, "still counted once (totals)");
    let store = Arc::new(MemoryStore::new());
    let report = Relay::new(spool.clone(), store.clone()).drain().await.unwrap();
    assert_eq!((report.stored, report.quarantined), (3, 0));
}

#[tokio::test]
async fn a_corrupt_line_behind_the_offset_is_not_quarantined_again_on_reopen() {
    let name = common::counting("quarbehind");
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path(), options(&name)).unwrap());
    for i in 0..6 {
        spool.append(&record("ws", &format!("op{i}"))).unwrap();
    }
    let mut lines = spool_lines(dir.path());
    let last = lines[1].len() - 3;
    lines[1][last] ^= 0x20;
    write_spool_lines(dir.path(), &lines);

    // The first batch (with the corrupt line) is committed, the second fails:
    // the corrupt line stays in the file, behind the offset.
    let store = Arc::new(Flaky { fail_calls: vec![2], ..Default::default() });
    let relay = Relay::new(spool.clone(), store.clone()).batch_size(3);
    assert!(relay.drain().await.is_err());
    let report = relay.drain().await.unwrap();
    // The first drain's 2 stored records went with its report; its
    // quarantined line did not.
    assert_eq!((report.stored, report.quarantined), (3, 1), "reported by the drain that succeeded");
    spool.append(&record("ws", "later")).unwrap();
    drop(relay);
    drop(spool);

    let spool = Spool::open(dir.path(), options(&name)).unwrap();
    assert_eq!(spool.open_report().quarantined, 0, "quarantined before");
    assert_eq!(json_lines(dir.path().join("quarantine.jsonl")).len(), 1);
    assert_eq!(common::metric(SPOOL_QUARANTINED, &name), 1);
    assert_eq!(spool.pending().unwrap(), 1);
}
