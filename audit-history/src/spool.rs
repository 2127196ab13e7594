//! The durable local spool of fail-open evidence.
//!
//! One directory per process:
//!
//! - `evidence.jsonl`: one line per record, `v2 <seq> <crc32> <record JSON>`,
//!   appended and synced before the recorder acknowledges. The sequence
//!   number counts up for the spool's whole life (it does not restart when
//!   the file is emptied); the checksum covers the sequence number and the
//!   JSON. Lines of the first format (the bare record JSON) are still read.
//! - `acknowledged.seq`: the highest acknowledged sequence number, rewritten
//!   in place after each append. Not synced: it is a lower bound, written
//!   after the line it names was synced, so it can be behind after a power
//!   loss but never ahead of what was on disk. It is what shows that lines at
//!   the end of the file were lost (a truncated file leaves no gap).
//! - `relay.offset`: how far the relay has stored, `<byte offset> <next
//!   sequence number>`, replaced atomically.
//! - `spool.lock`: an exclusive file lock, so two processes never share a
//!   spool.
//! - `quarantine.jsonl`, `rejected.jsonl`, `lost.jsonl`: what an operator
//!   looks at — lines set aside as corrupt, records the store refused for
//!   good, sequence ranges found missing.
//!
//! A crash can leave a torn last line: it was never acknowledged (the sync
//! had not returned), so opening drops it — logged and counted. A complete
//! line that fails its checksum, or no longer parses or matches its hash, is
//! damage: it is copied to the quarantine (synced) before the spool is
//! rewritten without it, and the rest keeps working. A gap in the sequence
//! numbers of the lines waiting for the relay (or an end before the
//! acknowledged mark) is acknowledged evidence lost: logged, counted,
//! recorded in `lost.jsonl` and reported by the next drain, once.
//!
//! Stored progress is saved after the store accepted a batch, so a crash in
//! between replays records the store already has: stores treat an unchanged
//! record as a replay, so each is stored once. Progress is only saved by the
//! relay that read the batch, and only if no other commit happened since it
//! read (a generation counter): two relays, or a cancelled drain whose commit
//! runs late, can never move the offset over records they did not store.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use governance_abstractions::{HistoryRecord, RecordId};

use crate::error::AuditError;
use crate::metrics::{SPOOL_LOST, SPOOL_QUARANTINED, SPOOL_TORN, count};

const DATA: &str = "evidence.jsonl";
const OFFSET: &str = "relay.offset";
const ACKED: &str = "acknowledged.seq";
const LOCK: &str = "spool.lock";
const REJECTED: &str = "rejected.jsonl";
const QUARANTINE: &str = "quarantine.jsonl";
const LOST: &str = "lost.jsonl";
/// Starts every line of the current format.
const FRAME: &[u8] = b"v2 ";
/// Sequence numbers are 1 ..= this; anything else read from a file is
/// damage (and would overflow the arithmetic on them).
const MAX_SEQ: u64 = 1 << 62;
/// How many lines past a batch [`Spool::record_after`] looks for a witness.
const WITNESS_SCAN: usize = 10_000;

fn sane(seq: u64) -> Option<u64> {
    (1..=MAX_SEQ).contains(&seq).then_some(seq)
}

/// Spool settings.
#[derive(Clone, Debug)]
pub struct SpoolOptions {
    /// The spool refuses appends beyond this many bytes
    /// ([`AuditError::SpoolFull`]); default 64 MiB.
    pub max_bytes: u64,
    /// The `recorder` label of the spool's own metrics (lost, quarantined
    /// and torn lines) and its logs; default `default`.
    pub name: String,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        Self { max_bytes: 64 * 1024 * 1024, name: "default".to_owned() }
    }
}

/// What [`Spool::open`] found and did about it. Everything in it was also
/// logged and counted when it was found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenReport {
    /// Acknowledged sequence numbers missing from the spool, newly found:
    /// evidence lost to a disk or copy fault.
    pub lost: Vec<RangeInclusive<u64>>,
    /// Damaged lines moved to `quarantine.jsonl`.
    pub quarantined: u64,
    /// Torn last lines dropped (0 or 1): an append a crash cut short, never
    /// acknowledged.
    pub torn: u64,
    /// Temporary files of a killed relay or compaction, removed.
    pub stale_files: u64,
    /// Waiting lines in the first format (no sequence number, no checksum),
    /// relayed as before.
    pub legacy_lines: u64,
}

/// A durable, bounded, append-only file of records waiting for the store.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    name: String,
    opened: OpenReport,
    state: Mutex<State>,
    /// Held by a relay for a whole drain: one relay at a time per spool.
    pub(crate) relay: tokio::sync::Mutex<()>,
    /// The record at the head of the spool that the store keeps refusing,
    /// across drains (and relays) of this spool.
    pub(crate) suspect: Mutex<Option<Suspect>>,
    /// Records in `rejected.jsonl`: a batch read again (after a drain that
    /// stopped later in it, or a restart) skips them rather than setting
    /// them aside twice.
    pub(crate) set_aside: Mutex<HashSet<RecordId>>,
    /// The damaged lines in `quarantine.jsonl` (read from it on open, and
    /// added to as lines are moved there): a line read again (by a drain
    /// after one that failed, or on the next open) is not quarantined or
    /// counted twice.
    quarantined: Mutex<HashSet<LineKey>>,
    // Held for the spool's lifetime: the lock is released when it closes.
    _lock: File,
}

/// A possible poison record: refused `attempts` times with `error`, the
/// last counted refusal at `counted_at`.
#[derive(Debug)]
pub(crate) struct Suspect {
    pub(crate) record: RecordId,
    pub(crate) error: String,
    pub(crate) attempts: u32,
    pub(crate) counted_at: std::time::Instant,
}

