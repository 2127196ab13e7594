//! The durable local spool of fail-open evidence.
//!
//! One directory per process: `evidence.jsonl` (one sealed record per line,
//! appended and synced before the recorder acknowledges), `relay.offset` (how
//! far the relay has stored, replaced atomically) and `spool.lock` (an
//! exclusive file lock, so two processes never share a spool).
//!
//! A crash can leave a torn last line: it was never acknowledged (the sync
//! had not returned), so opening drops it. A complete line that fails to parse
//! or to match its hash is corruption and an error, never skipped. Stored
//! progress is saved after the store accepted a batch, so a crash in between
//! replays records the store already has: stores treat an unchanged record
//! as a replay, so each is stored once.
//!
//! Progress is only saved by the relay that read the batch, and only if no
//! other commit happened since it read (a generation counter): two relays, or
//! a cancelled drain whose commit runs late, can never move the offset over
//! records they did not store.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use governance_abstractions::HistoryRecord;

use crate::error::AuditError;

const DATA: &str = "evidence.jsonl";
const OFFSET: &str = "relay.offset";
const LOCK: &str = "spool.lock";
const REJECTED: &str = "rejected.jsonl";

/// Spool settings.
#[derive(Clone, Debug)]
pub struct SpoolOptions {
    /// The spool refuses appends beyond this many bytes
    /// ([`AuditError::SpoolFull`]); default 64 MiB.
    pub max_bytes: u64,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        Self { max_bytes: 64 * 1024 * 1024 }
    }
}

/// A durable, bounded, append-only file of records waiting for the store.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    /// Held by a relay for a whole drain: one relay at a time per spool.
    pub(crate) relay: tokio::sync::Mutex<()>,
    // Held for the spool's lifetime: the lock is released when it closes.
    _lock: File,
}

#[derive(Debug)]
struct State {
    data: File,
    len: u64,
    /// Everything before it is stored.
    offset: u64,
    /// Bumped whenever the file is emptied or compacted.
    generation: u64,
    /// A write failed and could not be cut back: refuse further appends.
    broken: bool,
}

/// Records read from the spool, and where the relay stands after them.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) records: Vec<HistoryRecord>,
    start: u64,
    pub(crate) end: u64,
    generation: u64,
}

impl Spool {
    /// Opens (creating) the spool in `dir`, dropping a torn last line.
    pub fn open(dir: impl AsRef<Path>, options: SpoolOptions) -> Result<Self, AuditError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(AuditError::spool(&dir))?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(AuditError::spool(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(AuditError::SpoolLocked(dir)),
            Err(fs::TryLockError::Error(e)) => return Err(AuditError::spool(&lock_path)(e)),
        }
        let path = dir.join(DATA);
        let mut data = open_data(&path)?;
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes).map_err(AuditError::spool(&path))?;
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if complete < bytes.len() {
            tracing::warn!(spool = %dir.display(), bytes = bytes.len() - complete, "dropping a torn, never acknowledged spool line");
            data.set_len(complete as u64).map_err(AuditError::spool(&path))?;
            data.sync_all().map_err(AuditError::spool(&path))?;
        }
        sync_dir(&dir)?;
        let len = complete as u64;
        let offset = read_offset(&dir)?;
        // An offset past the end: the file was emptied after the offset was saved as zero.
        let offset = if offset > len { 0 } else { offset };
        let state = State { data, len, offset, generation: 0, broken: false };
        let spool = Self {
            dir,
            max_bytes: options.max_bytes,
            state: Mutex::new(state),
            relay: tokio::sync::Mutex::new(()),
            _lock: lock,
        };
        // Parse everything once: corruption shows now, not when the store is down.
        spool.read(&spool.lock(), 0, usize::MAX)?;
        Ok(spool)
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one record and syncs it to disk before returning.
    pub fn append(&self, record: &HistoryRecord) -> Result<(), AuditError> {
        let path = self.dir.join(DATA);
        let mut line = serde_json::to_vec(record).map_err(|e| AuditError::spool(&path)(std::io::Error::other(e)))?;
        line.push(b'\n');
        let mut state = self.lock();
        if state.broken {
            let broken = std::io::Error::other("an earlier write failed; reopen the spool");
            return Err(AuditError::spool(path)(broken));
        }
        let used = state.len;
        if used + line.len() as u64 > self.max_bytes {
            return Err(AuditError::SpoolFull { used, capacity: self.max_bytes });
        }
        if let Err(error) = state.data.write_all(&line).and_then(|()| state.data.sync_data()) {
            // Not acknowledged. After a failed write or sync the file can no
            // longer be trusted: cut back what may have reached it, and stop.
            let _ = state.data.set_len(used);
            state.broken = true;
            return Err(AuditError::spool(path)(error));
        }
        state.len += line.len() as u64;
        Ok(())
    }

    /// Records the relay has not stored yet.
    pub fn pending(&self) -> Result<usize, AuditError> {
        Ok(self.next_batch(usize::MAX)?.records.len())
    }

    /// Bytes in the spool file (stored records included, until the relay
    /// empties or compacts it).
    pub fn len_bytes(&self) -> u64 {
        self.lock().len
    }

    /// Up to `max` records after the relay's saved offset.
    pub(crate) fn next_batch(&self, max: usize) -> Result<Pending, AuditError> {
        let state = self.lock();
        self.read(&state, state.offset, max)
    }

