//! Sealing and verification (see `docs/audit.md` for what they prove).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use governance_abstractions::integrity::{MAX_CHECKPOINT_RECORDS, merkle_root};
use governance_abstractions::{
    Anchor, Checkpoint, GovernanceError, HistoryRecord, IntegrityStore, Position, RecordId, SealEntry, Timestamp,
    WorkspaceId,
};

use crate::error::AuditError;

/// What one [`Sealer::seal`] appended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SealReport {
    /// The new checkpoints, oldest first.
    pub checkpoints: Vec<Checkpoint>,
    /// Records sealed.
    pub records: u64,
    /// Unsealed records that no longer match their hash (or belong to
    /// another workspace): left unsealed, logged and counted; `verify` names
    /// them.
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
    /// matches its hash is never sealed: it is set aside in
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
            after = page.last().map(Position::of_record);
            for record in page {
                if intact(&record, workspace) {
                    intact_records.push(record);
                } else if !report.tampered.contains(&record.id) {
                    tracing::error!(workspace = %workspace, record = %record.id, "not sealing a record that does not match its hash");
                    crate::metrics::count(crate::metrics::UNSEALABLE, "sealer", 1);
                    report.tampered.push(record.id);
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

/// The record's hash matches its content, and it belongs to `workspace`.
pub(crate) fn intact(record: &HistoryRecord, workspace: &WorkspaceId) -> bool {
    record.workspace_id() == workspace && record.compute_hash().is_ok_and(|hash| hash == record.content_hash)
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
    /// A checkpoint's seal entries no longer add up to its root.
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
            Problem::RecordMissing { record, index, checkpoint } => {
                write!(f, "record {record} (leaf {index}, checkpoint {checkpoint}) is missing")
            }
            Problem::CheckpointAltered { seq } => write!(f, "checkpoint {seq} does not match its digest"),
            Problem::CheckpointMissing { seq } => write!(f, "checkpoint {seq} is missing"),
            Problem::ChainBroken { seq } => write!(f, "checkpoint {seq} does not extend the checkpoint before it"),
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
        let after = previous.as_ref().map_or(0, |p| p.seq);
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
                && anchor.seq == checkpoint.seq
            {
                anchored = anchor.digest == checkpoint.digest && &anchor.workspace_id == workspace;
            }
            report.checkpoints += 1;
            report.sealed += checkpoint.record_count;
            report.latest = Some(checkpoint.anchor());
            previous = Some(checkpoint);
        }
    }
    let next_index = previous.as_ref().map_or(0, Checkpoint::next_index);
    if !store.sealed_records(workspace, next_index, 1).await.map_err(AuditError::Store)?.is_empty() {
        report.problem = Some(Problem::CheckpointMissing { seq: previous.as_ref().map_or(1, |p| p.seq + 1) });
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
        for record in &page {
            if !intact(record, workspace) {
                report.problem = Some(Problem::RecordAltered { record: record.id, index: None });
                return Ok(report);
            }
        }
        report.unsealed += page.len() as u64;
        match page.last() {
            Some(last) if page.len() == 500 => after = Some(Position::of_record(last)),
            _ => return Ok(report),
        }
    }
}

/// The checkpoint is intact and extends `previous`.
fn check_link(checkpoint: &Checkpoint, previous: Option<&Checkpoint>, workspace: &WorkspaceId) -> Option<Problem> {
    let seq = checkpoint.seq;
    let expected = previous.map_or(1, |p| p.seq + 1);
    if &checkpoint.workspace_id != workspace || checkpoint.compute_digest().ok().as_ref() != Some(&checkpoint.digest) {
        Some(Problem::CheckpointAltered { seq })
    } else if seq != expected {
        Some(Problem::CheckpointMissing { seq: expected })
    } else if checkpoint.previous.as_deref() != previous.map(|p| p.digest.as_str())
        || checkpoint.first_index != previous.map_or(0, Checkpoint::next_index)
    {
        Some(Problem::ChainBroken { seq })
    } else {
        None
    }
}

/// Every entry of the checkpoint is stored, names an intact record with the
/// sealed hash, and together they make the checkpoint's root.
async fn check_seals(store: &dyn IntegrityStore, checkpoint: &Checkpoint) -> Result<Option<Problem>, AuditError> {
    let seq = checkpoint.seq;
    if checkpoint.record_count == 0 || checkpoint.record_count > MAX_CHECKPOINT_RECORDS as u64 {
        return Ok(Some(Problem::SealBroken { seq }));
    }
    let sealed = store
        .sealed_records(&checkpoint.workspace_id, checkpoint.first_index, checkpoint.record_count as u32)
        .await
        .map_err(AuditError::Store)?;
    let mut leaves = Vec::with_capacity(sealed.len());
    for ((entry, record), index) in sealed.iter().zip(checkpoint.first_index..) {
        if entry.index != index || entry.checkpoint != seq {
            return Ok(Some(Problem::SealBroken { seq }));
        }
        let Some(record) = record else {
            return Ok(Some(Problem::RecordMissing { record: entry.record_id, index, checkpoint: seq }));
        };
        if !intact(record, &checkpoint.workspace_id) || record.content_hash != entry.content_hash {
            return Ok(Some(Problem::RecordAltered { record: record.id, index: Some(index) }));
        }
        leaves.push(SealEntry::leaf_hash(entry));
    }
    if sealed.len() as u64 != checkpoint.record_count || merkle_root(&leaves) != checkpoint.root {
        return Ok(Some(Problem::SealBroken { seq }));
    }
    Ok(None)
}
