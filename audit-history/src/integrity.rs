//! Sealing and verification (see `docs/audit.md` for what they prove).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use governance_abstractions::integrity::{MAX_CHECKPOINT_RECORDS, merkle_root, position_of};
use governance_abstractions::{
    Anchor, Checkpoint, GovernanceError, HistoryRecord, IntegrityStore, Position, ReadRecord, RecordId, SealEntry,
    SealedRecord, Timestamp, WorkspaceId,
};

use crate::error::AuditError;

/// What one [`Sealer::seal`] appended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SealReport {
    /// The new checkpoints, oldest first.
    pub checkpoints: Vec<Checkpoint>,
    /// Records sealed.
    pub records: u64,
    /// Unsealed records that no longer match their hash, belong to another
    /// workspace or no longer decode: left unsealed, logged and counted;
    /// `verify` names them.
    pub tampered: Vec<RecordId>,
}

impl SealReport {
    /// The anchor of the newest checkpoint written, if any.
    pub fn anchor(&self) -> Option<Anchor> {
        self.checkpoints.last().map(Checkpoint::anchor)
    }
}

/// Appends checkpoints over a workspace's unsealed records. Nothing on the
/// write path waits for it.
///
/// Run one per workspace at a time; two that race are safe (the store takes
/// one checkpoint per sequence number; the loser re-reads and goes on).
#[derive(Clone)]
pub struct Sealer {
    store: Arc<dyn IntegrityStore>,
    checkpoint_size: usize,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer").field("checkpoint_size", &self.checkpoint_size).finish_non_exhaustive()
    }
}

/// How many races in a row a sealer may lose before giving up. Each loss
/// means another sealer made progress, so this only stops a runaway loop.
const SEAL_ATTEMPTS: usize = 100;

impl Sealer {
    /// A sealer over `store`, up to 1000 records per checkpoint.
    pub fn new(store: Arc<dyn IntegrityStore>) -> Self {
        Self { store, checkpoint_size: MAX_CHECKPOINT_RECORDS }
    }

    /// At most `records` per checkpoint (1 ..= 1000).
    pub fn checkpoint_size(mut self, records: usize) -> Self {
        self.checkpoint_size = records.clamp(1, MAX_CHECKPOINT_RECORDS);
        self
    }

    /// Seals every unsealed record of `workspace`. A record that no longer
    /// matches its hash (or no longer decodes) is never sealed: it is set aside in
    /// [`SealReport::tampered`] (logged, counted) and the rest is sealed, so
    /// one forged row cannot hold the others' sealing back.
    pub async fn seal(&self, workspace: &WorkspaceId) -> Result<SealReport, AuditError> {
        let mut report = SealReport::default();
        let mut lost_races = 0;
        loop {
            let latest = self.store.latest_checkpoint(workspace).await.map_err(AuditError::Store)?;
            let records = self.unsealed_intact(workspace, &mut report).await?;
            if records.is_empty() {
                return Ok(report);
            }
            let (checkpoint, entries) =
                Checkpoint::seal(latest.as_ref(), workspace, &records, Timestamp::now()).map_err(AuditError::Store)?;
            match self.store.append_checkpoint(&checkpoint, &entries).await {
                Ok(()) => {
                    lost_races = 0;
                    report.records += entries.len() as u64;
                    report.checkpoints.push(checkpoint);
                }
                Err(GovernanceError::AlreadyExists { .. }) if lost_races < SEAL_ATTEMPTS => lost_races += 1,
                Err(error) => return Err(AuditError::Store(error)),
            }
        }
    }

    /// Up to one checkpoint's worth of intact unsealed records, in order;
    /// tampered ones are reported once and skipped.
    async fn unsealed_intact(
        &self,
        workspace: &WorkspaceId,
        report: &mut SealReport,
    ) -> Result<Vec<HistoryRecord>, AuditError> {
        let size = self.checkpoint_size;
        let mut intact_records = Vec::with_capacity(size);
        let mut after = None;
        loop {
            let page = self.store.unsealed_history(workspace, after, size as u32).await.map_err(AuditError::Store)?;
            let full = page.len() == size;
            after = page.last().map(position_of);
            for row in page {
                match row {
                    Ok(record) if intact(&record, workspace) => intact_records.push(record),
                    Ok(record) => set_aside(report, workspace, record.id(), "does not match its hash or workspace"),
                    // The decode problem is not logged: it may quote a stored value.
                    Err(unreadable) => set_aside(report, workspace, unreadable.id, "does not decode"),
                }
                if intact_records.len() == size {
                    return Ok(intact_records);
                }
            }
            if !full {
                return Ok(intact_records);
            }
        }
    }

