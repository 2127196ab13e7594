//! Tamper evidence without a lock on the write path.
//!
//! Writers only compute each record's [`content_hash`](crate::HistoryRecord::content_hash).
//! A sealer (one per workspace at a time; `audit-history` ships one) later
//! gives every unsealed record the next *leaf index* of the workspace's log and
//! appends a [`Checkpoint`] that commits to those leaves with an RFC 6962
//! Merkle root and to the previous checkpoint with its digest: a hash chain of
//! checkpoints over an insert-only log, the transparency-log shape.
//!
//! The leaf index, not a database's transaction order, is the log's order, so
//! it survives dumps, restores and replication unchanged on every backend.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::digest::{canonical_sha256, hex};
use crate::request::validate_timestamp;
use crate::{
    EntityKind, GovernanceError, HistoryRecord, Position, RecordId, Result, Timestamp, ValidationProblem, WorkspaceId,
};

/// At most this many records in one checkpoint (one insert statement on every backend).
pub const MAX_CHECKPOINT_RECORDS: usize = 1000;

/// One sealed record: its place in the workspace's log and the hash it had.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealEntry {
    /// The record's leaf index in the workspace's log (0, 1, 2, … without gaps).
    pub index: u64,
    /// The sealed record.
    pub record_id: RecordId,
    /// The record's content hash when it was sealed.
    pub content_hash: String,
    /// The checkpoint that sealed it.
    pub checkpoint: u64,
}

impl SealEntry {
    /// The RFC 6962 leaf hash: `SHA-256(0x00 ‖ record id ‖ content hash)`.
    pub fn leaf_hash(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update([0u8]);
        hasher.update(self.record_id.as_uuid().as_bytes());
        hasher.update(self.content_hash.as_bytes());
        hasher.finalize().into()
    }
}

/// The RFC 6962 Merkle tree hash of `leaves` (lowercase hex).
pub fn merkle_root(leaves: &[[u8; 32]]) -> String {
    fn node(leaves: &[[u8; 32]]) -> [u8; 32] {
        match leaves {
            [] => Sha256::digest([]).into(),
            [leaf] => *leaf,
            _ => {
                // The largest power of two smaller than the number of leaves.
                let split = 1usize << (usize::BITS - 1 - (leaves.len() - 1).leading_zeros());
                let mut hasher = Sha256::new();
                hasher.update([1u8]);
                hasher.update(node(&leaves[..split]));
                hasher.update(node(&leaves[split..]));
                hasher.finalize().into()
            }
        }
    }
    hex(&node(leaves))
}

/// A seal over a run of the workspace's log, chained to the one before.
///
/// The fields are private: a checkpoint is made by [`Checkpoint::seal`] or
/// decoded by a provider ([`provider::decode_checkpoint`](crate::provider::decode_checkpoint)),
/// whose digest `verify` recomputes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    workspace_id: WorkspaceId,
    seq: u64,
    first_index: u64,
    record_count: u64,
    root: String,
    previous: Option<String>,
    created_at: Timestamp,
    digest: String,
}

/// A checkpoint's fields as a provider stored them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointParts {
    /// The tenant.
    pub workspace_id: WorkspaceId,
    /// 1, 2, 3, … without gaps.
    pub seq: u64,
    /// The leaf index of its first record.
    pub first_index: u64,
    /// How many records it seals.
    pub record_count: u64,
    /// The Merkle root of its entries.
    pub root: String,
    /// The digest of the checkpoint before it.
    pub previous: Option<String>,
    /// When it was sealed.
    pub created_at: Timestamp,
    /// Its digest as stored.
    pub digest: String,
}

#[derive(Serialize)]
struct CheckpointBody<'a> {
    workspace_id: &'a WorkspaceId,
    seq: u64,
    first_index: u64,
    record_count: u64,
    root: &'a str,
    previous: Option<&'a str>,
    created_at: Timestamp,
}

impl Checkpoint {
    pub(crate) fn decoded(parts: CheckpointParts) -> Self {
        let CheckpointParts { workspace_id, seq, first_index, record_count, root, previous, created_at, digest } =
            parts;
        Self { workspace_id, seq, first_index, record_count, root, previous, created_at, digest }
    }

    /// The tenant.
    pub fn workspace_id(&self) -> &WorkspaceId {
        &self.workspace_id
    }

    /// 1, 2, 3, … without gaps.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The leaf index of its first record.
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// How many records it seals (at least one).
    pub fn record_count(&self) -> u64 {
        self.record_count
    }

    /// [`merkle_root`] of the sealed entries' leaf hashes, in index order.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The digest of checkpoint `seq - 1` (none for the first).
    pub fn previous(&self) -> Option<&str> {
        self.previous.as_deref()
    }

