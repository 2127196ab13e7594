//! What the cluster tests share: where the clusters are (the variables the
//! `.ci/clusters` scripts print), and a store that counts what the service
//! retried.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use governance_abstractions::{
    Checkpoint, Count, CountQuery, Creation, GovernanceError, GovernanceRequest, GovernanceStore, HistoryFilter,
    HistoryReader, HistoryRecord, HistoryWriter, IntegrityStore, Page, PageRequest, Position, ReadRecord, RecordId,
    RequestFilter, RequestId, RequestReader, RequestWriter, Result, SealEntry, SealedRecord, Stored, Transition,
    WorkspaceId,
};

/// Set to a true value, a cluster variable that is missing fails the test
/// instead of skipping it (CI sets it).
pub const REQUIRE_CLUSTERS_ENV: &str = "GOVERNANCE_REQUIRE_CLUSTERS";

/// The comma-separated URLs in `variable`; `None` (after printing why) when
/// it is unset and clusters are not required. Panics when it is unset and
/// they are, or when it holds fewer than `at_least` URLs.
pub fn cluster_urls(variable: &str, at_least: usize, script: &str) -> Option<Vec<String>> {
    let urls: Vec<String> = std::env::var(variable)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect();
    if urls.is_empty() {
        // Empty counts as unset, as for GOVERNANCE_REQUIRE_DATABASES.
        let required = std::env::var(REQUIRE_CLUSTERS_ENV).unwrap_or_default();
        let required = !required.trim().is_empty()
            && conformance_tests::runner::parse_flag(&required)
                .unwrap_or_else(|e| panic!("{REQUIRE_CLUSTERS_ENV}: {e}"));
        assert!(!required, "{variable} is unset and {REQUIRE_CLUSTERS_ENV} is set: start the cluster with {script}");
        eprintln!("SKIPPED: {variable} is unset (start a cluster with `{script} start` and export what it prints)");
        return None;
    }
    assert!(urls.len() >= at_least, "{variable} names {} URLs, at least {at_least} are needed", urls.len());
    Some(urls)
}

/// What one store saw fail, by kind: each is an attempt the service made
/// again (or gave up on).
#[derive(Debug, Default)]
pub struct Failures {
    /// `Conflict`: another writer committed first.
    pub conflicts: AtomicU64,
    /// A retryable `Backend` error (a Galera certification failure, a deadlock).
    pub retryable: AtomicU64,
    /// `Unavailable`: the server went away or refused the write.
    pub unavailable: AtomicU64,
    /// Anything else.
    pub other: AtomicU64,
}

impl Failures {
    fn note<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(error) = &result {
            let counter = match error {
                GovernanceError::Conflict { .. } => &self.conflicts,
                GovernanceError::Unavailable { .. } => &self.unavailable,
                error if error.is_retryable() => &self.retryable,
                _ => &self.other,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Every failure counted.
    pub fn total(&self) -> u64 {
        let (a, b, c, d) = self.counts();
        a + b + c + d
    }

    /// (conflicts, retryable backend errors, unavailable, other).
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (get(&self.conflicts), get(&self.retryable), get(&self.unavailable), get(&self.other))
    }
}

/// A store that counts the failures of its writes.
pub struct Counting {
    inner: Arc<dyn GovernanceStore>,
    pub failures: Arc<Failures>,
}

impl Counting {
    pub fn new(inner: Arc<dyn GovernanceStore>, failures: Arc<Failures>) -> Self {
        Self { inner, failures }
    }
}

#[async_trait]
impl RequestWriter for Counting {
    async fn create_request(&self, creation: &Creation) -> Result<Stored<GovernanceRequest>> {
        self.failures.note(self.inner.create_request(creation).await)
    }

    async fn commit_transition(&self, transition: &Transition) -> Result<()> {
        self.failures.note(self.inner.commit_transition(transition).await)
    }
}

#[async_trait]
impl RequestReader for Counting {
    async fn get_request(&self, workspace: &WorkspaceId, id: RequestId) -> Result<GovernanceRequest> {
        self.failures.note(self.inner.get_request(workspace, id).await)
    }

    async fn query_requests(
        &self,
        workspace: &WorkspaceId,
        filter: &RequestFilter,
        page: &PageRequest,
    ) -> Result<Page<GovernanceRequest>> {
        self.inner.query_requests(workspace, filter, page).await
    }
}

#[async_trait]
impl HistoryWriter for Counting {
    async fn append_history(&self, records: &[HistoryRecord]) -> Result<Vec<Stored<HistoryRecord>>> {
        self.failures.note(self.inner.append_history(records).await)
    }
}

#[async_trait]
impl HistoryReader for Counting {
    async fn get_history_record(&self, workspace: &WorkspaceId, id: RecordId) -> Result<HistoryRecord> {
        self.inner.get_history_record(workspace, id).await
    }

    async fn history_for_request(&self, workspace: &WorkspaceId, request: RequestId) -> Result<Vec<HistoryRecord>> {
        self.inner.history_for_request(workspace, request).await
    }

    async fn query_history(
        &self,
        workspace: &WorkspaceId,
        filter: &HistoryFilter,
        page: &PageRequest,
    ) -> Result<Page<HistoryRecord>> {
        self.inner.query_history(workspace, filter, page).await
    }

    async fn count_history(&self, workspace: &WorkspaceId, query: &CountQuery) -> Result<Vec<Count>> {
        self.inner.count_history(workspace, query).await
    }
}

#[async_trait]
impl IntegrityStore for Counting {
    async fn unsealed_history(
        &self,
        workspace: &WorkspaceId,
        after: Option<Position>,
        limit: u32,
    ) -> Result<Vec<ReadRecord>> {
        self.inner.unsealed_history(workspace, after, limit).await
    }

    async fn append_checkpoint(&self, checkpoint: &Checkpoint, entries: &[SealEntry]) -> Result<()> {
        self.inner.append_checkpoint(checkpoint, entries).await
    }

    async fn checkpoints(&self, workspace: &WorkspaceId, after: u64, limit: u32) -> Result<Vec<Checkpoint>> {
        self.inner.checkpoints(workspace, after, limit).await
    }

    async fn latest_checkpoint(&self, workspace: &WorkspaceId) -> Result<Option<Checkpoint>> {
        self.inner.latest_checkpoint(workspace).await
    }

    async fn sealed_records(&self, workspace: &WorkspaceId, from: u64, limit: u32) -> Result<Vec<SealedRecord>> {
        self.inner.sealed_records(workspace, from, limit).await
    }
}

/// The history invariant: one record per revision, 1..=revision, in order.
pub fn history_matches(revision: u64, history: &[HistoryRecord]) -> std::result::Result<(), String> {
    let revisions: Vec<u64> = history.iter().filter_map(|r| r.evidence().request.map(|q| q.revision)).collect();
    if revisions != (1..=revision).collect::<Vec<_>>() {
        return Err(format!("revision {revision}, history revisions {revisions:?}"));
    }
    Ok(())
}