    /// Seals `workspace` every `interval` until `shutdown` completes; failures
    /// are logged and the next round tries again.
    pub async fn run(self, workspace: WorkspaceId, interval: Duration, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            if let Err(error) = self.seal(&workspace).await {
                tracing::error!(workspace = %workspace, error = %error, "sealing failed");
            }
            if tokio::time::timeout(interval, &mut shutdown).await.is_ok() {
                return;
            }
        }
    }
}

/// Reports an unsealable record once: logged, counted, kept for the report.
fn set_aside(report: &mut SealReport, workspace: &WorkspaceId, record: RecordId, why: &'static str) {
    if report.tampered.contains(&record) {
        return;
    }
    tracing::error!(workspace = %workspace, record = %record, why, "not sealing a record");
    crate::metrics::count(crate::metrics::UNSEALABLE, "sealer", 1);
    report.tampered.push(record);
}

/// The record is valid, its hash matches its content, and it belongs to
/// `workspace`. `check` remembers a success, so the sealer's own check of the
/// records it seals does not hash them again.
pub(crate) fn intact(record: &HistoryRecord, workspace: &WorkspaceId) -> bool {
    record.workspace_id() == workspace && record.check().is_ok()
}

/// The first thing [`verify`] found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// A record's content no longer matches its hash, or the hash no longer
    /// matches the one sealed (`index` is its leaf index when sealed).
    RecordAltered {
        /// The record.
        record: RecordId,
        /// Its leaf index, when sealed.
        index: Option<u64>,
    },
    /// A record's row no longer decodes (a column holds a value this library
    /// never writes), so its content cannot be checked.
    RecordUnreadable {
        /// The record.
        record: RecordId,
        /// Its leaf index, when sealed.
        index: Option<u64>,
        /// What does not decode.
        problem: String,
    },
    /// A sealed record is gone.
    RecordMissing {
        /// The record.
        record: RecordId,
        /// Its leaf index.
        index: u64,
        /// The checkpoint that sealed it.
        checkpoint: u64,
    },
    /// A checkpoint's fields no longer match its digest.
    CheckpointAltered {
        /// The checkpoint.
        seq: u64,
    },
    /// A checkpoint is missing from the chain (or seal entries outlive it).
    CheckpointMissing {
        /// The missing sequence number.
        seq: u64,
    },
    /// A checkpoint does not extend the one before it.
    ChainBroken {
        /// The checkpoint.
        seq: u64,
    },
    /// A seal entry no longer matches its checkpoint: its record is intact,
    /// and with the record's hash in its place the entries add up to the
    /// checkpoint's root again.
    SealEntryAltered {
        /// The entry's leaf index.
        index: u64,
        /// The record it names.
        record: RecordId,
        /// The checkpoint it belongs to.
        checkpoint: u64,
    },
    /// A checkpoint's seal entries no longer add up to its root (and no
    /// single story explains it: entries removed, reordered, or changed
    /// together with their records).
    SealBroken {
        /// The checkpoint.
        seq: u64,
    },
    /// The store does not hold the anchored checkpoint with the anchored
    /// digest: its tail was cut or rewritten.
    AnchorMismatch {
        /// The anchored sequence number.
        seq: u64,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::RecordAltered { record, index: Some(index) } => {
                write!(f, "record {record} (leaf {index}) does not match its sealed hash")
            }
            Problem::RecordAltered { record, index: None } => write!(f, "record {record} does not match its hash"),
            Problem::RecordUnreadable { record, index: Some(index), problem } => {
                write!(f, "record {record} (leaf {index}) cannot be read: {problem}")
            }
            Problem::RecordUnreadable { record, index: None, problem } => {
                write!(f, "record {record} cannot be read: {problem}")
            }
            Problem::RecordMissing { record, index, checkpoint } => {
                write!(f, "record {record} (leaf {index}, checkpoint {checkpoint}) is missing")
            }
            Problem::CheckpointAltered { seq } => write!(f, "checkpoint {seq} does not match its digest"),
            Problem::CheckpointMissing { seq } => write!(f, "checkpoint {seq} is missing"),
            Problem::ChainBroken { seq } => write!(f, "checkpoint {seq} does not extend the checkpoint before it"),
            Problem::SealEntryAltered { index, record, checkpoint } => {
                write!(f, "seal entry {index} of checkpoint {checkpoint} (record {record}) was altered")
            }
            Problem::SealBroken { seq } => write!(f, "the records sealed by checkpoint {seq} do not match its root"),
            Problem::AnchorMismatch { seq } => write!(f, "the anchored checkpoint {seq} is missing or different"),
        }
    }
}

