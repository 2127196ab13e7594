//! The governance request aggregate.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::canonical_sha256;
use crate::validate::{self, limits};
use crate::{Actor, GovernanceError, Principal, RequestId, Timestamp, ValidationProblem, WorkspaceId};

text_enum! {
    /// Where a request is in its lifecycle. See [`crate::lifecycle`] for the moves.
    pub enum RequestStatus {
        /// Stored, not yet submitted or decided.
        Created => "created",
        /// Waiting; [`GovernanceRequest::pending_reason`] says for what.
        Pending => "pending",
        /// Allowed to execute.
        Approved => "approved",
        /// Refused (terminal).
        Rejected => "rejected",
        /// Withdrawn (terminal).
        Canceled => "canceled",
        /// Ran past its `expires_at` (terminal).
        Expired => "expired",
        /// Replaced by a newer request for the same target (terminal).
        Superseded => "superseded",
        /// Carried out (terminal).
        Executed => "executed",
    }
}

impl RequestStatus {
    /// Terminal statuses: nothing leaves them.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            RequestStatus::Rejected
                | RequestStatus::Canceled
                | RequestStatus::Expired
                | RequestStatus::Superseded
                | RequestStatus::Executed
        )
    }
}

text_enum! {
    /// What a pending request waits for.
    #[non_exhaustive]
    pub enum PendingReason {
        /// Approvers must decide.
        Approval => "approval",
        /// An external check must pass.
        ExternalCheck => "external_check",
        /// A scheduled time must arrive.
        Schedule => "schedule",
        /// Another change must land first.
        Dependency => "dependency",
        /// Quota must free up.
        Quota => "quota",
        /// A person must review it.
        ManualReview => "manual_review",
    }
}

text_enum! {
    /// What to do when the governed state moved on since the request was made.
    #[derive(Default)]
    pub enum StaleStrategy {
        /// Reject the request (the default).
        #[default]
        RejectStale => "reject_stale",
        /// Send it back for approval against the new version.
        RequireRenewedApproval => "require_renewed_approval",
        /// Keep it approved; the caller re-validates against the latest state.
        RevalidateOnLatestState => "revalidate_on_latest_state",
    }
}

text_enum! {
    /// An approver's decision.
    pub enum Verdict {
        /// Approve.
        Approved => "approved",
        /// Reject.
        Rejected => "rejected",
    }
}

/// The governed state a request wants to change.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TargetRef {
    /// The kind of state (e.g. `"feature_flag"`).
    pub state_type: String,
    /// Its id.
    pub state_id: String,
}

impl TargetRef {
    /// A target.
    pub fn new(state_type: impl Into<String>, state_id: impl Into<String>) -> Self {
        Self { state_type: state_type.into(), state_id: state_id.into() }
    }
}

/// A recorded approval decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    /// Approve or reject.
    pub verdict: Verdict,
    /// Who decided (may act on someone's behalf).
    pub decided_by: Principal,
    /// When.
    pub decided_at: Timestamp,
    /// Why, if given.
    pub comment: Option<String>,
}

/// One approval an approver owes, at a step. Steps are decided in ascending order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequirement {
    /// The approver (kind and id must both match the deciding actor).
    pub approver: Actor,
    /// The step (lower steps are decided first; equal steps in any order).
    pub step: u32,
    /// The decision, once made.
    pub decision: Option<ApprovalDecision>,
}

impl ApprovalRequirement {
    /// An undecided requirement.
    pub fn new(approver: Actor, step: u32) -> Self {
        Self { approver, step, decision: None }
    }
}

/// What a caller supplies to create a request. Everything else (id, status,
/// revision, timestamps) the lifecycle assigns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewRequest {
    /// The tenant.
    pub workspace_id: WorkspaceId,
    /// The governed state.
    pub target: TargetRef,
    /// The mutation wanted (e.g. `"update"`).
    pub operation: String,
    /// Who asks.
    pub requested_by: Principal,
    /// Why.
    pub intent: String,
    /// Approvals owed before the request may execute.
    pub approvals: Vec<ApprovalRequirement>,
    /// The state version the request was made against.
    pub expected_state_version: Option<i64>,
    /// What to do when that version is stale at execution.
    pub stale_strategy: StaleStrategy,
    /// When a sweep expires it.
    pub expires_at: Option<Timestamp>,
    /// Makes creation safe to retry: unique per workspace.
    pub idempotency_key: Option<String>,
    /// Free category for filtering.
    pub category: Option<String>,
    /// Free tags for filtering.
    pub tags: Vec<String>,
    /// Free JSON.
    pub metadata: Value,
}

impl NewRequest {
    /// A request with no approvals, version, expiry, key, category, tags or metadata.
    pub fn new(
        workspace_id: WorkspaceId,
        target: TargetRef,
        operation: impl Into<String>,
        requested_by: impl Into<Principal>,
    ) -> Self {
        Self {
            workspace_id,
            target,
            operation: operation.into(),
            requested_by: requested_by.into(),
            intent: String::new(),
            approvals: Vec::new(),
            expected_state_version: None,
            stale_strategy: StaleStrategy::default(),
            expires_at: None,
            idempotency_key: None,
            category: None,
            tags: Vec::new(),
            metadata: Value::Null,
        }
    }

    /// Sets the intent.
    pub fn intent(mut self, intent: impl Into<String>) -> Self {
        self.intent = intent.into();
        self
    }

