//! JSONL export in the object-storage layout:
//! `<dir>/workspace=<id>/year=YYYY/month=MM/day=DD/part-<first leaf index>.jsonl`.
//!
//! The export walks the sealed log in leaf-index order, the one order that
//! never changes once written, so a saved cursor (the next leaf index) resumes
//! with no gap and no duplicate. Each page is written as new files named
//! after its first index, synced, and only then is the cursor saved: a run
//! that dies in between rewrites the same files on the next run.
//!
//! Only sealed records are exported: seal before exporting.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Datelike;
use governance_abstractions::{HistoryRecord, IntegrityStore, RecordId, WorkspaceId};
use serde::{Deserialize, Serialize};

use crate::error::AuditError;
use crate::integrity::intact;
use crate::spool::write_atomically;

const CURSOR: &str = "_cursor.json";

/// Where an export of one workspace resumes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportCursor {
    /// The tenant.
    pub workspace_id: WorkspaceId,
    /// The first leaf index not exported yet.
    pub next_index: u64,
    /// The page size of the run that saved it: a resumed run's first page
    /// is at least this long, so it rewrites (never splits) the files an
    /// interrupted run may have left.
    #[serde(default)]
    pub page_size: u32,
}

/// One exported line.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportLine {
    /// The record's leaf index in the workspace's log.
    pub index: u64,
    /// The checkpoint that sealed it.
    pub checkpoint: u64,
    /// The record, with its content hash.
    pub record: HistoryRecord,
}

/// What one [`Exporter::export`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Records written.
    pub records: u64,
    /// Files written (each new, or rewritten after an interrupted run).
    pub files: Vec<PathBuf>,
}

/// Exports sealed history to a directory (or a mounted bucket).
#[derive(Clone)]
pub struct Exporter {
    store: Arc<dyn IntegrityStore>,
    dir: PathBuf,
    page: u32,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").field("dir", &self.dir).field("page", &self.page).finish_non_exhaustive()
    }
}

impl Exporter {
    /// Exports into `dir`, 1000 records per page (and per file at most).
    pub fn new(store: Arc<dyn IntegrityStore>, dir: impl Into<PathBuf>) -> Self {
        Self { store, dir: dir.into(), page: 1000 }
    }

    /// At most `records` per page (1 ..= 10 000).
    pub fn page_size(mut self, records: u32) -> Self {
        self.page = records.clamp(1, 10_000);
        self
    }

    /// The directory of one workspace's export.
    pub fn workspace_dir(&self, workspace: &WorkspaceId) -> PathBuf {
        self.dir.join(format!("workspace={}", path_safe(workspace.as_str())))
    }

    /// The saved cursor (index 0 before the first export).
    pub fn cursor(&self, workspace: &WorkspaceId) -> Result<ExportCursor, AuditError> {
        let path = self.workspace_dir(workspace).join(CURSOR);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let cursor: ExportCursor =
                    serde_json::from_slice(&bytes).map_err(|e| AuditError::export(&path)(std::io::Error::other(e)))?;
                if &cursor.workspace_id != workspace {
                    let clash = format!("the cursor belongs to workspace {}", cursor.workspace_id);
                    return Err(AuditError::export(path)(std::io::Error::other(clash)));
                }
                Ok(cursor)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(ExportCursor { workspace_id: workspace.clone(), next_index: 0, page_size: 0 })
            }
            Err(e) => Err(AuditError::export(path)(e)),
        }
    }

    /// Exports every sealed record after the saved cursor, saving the cursor
    /// after each page.
    pub async fn export(&self, workspace: &WorkspaceId) -> Result<ExportReport, AuditError> {
        let root = self.workspace_dir(workspace);
        let mut cursor = self.cursor(workspace)?;
        let mut report = ExportReport::default();
        let mut page_size = self.page.max(cursor.page_size);
        // Checkpoints whose entries were checked against their root already.
        let mut sound: HashSet<u64> = HashSet::new();
        loop {
            let page =
                self.store.sealed_records(workspace, cursor.next_index, page_size).await.map_err(AuditError::Store)?;
            let Some((last, _)) = page.last() else { return Ok(report) };
            let next_index = last.index + 1;
            let first_index = cursor.next_index;
            let checkpoints: Vec<(u64, RecordId)> =
                page.iter().map(|(entry, _)| (entry.checkpoint, entry.record_id)).collect();
            let mut days: BTreeMap<(i32, u32, u32), Vec<u8>> = BTreeMap::new();
            for ((entry, record), expected) in page.into_iter().zip(first_index..) {
                if entry.index != expected {
                    return Err(AuditError::LogGap { workspace: workspace.clone(), index: expected });
                }
                // Missing, undecodable, altered or not the hash sealed: never
                // exported as if intact (`verify` says which).
                let record = match record {
                    Some(Ok(record)) if record.content_hash() == entry.content_hash && intact(&record, workspace) => {
                        record
                    }
                    _ => return Err(AuditError::Tampered { record: entry.record_id }),
                };
                let at = record.created_at().as_datetime();
                let line = ExportLine { index: entry.index, checkpoint: entry.checkpoint, record };
                let bytes = days.entry((at.year(), at.month(), at.day())).or_default();
                serde_json::to_writer(&mut *bytes, &line)
                    .map_err(|e| AuditError::export(&root)(std::io::Error::other(e)))?;
                bytes.push(b'\n');
                report.records += 1;
            }
            for (seq, record) in checkpoints {
                if sound.insert(seq) && !self.checkpoint_is_sound(workspace, seq).await? {
                    // A record rewritten together with its seal entry still
                    // matches the entry: only the checkpoint's root tells.
                    return Err(AuditError::Tampered { record });
                }
            }
            let name = format!("part-{first_index:020}.jsonl");
            for ((year, month, day), bytes) in days {
                let dir = root
                    .join(format!("year={year:04}"))
                    .join(format!("month={month:02}"))
                    .join(format!("day={day:02}"));
                write_file(&dir, &name, &bytes)?;
                report.files.push(dir.join(&name));
            }
            cursor.next_index = next_index;
            cursor.page_size = page_size;
            page_size = self.page;
            let bytes = serde_json::to_vec(&cursor).map_err(|e| AuditError::export(&root)(std::io::Error::other(e)))?;
            write_file(&root, CURSOR, &bytes)?;
        }
    }
}

