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
    // Held for the spool's lifetime: the lock is released when it closes.
    _lock: File,
}

#[derive(Debug)]
struct State {
    data: File,
    len: u64,
}

/// Records read from the spool, and where the relay stands after them.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) records: Vec<HistoryRecord>,
    pub(crate) end: u64,
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
        let mut data =
            OpenOptions::new().create(true).read(true).append(true).open(&path).map_err(AuditError::spool(&path))?;
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes).map_err(AuditError::spool(&path))?;
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if complete < bytes.len() {
            tracing::warn!(spool = %dir.display(), bytes = bytes.len() - complete, "dropping a torn, never acknowledged spool line");
            data.set_len(complete as u64).map_err(AuditError::spool(&path))?;
            data.sync_all().map_err(AuditError::spool(&path))?;
        }
        sync_dir(&dir)?;
        let spool = Self {
            dir,
            max_bytes: options.max_bytes,
            state: Mutex::new(State { data, len: complete as u64 }),
            _lock: lock,
        };
        // Parse everything once: corruption shows now, not when the store is down.
        spool.read_from(0, usize::MAX)?;
        Ok(spool)
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one record and syncs it to disk before returning.
    pub fn append(&self, record: &HistoryRecord) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(record).map_err(|e| AuditError::SpoolCorrupt {
            path: self.dir.join(DATA),
            offset: 0,
            problem: e.to_string(),
        })?;
        line.push(b'\n');
        let mut state = self.lock();
        let used = state.len;
        if used + line.len() as u64 > self.max_bytes {
            return Err(AuditError::SpoolFull { used, capacity: self.max_bytes });
        }
        let path = self.dir.join(DATA);
        let written = state.data.write_all(&line).and_then(|()| state.data.sync_data());
        if let Err(error) = written {
            // Cut back whatever part reached the file: it was not acknowledged.
            let _ = state.data.set_len(used);
            return Err(AuditError::spool(path)(error));
        }
        state.len += line.len() as u64;
        Ok(())
    }

    /// Records the relay has not stored yet.
    pub fn pending(&self) -> Result<usize, AuditError> {
        Ok(self.read_from(self.offset()?, usize::MAX)?.records.len())
    }

    /// Bytes in the spool file (stored records included, until the relay empties it).
    pub fn len_bytes(&self) -> u64 {
        self.lock().len
    }

    /// Up to `max` records after the relay's saved offset.
    pub(crate) fn next_batch(&self, max: usize) -> Result<Pending, AuditError> {
        self.read_from(self.offset()?, max)
    }

    /// Saves that everything before `end` is stored; empties the file when
    /// nothing was appended after it.
    pub(crate) fn commit(&self, end: u64) -> Result<(), AuditError> {
        let mut state = self.lock();
        if end == state.len {
            // Offset first: a crash before the truncation replays stored
            // records (harmless), never skips new ones.
            self.write_offset(0)?;
            let path = self.dir.join(DATA);
            state.data.set_len(0).map_err(AuditError::spool(&path))?;
            state.data.sync_all().map_err(AuditError::spool(&path))?;
            state.len = 0;
            Ok(())
        } else {
            self.write_offset(end)
        }
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

    fn offset(&self) -> Result<u64, AuditError> {
        let path = self.dir.join(OFFSET);
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

    fn write_offset(&self, offset: u64) -> Result<(), AuditError> {
        write_atomically(&self.dir, OFFSET, offset.to_string().as_bytes())
            .map_err(AuditError::spool(self.dir.join(OFFSET)))
    }

    fn read_from(&self, offset: u64, max: usize) -> Result<Pending, AuditError> {
        let path = self.dir.join(DATA);
        let len = self.lock().len;
        // An offset past the end: the file was emptied after the offset was
        // saved as zero... or before; either way start over.
        let offset = if offset > len { 0 } else { offset };
        let mut file = File::open(&path).map_err(AuditError::spool(&path))?;
        file.seek(SeekFrom::Start(offset)).map_err(AuditError::spool(&path))?;
        let mut bytes = Vec::new();
        file.take(len - offset).read_to_end(&mut bytes).map_err(AuditError::spool(&path))?;
        let mut records = Vec::new();
        let mut at = 0usize;
        while records.len() < max && at < bytes.len() {
            let Some(newline) = bytes[at..].iter().position(|b| *b == b'\n') else { break };
            let line = &bytes[at..at + newline];
            let corrupt =
                |problem: String| AuditError::SpoolCorrupt { path: path.clone(), offset: offset + at as u64, problem };
            let record: HistoryRecord = serde_json::from_slice(line).map_err(|e| corrupt(e.to_string()))?;
            record.validate().map_err(|e| corrupt(e.to_string()))?;
            records.push(record);
            at += newline + 1;
        }
        Ok(Pending { records, end: offset + at as u64 })
    }
}

/// Replaces `dir/name` with `bytes`: write a temporary file, sync, rename, sync the directory.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = dir.join(format!(".{name}.tmp"));
    let mut file = File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temporary, dir.join(name))?;
    File::open(dir)?.sync_all()
}

fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(AuditError::spool(dir))
}
