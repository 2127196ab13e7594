//! Outages in front of a real store, for the failure-policy cases: the
//! provider behind is the real one, only its reachability is switched.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use governance_abstractions::{GovernanceError, HistoryRecord, HistoryWriter, Result, Stored};

/// A [`HistoryWriter`] that forwards to a real store until it is unplugged.
pub struct Unplugged {
    inner: Arc<dyn HistoryWriter>,
    down: AtomicBool,
    /// After this many successful appends, each further append still
    /// reaches the store but never returns (a process killed mid-call).
    stall_after: AtomicUsize,
    appends: AtomicUsize,
}

impl Unplugged {
    /// Forwards to `inner`, reachable.
    pub fn new(inner: Arc<dyn HistoryWriter>) -> Self {
        Self {
            inner,
            down: AtomicBool::new(false),
            stall_after: AtomicUsize::new(usize::MAX),
            appends: AtomicUsize::new(0),
        }
    }

    /// Makes every call fail as if the server did not answer (or answer again).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// After `appends` more successful appends, further appends are stored
    /// but never return.
    pub fn stall_after(&self, appends: usize) {
        self.appends.store(0, Ordering::SeqCst);
        self.stall_after.store(appends, Ordering::SeqCst);
    }

    /// Appends that reached the store since the last [`stall_after`](Self::stall_after).
    pub fn appends(&self) -> usize {
        self.appends.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl HistoryWriter for Unplugged {
    async fn append_history(&self, records: &[HistoryRecord]) -> Result<Vec<Stored<HistoryRecord>>> {
        if self.down.load(Ordering::SeqCst) {
            let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused (unplugged)");
            return Err(GovernanceError::Unavailable { source: Box::new(refused) });
        }
        let stored = self.inner.append_history(records).await?;
        let done = self.appends.fetch_add(1, Ordering::SeqCst) + 1;
        if done > self.stall_after.load(Ordering::SeqCst) {
            // Stored, but the caller never hears back.
            std::future::pending::<()>().await;
        }
        Ok(stored)
    }
}