impl Exporter {
    /// True when checkpoint `seq` matches its digest and its stored entries
    /// make its Merkle root.
    async fn checkpoint_is_sound(&self, workspace: &WorkspaceId, seq: u64) -> Result<bool, AuditError> {
        let found = self.store.checkpoints(workspace, seq.saturating_sub(1), 1).await.map_err(AuditError::Store)?;
        let Some(checkpoint) = found.into_iter().next().filter(|c| c.seq() == seq) else { return Ok(false) };
        if checkpoint.compute_digest().ok().as_deref() != Some(checkpoint.digest()) {
            return Ok(false);
        }
        let count = u32::try_from(checkpoint.record_count()).unwrap_or(u32::MAX);
        let entries =
            self.store.sealed_records(workspace, checkpoint.first_index(), count).await.map_err(AuditError::Store)?;
        let leaves: Vec<[u8; 32]> = entries.iter().map(|(entry, _)| entry.leaf_hash()).collect();
        Ok(leaves.len() as u64 == checkpoint.record_count()
            && entries.iter().all(|(entry, _)| entry.checkpoint == seq)
            && governance_abstractions::integrity::merkle_root(&leaves) == checkpoint.root())
    }
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), AuditError> {
    create_dirs(dir)?;
    write_atomically(dir, name, bytes).map_err(AuditError::export(dir.join(name)))
}

/// Creates `dir` and its missing parents, syncing each parent that gained an
/// entry, so files written below survive a power loss.
fn create_dirs(dir: &Path) -> Result<(), AuditError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(AuditError::export(dir)(e)),
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::File::open(parent).and_then(|d| d.sync_all()).map_err(AuditError::export(parent))
}

/// Keeps `[a-z0-9_.-]` (no leading dot) and percent-encodes the rest,
/// upper-case letters included (so ids differing only in case never share a
/// directory on a case-insensitive file system). Long results are cut and
/// suffixed with a hash of the whole id: one safe path segment either way.
fn path_safe(id: &str) -> String {
    const MAX: usize = 160;
    let mut out = String::with_capacity(id.len());
    for (i, byte) in id.bytes().enumerate() {
        let keep = byte.is_ascii_lowercase()
            || byte.is_ascii_digit()
            || byte == b'_'
            || byte == b'-'
            || (byte == b'.' && i > 0);
        if keep {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    if out.len() > MAX {
        let digest = governance_abstractions::canonical_sha256("workspace", &id).unwrap_or_default();
        out.truncate(MAX);
        out.push('~');
        out.push_str(&digest[..16]);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_safe_encodes_separators_and_leading_dots() {
        use super::path_safe;
        assert_eq!(path_safe("acme-1.eu"), "acme-1.eu");
        assert_eq!(path_safe("../a/b=c"), "%2E.%2Fa%2Fb%3Dc");
        assert_eq!(path_safe("é"), "%C3%A9");
        assert_ne!(path_safe("Acme"), path_safe("acme"));
        let long = "é".repeat(120); // 240 bytes, 720 encoded
        let (a, b) = (path_safe(&long), path_safe(&format!("{long}x")));
        assert!(a.len() <= 180 && a != b, "long ids stay short and distinct: {a}");
    }
}
