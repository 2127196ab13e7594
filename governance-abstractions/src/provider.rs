//! What only providers need: decoding stored rows back into domain values,
//! the columns a transition writes, the shared write and append helpers,
//! and the PostgreSQL schema both PostgreSQL providers create
//! ([`postgres_schema`]) and the write statements both send over it
//! ([`postgres_statements`]).
//!
//! Applications never need this module. A backend author uses it to turn rows
//! into [`GovernanceRequest`]s, [`HistoryRecord`]s and [`Checkpoint`]s (the
//! only way to build them outside the lifecycle) and to write exactly what
//! every other provider writes.

use serde_json::Value;

pub mod postgres_schema;
pub mod postgres_statements;

pub use crate::integrity::{CheckpointParts, validate_checkpoint};
pub use crate::query::rank_counts;
pub use crate::request::StoredRequest;
pub use crate::store::{
    AppendStorage, InsertAttempt, append_history_with, check_commit_target, check_successor, plan_history_append,
    validate_creation, validate_history_batch, validate_transition,
};
pub use crate::validate::restore_stored_json;
use crate::{
    Actor, ApprovalRequirement, Checkpoint, Evidence, GovernanceError, GovernanceRequest, HistoryRecord, PendingReason,
    Principal, RecordId, RequestId, RequestStatus, Timestamp,
};

/// What a principal's JSON column holds next to the `*_kind` and `*_id`
/// columns that already hold its actor: only the delegation chain, as
/// `{"delegation": […]}` (`{}` for direct action). Rows written before held
/// the whole principal there, `{"actor": …, "delegation": […]}`;
/// [`StoredPrincipal`] reads both. The new form is an object without an
/// `actor`, so a reader that expects the whole principal refuses it rather
/// than taking a delegator for the actor.
///
/// ```
/// use governance_abstractions::{Actor, Principal};
/// use governance_abstractions::provider::{StoredPrincipal, stored_delegation};
///
/// let principal = Principal::delegated(Actor::service("bot"), vec![Actor::user("ann")]);
/// let column = serde_json::to_string(&stored_delegation(&principal)).unwrap();
/// assert_eq!(column, r#"{"delegation":[{"kind":"user","id":"ann"}]}"#);
/// let stored: StoredPrincipal = serde_json::from_str(&column).unwrap();
/// assert_eq!(stored.into_principal("service", "bot".into()).unwrap(), principal);
/// ```
pub fn stored_delegation(principal: &Principal) -> StoredDelegation<'_> {
    StoredDelegation { delegation: &principal.delegation }
}

/// A principal's JSON column as written: see [`stored_delegation`].
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct StoredDelegation<'a> {
    // `{}` for direct action, the most common principal by far.
    #[serde(skip_serializing_if = "<[Actor]>::is_empty")]
    delegation: &'a [Actor],
}

/// A principal's JSON column as read: the delegation chain, and in rows
/// written before the delegation-only form, the actor too. See
/// [`stored_delegation`].
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredPrincipal {
    #[serde(default)]
    actor: Option<Actor>,
    #[serde(default)]
    delegation: Vec<Actor>,
}

impl StoredPrincipal {
    /// The principal, its actor from the `kind` and `id` columns. A row
    /// that holds the actor in its JSON column too (written before) must
    /// name the same one: the columns are what filters and counts read, so
    /// a row where they disagree was changed behind the store.
    pub fn into_principal(self, kind: &str, id: String) -> Result<Principal, String> {
        let actor = Actor { kind: kind.parse().map_err(|e: GovernanceError| e.to_string())?, id };
        match self.actor {
            Some(stored) if stored != actor => {
                Err(format!("the actor columns name {} but the stored principal {}", actor.key(), stored.key()))
            }
            _ => Ok(Principal { actor, delegation: self.delegation }),
        }
    }
}

/// How many times in all [`rerun_rolled_back`] runs a write.
pub const ROLLED_BACK_ATTEMPTS: usize = 3;