/// What identifies a damaged line: its byte position in `evidence.jsonl`,
/// its length and the CRC-32 of its bytes.
type LineKey = (u64, usize, u32);

fn line_key(position: u64, bytes: &[u8]) -> LineKey {
    (position, bytes.len(), crc32fast::hash(bytes))
}

#[derive(Debug)]
struct State {
    data: File,
    acked: File,
    len: u64,
    /// Everything before it is stored.
    offset: u64,
    /// The sequence number of the first line waiting for the relay (every
    /// lower one is stored or accounted for); `None` while only lines of the
    /// first format wait.
    expected: Option<u64>,
    /// The sequence number of the next append.
    next_seq: u64,
    /// Ranges already recorded in `lost.jsonl`: found again, not reported again.
    known_lost: Vec<RangeInclusive<u64>>,
    /// What open and earlier drains found (logged and counted already),
    /// for the next drain that succeeds to report.
    unreported: Findings,
    /// Bumped whenever the file is emptied or compacted.
    generation: u64,
    /// A write failed and could not be cut back: refuse further appends.
    broken: bool,
    /// `acknowledged.seq` could not be written: said once.
    acked_failed: bool,
}

/// Losses and quarantined lines a drain reports.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    pub(crate) lost: Vec<RangeInclusive<u64>>,
    pub(crate) quarantined: u64,
}

/// Records read from the spool, and where the relay stands after them.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) records: Vec<HistoryRecord>,
    /// Damaged lines among them, to quarantine before the offset passes them.
    pub(crate) corrupt: Vec<BadLine>,
    /// Sequence ranges missing among them, not known before.
    pub(crate) lost: Vec<RangeInclusive<u64>>,
    start: u64,
    pub(crate) end: u64,
    generation: u64,
    /// The sequence number expected after them.
    expected: Option<u64>,
}

impl Pending {
    pub(crate) fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// A line set aside: where it was, what it claimed to be, what is wrong.
#[derive(Debug, Clone)]
pub(crate) struct BadLine {
    position: u64,
    /// The sequence number the line claims (unverified).
    seq: Option<u64>,
    problem: String,
    bytes: Vec<u8>,
    /// Its number fills a gap among the intact lines: the record is in the
    /// quarantine, not lost.
    accounts: bool,
}

impl BadLine {
    fn new(position: u64, seq: Option<u64>, problem: String, bytes: Vec<u8>) -> Self {
        Self { position, seq, problem, bytes, accounts: false }
    }

    fn key(&self) -> LineKey {
        line_key(self.position, &self.bytes)
    }
}

/// Marks the damaged lines whose claimed number falls in a gap, and returns
/// the gaps without those numbers.
fn account(gaps: Vec<RangeInclusive<u64>>, bad: &mut [BadLine]) -> Vec<RangeInclusive<u64>> {
    for line in bad.iter_mut() {
        line.accounts = line.seq.is_some_and(|seq| gaps.iter().any(|gap| gap.contains(&seq)));
    }
    novel(gaps, &accounted(bad))
}

fn accounted(bad: &[BadLine]) -> Vec<RangeInclusive<u64>> {
    bad.iter().filter(|line| line.accounts).filter_map(|line| line.seq).map(|seq| seq..=seq).collect()
}

enum Parsed {
    /// A line of the first format: the record JSON alone.
    Legacy(HistoryRecord),
    Framed(u64, HistoryRecord),
    Corrupt {
        seq: Option<u64>,
        problem: String,
    },
}

struct Line {
    start: u64,
    end: u64,
    parsed: Parsed,
}

impl Line {
    fn seq(&self) -> Option<u64> {
        match &self.parsed {
            Parsed::Framed(seq, _) => Some(*seq),
            _ => None,
        }
    }
}

impl Spool {
    /// Opens (creating) the spool in `dir`.
    ///
    /// Never fails over the content of the spool, only over I/O and the
    /// lock: a torn last line is dropped, damaged lines are moved to
    /// `quarantine.jsonl`, missing acknowledged lines are reported, and
    /// temporary files of a killed relay are removed. [`Spool::open_report`]
    /// says what was found.
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
        let name = options.name.clone();
        // The lock is ours: no other process writes temporaries here now.
        let stale_files = remove_stale(&dir, &name)?;
        let mut quarantined = read_quarantined(&dir, &name);
        let recovered = Recovery::run(&dir, &name, &mut quarantined)?;
        let acked_path = dir.join(ACKED);
        let mut acked = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&acked_path)
            .map_err(AuditError::spool(&acked_path))?;
        write_mark(&mut acked, recovered.next_seq - 1)
            .and_then(|()| acked.set_len(21))
            .map_err(AuditError::spool(&acked_path))?;
        let path = dir.join(DATA);
        let data = open_data(&path)?;
        let len = data.metadata().map_err(AuditError::spool(&path))?.len();
        let opened = OpenReport {
            lost: recovered.lost.clone(),
            quarantined: recovered.quarantined,
            torn: recovered.torn,
            stale_files,
            legacy_lines: recovered.legacy_lines,
        };
        let set_aside = read_rejected(&dir, &name);
        let state = State {
            data,
            acked,
            len,
            offset: recovered.offset,
            expected: recovered.expected,
            next_seq: recovered.next_seq,
            known_lost: recovered.known_lost,
            unreported: Findings { lost: recovered.lost, quarantined: recovered.quarantined },
            generation: 0,
            broken: false,
            acked_failed: false,
        };
        Ok(Self {
            dir,
            max_bytes: options.max_bytes,
            name,
            opened,
            state: Mutex::new(state),
            relay: tokio::sync::Mutex::new(()),
            suspect: Mutex::new(None),
            set_aside: Mutex::new(set_aside),
            quarantined: Mutex::new(quarantined),
            _lock: lock,
        })
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What opening found: lost ranges, quarantined and torn lines, stale
    /// temporary files.
    pub fn open_report(&self) -> &OpenReport {
        &self.opened
    }

