//! Replays spooled evidence into the store once it answers again.

use std::ops::RangeInclusive;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use governance_abstractions::{GovernanceError, HistoryRecord, HistoryWriter, Stored};

use crate::deadline::within;
use crate::error::{AuditError, chain, is_outage, is_rejection, unavailable};
use crate::metrics::{REJECTED, RELAY_FAILURES, REPLAYED, STORE_TIMEOUTS, count};
use crate::spool::{Pending, Spool, Suspect};

/// How many records behind a suspected poison record the relay tries, to
/// see whether the store takes any.
const WITNESSES: usize = 5;

/// What one [`Relay::drain`] did, and what it found wrong with the spool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// Records the store took now.
    pub stored: u64,
    /// Records the store already had: an earlier drain stored them before a
    /// crash or kill kept it from saving its progress, a write the store
    /// committed after the recorder's deadline had passed, or a record the
    /// relay stored ahead of a possible poison record to tell the two apart.
    pub already_stored: u64,
    /// Records the store refused for good, kept in `rejected.jsonl`.
    pub rejected: u64,
    /// Acknowledged sequence numbers found missing from the spool (inclusive
    /// ranges): evidence lost to a disk or copy fault, also logged, counted
    /// and kept in `lost.jsonl` when found. Each range is reported by one
    /// drain only: the first to succeed after it was found (by
    /// [`Spool::open`], by this drain, or by an earlier drain that failed
    /// after finding it).
    pub lost: Vec<RangeInclusive<u64>>,
    /// Damaged spool lines moved to `quarantine.jsonl` since the last drain
    /// that succeeded (by this drain, by drains that failed, or by the
    /// [`Spool::open`] before them). Each line is quarantined once.
    pub quarantined: u64,
}

