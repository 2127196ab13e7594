//! What the cluster tests share: where the clusters are (the variables the
//! `.ci/clusters` scripts print), and a store that counts what the service
//! retried.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use conformance_tests::faults::{Call, Hook, Hooked};
use governance_abstractions::{GovernanceError, GovernanceStore, HistoryRecord};

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
    fn note(&self, error: &GovernanceError) {
        let counter = match error {
            GovernanceError::Conflict { .. } => &self.conflicts,
            GovernanceError::Unavailable { .. } => &self.unavailable,
            error if error.is_retryable() => &self.retryable,
            _ => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
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

/// Counts the failures of a store's writes and request reads.
pub struct Counting(pub Arc<Failures>);

impl Counting {
    /// `inner`, its failures counted in `failures`.
    pub fn new(inner: Arc<dyn GovernanceStore>, failures: Arc<Failures>) -> Hooked<Counting> {
        Hooked::new(inner, Counting(failures))
    }
}

#[async_trait]
impl Hook for Counting {
    fn after(&self, call: Call<'_>, error: Option<&GovernanceError>) -> Option<GovernanceError> {
        let counted = matches!(
            call,
            Call::CreateRequest(_) | Call::CommitTransition(_) | Call::GetRequest(..) | Call::AppendHistory(_)
        );
        if let Some(error) = error.filter(|_| counted) {
            self.0.note(error);
        }
        None
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