/// Runs `write`, a write in a transaction (or a single statement) the store
/// began itself, again when `rolled_back` says the server rolled the whole
/// of it back: a deadlock victim, a serialization failure, on Galera a
/// transaction aborted by another node's write or by DDL. Nothing of it
/// committed, so running it again is safe, and the rerun checks everything
/// the first run did: a lost compare-and-set comes back as the `Conflict`
/// it now is. Up to [`ROLLED_BACK_ATTEMPTS`] runs, a few milliseconds
/// apart (2–4 ms, then 4–8 ms, jittered); any other error, and the last
/// rolled-back one, is returned as it came. The runs are inside one store
/// call: one attempt of [`GovernanceService`](crate::GovernanceService)'s
/// retry policy may be up to three of them, and on PostgreSQL each
/// deadlock first costs the server's `deadlock_timeout` (1 s by default).
///
/// Never wrap a write in the caller's transaction: that transaction went
/// with it, and only the caller can run it again. Never count a lost
/// connection as rolled back: the commit may have happened.
///
/// ```
/// use governance_abstractions::GovernanceError;
/// use governance_abstractions::provider::rerun_rolled_back;
/// # block_on(async {
/// let runs = std::sync::atomic::AtomicUsize::new(0);
/// let rolled_back = |e: &GovernanceError| e.is_retryable();
/// let result = rerun_rolled_back(rolled_back, || async {
///     match runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
///         0 => Err(GovernanceError::backend(true, "deadlock victim")),
///         _ => Ok("written"),
///     }
/// })
/// .await;
/// assert_eq!(result.unwrap(), "written");
/// assert_eq!(runs.into_inner(), 2);
/// # });
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
pub async fn rerun_rolled_back<T, R, F, Fut>(rolled_back: R, write: F) -> Result<T, GovernanceError>
where
    R: Fn(&GovernanceError) -> bool,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, GovernanceError>>,
{
    use backon::BackoffBuilder;
    let mut pauses = backon::ExponentialBuilder::new()
        .with_min_delay(std::time::Duration::from_millis(2))
        .with_max_delay(std::time::Duration::from_millis(50))
        .with_jitter()
        .with_max_times(ROLLED_BACK_ATTEMPTS - 1)
        .build();
    loop {
        match write().await {
            Err(error) if rolled_back(&error) => match pauses.next() {
                Some(pause) => futures_timer::Delay::new(pause).await,
                None => return Err(error),
            },
            done => return done,
        }
    }
}

/// Rebuilds a request from its stored fields.
///
/// The stored state digest is kept as read; the lifecycle checks it against
/// the fields before computing a transition from the request, so a row
/// changed behind the store is refused rather than trusted. A row without a
/// digest (written before digests were stored) gets one computed from its
/// fields.
pub fn decode_request(stored: StoredRequest) -> Result<GovernanceRequest, GovernanceError> {
    GovernanceRequest::decoded(stored)
}

/// Rebuilds a history record from its stored fields, with its hash as stored.
///
/// Nothing is trusted: [`HistoryRecord::check`] compares the hash with the
/// content, and appending, sealing, `verify` and export all do.
pub fn decode_record(id: RecordId, created_at: Timestamp, evidence: Evidence, content_hash: String) -> HistoryRecord {
    HistoryRecord::decoded(id, created_at, evidence, content_hash)
}

/// Rebuilds a checkpoint from its stored fields, with its digest as stored
/// (`verify` recomputes it).
pub fn decode_checkpoint(parts: CheckpointParts) -> Checkpoint {
    Checkpoint::decoded(parts)
}

/// The request columns a transition writes, by their names in every
/// provider's schema. Everything else is fixed at creation and never
/// written again.
pub const TRANSITION_COLUMNS: &[&str] = &[
    "status",
    "pending_reason",
    "approvals",
    "expected_state_version",
    "superseded_by",
    "metadata",
    "revision",
    "updated_at",
    "state_digest",
];

/// The values of [`TRANSITION_COLUMNS`] for one transition, borrowed from its
/// new state: what every provider writes, and nothing else.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct TransitionWrite<'a> {
    /// `status`.
    pub status: RequestStatus,
    /// `pending_reason`.
    pub pending_reason: Option<PendingReason>,
    /// `approvals`.
    pub approvals: &'a [ApprovalRequirement],
    /// `expected_state_version`.
    pub expected_state_version: Option<i64>,
    /// `superseded_by`.
    pub superseded_by: Option<RequestId>,
    /// `metadata`.
    pub metadata: &'a Value,
    /// `revision`.
    pub revision: u64,
    /// `updated_at`.
    pub updated_at: Timestamp,
    /// `state_digest`.
    pub state_digest: &'a str,
}

impl<'a> TransitionWrite<'a> {
    pub(crate) fn of(next: &'a GovernanceRequest) -> Self {
        Self {
            status: next.status,
            pending_reason: next.pending_reason,
            approvals: &next.spec.approvals,
            expected_state_version: next.spec.expected_state_version,
            superseded_by: next.superseded_by,
            metadata: &next.spec.metadata,
            revision: next.revision,
            updated_at: next.updated_at,
            state_digest: &next.state_digest,
        }
    }

    /// Writes these columns over `stored` (an in-process store's row), the
    /// way a SQL provider's `UPDATE … SET` does.
    pub fn apply_to(&self, stored: &mut GovernanceRequest) {
        stored.status = self.status;
        stored.pending_reason = self.pending_reason;
        stored.spec.approvals = self.approvals.to_vec();
        stored.spec.expected_state_version = self.expected_state_version;
        stored.superseded_by = self.superseded_by;
        stored.spec.metadata = self.metadata.clone();
        stored.revision = self.revision;
        stored.updated_at = self.updated_at;
        stored.state_digest = self.state_digest.to_owned();
        stored.checked = std::sync::OnceLock::new();
    }
}