    /// Appends one record and syncs it to disk before returning.
    pub fn append(&self, record: &HistoryRecord) -> Result<(), AuditError> {
        let path = self.dir.join(DATA);
        // The JSON and its checksum outside the lock; only the number is
        // added under it.
        let json = Encoded::new(record).map_err(|e| AuditError::spool(&path)(std::io::Error::other(e)))?;
        let mut state = self.lock();
        if state.broken {
            let broken = std::io::Error::other("an earlier write failed; reopen the spool");
            return Err(AuditError::spool(path)(broken));
        }
        let seq = state.next_seq;
        let line = json.line(seq);
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
        state.next_seq += 1;
        // After the sync, so the mark never names a line that is not on disk.
        // Failing it costs only the detection of a cut-off end: the record is
        // durable, so the append still succeeds.
        if let Err(error) = write_mark(&mut state.acked, seq)
            && !std::mem::replace(&mut state.acked_failed, true)
        {
            tracing::warn!(
                spool = %self.dir.display(), recorder = %self.name, error = %error,
                "cannot update acknowledged.seq; lines cut off the end of the spool would go unnoticed"
            );
        }
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

    /// Up to `max` records (and damaged lines) after the relay's saved offset.
    pub(crate) fn next_batch(&self, max: usize) -> Result<Pending, AuditError> {
        let state = self.lock();
        self.read(&state, max)
    }

    /// The first intact record of `workspace` after `pending`, if the spool
    /// has not moved since it was read: the relay's witness that the store
    /// takes records of the workspace other than a suspected poison record.
    /// Looks at most [`WITNESS_SCAN`] lines ahead (the state lock is held).
    pub(crate) fn record_after(
        &self,
        pending: &Pending,
        workspace: &governance_abstractions::WorkspaceId,
    ) -> Result<Option<HistoryRecord>, AuditError> {
        let state = self.lock();
        if state.generation != pending.generation || state.offset != pending.start {
            return Ok(None);
        }
        let path = self.dir.join(DATA);
        let mut file = File::open(&path).map_err(AuditError::spool(&path))?;
        file.seek(SeekFrom::Start(pending.end)).map_err(AuditError::spool(&path))?;
        let mut reader = BufReader::new(file.take(state.len.saturating_sub(pending.end)));
        let mut line = Vec::new();
        for _ in 0..WITNESS_SCAN {
            line.clear();
            let read = reader.read_until(b'\n', &mut line).map_err(AuditError::spool(&path))?;
            if read == 0 || line.last() != Some(&b'\n') {
                return Ok(None);
            }
            match parse(&line[..read - 1]) {
                Parsed::Legacy(record) | Parsed::Framed(_, record) if record.workspace_id() == workspace => {
                    return Ok(Some(record));
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// What open and earlier drains found and no drain reported yet.
    pub(crate) fn take_unreported(&self) -> Findings {
        std::mem::take(&mut self.lock().unreported)
    }

    /// Saves that `pending` is stored (and its damaged lines quarantined).
    /// Empties the file when nothing was appended after it, compacts it when
    /// the stored part is over half the bound. Returns `false`, writing
    /// nothing, when another commit happened since `pending` was read.
    ///
    /// Losses found in `pending` are recorded in `lost.jsonl` first, then
    /// logged, counted and kept for the next drain that succeeds to report
    /// (before anything else here can fail), so they are reported once even
    /// though the offset moves past them.
    pub(crate) fn commit(&self, pending: &Pending) -> Result<bool, AuditError> {
        let mut state = self.lock();
        if state.generation != pending.generation || state.offset != pending.start {
            return Ok(false);
        }
        if !pending.lost.is_empty() {
            record_lost(&self.dir, &pending.lost)?;
            announce_lost(&self.dir, &self.name, &pending.lost);
            state.known_lost.extend(pending.lost.iter().cloned());
            state.unreported.lost.extend(pending.lost.iter().cloned());
        }
        state.known_lost.extend(accounted(&pending.corrupt));
        let path = self.dir.join(DATA);
        if pending.end == state.len {
            // Offset first: a crash before the truncation replays stored
            // records (harmless), never skips new ones.
            let next = state.next_seq;
            self.write_offset(0, Some(next))?;
            state.data.set_len(0).map_err(AuditError::spool(&path))?;
            state.data.sync_all().map_err(AuditError::spool(&path))?;
            (state.len, state.offset, state.expected) = (0, 0, Some(next));
            state.generation += 1;
        } else if pending.end > self.max_bytes / 2 {
            self.compact(&mut state, pending.end, pending.expected)?;
        } else {
            self.write_offset(pending.end, pending.expected)?;
            state.offset = pending.end;
            state.expected = pending.expected.or(state.expected);
        }
        // Ranges wholly behind the relay can no longer be found again.
        if let Some(expected) = state.expected {
            state.known_lost.retain(|range| *range.end() >= expected);
        }
        Ok(true)
    }

    /// Keeps only the part after `end`: written to a new file, offset reset,
    /// then the new file renamed over the old one.
    fn compact(&self, state: &mut State, end: u64, expected: Option<u64>) -> Result<(), AuditError> {
        let path = self.dir.join(DATA);
        let mut tail = Vec::with_capacity((state.len - end) as usize);
        let mut reader = File::open(&path).map_err(AuditError::spool(&path))?;
        reader.seek(SeekFrom::Start(end)).map_err(AuditError::spool(&path))?;
        reader.take(state.len - end).read_to_end(&mut tail).map_err(AuditError::spool(&path))?;
        replace_data(&self.dir, &tail, expected, |offset, expected| self.write_offset(offset, expected))?;
        state.data = open_data(&path)?;
        (state.len, state.offset) = (tail.len() as u64, 0);
        state.expected = expected.or(state.expected);
        state.generation += 1;
        Ok(())
    }

    /// Keeps a record the store refused for good, with the reason and the
    /// number of attempts, in `rejected.jsonl` beside the spool.
    pub(crate) fn reject(&self, record: &HistoryRecord, reason: &str, attempts: u32) -> Result<(), AuditError> {
        let entry = serde_json::json!({
            "rejected_at": chrono::Utc::now().to_rfc3339(),
            "reason": reason,
            "attempts": attempts,
            "record": record,
        });
        append_entries(&self.dir.join(REJECTED), [entry])?;
        self.set_aside.lock().unwrap_or_else(PoisonError::into_inner).insert(record.id());
        Ok(())
    }

    /// Copies damaged lines found by a drain to `quarantine.jsonl`, synced,
    /// before the relay's offset passes them. Lines quarantined already (by
    /// an earlier drain that then failed, or by open) are skipped; the new
    /// ones are kept for the next drain that succeeds to report.
    pub(crate) fn quarantine(&self, lines: &[BadLine]) -> Result<(), AuditError> {
        let mut known = self.quarantined.lock().unwrap_or_else(PoisonError::into_inner);
        let new: Vec<BadLine> = lines.iter().filter(|line| !known.contains(&line.key())).cloned().collect();
        quarantine(&self.dir, &self.name, &new)?;
        known.extend(new.iter().map(BadLine::key));
        drop(known);
        self.lock().unreported.quarantined += new.len() as u64;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_offset(&self, offset: u64, expected: Option<u64>) -> Result<(), AuditError> {
        write_offset(&self.dir, offset, expected)
    }

    /// Up to `max` lines from the relay's offset, read under the state lock
    /// so that neither an append nor a compaction moves the file underneath.
    fn read(&self, state: &State, max: usize) -> Result<Pending, AuditError> {
        let path = self.dir.join(DATA);
        let mut file = File::open(&path).map_err(AuditError::spool(&path))?;
        file.seek(SeekFrom::Start(state.offset)).map_err(AuditError::spool(&path))?;
        let mut reader = BufReader::new(file.take(state.len - state.offset));
        let (mut records, mut corrupt, mut gaps) = (Vec::new(), Vec::new(), Gaps::new(state.expected));
        let mut at = state.offset;
        let mut line = Vec::new();
        while records.len() + corrupt.len() < max {
            line.clear();
            let read = reader.read_until(b'\n', &mut line).map_err(AuditError::spool(&path))?;
            // `len` always ends a line; anything else means the file shrank
            // underneath: stop where the lines stop.
            if read == 0 || line.last() != Some(&b'\n') {
                break;
            }
            let body = &line[..read - 1];
            match parse(body) {
                Parsed::Legacy(record) => records.push(record),
                Parsed::Framed(seq, record) => {
                    gaps.saw(seq);
                    records.push(record);
                }
                Parsed::Corrupt { seq, problem } => corrupt.push(BadLine::new(at, seq, problem, body.to_vec())),
            }
            at += read as u64;
        }
        let lost = novel(account(gaps.lost, &mut corrupt), &state.known_lost);
        Ok(Pending {
            records,
            corrupt,
            lost,
            start: state.offset,
            end: at,
            generation: state.generation,
            expected: gaps.expected,
        })
    }
}

/// Tracks sequence numbers in file order and collects the missing ones.
struct Gaps {
    expected: Option<u64>,
    lost: Vec<RangeInclusive<u64>>,
}

impl Gaps {
    fn new(expected: Option<u64>) -> Self {
        Self { expected, lost: Vec::new() }
    }

    fn saw(&mut self, seq: u64) {
        match self.expected {
            Some(expected) if seq > expected => {
                self.lost.push(expected..=seq - 1);
                self.expected = Some(seq + 1);
            }
            // Lower than expected: a line already stored, seen again (a
            // duplicated line is a replay, harmless).
            Some(expected) => self.expected = Some(expected.max(seq + 1)),
            None => self.expected = Some(seq + 1),
        }
    }

    /// Acknowledged numbers after the last line seen.
    fn up_to(&mut self, acknowledged: u64) -> Option<RangeInclusive<u64>> {
        let expected = self.expected?;
        (acknowledged >= expected).then(|| {
            self.lost.push(expected..=acknowledged);
            self.expected = Some(acknowledged + 1);
            expected..=acknowledged
        })
    }
}

/// What opening makes of the files on disk.
struct Recovery {
    offset: u64,
    expected: Option<u64>,
    next_seq: u64,
    lost: Vec<RangeInclusive<u64>>,
    known_lost: Vec<RangeInclusive<u64>>,
    quarantined: u64,
    torn: u64,
    legacy_lines: u64,
}

impl Recovery {
    fn run(dir: &Path, name: &str, quarantined: &mut HashSet<LineKey>) -> Result<Self, AuditError> {
        let path = dir.join(DATA);
        let mut bytes = Vec::new();
        open_data(&path)?.read_to_end(&mut bytes).map_err(AuditError::spool(&path))?;
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let (saved_offset, saved_expected) = read_offset(dir, name);
        let acknowledged = read_mark(&dir.join(ACKED), dir, name);
        let mut known_lost = read_accounted(dir, name);

        let mut lines = Vec::new();
        let mut at = 0;
        while at < complete {
            let newline = bytes[at..].iter().position(|b| *b == b'\n').unwrap_or(complete - at - 1);
            let parsed = parse(&bytes[at..at + newline]);
            lines.push(Line { start: at as u64, end: (at + newline + 1) as u64, parsed });
            at += newline + 1;
        }
        // Which intact lines still wait for the store: by sequence number
        // when the relay saved one (robust to bytes shifting in a damaged
        // file), by byte offset otherwise (first-format lines, and spools
        // written before sequence numbers).
        let waits = |line: &Line| match (&line.parsed, saved_expected) {
            (Parsed::Framed(seq, _), Some(expected)) => *seq >= expected,
            (Parsed::Corrupt { .. }, _) => false,
            _ => line.end > saved_offset,
        };
        let keep: Vec<bool> = lines.iter().map(waits).collect();
        let max_on_disk = lines.iter().filter_map(Line::seq).max();
        let first_waiting = keep.iter().position(|k| *k).unwrap_or(lines.len());
        // Every corrupt line anywhere is set aside, even behind the offset:
        // it may be a waiting line whose number was damaged.
        let mut bad: Vec<BadLine> = lines
            .iter()
            .filter_map(|line| match &line.parsed {
                Parsed::Corrupt { seq, problem } => Some(BadLine::new(
                    line.start,
                    *seq,
                    problem.clone(),
                    bytes[line.start as usize..line.end as usize - 1].to_vec(),
                )),
                _ => None,
            })
            .collect();
        let contiguous = keep[first_waiting..].iter().all(|k| *k);

        // Gaps among the waiting lines, then after the last of them (up to
        // the acknowledged mark). With neither a saved number nor a stored
        // line to start from, numbering starts at the first waiting line.
        let stored_highest = lines.iter().zip(&keep).filter(|(_, k)| !**k).filter_map(|(l, _)| l.seq()).max();
        let mut gaps = Gaps::new(saved_expected.or(stored_highest.map(|s| s + 1)));
        for (line, _) in lines.iter().zip(&keep).filter(|(_, k)| **k) {
            if let Some(seq) = line.seq() {
                gaps.saw(seq);
            }
        }
        let tail_gap = acknowledged.and_then(|a| gaps.up_to(a));
        let waiting_seqs: Vec<u64> =
            lines.iter().zip(&keep).filter(|(_, k)| **k).filter_map(|(l, _)| l.seq()).collect();

        // The torn end: never acknowledged, unless acknowledged lines are
        // missing from the end (then it is one of them, cut short).
        let torn_bytes = &bytes[complete..];
        let mut torn = 0;
        if !torn_bytes.is_empty() {
            let what = Torn::read(torn_bytes);
            if tail_gap.is_some() {
                bad.push(BadLine::new(
                    complete as u64,
                    what.seq,
                    "cut short, and acknowledged lines after it are missing".to_owned(),
                    torn_bytes.to_vec(),
                ));
            } else {
                torn = 1;
                count(SPOOL_TORN, name, 1);
                tracing::warn!(
                    spool = %dir.display(), recorder = name, bytes = torn_bytes.len(), seq = ?what.seq,
                    record = ?what.record, workspace = ?what.workspace,
                    "dropping a torn last spool line: an append cut short by a crash, never acknowledged"
                );
            }
        }

        let lost = novel(account(gaps.lost.clone(), &mut bad), &known_lost);
        known_lost.extend(accounted(&bad));
        if !lost.is_empty() {
            record_lost(dir, &lost)?;
            known_lost.extend(lost.iter().cloned());
            announce_lost(dir, name, &lost);
        }
        // A line a drain (or an earlier open) quarantined already, still in
        // the file, is dropped from it below but not quarantined again.
        let new_bad: Vec<BadLine> = bad.iter().filter(|line| !quarantined.contains(&line.key())).cloned().collect();
        quarantine(dir, name, &new_bad)?;
        quarantined.extend(new_bad.iter().map(BadLine::key));

        let highest =
            [acknowledged, max_on_disk, gaps.expected.map(|e| e - 1)].into_iter().flatten().max().unwrap_or(0);
        let next_seq = highest + 1;
        // The relay's position from now on: the first waiting framed line,
        // or (nothing framed waits) everything before the next append.
        let expected = Some(waiting_seqs.iter().copied().min().unwrap_or(next_seq));
        let legacy_lines =
            lines.iter().zip(&keep).filter(|(l, k)| **k && matches!(l.parsed, Parsed::Legacy(_))).count() as u64;
        if legacy_lines > 0 {
            tracing::info!(
                spool = %dir.display(), recorder = name, lines = legacy_lines,
                "spool lines in the first format (no sequence number or checksum) wait; relayed as before"
            );
        }

        let offset = if bad.is_empty() && contiguous {
            let offset = lines.get(first_waiting).map_or(complete as u64, |line| line.start);
            if torn_bytes.is_empty() {
                write_offset(dir, offset, expected)?;
            } else {
                // Offset first, as everywhere: it is within the kept part.
                write_offset(dir, offset, expected)?;
                let data = open_data(&path)?;
                data.set_len(complete as u64).map_err(AuditError::spool(&path))?;
                data.sync_all().map_err(AuditError::spool(&path))?;
            }
            offset
        } else {
            // Damaged lines go (they are in the quarantine now), and with
            // them the stored part: the file is rewritten with the waiting
            // lines only.
            let mut waiting = Vec::new();
            for (line, _) in lines.iter().zip(&keep).filter(|(_, k)| **k) {
                waiting.extend_from_slice(&bytes[line.start as usize..line.end as usize]);
            }
            replace_data(dir, &waiting, expected, |offset, expected| write_offset(dir, offset, expected))?;
            0
        };
        sync_dir(dir)?;
        Ok(Self { offset, expected, next_seq, lost, known_lost, quarantined: new_bad.len() as u64, torn, legacy_lines })
    }
}

/// What can be read of a torn line, for the log.
struct Torn {
    seq: Option<u64>,
    record: Option<String>,
    workspace: Option<String>,
}

impl Torn {
    fn read(bytes: &[u8]) -> Self {
        let seq = bytes
            .strip_prefix(FRAME)
            .and_then(|rest| rest.split(|b| *b == b' ').next())
            // Only a complete number: the separator after it was written.
            .filter(|digits| bytes.len() > FRAME.len() + digits.len())
            .and_then(parse_u64)
            .and_then(sane);
        Self { seq, record: string_field(bytes, b"\"id\":\""), workspace: string_field(bytes, b"\"workspace_id\":\"") }
    }
}

/// The value of the first `"key":"value"` in `bytes`, if complete.
fn string_field(bytes: &[u8], key: &[u8]) -> Option<String> {
    let start = bytes.windows(key.len()).position(|w| w == key)? + key.len();
    let len = bytes[start..].iter().position(|b| *b == b'"')?;
    std::str::from_utf8(&bytes[start..start + len]).ok().map(str::to_owned)
}

/// A record's JSON and the checksum of it, waiting for a sequence number.
struct Encoded {
    json: Vec<u8>,
    crc: crc32fast::Hasher,
}

impl Encoded {
    fn new(record: &HistoryRecord) -> Result<Self, serde_json::Error> {
        let json = serde_json::to_vec(record)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&json);
        Ok(Self { json, crc })
    }

    /// `v2 <seq> <crc> <json>\n`; the checksum is the one [`checksum`]
    /// computes, combined from the number's and the JSON's.
    fn line(&self, seq: u64) -> Vec<u8> {
        let seq = seq.to_string();
        let mut crc = crc32fast::Hasher::new();
        crc.update(seq.as_bytes());
        crc.update(b" ");
        crc.combine(&self.crc);
        let mut line = Vec::with_capacity(self.json.len() + 34);
        line.extend_from_slice(FRAME);
        line.extend_from_slice(seq.as_bytes());
        line.extend_from_slice(format!(" {:08x} ", crc.finalize()).as_bytes());
        line.extend_from_slice(&self.json);
        line.push(b'\n');
        line
    }
}

fn checksum(seq: &[u8], json: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(seq);
    hasher.update(b" ");
    hasher.update(json);
    hasher.finalize()
}

/// One line, without its newline.
fn parse(line: &[u8]) -> Parsed {
    if line.first() == Some(&b'{') {
        return match decode(line) {
            Ok(record) => Parsed::Legacy(record),
            Err(problem) => Parsed::Corrupt { seq: None, problem },
        };
    }
    let Some(rest) = line.strip_prefix(FRAME) else {
        return Parsed::Corrupt { seq: None, problem: "not a spool line (unknown format)".to_owned() };
    };
    let mut fields = rest.splitn(3, |b| *b == b' ');
    let (seq_text, crc_text, json) = (fields.next(), fields.next(), fields.next());
    let seq = seq_text.and_then(parse_u64).and_then(sane);
    let corrupt = |problem: &str| Parsed::Corrupt { seq, problem: problem.to_owned() };
    let (Some(seq_text), Some(crc_text), Some(json)) = (seq_text, crc_text, json) else {
        return corrupt("incomplete line");
    };
    let Some(crc) = std::str::from_utf8(crc_text).ok().and_then(|t| u32::from_str_radix(t, 16).ok()) else {
        return corrupt("unreadable checksum");
    };
    if crc_text.len() != 8 || checksum(seq_text, json) != crc {
        return corrupt("checksum mismatch");
    }
    let Some(seq) = seq else { return corrupt("unreadable sequence number") };
    match decode(json) {
        Ok(record) => Parsed::Framed(seq, record),
        Err(problem) => Parsed::Corrupt { seq: Some(seq), problem },
    }
}

fn decode(json: &[u8]) -> Result<HistoryRecord, String> {
    let record: HistoryRecord = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    // A deserialized record's hash is trusted for nothing: check it (the
    // result is kept, so the relay's append does not hash again).
    record.check().map_err(|e| e.to_string())?;
    Ok(record)
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The parts of `found` not already in `known`.
fn novel(found: Vec<RangeInclusive<u64>>, known: &[RangeInclusive<u64>]) -> Vec<RangeInclusive<u64>> {
    let mut parts = found;
    for k in known {
        parts = parts
            .into_iter()
            .flat_map(|part| {
                let (a, b, c, d) = (*part.start(), *part.end(), *k.start(), *k.end());
                if d < a || c > b {
                    return vec![part];
                }
                let mut rest = Vec::new();
                if c > a {
                    rest.push(a..=c - 1);
                }
                if d < b {
                    rest.push(d + 1..=b);
                }
                rest
            })
            .collect();
    }
    parts
}

fn open_data(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new().create(true).read(true).append(true).open(path).map_err(AuditError::spool(path))
}

/// `(byte offset, next sequence number)` from `relay.offset`. A file that
/// does not parse costs replays, never a skip: offset 0.
fn read_offset(dir: &Path, name: &str) -> (u64, Option<u64>) {
    let path = dir.join(OFFSET);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (0, None),
        Err(e) => {
            tracing::warn!(spool = %dir.display(), recorder = name, error = %e, "relay.offset unreadable; relaying from the start (stored records replay)");
            return (0, None);
        }
    };
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    match (fields.next(), fields.next(), fields.next()) {
        (Some(Ok(offset)), None, None) => (offset, None),
        (Some(Ok(offset)), Some(Ok(expected)), None) if sane(expected).is_some() => (offset, Some(expected)),
        _ => {
            tracing::warn!(spool = %dir.display(), recorder = name, content = ?text, "relay.offset does not parse; relaying from the start (stored records replay)");
            (0, None)
        }
    }
}

fn write_offset(dir: &Path, offset: u64, expected: Option<u64>) -> Result<(), AuditError> {
    let text = match expected {
        Some(expected) => format!("{offset} {expected}\n"),
        None => format!("{offset}\n"),
    };
    write_atomically(dir, OFFSET, text.as_bytes()).map_err(AuditError::spool(dir.join(OFFSET)))
}

fn read_mark(path: &Path, dir: &Path, name: &str) -> Option<u64> {
    let text = fs::read(path).ok()?;
    let digits = text.strip_suffix(b"\n").unwrap_or(&text);
    if digits.is_empty() {
        return None;
    }
    let mark = parse_u64(digits).and_then(sane);
    if mark.is_none() {
        tracing::warn!(spool = %dir.display(), recorder = name, "acknowledged.seq does not parse; a cut-off end cannot be detected this time");
    }
    mark
}

/// Rewrites the mark in place: fixed width, so after each append one write
/// does (the file is cut to that width once, on open).
fn write_mark(file: &mut File, seq: u64) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    file.write_all(format!("{seq:020}\n").as_bytes())
}

/// The ids of the records in `rejected.jsonl`.
fn read_rejected(dir: &Path, name: &str) -> HashSet<RecordId> {
    let Ok(text) = fs::read_to_string(dir.join(REJECTED)) else { return HashSet::new() };
    let mut ids = HashSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let id = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|entry| serde_json::from_value::<RecordId>(entry["record"]["id"].clone()).ok());
        match id {
            Some(id) => {
                ids.insert(id);
            }
            None => {
                tracing::warn!(spool = %dir.display(), recorder = name, "a rejected.jsonl line does not parse; skipped")
            }
        }
    }
    ids
}

/// The numbers already accounted for: ranges in `lost.jsonl`, and the
/// numbers of quarantined lines that filled a gap. Found missing again,
/// they are not reported again.
fn read_accounted(dir: &Path, name: &str) -> Vec<RangeInclusive<u64>> {
    let mut known = Vec::new();
    for (file, range) in [
        (
            LOST,
            (|v: &serde_json::Value| {
                let (first, last) = (sane(v.get("first")?.as_u64()?)?, sane(v.get("last")?.as_u64()?)?);
                (first <= last).then_some(first..=last)
            }) as fn(&_) -> _,
        ),
        (QUARANTINE, |v: &serde_json::Value| {
            let seq = sane(v.get("seq")?.as_u64()?)?;
            v.get("accounts")?.as_bool()?.then_some(seq..=seq)
        }),
    ] {
        let Ok(text) = fs::read_to_string(dir.join(file)) else { continue };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(value) => known.extend(range(&value)),
                Err(_) => {
                    tracing::warn!(spool = %dir.display(), recorder = name, file, "a line does not parse; skipped")
                }
            }
        }
    }
    known
}