impl DrainReport {
    /// How many records the `lost` ranges name.
    pub fn lost_records(&self) -> u64 {
        self.lost.iter().map(|range| range.end() - range.start() + 1).sum()
    }
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
    deadline: Duration,
    poison_after: u32,
    poison_interval: Duration,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("spool", &self.spool.dir())
            .field("name", &self.name)
            .field("deadline", &self.deadline)
            .field("poison_after", &self.poison_after)
            .field("poison_interval", &self.poison_interval)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay from `spool` into `store` (batches of up to 100 records, a
    /// 10 s deadline per store call, poison records set aside after 3
    /// refusals at least 1 s apart).
    pub fn new(spool: Arc<Spool>, store: Arc<dyn HistoryWriter>) -> Self {
        Self {
            spool,
            store,
            batch: 100,
            name: Arc::from("default"),
            deadline: Duration::from_secs(10),
            poison_after: 3,
            poison_interval: Duration::from_secs(1),
        }
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

    /// How long one store call may take before the relay gives up on it and
    /// treats the store as unavailable (default 10 s). The batch stays
    /// spooled; if the store committed it anyway, the next drain's resend is
    /// a replay.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// How many drains in a row a record may be refused with the same
    /// non-retryable error before it is set aside in `rejected.jsonl`
    /// (default 3, at least 1).
    ///
    /// An attempt only counts when the store takes a record of the same
    /// workspace behind it at the same time: a store that refuses everything
    /// (a revoked grant, a missing table), or everything of one workspace, is
    /// a store problem, and holds the spool rather than emptying it into
    /// `rejected.jsonl`. And it only counts when at least
    /// [`poison_interval`](Self::poison_interval) has passed since the last
    /// counted one, so a transient refusal that lasts a few quick rounds
    /// does not set a record aside.
    pub fn poison_after(mut self, attempts: u32) -> Self {
        self.poison_after = attempts.max(1);
        self
    }

    /// How far apart the counted refusals of a suspected poison record must
    /// be (default 1 s): [`poison_after`](Self::poison_after) attempts span
    /// at least `poison_after - 1` times this. Refusals in between hold the
    /// record and are logged, but are not counted.
    pub fn poison_interval(mut self, interval: Duration) -> Self {
        self.poison_interval = interval;
        self
    }

    /// Stores everything spooled, until the spool is empty. Stops at the
    /// first store failure (the records stay spooled) with
    /// [`AuditError::Store`]: the store did not answer (within the
    /// deadline), answered with a retryable error, or refused a record that
    /// has not yet been refused [`poison_after`](Self::poison_after) times.
    ///
    /// One drain at a time per spool: a second one waits for the first.
    pub async fn drain(&self) -> Result<DrainReport, AuditError> {
        let _one_at_a_time = self.spool.relay.lock().await;
        let mut report = DrainReport::default();
        loop {
            let spool = Arc::clone(&self.spool);
            let batch = self.batch;
            let pending = Arc::new(blocking(move || spool.next_batch(batch)).await?);
            if pending.is_empty() {
                // Everything found since the last drain that succeeded (by
                // open, by this drain, or by drains that failed later on):
                // logged and counted when found, reported here, once.
                let found = self.spool.take_unreported();
                report.lost.extend(found.lost);
                report.quarantined += found.quarantined;
                return Ok(report);
            }
            if !pending.corrupt.is_empty() {
                // Copied out (and synced) before the offset passes them;
                // once only, however often the batch is read again.
                let (spool, read) = (Arc::clone(&self.spool), Arc::clone(&pending));
                blocking(move || spool.quarantine(&read.corrupt)).await?;
            }
            // One workspace per store call: split the batch where the workspace changes.
            let mut start = 0;
            for group in pending.records.chunk_by(|a, b| a.workspace_id() == b.workspace_id()) {
                self.store_group(&pending, start..start + group.len(), &mut report).await?;
                start += group.len();
            }
            let (spool, read) = (Arc::clone(&self.spool), Arc::clone(&pending));
            if !blocking(move || spool.commit(&read)).await? {
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

    /// One store call, within the deadline.
    async fn append(&self, records: &[HistoryRecord]) -> Result<Vec<Stored<HistoryRecord>>, GovernanceError> {
        match within(self.deadline, self.store.append_history(records)).await {
            Ok(result) => result,
            Err(elapsed) => {
                count(STORE_TIMEOUTS, &self.name, 1);
                Err(unavailable(elapsed))
            }
        }
    }

    /// Stores `pending.records[range]` (one workspace).
    async fn store_group(
        &self,
        pending: &Arc<Pending>,
        range: std::ops::Range<usize>,
        report: &mut DrainReport,
    ) -> Result<(), AuditError> {
        let group = &pending.records[range.clone()];
        let skipped = {
            let set_aside = self.spool.set_aside.lock().unwrap_or_else(PoisonError::into_inner);
            group.iter().filter(|r| set_aside.contains(&r.id())).count()
        };
        if skipped == group.len() {
            // In rejected.jsonl already: this batch is being read again.
            return Ok(());
        }
        if skipped > 0 {
            for i in range {
                Box::pin(self.store_group(pending, i..i + 1, report)).await?;
            }
            return Ok(());
        }
        let error = match self.append(group).await {
            Ok(stored) => {
                tally(&stored, report);
                count(REPLAYED, &self.name, group.len() as u64);
                self.clear_suspect(group);
                return Ok(());
            }
            Err(error) => error,
        };
        if is_outage(&error) || error.is_retryable() {
            count(RELAY_FAILURES, &self.name, 1);
            tracing::warn!(recorder = %self.name, error = %error, "relay: store unavailable; evidence stays spooled");
            return Err(AuditError::Store(error));
        }
        if group.len() > 1 {
            // One record may spoil the batch: find it, one at a time.
            for i in range {
                Box::pin(self.store_group(pending, i..i + 1, report)).await?;
            }
            return Ok(());
        }
        let record = &group[0];
        if is_rejection(&error) {
            return self.set_aside(record, &error, 1, report).await;
        }
        self.suspect(pending, range.start, error, report).await
    }

    /// `pending.records[at]` was refused with a non-retryable error that is
    /// not about its content as such (a constraint of the application's own,
    /// a backend limit): set it aside once refused the same way
    /// `poison_after` times while the store takes a record behind it.
    async fn suspect(
        &self,
        pending: &Arc<Pending>,
        at: usize,
        error: GovernanceError,
        report: &mut DrainReport,
    ) -> Result<(), AuditError> {
        let record = &pending.records[at];
        let held = |why: &str| {
            count(RELAY_FAILURES, &self.name, 1);
            tracing::warn!(
                recorder = %self.name, workspace = %record.workspace_id(), record = %record.id(), error = %error,
                "relay: the store refuses a spooled record; {why}"
            );
        };
        // The records of its workspace behind it, up to a few (another bad
        // record right behind must not hide that the store takes the rest),
        // then the first one after this batch. Only its own workspace: a
        // store that refuses a whole workspace (its partition, its grant)
        // is a store problem.
        let workspace = record.workspace_id().clone();
        let mut candidates: Vec<HistoryRecord> = pending.records[at + 1..]
            .iter()
            .filter(|r| *r.workspace_id() == workspace)
            .take(WITNESSES)
            .cloned()
            .collect();
        if candidates.len() < WITNESSES {
            let (spool, read) = (Arc::clone(&self.spool), Arc::clone(pending));
            candidates.extend(blocking(move || spool.record_after(&read, &workspace)).await?);
        }
        if candidates.is_empty() {
            held("it stays spooled (nothing of its workspace waits behind it, so it holds nothing back)");
            return Err(AuditError::Store(error));
        }
        let mut witnessed = false;
        for candidate in &candidates {
            // Stored ahead of its turn; when the relay reaches it, its
            // resend is a replay.
            if self.append(std::slice::from_ref(candidate)).await.is_ok() {
                witnessed = true;
                break;
            }
        }
        if !witnessed {
            held("so do the records of its workspace behind it: a store problem, not counted against the record");
            return Err(AuditError::Store(error));
        }
        let reason = chain(&error);
        let now = Instant::now();
        let (attempts, counted) = {
            let mut suspect = self.spool.suspect.lock().unwrap_or_else(PoisonError::into_inner);
            match suspect.as_mut() {
                Some(s) if s.record == record.id() && s.error == reason => {
                    let counted = now.duration_since(s.counted_at) >= self.poison_interval;
                    if counted {
                        s.attempts += 1;
                        s.counted_at = now;
                    }
                    (s.attempts, counted)
                }
                _ => {
                    *suspect =
                        Some(Suspect { record: record.id(), error: reason.clone(), attempts: 1, counted_at: now });
                    (1, true)
                }
            }
        };
        if !counted {
            held(&format!(
                "refused again within {} ms of the last counted refusal: not counted ({attempts} of {})",
                self.poison_interval.as_millis(),
                self.poison_after
            ));
            return Err(AuditError::Store(error));
        }
        if attempts < self.poison_after {
            held(&format!(
                "refusal {attempts} of {} before it is set aside; the records behind it wait",
                self.poison_after
            ));
            return Err(AuditError::Store(error));
        }
        self.set_aside(record, &error, attempts, report).await
    }

    /// Keeps `record` in `rejected.jsonl` with the error; the relay goes on.
    async fn set_aside(
        &self,
        record: &HistoryRecord,
        error: &GovernanceError,
        attempts: u32,
        report: &mut DrainReport,
    ) -> Result<(), AuditError> {
        tracing::error!(
            recorder = %self.name, workspace = %record.workspace_id(), record = %record.id(), error = %error, attempts,
            "the store refused spooled evidence for good; kept in rejected.jsonl"
        );
        let spool = Arc::clone(&self.spool);
        let (kept, reason) = (record.clone(), chain(error));
        blocking(move || spool.reject(&kept, &reason, attempts)).await?;
        self.clear_suspect(std::slice::from_ref(record));
        count(REJECTED, &self.name, 1);
        report.rejected += 1;
        Ok(())
    }

    fn clear_suspect(&self, done: &[HistoryRecord]) {
        let mut suspect = self.spool.suspect.lock().unwrap_or_else(PoisonError::into_inner);
        if suspect.as_ref().is_some_and(|s| done.iter().any(|r| r.id() == s.record)) {
            *suspect = None;
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
