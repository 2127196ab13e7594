//! The providers this workspace ships, as suite factories. The runner tries
//! them in this order: embedded ones first.

use std::sync::Arc;

use async_trait::async_trait;
use governance_memory::MemoryStore;

use crate::harness::{Capabilities, Capability, SetupError, StoreFactory, TestStore};

/// The in-memory provider: a new store per case.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryFactory;

#[async_trait]
impl StoreFactory for MemoryFactory {
    fn name(&self) -> &str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all().without(
            Capability::DatabaseEnforcedAppendOnly,
            "in-process store: history has no update or delete path at all",
        )
    }

    async fn open(&self) -> Result<TestStore, SetupError> {
        Ok(TestStore::new(Arc::new(MemoryStore::new())))
    }
}

/// Every provider factory, embedded ones first.
pub fn all() -> Vec<Arc<dyn StoreFactory>> {
    vec![Arc::new(MemoryFactory)]
}