    /// When it was sealed.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// SHA-256 over the RFC 8785 encoding of every field above.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Seals `records` (in log order) as the successor of `previous` (none
    /// for the first checkpoint). Returns the checkpoint and its entries.
    pub fn seal(
        previous: Option<&Checkpoint>,
        workspace: &WorkspaceId,
        records: &[HistoryRecord],
        created_at: Timestamp,
    ) -> Result<(Checkpoint, Vec<SealEntry>)> {
        if records.is_empty() {
            return Err(GovernanceError::validation("records", ValidationProblem::Empty));
        }
        crate::validate::list_len("records", records.len(), MAX_CHECKPOINT_RECORDS)?;
        for record in records {
            record.check()?;
            if record.workspace_id() != workspace {
                return Err(GovernanceError::validation(
                    "records.workspace_id",
                    ValidationProblem::Inconsistent("a checkpoint seals one workspace"),
                ));
            }
        }
        let seq = previous.map_or(1, |p| p.seq + 1);
        let first_index = previous.map_or(0, Checkpoint::next_index);
        let entries: Vec<SealEntry> = records
            .iter()
            .zip(first_index..)
            .map(|(record, index)| SealEntry {
                index,
                record_id: record.id(),
                content_hash: record.content_hash().to_owned(),
                checkpoint: seq,
            })
            .collect();
        let mut checkpoint = Checkpoint {
            workspace_id: workspace.clone(),
            seq,
            first_index,
            record_count: records.len() as u64,
            root: merkle_root(&entries.iter().map(SealEntry::leaf_hash).collect::<Vec<_>>()),
            previous: previous.map(|p| p.digest.clone()),
            created_at,
            digest: String::new(),
        };
        checkpoint.digest = checkpoint.compute_digest()?;
        Ok((checkpoint, entries))
    }

    /// The leaf index the next checkpoint starts at.
    pub fn next_index(&self) -> u64 {
        self.first_index + self.record_count
    }

    /// Recomputes the digest from the fields.
    pub fn compute_digest(&self) -> Result<String> {
        canonical_sha256(
            "checkpoint",
            &CheckpointBody {
                workspace_id: &self.workspace_id,
                seq: self.seq,
                first_index: self.first_index,
                record_count: self.record_count,
                root: &self.root,
                previous: self.previous.as_deref(),
                created_at: self.created_at,
            },
        )
    }

    /// What to keep outside the database to detect a deleted tail later.
    pub fn anchor(&self) -> Anchor {
        Anchor { workspace_id: self.workspace_id.clone(), seq: self.seq, digest: self.digest.clone() }
    }
}

/// The latest checkpoint's identity, exported and kept outside the database
/// (a ticket, a log pipeline, a signed object): a store that no longer holds
/// this checkpoint, or holds another one at its place, lost its tail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// The tenant.
    pub workspace_id: WorkspaceId,
    /// The checkpoint's sequence number.
    pub seq: u64,
    /// The checkpoint's digest.
    pub digest: String,
}

/// Checks a checkpoint and its entries the same way on every provider, and
/// that it extends `latest` (the workspace's newest stored checkpoint).
///
/// A checkpoint at a taken `seq` is [`AlreadyExists`](GovernanceError::AlreadyExists):
/// another sealer got there first. Anything else inconsistent is a
/// validation error and nothing is written.
pub fn validate_checkpoint(checkpoint: &Checkpoint, entries: &[SealEntry], latest: Option<&Checkpoint>) -> Result<()> {
    let inconsistent = |field: &'static str, why: &'static str| {
        Err(GovernanceError::validation(field, ValidationProblem::Inconsistent(why)))
    };
    validate_timestamp("checkpoint.created_at", checkpoint.created_at)?;
    crate::validate::list_len("entries", entries.len(), MAX_CHECKPOINT_RECORDS)?;
    if let Some(latest) = latest
        && latest.compute_digest()? != latest.digest
    {
        // Extending it would chain new seals onto a rewritten tail.
        return inconsistent("checkpoint.previous", "the latest stored checkpoint does not match its digest");
    }
    if let Some(latest) = latest
        && latest.seq >= checkpoint.seq
    {
        return Err(GovernanceError::AlreadyExists {
            kind: EntityKind::Checkpoint,
            workspace: checkpoint.workspace_id.clone(),
            id: checkpoint.seq.to_string(),
        });
    }
    if checkpoint.seq != latest.map_or(1, |l| l.seq + 1)
        || checkpoint.previous.as_deref() != latest.map(|l| l.digest.as_str())
        || checkpoint.first_index != latest.map_or(0, Checkpoint::next_index)
    {
        return inconsistent("checkpoint.previous", "does not extend the latest checkpoint");
    }
    if entries.is_empty() || checkpoint.record_count != entries.len() as u64 {
        return inconsistent("checkpoint.record_count", "does not match the entries");
    }
    let in_order = entries
        .iter()
        .zip(checkpoint.first_index..)
        .all(|(entry, index)| entry.index == index && entry.checkpoint == checkpoint.seq);
    if !in_order {
        return inconsistent("entries.index", "entries must be the checkpoint's indices, in order");
    }
    if merkle_root(&entries.iter().map(SealEntry::leaf_hash).collect::<Vec<_>>()) != checkpoint.root {
        return inconsistent("checkpoint.root", "does not match the entries");
    }
    if checkpoint.compute_digest()? != checkpoint.digest {
        return inconsistent("checkpoint.digest", "does not match the checkpoint");
    }
    Ok(())
}