    /// Saves that `pending` is stored. Empties the file when nothing was
    /// appended after it, compacts it when the stored part is over half the
    /// bound. Returns `false`, writing nothing, when another commit happened
    /// since `pending` was read.
    pub(crate) fn commit(&self, pending: &Pending) -> Result<bool, AuditError> {
        let mut state = self.lock();
        if state.generation != pending.generation || state.offset != pending.start {
            return Ok(false);
        }
        let path = self.dir.join(DATA);
        if pending.end == state.len {
            // Offset first: a crash before the truncation replays stored
            // records (harmless), never skips new ones.
            self.write_offset(0)?;
            state.data.set_len(0).map_err(AuditError::spool(&path))?;
            state.data.sync_all().map_err(AuditError::spool(&path))?;
            (state.len, state.offset) = (0, 0);
            state.generation += 1;
        } else if pending.end > self.max_bytes / 2 {
            self.compact(&mut state, pending.end)?;
        } else {
            self.write_offset(pending.end)?;
            state.offset = pending.end;
        }
        Ok(true)
    }

    /// Keeps only the part after `end`: written to a new file, offset reset,
    /// then the new file renamed over the old one.
    fn compact(&self, state: &mut State, end: u64) -> Result<(), AuditError> {
        let path = self.dir.join(DATA);
        let mut tail = Vec::with_capacity((state.len - end) as usize);
        let mut reader = File::open(&path).map_err(AuditError::spool(&path))?;
        reader.seek(SeekFrom::Start(end)).map_err(AuditError::spool(&path))?;
        reader.take(state.len - end).read_to_end(&mut tail).map_err(AuditError::spool(&path))?;
        let temporary = self.dir.join(format!(".{DATA}.compact"));
        let mut file = File::create(&temporary).map_err(AuditError::spool(&temporary))?;
        file.write_all(&tail).and_then(|()| file.sync_all()).map_err(AuditError::spool(&temporary))?;
        // Offset first, as when emptying: a crash before the rename replays.
        self.write_offset(0)?;
        fs::rename(&temporary, &path).map_err(AuditError::spool(&path))?;
        sync_dir(&self.dir)?;
        state.data = open_data(&path)?;
        (state.len, state.offset) = (tail.len() as u64, 0);
        state.generation += 1;
        Ok(())
    }

    /// Keeps a record the store refused for good, with the reason, in
    /// `rejected.jsonl` beside the spool.
    pub(crate) fn reject(&self, record: &HistoryRecord, reason: &str) -> Result<(), AuditError> {
        let path = self.dir.join(REJECTED);
        let mut line = serde_json::to_vec(&serde_json::json!({ "reason": reason, "record": record }))
            .map_err(|e| AuditError::spool(&path)(std::io::Error::other(e)))?;
        line.push(b'\n');
        let mut file = OpenOptions::new().create(true).append(true).open(&path).map_err(AuditError::spool(&path))?;
        file.write_all(&line).and_then(|()| file.sync_data()).map_err(AuditError::spool(&path))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_offset(&self, offset: u64) -> Result<(), AuditError> {
        write_atomically(&self.dir, OFFSET, offset.to_string().as_bytes())
            .map_err(AuditError::spool(self.dir.join(OFFSET)))
    }

    /// Up to `max` records from `offset`, read under the state lock so that
    /// neither an append nor a compaction moves the file underneath.
    fn read(&self, state: &State, offset: u64, max: usize) -> Result<Pending, AuditError> {
        let path = self.dir.join(DATA);
        let mut file = File::open(&path).map_err(AuditError::spool(&path))?;
        file.seek(SeekFrom::Start(offset)).map_err(AuditError::spool(&path))?;
        let mut bytes = Vec::new();
        file.take(state.len - offset).read_to_end(&mut bytes).map_err(AuditError::spool(&path))?;
        let mut records = Vec::new();
        let mut at = 0usize;
        while records.len() < max && at < bytes.len() {
            let Some(newline) = bytes[at..].iter().position(|b| *b == b'\n') else { break };
            let line = &bytes[at..at + newline];
            let corrupt =
                |problem: String| AuditError::SpoolCorrupt { path: path.clone(), offset: offset + at as u64, problem };
            let record: HistoryRecord = serde_json::from_slice(line).map_err(|e| corrupt(e.to_string()))?;
            // A deserialized record's hash is trusted for nothing: check it
            // (the result is kept, so the relay's append does not hash again).
            record.check().map_err(|e| corrupt(e.to_string()))?;
            records.push(record);
            at += newline + 1;
        }
        Ok(Pending { records, start: offset, end: offset + at as u64, generation: state.generation })
    }
}

fn open_data(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new().create(true).read(true).append(true).open(path).map_err(AuditError::spool(path))
}

fn read_offset(dir: &Path) -> Result<u64, AuditError> {
    let path = dir.join(OFFSET);
    match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|_| AuditError::SpoolCorrupt {
            path,
            offset: 0,
            problem: format!("relay offset {text:?} is not a number"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(AuditError::spool(path)(e)),
    }
}

/// Replaces `dir/name` with `bytes`: write a temporary file (unique to this
/// call), sync, rename, sync the directory.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static UNIQUE: AtomicU64 = AtomicU64::new(0);
    let temporary = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), UNIQUE.fetch_add(1, Ordering::Relaxed)));
    let mut file = File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temporary, dir.join(name))?;
    File::open(dir)?.sync_all()
}

fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(AuditError::spool(dir))
}