/// Logs and counts acknowledged evidence found missing.
fn announce_lost(dir: &Path, name: &str, lost: &[RangeInclusive<u64>]) {
    let records: u64 = lost.iter().map(|r| r.end() - r.start() + 1).sum();
    count(SPOOL_LOST, name, records);
    tracing::error!(
        spool = %dir.display(), recorder = name, lost = ?lost, records,
        "acknowledged evidence is missing from the spool (sequence numbers in `lost`): \
         a disk or copy fault removed lines; see lost.jsonl"
    );
}

/// The lines in `quarantine.jsonl` (position and bytes), so that a line
/// quarantined before is not quarantined again.
fn read_quarantined(dir: &Path, name: &str) -> HashSet<LineKey> {
    let Ok(text) = fs::read_to_string(dir.join(QUARANTINE)) else { return HashSet::new() };
    let mut keys = HashSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let key = serde_json::from_str::<serde_json::Value>(line).ok().and_then(|entry| {
            let position = entry.get("position")?.as_u64()?;
            let text = entry.get("line")?.as_str()?;
            let bytes = match entry.get("encoding").and_then(serde_json::Value::as_str) {
                Some("hex") => unhex(text)?,
                _ => text.as_bytes().to_vec(),
            };
            Some(line_key(position, &bytes))
        });
        match key {
            Some(key) => {
                keys.insert(key);
            }
            None => {
                tracing::warn!(spool = %dir.display(), recorder = name, "a quarantine.jsonl line does not parse; skipped")
            }
        }
    }
    keys
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

