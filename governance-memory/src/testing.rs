//! Direct mutation of stored data, bypassing every check: for tamper-evidence
//! tests only (feature `testing`). A real attacker with database access has
//! the same power; `verify` must catch what these calls do.

use governance_abstractions::{Checkpoint, HistoryRecord, Position, RecordId, WorkspaceId};

use crate::{MemoryStore, Workspace};

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
    /// Changes a stored record in place (its hash is left as it was).
    pub fn edit_record(&mut self, id: RecordId, f: impl FnOnce(&mut HistoryRecord)) -> bool {
        let position = self.ws.record_positions.get(&id).copied();
        position.and_then(|p| self.ws.records.get_mut(&p)).map(f).is_some()
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
        self.ws.record_positions.insert(record.id, Position::of_record(&record));
        self.ws.records.insert(Position::of_record(&record), record);
    }

    /// Changes a stored checkpoint in place.
    pub fn edit_checkpoint(&mut self, seq: u64, f: impl FnOnce(&mut Checkpoint)) -> bool {
        self.ws.checkpoints.iter_mut().find(|c| c.seq == seq).map(f).is_some()
    }

    /// Removes a checkpoint (its seal entries stay).
    pub fn delete_checkpoint(&mut self, seq: u64) -> bool {
        let before = self.ws.checkpoints.len();
        self.ws.checkpoints.retain(|c| c.seq != seq);
        before != self.ws.checkpoints.len()
    }

    /// Removes the seal entries of checkpoint `seq`.
    pub fn delete_seals_of(&mut self, seq: u64) {
        self.ws.seals.retain(|e| e.checkpoint != seq);
    }
}
