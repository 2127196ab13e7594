//! Direct mutation of stored data, bypassing every check, and the
//! conformance suite's factory for this provider: for tests only (feature
//! `testing`). A real attacker with database access has the same power;
//! `verify` must catch what these calls do.
//!
//! ```
//! mod memory {
//!     conformance_tests::conformance_suite!(governance_memory::testing::MemoryFactory);
//! }
//! # fn main() {}
//! ```

use governance_abstractions::provider::{
    CheckpointParts, StoredRequest, decode_checkpoint, decode_record, decode_request,
};
use governance_abstractions::{Evidence, HistoryRecord, Position, RecordId, RequestId, SealEntry, WorkspaceId};

use crate::{MemoryStore, Workspace};

mod conformance;
pub use conformance::MemoryFactory;

/// A handle on one workspace's raw storage.
pub struct Tampering<'a> {
    ws: &'a mut Workspace,
}

impl MemoryStore {
    /// Runs `f` over the raw storage of `workspace`, under its write lock.
    pub fn tamper<T>(&self, workspace: &WorkspaceId, f: impl FnOnce(&mut Tampering<'_>) -> T) -> T {
        self.write(workspace, |ws| f(&mut Tampering { ws }))
    }
}

impl Tampering<'_> {
    /// Changes a stored record's evidence in place (its hash is left as it was).
    pub fn edit_record(&mut self, id: RecordId, f: impl FnOnce(&mut Evidence)) -> bool {
        self.rewrite_record(id, |evidence, _| f(evidence))
    }

    /// Changes a stored record's evidence and stored hash in place.
    pub fn rewrite_record(&mut self, id: RecordId, f: impl FnOnce(&mut Evidence, &mut String)) -> bool {
        let Some(position) = self.ws.record_positions.get(&id).copied() else { return false };
        let Some(record) = self.ws.records.get_mut(&position) else { return false };
        let (created_at, mut hash) = (record.created_at(), record.content_hash().to_owned());
        let mut evidence = record.evidence().clone();
        f(&mut evidence, &mut hash);
        *record = decode_record(id, created_at, evidence, hash);
        true
    }

    /// Changes a stored request's fields in place (its digest is left as it
    /// was unless `f` changes it).
    pub fn edit_request(&mut self, id: RequestId, f: impl FnOnce(&mut StoredRequest)) -> bool {
        let Some(position) = self.ws.request_positions.get(&id).copied() else { return false };
        let Some(request) = self.ws.requests.get_mut(&position) else { return false };
        let mut stored = StoredRequest::from(&*request);
        f(&mut stored);
        match decode_request(stored) {
            Ok(decoded) => {
                *request = decoded;
                true
            }
            Err(_) => false,
        }
    }

    /// Removes a stored record.
    pub fn delete_record(&mut self, id: RecordId) -> bool {
        let Some(position) = self.ws.record_positions.remove(&id) else { return false };
        self.ws.records_by_request.values_mut().for_each(|positions| positions.retain(|p| *p != position));
        self.ws.record_keys.retain(|_, record| *record != id);
        self.ws.records.remove(&position).is_some()
    }

    /// Stores a record as is, without validation.
    pub fn insert_record(&mut self, record: HistoryRecord) {
        self.ws.record_positions.insert(record.id(), Position::of_record(&record));
        self.ws.records.insert(Position::of_record(&record), record);
    }

    /// Changes a stored checkpoint in place (its digest is left as it was
    /// unless `f` changes it).
    pub fn edit_checkpoint(&mut self, seq: u64, f: impl FnOnce(&mut CheckpointParts)) -> bool {
        let Some(checkpoint) = self.ws.checkpoints.iter_mut().find(|c| c.seq() == seq) else { return false };
        let mut parts = CheckpointParts {
            workspace_id: checkpoint.workspace_id().clone(),
            seq: checkpoint.seq(),
            first_index: checkpoint.first_index(),
            record_count: checkpoint.record_count(),
            root: checkpoint.root().to_owned(),
            previous: checkpoint.previous().map(str::to_owned),
            created_at: checkpoint.created_at(),
            digest: checkpoint.digest().to_owned(),
        };
        f(&mut parts);
        *checkpoint = decode_checkpoint(parts);
        true
    }

    /// Changes a stored seal entry in place.
    pub fn edit_seal(&mut self, index: u64, f: impl FnOnce(&mut SealEntry)) -> bool {
        self.ws.seals.iter_mut().find(|e| e.index == index).map(f).is_some()
    }

    /// Removes a checkpoint (its seal entries stay).
    pub fn delete_checkpoint(&mut self, seq: u64) -> bool {
        let before = self.ws.checkpoints.len();
        self.ws.checkpoints.retain(|c| c.seq() != seq);
        before != self.ws.checkpoints.len()
    }

    /// Removes the seal entries of checkpoint `seq`.
    pub fn delete_seals_of(&mut self, seq: u64) {
        self.ws.seals.retain(|e| e.checkpoint != seq);
    }
}
