//! Replays spooled evidence into the store once it answers again.

use std::sync::Arc;
use std::time::Duration;

use governance_abstractions::{HistoryRecord, HistoryWriter, Stored};

use crate::error::{AuditError, is_rejection};
use crate::metrics::{REJECTED, RELAY_FAILURES, REPLAYED, count};
use crate::spool::{Pending, Spool};

/// What one [`Relay::drain`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Records the store took now.
    pub stored: u64,
    /// Records the store already had (an earlier drain stored them before a
    /// crash or kill kept it from saving its progress).
    pub already_stored: u64,
    /// Records the store refused for good, kept in `rejected.jsonl`.
    pub rejected: u64,
}

/// Moves spooled evidence into the store, in spool order, in batches of
/// one workspace. Progress is saved after each batch the store took, so a
/// relay killed at any point and started again stores every record exactly
/// once (the store treats an unchanged record as a replay).
#[derive(Clone)]
pub struct Relay {
    spool: Arc<Spool>,
    store: Arc<dyn HistoryWriter>,
    batch: usize,
    name: Arc<str>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("spool", &self.spool.dir()).field("name", &self.name).finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay from `spool` into `store` (batches of up to 100 records).
    pub fn new(spool: Arc<Spool>, store: Arc<dyn HistoryWriter>) -> Self {
        Self { spool, store, batch: 100, name: Arc::from("default") }
    }

    /// At most `records` per store call (1 ..= 1000).
    pub fn batch_size(mut self, records: usize) -> Self {
        self.batch = records.clamp(1, governance_abstractions::limits::MAX_BATCH_RECORDS);
        self
    }

    /// The `recorder` label of this relay's metrics and logs.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Arc::from(name);
        self
    }

    /// Stores everything spooled, until the spool is empty. Stops at the
    /// first store failure (the records stay spooled) with
    /// [`AuditError::Store`].
    ///
    /// One drain at a time per spool: a second one waits for the first.
    pub async fn drain(&self) -> Result<DrainReport, AuditError> {
        let _one_at_a_time = self.spool.relay.lock().await;
        let mut report = DrainReport::default();
        loop {
            let spool = Arc::clone(&self.spool);
            let batch = self.batch;
            let pending: Pending = blocking(move || spool.next_batch(batch)).await?;
            if pending.records.is_empty() {
                return Ok(report);
            }
            // One workspace per store call: split the batch where the workspace changes.
            for group in pending.records.chunk_by(|a, b| a.workspace_id() == b.workspace_id()) {
                self.store_group(group, &mut report).await?;
            }
            let spool = Arc::clone(&self.spool);
            if !blocking(move || spool.commit(&pending)).await? {
                // Someone else saved progress since this batch was read (a
                // drain cancelled mid-commit): read again from theirs.
                continue;
            }
        }
    }

    /// Drains every `interval` until `shutdown` completes; store failures are
    /// logged and counted, and the next round tries again.
    pub async fn run(self, interval: Duration, shutdown: impl std::future::Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            if let Err(error) = self.drain().await {
                tracing::warn!(recorder = %self.name, error = %error, "relay round failed; evidence stays spooled");
            }
            if tokio::time::timeout(interval, &mut shutdown).await.is_ok() {
                return;
            }
        }
    }

    async fn store_group(&self, group: &[HistoryRecord], report: &mut DrainReport) -> Result<(), AuditError> {
        match self.store.append_history(group).await {
            Ok(stored) => {
                tally(&stored, report);
                count(REPLAYED, &self.name, group.len() as u64);
                Ok(())
            }
            // One record spoils the batch: find it, keep it aside, store the rest.
            Err(error) if is_rejection(&error) && group.len() > 1 => {
                for record in group {
                    Box::pin(self.store_group(std::slice::from_ref(record), report)).await?;
                }
                Ok(())
            }
            Err(error) if is_rejection(&error) => {
                let record = &group[0];
                tracing::error!(
                    recorder = %self.name, workspace = %record.workspace_id(), record = %record.id(), error = %error,
                    "the store refused spooled evidence for good; kept in rejected.jsonl"
                );
                let spool = Arc::clone(&self.spool);
                let (record, reason) = (record.clone(), error.to_string());
                blocking(move || spool.reject(&record, &reason)).await?;
                count(REJECTED, &self.name, 1);
                report.rejected += 1;
                Ok(())
            }
            Err(error) => {
                count(RELAY_FAILURES, &self.name, 1);
                tracing::warn!(recorder = %self.name, error = %error, "relay: store unavailable; evidence stays spooled");
                Err(AuditError::Store(error))
            }
        }
    }
}

fn tally(stored: &[Stored<HistoryRecord>], report: &mut DrainReport) {
    for record in stored {
        match record {
            Stored::New(_) => report.stored += 1,
            Stored::Replayed(_) => report.already_stored += 1,
        }
    }
}

/// Runs spool file I/O off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AuditError> + Send + 'static,
) -> Result<T, AuditError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join| Err(AuditError::spool("spool task")(std::io::Error::other(join))))
}