/// What [`verify`] walked, and the first problem it found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Sealed records checked.
    pub sealed: u64,
    /// Unsealed records checked (their hashes only: see `docs/audit.md`).
    pub unsealed: u64,
    /// The newest checkpoint checked: export it as the next anchor.
    pub latest: Option<Anchor>,
    /// The first problem, or `None` when the workspace verifies clean.
    pub problem: Option<Problem>,
}

impl Verification {
    /// True when nothing was found wrong.
    pub fn is_clean(&self) -> bool {
        self.problem.is_none()
    }
}

/// Walks every checkpoint, seal entry and record of `workspace` and names
/// the first that does not match. With `anchor` (a checkpoint's identity
/// kept outside the database), also detects a deleted or rewritten tail.
pub async fn verify(
    store: &dyn IntegrityStore,
    workspace: &WorkspaceId,
    anchor: Option<&Anchor>,
) -> Result<Verification, AuditError> {
    let mut report = Verification { checkpoints: 0, sealed: 0, unsealed: 0, latest: None, problem: None };
    let mut previous: Option<Checkpoint> = None;
    let mut anchored = false;
    loop {
        let after = previous.as_ref().map_or(0, Checkpoint::seq);
        let page = store.checkpoints(workspace, after, 100).await.map_err(AuditError::Store)?;
        if page.is_empty() {
            break;
        }
        for checkpoint in page {
            let problem = match check_link(&checkpoint, previous.as_ref(), workspace) {
                Some(problem) => Some(problem),
                None => check_seals(store, &checkpoint).await?,
            };
            if let Some(problem) = problem {
                report.problem = Some(problem);
                return Ok(report);
            }
            if let Some(anchor) = anchor
                && anchor.seq == checkpoint.seq()
            {
                anchored = anchor.digest == checkpoint.digest() && &anchor.workspace_id == workspace;
            }
            report.checkpoints += 1;
            report.sealed += checkpoint.record_count();
            report.latest = Some(checkpoint.anchor());
            previous = Some(checkpoint);
        }
    }
    let next_index = previous.as_ref().map_or(0, Checkpoint::next_index);
    if !store.sealed_records(workspace, next_index, 1).await.map_err(AuditError::Store)?.is_empty() {
        report.problem = Some(Problem::CheckpointMissing { seq: previous.as_ref().map_or(1, |p| p.seq() + 1) });
        return Ok(report);
    }
    if let Some(anchor) = anchor
        && !anchored
    {
        report.problem = Some(Problem::AnchorMismatch { seq: anchor.seq });
        return Ok(report);
    }
    let mut after: Option<Position> = None;
    loop {
        let page = store.unsealed_history(workspace, after, 500).await.map_err(AuditError::Store)?;
        if let Some(problem) = page.iter().find_map(|row| unsealed_problem(row, workspace)) {
            report.problem = Some(problem);
            return Ok(report);
        }
        report.unsealed += page.len() as u64;
        match page.last() {
            Some(last) if page.len() == 500 => after = Some(position_of(last)),
            _ => return Ok(report),
        }
    }
}

