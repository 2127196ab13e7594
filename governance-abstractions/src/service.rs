//! The runtime service: a transition end to end over any store.

use std::sync::Arc;

use crate::lifecycle::{self, Action, Command, Transition};
use crate::{
    Actor, GovernanceError, GovernanceRequest, GovernanceStore, NewRequest, Principal, RequestId, Result, Stored,
    Timestamp, TransitionRule, WorkspaceId,
};

/// How many requests one expiry round reads.
const EXPIRY_BATCH: u32 = 100;

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
        // Both are read again on every attempt: the store commits only while
        // the successor is still at the state read here.
        let mut attempt = 1;
        loop {
            let successor = self.store.get_request(workspace, newer).await?;
            let current = self.store.get_request(workspace, older).await?;
            let transition = lifecycle::supersede(&current, &successor, by, Timestamp::now())?;
            match self.store.commit_transition(&transition).await {
                Ok(()) => return Ok(transition),
                Err(GovernanceError::Conflict { .. }) if attempt < self.max_attempts => attempt += 1,
                Err(error) => return Err(error),
            }
        }
    }

    /// Expires every non-terminal request of `workspace` whose `expires_at` ≤
    /// `now`, and returns the ids this call expired.
    ///
    /// Safe with several sweepers at once: each request is expired by exactly
    /// one of them (the conditional write decides), the others skip it. A
    /// request that keeps conflicting with other writers is left for the next
    /// sweep.
    pub async fn expire_due(&self, workspace: &WorkspaceId, now: Timestamp) -> Result<Vec<RequestId>> {
        let sweeper = Principal::direct(Actor::system("governance.expiry"));
        let mut expired = Vec::new();
        loop {
            let due = self.store.due_for_expiry(workspace, now, EXPIRY_BATCH).await?;
            let mut progressed = false;
            for request in &due {
                let expire = |current: &GovernanceRequest| lifecycle::apply(current, &sweeper, &Action::Expire, now);
                match self.retrying(workspace, request.id(), expire).await {
                    Ok(_) => {
                        expired.push(request.id());
                        progressed = true;
                    }
                    // Another sweeper (or a writer) finished it first.
                    Err(GovernanceError::InvalidTransition { rule: TransitionRule::Terminal, .. }) => progressed = true,
                    Err(GovernanceError::Conflict { .. }) => {}
                    Err(error) => return Err(error),
                }
            }
            if due.len() < EXPIRY_BATCH as usize || !progressed {
                return Ok(expired);
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