fn record_lost(dir: &Path, lost: &[RangeInclusive<u64>]) -> Result<(), AuditError> {
    let at = chrono::Utc::now().to_rfc3339();
    let entries = lost.iter().map(|range| {
        serde_json::json!({
            "found_at": at,
            "first": range.start(),
            "last": range.end(),
            "records": range.end() - range.start() + 1,
        })
    });
    append_entries(&dir.join(LOST), entries)
}

/// Appends the lines to `quarantine.jsonl` and syncs, then logs and counts.
fn quarantine(dir: &Path, name: &str, lines: &[BadLine]) -> Result<(), AuditError> {
    if lines.is_empty() {
        return Ok(());
    }
    let at = chrono::Utc::now().to_rfc3339();
    let entries = lines.iter().map(|line| {
        let mut entry = serde_json::json!({
            "quarantined_at": at,
            "file": DATA,
            "position": line.position,
            "seq": line.seq,
            "accounts": line.accounts,
            "problem": line.problem,
        });
        // The bytes as they were: text when they still are, hex otherwise.
        entry["line"] = match std::str::from_utf8(&line.bytes) {
            Ok(text) => text.into(),
            Err(_) => line.bytes.iter().map(|b| format!("{b:02x}")).collect::<String>().into(),
        };
        entry["encoding"] = if std::str::from_utf8(&line.bytes).is_ok() { "text" } else { "hex" }.into();
        entry
    });
    append_entries(&dir.join(QUARANTINE), entries)?;
    count(SPOOL_QUARANTINED, name, lines.len() as u64);
    for line in lines {
        tracing::error!(
            spool = %dir.display(), recorder = name, position = line.position, seq = ?line.seq,
            problem = %line.problem, "damaged spool line moved to quarantine.jsonl; the rest of the spool goes on"
        );
    }
    Ok(())
}