/// What is wrong with an unsealed row, if anything: only its own hash and
/// workspace can be checked.
fn unsealed_problem(row: &ReadRecord, workspace: &WorkspaceId) -> Option<Problem> {
    match row {
        Ok(record) if intact(record, workspace) => None,
        Ok(record) => Some(Problem::RecordAltered { record: record.id(), index: None }),
        Err(unreadable) => {
            Some(Problem::RecordUnreadable { record: unreadable.id, index: None, problem: unreadable.problem.clone() })
        }
    }
}

/// The checkpoint is intact and extends `previous`.
fn check_link(checkpoint: &Checkpoint, previous: Option<&Checkpoint>, workspace: &WorkspaceId) -> Option<Problem> {
    let seq = checkpoint.seq();
    let expected = previous.map_or(1, |p| p.seq() + 1);
    if checkpoint.workspace_id() != workspace
        || checkpoint.compute_digest().ok().as_deref() != Some(checkpoint.digest())
    {
        Some(Problem::CheckpointAltered { seq })
    } else if seq != expected {
        Some(Problem::CheckpointMissing { seq: expected })
    } else if checkpoint.previous() != previous.map(Checkpoint::digest)
        || checkpoint.first_index() != previous.map_or(0, Checkpoint::next_index)
    {
        Some(Problem::ChainBroken { seq })
    } else {
        None
    }
}

/// Every entry of the checkpoint is stored, names an intact record with the
/// sealed hash, and together they make the checkpoint's root.
///
/// The root decides whom to blame. When the stored entries make it, they are
/// as sealed, so a record that differs from its entry is the altered one.
/// When they do not, an entry was changed: if putting each differing entry's
/// (intact) record hash back makes the root, the first such entry is named;
/// otherwise the seal as a whole is broken.
async fn check_seals(store: &dyn IntegrityStore, checkpoint: &Checkpoint) -> Result<Option<Problem>, AuditError> {
    let seq = checkpoint.seq();
    let count = checkpoint.record_count();
    if count == 0 || count > MAX_CHECKPOINT_RECORDS as u64 {
        return Ok(Some(Problem::SealBroken { seq }));
    }
    let workspace = checkpoint.workspace_id();
    let sealed =
        store.sealed_records(workspace, checkpoint.first_index(), count as u32).await.map_err(AuditError::Store)?;
    let in_place = sealed.iter().zip(checkpoint.first_index()..).all(|((e, _), i)| e.index == i && e.checkpoint == seq);
    if !in_place || sealed.len() as u64 != count {
        return Ok(Some(Problem::SealBroken { seq }));
    }
    let leaves: Vec<[u8; 32]> = sealed.iter().map(|(entry, _)| entry.leaf_hash()).collect();
    if merkle_root(&leaves) == checkpoint.root() {
        return Ok(sealed.iter().find_map(|sealed| sealed_problem(sealed, workspace)));
    }
    let mut first_changed = None;
    let repaired: Vec<[u8; 32]> = sealed
        .iter()
        .map(|(entry, row)| match row {
            Some(Ok(record)) if record.content_hash() != entry.content_hash && intact(record, workspace) => {
                first_changed.get_or_insert(entry);
                SealEntry { content_hash: record.content_hash().to_owned(), ..entry.clone() }.leaf_hash()
            }
            _ => entry.leaf_hash(),
        })
        .collect();
    Ok(Some(match first_changed {
        Some(entry) if merkle_root(&repaired) == checkpoint.root() => {
            Problem::SealEntryAltered { index: entry.index, record: entry.record_id, checkpoint: seq }
        }
        _ => Problem::SealBroken { seq },
    }))
}

/// What is wrong with a sealed row whose entry is as sealed, if anything.
fn sealed_problem((entry, row): &SealedRecord, workspace: &WorkspaceId) -> Option<Problem> {
    let index = entry.index;
    match row {
        None => Some(Problem::RecordMissing { record: entry.record_id, index, checkpoint: entry.checkpoint }),
        Some(Err(unreadable)) => Some(Problem::RecordUnreadable {
            record: unreadable.id,
            index: Some(index),
            problem: unreadable.problem.clone(),
        }),
        Some(Ok(record)) if !intact(record, workspace) || record.content_hash() != entry.content_hash => {
            Some(Problem::RecordAltered { record: record.id(), index: Some(index) })
        }
        Some(Ok(_)) => None,
    }
}
