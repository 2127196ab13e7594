//! The conformance suite's view of this provider: a new store per case, and
//! its raw storage as the suite's tamper path.

use std::sync::Arc;

use async_trait::async_trait;
use conformance_tests::{
    Capabilities, Capability, CheckpointChange, SetupError, StoreFactory, TamperAccess, TestStore,
};
use governance_abstractions::{HistoryReader, RecordId, RequestId, WorkspaceId};

use crate::MemoryStore;

/// The in-memory provider for the conformance suite: a new store per case.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryFactory;

const HOLDS_TYPED_VALUES: &str = "in-process store: it holds typed values, so no row can fail to decode";

/// What a request's intent is changed to behind the store.
const EDITED_INTENT: &str = "edited behind the store";

#[async_trait]
impl StoreFactory for MemoryFactory {
    fn name(&self) -> &str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
            .without(
                Capability::DatabaseEnforcedAppendOnly,
                "in-process store: history has no update or delete path at all",
            )
            .without(Capability::CorruptRows, HOLDS_TYPED_VALUES)
    }

    async fn open(&self) -> Result<TestStore, SetupError> {
        let store = MemoryStore::new();
        Ok(TestStore::new(Arc::new(store.clone())).with_tamper(Arc::new(MemoryTamper(store))))
    }
}

/// The store's raw storage, changed directly.
struct MemoryTamper(MemoryStore);

#[async_trait]
impl TamperAccess for MemoryTamper {
    async fn alter_record(
        &self,
        workspace: &WorkspaceId,
        id: RecordId,
        content_hash: Option<String>,
    ) -> Result<(), String> {
        let found = self.0.tamper(workspace, |t| {
            t.rewrite_record(id, |evidence, hash| {
                evidence.reason = Some("tampered".into());
                if let Some(content_hash) = content_hash {
                    *hash = content_hash;
                }
            })
        });
        found.then_some(()).ok_or_else(|| format!("no record {id}"))
    }

    async fn reassign_actor(&self, workspace: &WorkspaceId, id: RecordId, actor_id: &str) -> Result<(), String> {
        let found = self.0.tamper(workspace, |t| {
            t.rewrite_record(id, |evidence, _| evidence.actor.actor = governance_abstractions::Actor::user(actor_id))
        });
        found.then_some(()).ok_or_else(|| format!("no record {id}"))
    }

    async fn delete_record(&self, workspace: &WorkspaceId, id: RecordId) -> Result<(), String> {
        self.0.tamper(workspace, |t| t.delete_record(id)).then_some(()).ok_or_else(|| format!("no record {id}"))
    }

    async fn copy_record(&self, from: &WorkspaceId, id: RecordId, to: &WorkspaceId) -> Result<(), String> {
        let record = self.0.get_history_record(from, id).await.map_err(|e| e.to_string())?;
        let mut evidence = record.evidence().clone();
        evidence.workspace_id = to.clone();
        let copy = governance_abstractions::provider::decode_record(
            record.id(),
            record.created_at(),
            evidence,
            record.content_hash().to_owned(),
        );
        self.0.tamper(to, |t| t.insert_record(copy));
        Ok(())
    }

    async fn alter_checkpoint(
        &self,
        workspace: &WorkspaceId,
        seq: u64,
        change: CheckpointChange,
    ) -> Result<(), String> {
        let found = self.0.tamper(workspace, |t| {
            t.edit_checkpoint(seq, |c| {
                c.root = change.root.unwrap_or_else(|| c.root.clone());
                c.previous = change.previous.or_else(|| c.previous.clone());
                c.digest = change.digest.unwrap_or_else(|| c.digest.clone());
            })
        });
        found.then_some(()).ok_or_else(|| format!("no checkpoint {seq}"))
    }

    async fn delete_checkpoint(&self, workspace: &WorkspaceId, seq: u64) -> Result<(), String> {
        self.0
            .tamper(workspace, |t| {
                t.delete_seals_of(seq);
                t.delete_checkpoint(seq)
            })
            .then_some(())
            .ok_or_else(|| format!("no checkpoint {seq}"))
    }

    async fn alter_request(&self, workspace: &WorkspaceId, id: RequestId) -> Result<(), String> {
        let found = self.0.tamper(workspace, |t| t.edit_request(id, |r| r.spec.intent = EDITED_INTENT.into()));
        found.then_some(()).ok_or_else(|| format!("no request {id}"))
    }

    async fn clear_state_digest(&self, workspace: &WorkspaceId, id: RequestId) -> Result<(), String> {
        let found = self.0.tamper(workspace, |t| t.edit_request(id, |r| r.state_digest = None));
        found.then_some(()).ok_or_else(|| format!("no request {id}"))
    }

    async fn alter_seal(&self, workspace: &WorkspaceId, index: u64, content_hash: String) -> Result<(), String> {
        let found = self.0.tamper(workspace, |t| t.edit_seal(index, |entry| entry.content_hash = content_hash));
        found.then_some(()).ok_or_else(|| format!("no seal entry {index}"))
    }

    async fn corrupt_record(&self, _: &WorkspaceId, _: RecordId) -> Result<(), String> {
        Err(HOLDS_TYPED_VALUES.into())
    }
}