/// Appends JSON lines to `path` and syncs them.
fn append_entries(path: &Path, entries: impl IntoIterator<Item = serde_json::Value>) -> Result<(), AuditError> {
    let mut bytes = Vec::new();
    for entry in entries {
        serde_json::to_writer(&mut bytes, &entry).map_err(|e| AuditError::spool(path)(std::io::Error::other(e)))?;
        bytes.push(b'\n');
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path).map_err(AuditError::spool(path))?;
    file.write_all(&bytes).and_then(|()| file.sync_data()).map_err(AuditError::spool(path))
}

/// Replaces `evidence.jsonl` with `bytes`: a new file, synced; the offset
/// reset to its start (a crash before the rename then replays stored
/// records, never skips waiting ones); the rename; the directory synced.
fn replace_data(
    dir: &Path,
    bytes: &[u8],
    expected: Option<u64>,
    write_offset: impl FnOnce(u64, Option<u64>) -> Result<(), AuditError>,
) -> Result<(), AuditError> {
    let path = dir.join(DATA);
    let temporary = dir.join(format!(".{DATA}.compact"));
    let mut file = File::create(&temporary).map_err(AuditError::spool(&temporary))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(AuditError::spool(&temporary))?;
    write_offset(0, expected)?;
    fs::rename(&temporary, &path).map_err(AuditError::spool(&path))?;
    sync_dir(dir)
}

