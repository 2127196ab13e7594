//! Processes killed at random (SIGKILL) while they write: a fail-open
//! recorder 20 times, a relay 20 times. No acknowledged record is lost, none
//! is stored twice, and what the kills leave behind is cleaned up on open.
//!
//! The test binary runs itself as the child (the ignored test `child`,
//! selected by `AUDIT_CHILD`).

mod common;

use std::collections::HashSet;
use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use audit_history::{Durability, Recorder, Relay, Spool, SpoolOptions};
use common::{FileStore, Hanging, evidence, record, stored};
use governance_memory::MemoryStore;

const KILLS: usize = 20;
const RECORDS: usize = 1000;

/// A small deterministic-per-run pseudo-random sequence (no crate needed
/// for picking kill times).
struct Dice(u64);

impl Dice {
    fn new() -> Self {
        Self(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        low + self.0 % (high - low)
    }
}

fn spawn(role: &str, dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
        .env("AUDIT_CHILD", role)
        .env("AUDIT_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn temporaries(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name().into_string().unwrap();
            name.ends_with(".tmp") || name.ends_with(".compact")
        })
        .count()
}

#[test]
fn a_fail_open_recorder_killed_at_random_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut dice = Dice::new();
    let (mut acknowledged, mut torn) = (HashSet::new(), 0);
    for round in 0..KILLS {
        let mut child = spawn("recorder", dir.path());
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stdout).read_to_string(&mut text);
            // Only whole lines: the kill may cut the last one short.
            text.split_inclusive('\n')
                .filter_map(|line| line.strip_suffix('\n')?.strip_prefix("ack ").map(str::to_owned))
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(dice.between(40, 200)));
        child.kill().unwrap();
        child.wait().unwrap();
        let acked = reader.join().unwrap();
        assert!(!acked.is_empty() || round > 0, "the child made no progress");
        acknowledged.extend(acked);
        // A restart: the spool opens whatever the kill left.
        let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
        let opened = spool.open_report();
        assert_eq!((opened.lost.clone(), opened.quarantined), (vec![], 0), "round {round}");
        torn += opened.torn;
    }
    let spool = Arc::new(Spool::open(dir.path(), SpoolOptions::default()).unwrap());
    let store = Arc::new(MemoryStore::new());
    let report = runtime().block_on(Relay::new(spool, store.clone()).drain()).unwrap();
    let ids: HashSet<String> =
        runtime().block_on(stored(&store, "killed")).iter().map(|r| r.id().to_string()).collect();
    let missing = acknowledged.difference(&ids).count();
    println!(
        "recorder killed {KILLS} times: {} acknowledged, {} relayed, {missing} acknowledged missing, {torn} torn lines dropped",
        acknowledged.len(),
        report.stored
    );
    assert_eq!(missing, 0, "every acknowledged record is relayed");
    assert_eq!(ids.len() as u64, report.stored);
}

#[test]
fn a_relay_killed_at_random_stores_each_record_once_and_its_temporaries_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    let records: Vec<_> = (0..RECORDS).map(|n| record("killed", &format!("op{n}"))).collect();
    for r in &records {
        spool.append(r).unwrap();
    }
    drop(spool);
    let mut dice = Dice::new();
    let (mut left, mut removed) = (0, 0);
    for _ in 0..KILLS {
        let mut child = spawn("relay", dir.path());
        std::thread::sleep(Duration::from_millis(dice.between(20, 120)));
        child.kill().unwrap();
        child.wait().unwrap();
        left += temporaries(dir.path());
        let spool = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
        removed += spool.open_report().stale_files as usize;
        assert_eq!(temporaries(dir.path()), 0, "removed on open");
        assert_eq!((spool.open_report().lost.len(), spool.open_report().quarantined), (0, 0));
    }
    let store_path = dir.path().join("store.jsonl");
    let before = FileStore::all_ids(&store_path).len();
    let spool = Arc::new(Spool::open(dir.path(), SpoolOptions::default()).unwrap());
    let store = Arc::new(FileStore::open(store_path.clone()));
    runtime().block_on(Relay::new(spool.clone(), store).drain()).unwrap();
    let ids = FileStore::all_ids(&store_path);
    let unique: HashSet<_> = ids.iter().collect();
    println!(
        "relay killed {KILLS} times: {before} of {RECORDS} stored by the killed relays, {left} temporary files left by kills, {removed} removed on open"
    );
    assert_eq!((ids.len(), unique.len()), (RECORDS, RECORDS), "each record stored exactly once");
    assert_eq!(left, removed);
    assert_eq!(spool.pending().unwrap(), 0);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// The child process: does nothing unless started by the tests above.
#[test]
#[ignore = "started by the kill tests, in a child process"]
fn child() {
    let (Ok(role), Ok(dir)) = (std::env::var("AUDIT_CHILD"), std::env::var("AUDIT_DIR")) else { return };
    let dir = Path::new(&dir);
    runtime().block_on(async {
        let spool = Arc::new(Spool::open(dir, SpoolOptions::default()).unwrap());
        match role.as_str() {
            "recorder" => {
                // The store never answers: every write goes to the spool,
                // the first few at their deadline, the rest at once.
                let recorder = Recorder::new(Hanging::down()).fail_open(spool).deadline(Duration::from_millis(20));
                let mut out = std::io::stdout().lock();
                for n in 0.. {
                    let receipt = recorder.record(evidence("killed", &format!("op{n}"))).await.unwrap();
                    assert_eq!(receipt.durability, Durability::Spooled);
                    writeln!(out, "ack {}", receipt.record.id()).unwrap();
                    out.flush().unwrap();
                }
            }
            "relay" => {
                let store = Arc::new(FileStore::open(dir.join("store.jsonl")));
                Relay::new(spool, store).batch_size(1).drain().await.unwrap();
                // Done before the kill: wait for it.
                std::future::pending::<()>().await;
            }
            other => panic!("unknown child role {other}"),
        }
    });
}