    /// Adds an approval requirement.
    pub fn approval(mut self, approver: Actor, step: u32) -> Self {
        self.approvals.push(ApprovalRequirement::new(approver, step));
        self
    }

    /// Sets the expected state version and the strategy for when it is stale.
    pub fn expected_version(mut self, version: i64, strategy: StaleStrategy) -> Self {
        self.expected_state_version = Some(version);
        self.stale_strategy = strategy;
        self
    }

    /// Sets the expiry.
    pub fn expires_at(mut self, at: Timestamp) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the category.
    pub fn category(mut self, category: impl Into<String>) -> Self {
        self.category = Some(category.into());
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Sets the metadata.
    pub fn metadata(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }

    /// Checks every field against the shared rules and limits.
    pub fn validate(&self) -> Result<(), GovernanceError> {
        validate::identifier("workspace_id", self.workspace_id.as_str())?;
        validate::identifier("target.state_type", &self.target.state_type)?;
        validate::identifier("target.state_id", &self.target.state_id)?;
        validate::identifier("operation", &self.operation)?;
        validate_principal("requested_by", &self.requested_by)?;
        validate::text("intent", &self.intent)?;
        validate::list_len("approvals", self.approvals.len(), limits::MAX_LIST_ITEMS)?;
        for (index, requirement) in self.approvals.iter().enumerate() {
            validate::identifier("approvals.approver", &requirement.approver.id)?;
            let twice = self.approvals[..index]
                .iter()
                .any(|earlier| earlier.approver == requirement.approver && earlier.step == requirement.step);
            if twice {
                return Err(GovernanceError::validation(
                    "approvals",
                    ValidationProblem::Inconsistent("an approver holds at most one requirement per step"),
                ));
            }
            if let Some(decision) = &requirement.decision {
                validate_principal("approvals.decision.decided_by", &decision.decided_by)?;
                if let Some(comment) = &decision.comment {
                    validate::text("approvals.decision.comment", comment)?;
                }
            }
        }
        if let Some(version) = self.expected_state_version {
            validate::safe_integer("expected_state_version", version)?;
        }
        if self.stale_strategy == StaleStrategy::RequireRenewedApproval && self.approvals.is_empty() {
            return Err(GovernanceError::validation(
                "stale_strategy",
                ValidationProblem::Inconsistent("renewed approval needs approval requirements"),
            ));
        }
        if let Some(at) = self.expires_at {
            validate_timestamp("expires_at", at)?;
        }
        validate::optional_identifier("idempotency_key", self.idempotency_key.as_deref())?;
        validate::optional_identifier("category", self.category.as_deref())?;
        validate::identifier_list("tags", &self.tags)?;
        validate::json("metadata", &self.metadata)
    }

    /// The digest that decides whether a retried creation with the same
    /// idempotency key is the same request.
    pub fn creation_digest(&self) -> Result<String, GovernanceError> {
        canonical_sha256("request", self)
    }
}

/// A governance request as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GovernanceRequest {
    /// Stable id (UUIDv7).
    pub id: RequestId,
    /// Everything the creator supplied, as it stands now (approval decisions
    /// and the expected version change over the lifecycle).
    #[serde(flatten)]
    pub spec: NewRequest,
    /// Lifecycle status.
    pub status: RequestStatus,
    /// Set exactly when `status` is [`RequestStatus::Pending`].
    pub pending_reason: Option<PendingReason>,
    /// The newer request that replaced this one.
    pub superseded_by: Option<RequestId>,
    /// 1 on creation, +1 on every successful write.
    pub revision: u64,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last written.
    pub updated_at: Timestamp,
    /// [`NewRequest::creation_digest`] of the creation input, kept for
    /// idempotent retries.
    pub creation_digest: String,
}

impl GovernanceRequest {
    /// The tenant.
    pub fn workspace_id(&self) -> &WorkspaceId {
        &self.spec.workspace_id
    }

    /// Checks every field against the shared rules and limits.
    pub fn validate(&self) -> Result<(), GovernanceError> {
        self.spec.validate()?;
        if self.revision == 0 || self.revision > limits::MAX_SAFE_INTEGER as u64 {
            return Err(GovernanceError::validation("revision", ValidationProblem::OutOfRange));
        }
        validate_timestamp("created_at", self.created_at)?;
        validate_timestamp("updated_at", self.updated_at)?;
        if (self.status == RequestStatus::Pending) != self.pending_reason.is_some() {
            return Err(GovernanceError::validation(
                "pending_reason",
                ValidationProblem::Inconsistent("is set exactly when the status is pending"),
            ));
        }
        validate::identifier("creation_digest", &self.creation_digest)
    }
}

pub(crate) fn validate_principal(field: &str, principal: &Principal) -> Result<(), GovernanceError> {
    validate::identifier(field, &principal.actor.id)?;
    validate::list_len(field, principal.delegation.len(), limits::MAX_DELEGATION_DEPTH)?;
    principal.delegation.iter().try_for_each(|Actor { id, .. }| validate::identifier(field, id))
}

pub(crate) fn validate_timestamp(field: &str, at: Timestamp) -> Result<(), GovernanceError> {
    if !(Timestamp::MIN_MICROS..=Timestamp::MAX_MICROS).contains(&at.unix_micros()) {
        return Err(GovernanceError::validation(field, ValidationProblem::OutOfRange));
    }
    Ok(())
}