/// Removes what a killed relay or compaction left: `.relay.offset.*.tmp`
/// and `.evidence.jsonl.compact` (neither holds anything not also elsewhere).
fn remove_stale(dir: &Path, name: &str) -> Result<u64, AuditError> {
    let mut removed = 0;
    let offset_prefix = format!(".{OFFSET}.");
    for entry in fs::read_dir(dir).map_err(AuditError::spool(dir))? {
        let entry = entry.map_err(AuditError::spool(dir))?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else { continue };
        let stale = (file_name.starts_with(&offset_prefix) && file_name.ends_with(".tmp"))
            || file_name == format!(".{DATA}.compact");
        if stale {
            fs::remove_file(entry.path()).map_err(AuditError::spool(entry.path()))?;
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(spool = %dir.display(), recorder = name, files = removed, "removed temporary files of a killed relay");
        sync_dir(dir)?;
    }
    Ok(removed)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn novel_keeps_only_what_is_not_known() {
        assert_eq!(novel(vec![3..=9], &[5..=6]), vec![3..=4, 7..=9]);
        assert_eq!(novel(vec![3..=9], &[1..=20]), Vec::<RangeInclusive<u64>>::new());
        assert_eq!(novel(vec![3..=4, 8..=8], &[4..=8]), vec![3..=3]);
        assert_eq!(novel(vec![3..=4], &[]), vec![3..=4]);
    }

    #[test]
    fn gaps_name_the_missing_numbers() {
        let mut gaps = Gaps::new(Some(1));
        for seq in [1, 2, 5, 4, 6, 9] {
            gaps.saw(seq);
        }
        assert_eq!(gaps.up_to(12), Some(10..=12));
        assert_eq!(gaps.lost, vec![3..=4, 7..=8, 10..=12]);
    }

    #[test]
    fn a_line_checks_against_the_checksum_it_was_written_with() {
        let record = HistoryRecord::new(
            governance_abstractions::Evidence::decision(
                governance_abstractions::WorkspaceId::new("ws").unwrap(),
                governance_abstractions::Actor::user("alice"),
                "invoice",
                "update",
                governance_abstractions::Decision::Approved,
            ),
            governance_abstractions::Timestamp::now(),
        )
        .unwrap();
        let line = Encoded::new(&record).unwrap().line(123_456);
        match parse(&line[..line.len() - 1]) {
            Parsed::Framed(seq, parsed) => assert_eq!((seq, parsed), (123_456, record)),
            _ => panic!("{}", String::from_utf8_lossy(&line)),
        }
        let mut flipped = line.clone();
        flipped[4] ^= 0x01; // a digit of the number
        assert!(matches!(parse(&flipped[..flipped.len() - 1]), Parsed::Corrupt { .. }));
    }

    #[test]
    fn a_torn_line_shows_what_it_can() {
        let torn = Torn::read(br#"v2 17 0a1b2c3d {"id":"0190aa","created_at":"x","evidence":{"workspace_id":"ac"#);
        assert_eq!((torn.seq, torn.record.as_deref(), torn.workspace), (Some(17), Some("0190aa"), None));
        assert_eq!(Torn::read(b"v2 17").seq, None, "the number may be cut too");
    }
}
