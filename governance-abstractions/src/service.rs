//! The runtime service: a transition end to end over any store.

use std::sync::Arc;

use crate::lifecycle::{self, Action, Command, Transition};
use crate::{
    Actor, GovernanceError, GovernanceRequest, GovernanceStore, NewRequest, PageRequest, Principal, RequestFilter,
    RequestId, RequestStatus, Result, Stored, Timestamp, TransitionRule, WorkspaceId,
};

/// How many requests one expiry round reads.
const EXPIRY_BATCH: u32 = 100;

/// What one [`GovernanceService::expire_due`] sweep did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ExpiryReport {
    /// The requests this sweep expired.
    pub expired: Vec<RequestId>,
    /// Due requests that could not be expired, each with why (for example a
    /// stored state that does not match its digest); the sweep went on.
    pub refused: Vec<(RequestId, GovernanceError)>,
}

/// Performs lifecycle changes end to end: read → apply → conditional write
/// with history → on [`Conflict`](GovernanceError::Conflict), re-read and
/// re-apply, up to a bounded number of attempts.
///
/// A re-applied action that the new state no longer allows fails with its
/// [`InvalidTransition`](GovernanceError::InvalidTransition): a retry never
/// overwrites a concurrent change.
#[derive(Clone)]
pub struct GovernanceService {
    store: Arc<dyn GovernanceStore>,
    max_attempts: u32,
}

impl std::fmt::Debug for GovernanceService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GovernanceService").field("max_attempts", &self.max_attempts).finish_non_exhaustive()
    }
}

impl GovernanceService {
    /// Attempts per change by default (the first try plus four retries).
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

    /// A service over `store`.
    pub fn new(store: Arc<dyn GovernanceStore>) -> Self {
        Self { store, max_attempts: Self::DEFAULT_MAX_ATTEMPTS }
    }

    /// Sets the attempts per change (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn GovernanceStore> {
        &self.store
    }

    /// Creates a request (revision 1, status Created) with its creation record.
    /// Retrying with the same idempotency key and content returns the original.
    pub async fn create(&self, spec: NewRequest) -> Result<Stored<GovernanceRequest>> {
        let creation = lifecycle::create(spec, RequestId::new(), Timestamp::now())?;
        self.store.create_request(&creation).await
    }

    /// Applies `action` by `by` to request `id`, retrying on conflict.
    /// Returns the committed transition (new state and its records).
    ///
    /// `action` is an [`Action`], or a [`Command`] that also records a reason
    /// and metadata with the change.
    pub async fn apply(
        &self,
        workspace: &WorkspaceId,
        id: RequestId,
        by: &Principal,
        action: impl Into<Command>,
    ) -> Result<Transition> {
        let command = action.into();
        self.retrying(workspace, id, |current| lifecycle::apply_command(current, by, &command, Timestamp::now())).await
    }

    /// Marks `older` as superseded by `newer`: both in `workspace`, `newer`
    /// unfinished and for the same target.
    pub async fn supersede(
        &self,
        workspace: &WorkspaceId,
        older: RequestId,
        newer: RequestId,
        by: &Principal,
    ) -> Result<Transition> {
        self.supersede_noted(workspace, older, newer, by, None, None).await
    }

    /// [`supersede`](Self::supersede), recording a reason and metadata with
    /// the change (see [`Command`]).
    pub async fn supersede_noted(
        &self,
        workspace: &WorkspaceId,
        older: RequestId,
        newer: RequestId,
        by: &Principal,
        reason: Option<&str>,
        metadata: Option<&serde_json::Value>,
    ) -> Result<Transition> {
        // Both are read again on every attempt: the store commits only while
        // the successor is still at the state read here.
        let mut attempt = 1;
        loop {
            let successor = self.store.get_request(workspace, newer).await?;
            let current = self.store.get_request(workspace, older).await?;
            let transition = lifecycle::supersede_noted(&current, &successor, by, reason, metadata, Timestamp::now())?;
            match self.store.commit_transition(&transition).await {
                Ok(()) => return Ok(transition),
                Err(GovernanceError::Conflict { .. }) if attempt < self.max_attempts => attempt += 1,
                Err(error) => return Err(error),
            }
        }
    }

    /// Expires every non-terminal request of `workspace` whose `expires_at` ≤
    /// `now`, and reports which this call expired and which it could not.
    ///
    /// Safe with several sweepers at once: each request is expired by exactly
    /// one of them (the conditional write decides), the others skip it. A
    /// request that keeps conflicting with other writers is left for the next
    /// sweep. A request that cannot be expired for a reason of its own (its
    /// stored state does not match its digest, say) is reported in
    /// [`ExpiryReport::refused`] and the sweep goes on: one bad row never
    /// holds back the rest of the workspace. A store failure ends the sweep
    /// with that error.
    pub async fn expire_due(&self, workspace: &WorkspaceId, now: Timestamp) -> Result<ExpiryReport> {
        let sweeper = Principal::direct(Actor::system("governance.expiry"));
        let mut report = ExpiryReport::default();
        // The filter of `due_for_expiry`, paged: requests this sweep refused
        // stay due, and the next page starts after them.
        let filter = RequestFilter {
            statuses: RequestStatus::ALL.iter().copied().filter(|s| !s.is_terminal()).collect(),
            expires_by: Some(now),
            ..RequestFilter::default()
        };
        let mut page = PageRequest::first(EXPIRY_BATCH);
        loop {
            let due = self.store.query_requests(workspace, &filter, &page).await?;
            for request in &due.items {
                let expire = |current: &GovernanceRequest| lifecycle::apply(current, &sweeper, &Action::Expire, now);
                match self.retrying(workspace, request.id(), expire).await {
                    Ok(_) => report.expired.push(request.id()),
                    // Another sweeper (or a writer) finished it first.
                    Err(GovernanceError::InvalidTransition { rule: TransitionRule::Terminal, .. }) => {}
                    // Busy with other writers: left for the next sweep.
                    Err(GovernanceError::Conflict { .. }) => {}
                    Err(error @ (GovernanceError::Unavailable { .. } | GovernanceError::Backend { .. })) => {
                        return Err(error);
                    }
                    Err(error) => report.refused.push((request.id(), error)),
                }
            }
            match due.next {
                Some(cursor) if due.has_more => page = PageRequest::first(EXPIRY_BATCH).after(cursor),
                _ => return Ok(report),
            }
        }
    }

    /// Read → change → conditional commit; on conflict, again from the read.
    async fn retrying(
        &self,
        workspace: &WorkspaceId,
        id: RequestId,
        change: impl Fn(&GovernanceRequest) -> Result<Transition>,
    ) -> Result<Transition> {
        let mut attempt = 1;
        loop {
            let current = self.store.get_request(workspace, id).await?;
            let transition = change(&current)?;
            match self.store.commit_transition(&transition).await {
                Ok(()) => return Ok(transition),
                Err(GovernanceError::Conflict { .. }) if attempt < self.max_attempts => attempt += 1,
                Err(error) => return Err(error),
            }
        }
    }
}
