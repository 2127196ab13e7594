//! Helpers shared by the fault tests: records, stores that misbehave on
//! purpose, a metrics and a log capture, and a store that survives the
//! process being killed.
#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use async_trait::async_trait;
use governance_abstractions::{
    Actor, Decision, Evidence, GovernanceError, HistoryFilter, HistoryReader, HistoryRecord, HistoryWriter,
    PageRequest, Result, Stored, Timestamp, WorkspaceId,
};
use governance_memory::MemoryStore;

pub fn evidence(workspace: &str, operation: &str) -> Evidence {
    Evidence::decision(
        WorkspaceId::new(workspace).unwrap(),
        Actor::user("alice"),
        "invoice",
        operation,
        Decision::Approved,
    )
}

pub fn record(workspace: &str, operation: &str) -> HistoryRecord {
    HistoryRecord::new(evidence(workspace, operation), Timestamp::now()).unwrap()
}

pub async fn stored(store: &MemoryStore, workspace: &str) -> Vec<HistoryRecord> {
    let workspace = WorkspaceId::new(workspace).unwrap();
    store.query_history(&workspace, &HistoryFilter::default(), &PageRequest::all()).await.unwrap().items
}

fn unavailable() -> GovernanceError {
    let down = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused (test)");
    GovernanceError::Unavailable { source: Box::new(down) }
}

/// A store whose calls never complete while it `hangs` (a server that
/// accepted the connection and never answers), and that forwards to a
/// memory store otherwise. With `commit_then_hang`, a hanging call stores
/// first: the write committed, the answer never came.
#[derive(Default)]
pub struct Hanging {
    pub inner: MemoryStore,
    pub hangs: AtomicBool,
    pub commit_then_hang: AtomicBool,
    pub refuses: AtomicBool,
    pub calls: AtomicUsize,
}

impl Hanging {
    pub fn down() -> Arc<Self> {
        let store = Self::default();
        store.hangs.store(true, Ordering::SeqCst);
        Arc::new(store)
    }
}

#[async_trait]
impl HistoryWriter for Hanging {
    async fn append_history(&self, records: &[HistoryRecord]) -> Result<Vec<Stored<HistoryRecord>>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.refuses.load(Ordering::SeqCst) {
            return Err(unavailable());
        }
        if self.hangs.load(Ordering::SeqCst) {
            if self.commit_then_hang.load(Ordering::SeqCst) {
                self.inner.append_history(records).await?;
            }
            std::future::pending::<()>().await;
        }
        self.inner.append_history(records).await
    }
}

/// A store that refuses, for good (not retryable), every record whose
/// operation is in `poison`, or every record while `refuse_all`: what a
/// constraint of the application's own, or a revoked grant, looks like.
#[derive(Default)]
pub struct Refusing {
    pub inner: MemoryStore,
    pub poison: Mutex<HashSet<String>>,
    pub refuse_all: AtomicBool,
    pub attempts: Mutex<HashMap<String, usize>>,
}

#[derive(Debug, thiserror::Error)]
#[error("new row violates check constraint \"invoice_operation_allowed\"")]
pub struct CheckViolation;

#[async_trait]
impl HistoryWriter for Refusing {
    async fn append_history(&self, records: &[HistoryRecord]) -> Result<Vec<Stored<HistoryRecord>>> {
        let poison = self.poison.lock().unwrap().clone();
        let bad = records.iter().find(|r| poison.contains(&r.evidence().operation));
        if self.refuse_all.load(Ordering::SeqCst) || bad.is_some() {
            if let Some(bad) = bad {
                *self.attempts.lock().unwrap().entry(bad.evidence().operation.clone()).or_default() += 1;
            }
            return Err(GovernanceError::backend(false, CheckViolation));
        }
        self.inner.append_history(records).await
    }
}

/// Counter totals by `(metric, recorder label)`. The debugging recorder
/// drains on every snapshot, so snapshots from parallel tests accumulate.
pub fn metric(name: &str, recorder: &str) -> u64 {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    type Totals = Mutex<HashMap<(String, String), u64>>;
    static STATE: OnceLock<(Snapshotter, Totals)> = OnceLock::new();
    let (snapshotter, totals) = STATE.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().expect("the only metrics recorder of this test binary");
        (snapshotter, Mutex::new(HashMap::new()))
    });
    let mut totals = totals.lock().unwrap_or_else(PoisonError::into_inner);
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        if let DebugValue::Counter(n) = value {
            let label = key.key().labels().find(|l| l.key() == "recorder").map(|l| l.value().to_owned());
            *totals.entry((key.key().name().to_owned(), label.unwrap_or_default())).or_default() += n;
        }
    }
    totals.get(&(name.to_owned(), recorder.to_owned())).copied().unwrap_or(0)
}

/// A fresh `recorder` label, with the metrics recorder installed before the
/// first count.
pub fn counting(prefix: &str) -> String {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    metric("", "");
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Everything `audit-history` logs in this test binary.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

pub fn logs() -> Logs {
    use tracing_subscriber::layer::SubscriberExt;
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(move || sink.clone()))
            .with(tracing_subscriber::filter::Targets::new().with_target("audit_history", tracing::Level::DEBUG));
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test binary");
        logs
    })
    .clone()
}

/// The lines of `dir/evidence.jsonl`, newline included.
pub fn spool_lines(dir: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(dir.join("evidence.jsonl")).unwrap();
    bytes.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec).collect()
}

pub fn write_spool_lines(dir: &Path, lines: &[Vec<u8>]) {
    std::fs::write(dir.join("evidence.jsonl"), lines.concat()).unwrap();
}

/// The JSON lines of `dir/name`.
pub fn json_lines(path: PathBuf) -> Vec<serde_json::Value> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// A history store in one file, one record per line, synced: it survives a
/// killed process, and (like every store) treats a record it has as a
/// replay. A torn last line is a write that was never answered.
pub struct FileStore {
    path: PathBuf,
    ids: Mutex<HashSet<String>>,
}

impl FileStore {
    pub fn open(path: PathBuf) -> Self {
        let mut ids = HashSet::new();
        if let Ok(bytes) = std::fs::read(&path) {
            let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(complete as u64).unwrap();
            for line in bytes[..complete].split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let record: HistoryRecord = serde_json::from_slice(line).unwrap();
                ids.insert(record.id().to_string());
            }
        }
        Self { path, ids: Mutex::new(ids) }
    }

    /// Every line's record id, duplicates included.
    pub fn all_ids(path: &Path) -> Vec<String> {
        let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
        text.lines()
            .filter_map(|line| serde_json::from_str::<HistoryRecord>(line).ok())
            .map(|r| r.id().to_string())
            .collect()
    }
}

#[async_trait]
impl HistoryWriter for FileStore {
    async fn append_history(&self, records: &[HistoryRecord]) -> Result<Vec<Stored<HistoryRecord>>> {
        let mut ids = self.ids.lock().unwrap();
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).unwrap();
        let mut out = Vec::new();
        for record in records {
            if ids.contains(&record.id().to_string()) {
                out.push(Stored::Replayed(record.clone()));
                continue;
            }
            let mut line = serde_json::to_vec(record).unwrap();
            line.push(b'\n');
            file.write_all(&line).unwrap();
            file.sync_data().unwrap();
            ids.insert(record.id().to_string());
            out.push(Stored::New(record.clone()));
        }
        Ok(out)
    }
}
