//! What only providers need: decoding stored rows back into domain values,
//! the columns a transition writes, the shared write and append helpers,
//! and the PostgreSQL schema both PostgreSQL providers create
//! ([`postgres_schema`]).
//!
//! Applications never need this module. A backend author uses it to turn rows
//! into [`GovernanceRequest`]s, [`HistoryRecord`]s and [`Checkpoint`]s (the
//! only way to build them outside the lifecycle) and to write exactly what
//! every other provider writes.

use serde_json::Value;

pub mod postgres_schema;

pub use crate::integrity::{CheckpointParts, validate_checkpoint};
pub use crate::query::rank_counts;
pub use crate::request::StoredRequest;
pub use crate::store::{
    AppendStorage, InsertAttempt, append_history_with, check_commit_target, check_successor, plan_history_append,
    validate_creation, validate_history_batch, validate_transition,
};
pub use crate::validate::restore_stored_json;
use crate::{
    ApprovalRequirement, Checkpoint, Evidence, GovernanceError, GovernanceRequest, HistoryRecord, PendingReason,
    RecordId, RequestId, RequestStatus, Timestamp,
};

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
