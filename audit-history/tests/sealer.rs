//! The sealer against a rival that wins the race for a sequence number.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use audit_history::{Sealer, verify};
use governance_abstractions::{
    Actor, Checkpoint, Decision, Evidence, HistoryRecord, HistoryWriter, IntegrityStore, Position, ReadRecord, Result,
    SealEntry, SealedRecord, Timestamp, WorkspaceId,
};
use governance_memory::MemoryStore;

/// Lets a rival sealer commit a checkpoint just before the first append.
struct Rival {
    inner: MemoryStore,
    struck: AtomicBool,
}

#[async_trait]
impl IntegrityStore for Rival {
    async fn unsealed_history(&self, ws: &WorkspaceId, after: Option<Position>, limit: u32) -> Result<Vec<ReadRecord>> {
        self.inner.unsealed_history(ws, after, limit).await
    }

    async fn append_checkpoint(&self, checkpoint: &Checkpoint, entries: &[SealEntry]) -> Result<()> {
        if !self.struck.swap(true, Ordering::SeqCst) {
            let ws = checkpoint.workspace_id();
            let first_two: Vec<HistoryRecord> =
                self.inner.unsealed_history(ws, None, 2).await?.into_iter().map(|row| row.expect("readable")).collect();
            let (theirs, their_entries) = Checkpoint::seal(None, ws, &first_two, Timestamp::now())?;
            self.inner.append_checkpoint(&theirs, &their_entries).await?;
        }
        self.inner.append_checkpoint(checkpoint, entries).await
    }

    async fn checkpoints(&self, ws: &WorkspaceId, after: u64, limit: u32) -> Result<Vec<Checkpoint>> {
        self.inner.checkpoints(ws, after, limit).await
    }

    async fn latest_checkpoint(&self, ws: &WorkspaceId) -> Result<Option<Checkpoint>> {
        self.inner.latest_checkpoint(ws).await
    }

    async fn sealed_records(&self, ws: &WorkspaceId, from: u64, limit: u32) -> Result<Vec<SealedRecord>> {
        self.inner.sealed_records(ws, from, limit).await
    }
}

#[tokio::test]
async fn a_sealer_that_loses_the_race_rereads_and_seals_the_rest() {
    let inner = MemoryStore::new();
    let ws = WorkspaceId::new("race").unwrap();
    for n in 0..7 {
        let evidence = Evidence::decision(ws.clone(), Actor::user("a"), "doc", format!("op{n}"), Decision::Denied);
        inner.append_history(&[HistoryRecord::new(evidence, Timestamp::now()).unwrap()]).await.unwrap();
    }
    let store = Arc::new(Rival { inner: inner.clone(), struck: AtomicBool::new(false) });
    let report = Sealer::new(store.clone()).checkpoint_size(3).seal(&ws).await.unwrap();
    assert_eq!(report.records, 5, "the rival sealed two");
    assert_eq!(
        report.checkpoints.iter().map(Checkpoint::seq).collect::<Vec<_>>(),
        [2, 3],
        "ours chain after the rival's"
    );
    let checked = verify(&inner, &ws, report.anchor().as_ref()).await.unwrap();
    assert!(checked.is_clean() && checked.sealed == 7 && checked.unsealed == 0, "{checked:?}");
}