/// A stored history row that does not decode into a record (a column holds
/// a value this library never writes): integrity reads report it instead of
/// failing, so `verify` can name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    /// The row's id.
    pub id: RecordId,
    /// The row's creation time (its paging position).
    pub created_at: Timestamp,
    /// What does not decode.
    pub problem: String,
}

/// A history row as an integrity read returns it: decoded (its hash as
/// stored, not yet checked) or unreadable.
pub type ReadRecord = std::result::Result<HistoryRecord, Unreadable>;

/// The paging position of a row an integrity read returned.
pub fn position_of(row: &ReadRecord) -> Position {
    match row {
        Ok(record) => Position::of_record(record),
        Err(unreadable) => Position { created_at: unreadable.created_at, id: unreadable.id.as_uuid() },
    }
}

/// A sealed entry with the row it names (`None` when no such row is stored).
pub type SealedRecord = (SealEntry, Option<ReadRecord>);

/// The insert-only storage of checkpoints and seal entries, which every
/// provider offers next to its history. There is no update and no delete;
/// SQL providers also refuse them in the database.
#[async_trait]
pub trait IntegrityStore: Send + Sync {
    /// Up to `limit` rows of the workspace that no checkpoint seals yet, in
    /// `(created_at, id)` order after `after`; a row that does not decode is
    /// returned as [`Unreadable`], not as an error.
    async fn unsealed_history(
        &self,
        workspace: &WorkspaceId,
        after: Option<Position>,
        limit: u32,
    ) -> Result<Vec<ReadRecord>>;

    /// Stores a checkpoint and the entries it seals, atomically, after
    /// [`validate_checkpoint`] against the latest stored checkpoint. A taken
    /// `seq`, or a record that is already sealed, is
    /// [`AlreadyExists`](GovernanceError::AlreadyExists) and nothing is written.
    async fn append_checkpoint(&self, checkpoint: &Checkpoint, entries: &[SealEntry]) -> Result<()>;

    /// Up to `limit` checkpoints with `seq > after`, in `seq` order.
    async fn checkpoints(&self, workspace: &WorkspaceId, after: u64, limit: u32) -> Result<Vec<Checkpoint>>;

    /// The checkpoint with the highest `seq`, if any.
    async fn latest_checkpoint(&self, workspace: &WorkspaceId) -> Result<Option<Checkpoint>>;

    /// Up to `limit` seal entries with `index >= from`, in index order, each
    /// with its row (`None` when it is no longer stored, [`Unreadable`] when
    /// it does not decode).
    async fn sealed_records(&self, workspace: &WorkspaceId, from: u64, limit: u32) -> Result<Vec<SealedRecord>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(n: u8) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update([0u8, n]);
        hasher.finalize().into()
    }

    fn pair(a: [u8; 32], b: [u8; 32]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update([1u8]);
        hasher.update(a);
        hasher.update(b);
        hasher.finalize().into()
    }

    #[test]
    fn merkle_root_follows_rfc_6962_splits() {
        let l: Vec<[u8; 32]> = (0..5).map(leaf).collect();
        assert_eq!(merkle_root(&[]), hex(&Sha256::digest([])));
        assert_eq!(merkle_root(&l[..1]), hex(&l[0]));
        assert_eq!(merkle_root(&l[..2]), hex(&pair(l[0], l[1])));
        // Three leaves split 2 + 1; four 2 + 2; five 4 + 1; seven 4 + 3.
        assert_eq!(merkle_root(&l[..3]), hex(&pair(pair(l[0], l[1]), l[2])));
        let four = pair(pair(l[0], l[1]), pair(l[2], l[3]));
        assert_eq!(merkle_root(&l[..4]), hex(&four));
        assert_eq!(merkle_root(&l), hex(&pair(four, l[4])));
        let m: Vec<[u8; 32]> = (0..7).map(leaf).collect();
        let three = pair(pair(m[4], m[5]), m[6]);
        assert_eq!(merkle_root(&m), hex(&pair(pair(pair(m[0], m[1]), pair(m[2], m[3])), three)));
    }
}
