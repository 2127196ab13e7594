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
        validate::json_depth("metadata", &self.metadata)?;
        canonical_sha256("request", self)
    }
}

/// A governance request as stored.
///
/// Its fields are private: the only ways to obtain one are the lifecycle
/// ([`lifecycle::create`](crate::lifecycle::create) and the transitions), a
/// provider decoding what it stored ([`provider::decode_request`](crate::provider::decode_request)),
/// and deserialization. Each revision carries a [`state_digest`](Self::state_digest)
/// over the whole request, computed by the lifecycle when it produced that
/// revision; a value that did not come from the lifecycle in this process is
/// checked against it before the lifecycle computes a transition from it, and
/// a store commits a transition only over the stored revision with that
/// digest. A copy edited in any way is refused.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "StoredRequest")]
pub struct GovernanceRequest {
    pub(crate) id: RequestId,
    #[serde(flatten)]
    pub(crate) spec: NewRequest,
    pub(crate) status: RequestStatus,
    pub(crate) pending_reason: Option<PendingReason>,
    pub(crate) superseded_by: Option<RequestId>,
    pub(crate) revision: u64,
    pub(crate) created_at: Timestamp,
    pub(crate) updated_at: Timestamp,
    pub(crate) creation_digest: String,
    pub(crate) state_digest: String,
    /// True when this process computed `state_digest` from these fields.
    #[serde(skip)]
    pub(crate) checked: std::sync::OnceLock<()>,
}

impl std::fmt::Debug for GovernanceRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GovernanceRequest")
            .field("id", &self.id)
            .field("spec", &self.spec)
            .field("status", &self.status)
            .field("pending_reason", &self.pending_reason)
            .field("superseded_by", &self.superseded_by)
            .field("revision", &self.revision)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("creation_digest", &self.creation_digest)
            .field("state_digest", &self.state_digest)
            .finish()
    }
}

impl PartialEq for GovernanceRequest {
    fn eq(&self, other: &Self) -> bool {
        self.state_digest == other.state_digest
            && self.id == other.id
            && self.revision == other.revision
            && self.status == other.status
            && self.pending_reason == other.pending_reason
            && self.superseded_by == other.superseded_by
            && self.created_at == other.created_at
            && self.updated_at == other.updated_at
            && self.creation_digest == other.creation_digest
            && self.spec == other.spec
    }
}

/// Deserializing goes through the stored form: a request serialized before
/// digests were stored has none, and gets the digest of its content (as a
/// row without one does); one that has a digest keeps it, unchecked until
/// [`GovernanceRequest::check`].
impl TryFrom<StoredRequest> for GovernanceRequest {
    type Error = GovernanceError;

    fn try_from(stored: StoredRequest) -> Result<Self, Self::Error> {
        GovernanceRequest::decoded(stored)
    }
}

impl From<&GovernanceRequest> for StoredRequest {
    /// The request's fields as a store keeps them, digest included.
    fn from(request: &GovernanceRequest) -> Self {
        StoredRequest {
            id: request.id,
            spec: request.spec.clone(),
            status: request.status,
            pending_reason: request.pending_reason,
            superseded_by: request.superseded_by,
            revision: request.revision,
            created_at: request.created_at,
            updated_at: request.updated_at,
            creation_digest: request.creation_digest.clone(),
            state_digest: Some(request.state_digest.clone()),
        }
    }
}

/// What the state digest covers: every field but the digest itself.
#[derive(Serialize)]
struct StateInput<'a> {
    id: RequestId,
    #[serde(flatten)]
    spec: &'a NewRequest,
    status: RequestStatus,
    pending_reason: Option<PendingReason>,
    superseded_by: Option<RequestId>,
    revision: u64,
    created_at: Timestamp,
    updated_at: Timestamp,
    creation_digest: &'a str,
}

/// A request's fields as a provider stored them, for
/// [`provider::decode_request`](crate::provider::decode_request).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct StoredRequest {
    /// The id.
    pub id: RequestId,
    /// Everything the creator supplied, as it stands at this revision.
    #[serde(flatten)]
    pub spec: NewRequest,
    /// Lifecycle status.
    pub status: RequestStatus,
    /// Set exactly when pending.
    pub pending_reason: Option<PendingReason>,
    /// The newer request that replaced this one.
    pub superseded_by: Option<RequestId>,
    /// The revision.
    pub revision: u64,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last written.
    pub updated_at: Timestamp,
    /// The stored creation digest.
    pub creation_digest: String,
    /// The stored state digest; `None` for a row written before the library
    /// stored one (it is then computed from the row).
    #[serde(default)]
    pub state_digest: Option<String>,
}

impl GovernanceRequest {
    /// A request at revision 1, its digest computed here.
    pub(crate) fn created(
        spec: NewRequest,
        id: RequestId,
        now: Timestamp,
        creation_digest: String,
    ) -> Result<Self, GovernanceError> {
        let mut request = Self {
            id,
            spec,
            status: RequestStatus::Created,
            pending_reason: None,
            superseded_by: None,
            revision: 1,
            created_at: now,
            updated_at: now,
            creation_digest,
            state_digest: String::new(),
            checked: std::sync::OnceLock::new(),
        };
        request.seal()?;
        Ok(request)
    }

    /// Rebuilds a request a store decoded.
    pub(crate) fn decoded(stored: StoredRequest) -> Result<Self, GovernanceError> {
        let StoredRequest {
            id,
            spec,
            status,
            pending_reason,
            superseded_by,
            revision,
            created_at,
            updated_at,
            creation_digest,
            state_digest,
        } = stored;
        let mut request = Self {
            id,
            spec,
            status,
            pending_reason,
            superseded_by,
            revision,
            created_at,
            updated_at,
            creation_digest,
            state_digest: String::new(),
            checked: std::sync::OnceLock::new(),
        };
        match state_digest {
            Some(digest) => request.state_digest = digest,
            // A row written before digests were stored: its digest is that of
            // what it holds, whatever limits applied when it was written.
            None => request.state_digest = request.compute_state_digest()?,
        }
        Ok(request)
    }

    /// Validates the fields and computes the state digest: the last step of
    /// every change the lifecycle makes.
    pub(crate) fn seal(&mut self) -> Result<(), GovernanceError> {
        self.validate()?;
        self.state_digest = self.compute_state_digest()?;
        self.checked = std::sync::OnceLock::from(());
        Ok(())
    }

    /// Stable id (UUIDv7).
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// The tenant.
    pub fn workspace_id(&self) -> &WorkspaceId {
        &self.spec.workspace_id
    }

    /// Everything the creator supplied, as it stands at this revision
    /// (approval decisions and the expected version change over the lifecycle).
    pub fn spec(&self) -> &NewRequest {
        &self.spec
    }

    /// The governed state.
    pub fn target(&self) -> &TargetRef {
        &self.spec.target
    }

    /// The mutation wanted.
    pub fn operation(&self) -> &str {
        &self.spec.operation
    }

    /// Who asked.
    pub fn requested_by(&self) -> &Principal {
        &self.spec.requested_by
    }

    /// Why.
    pub fn intent(&self) -> &str {
        &self.spec.intent
    }

    /// The approval requirements and their decisions so far.
    pub fn approvals(&self) -> &[ApprovalRequirement] {
        &self.spec.approvals
    }

    /// The state version the request expects at execution.
    pub fn expected_state_version(&self) -> Option<i64> {
        self.spec.expected_state_version
    }

    /// What happens when that version is stale.
    pub fn stale_strategy(&self) -> StaleStrategy {
        self.spec.stale_strategy
    }

    /// When a sweep expires it.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.spec.expires_at
    }

    /// The idempotency key it was created with.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.spec.idempotency_key.as_deref()
    }

    /// The category.
    pub fn category(&self) -> Option<&str> {
        self.spec.category.as_deref()
    }

    /// The tags.
    pub fn tags(&self) -> &[String] {
        &self.spec.tags
    }

    /// The metadata (replaced by [`Action::Annotate`](crate::Action::Annotate)).
    pub fn metadata(&self) -> &Value {
        &self.spec.metadata
    }

    /// Lifecycle status.
    pub fn status(&self) -> RequestStatus {
        self.status
    }

    /// What it waits for: set exactly when the status is [`RequestStatus::Pending`].
    pub fn pending_reason(&self) -> Option<PendingReason> {
        self.pending_reason
    }

    /// The newer request that replaced this one.
    pub fn superseded_by(&self) -> Option<RequestId> {
        self.superseded_by
    }

    /// 1 on creation, +1 on every successful write.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// When it was created.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// When it was last written.
    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }

    /// [`NewRequest::creation_digest`] of the creation input, kept for
    /// idempotent retries.
    pub fn creation_digest(&self) -> &str {
        &self.creation_digest
    }

    /// SHA-256 over the RFC 8785 encoding of every other field, as the
    /// lifecycle computed it for this revision.
    pub fn state_digest(&self) -> &str {
        &self.state_digest
    }

    /// Recomputes the state digest from the fields.
    ///
    /// The encoding covers every field but the digest; a field added to the
    /// request in a later version must be left out of it while it holds its
    /// default (`skip_serializing_if`), so the digests of stored revisions
    /// stay valid.
    pub fn compute_state_digest(&self) -> Result<String, GovernanceError> {
        validate::json_depth_within("metadata", &self.spec.metadata, validate::HASHABLE_DEPTH)?;
        canonical_sha256(
            "request",
            &StateInput {
                id: self.id,
                spec: &self.spec,
                status: self.status,
                pending_reason: self.pending_reason,
                superseded_by: self.superseded_by,
                revision: self.revision,
                created_at: self.created_at,
                updated_at: self.updated_at,
                creation_digest: &self.creation_digest,
            },
        )
    }

    /// Checks that the fields match [`state_digest`](Self::state_digest):
    /// free for a value the lifecycle produced (or already checked) in this
    /// process, one hash for one read from storage or deserialized. It checks
    /// integrity, not today's limits: a revision stored under older limits
    /// still checks (the lifecycle validates every state it produces).
    pub fn check(&self) -> Result<(), GovernanceError> {
        if self.checked.get().is_some() {
            return Ok(());
        }
        if self.compute_state_digest()? != self.state_digest {
            return Err(GovernanceError::validation(
                "state_digest",
                ValidationProblem::Inconsistent("does not match the request's content"),
            ));
        }
        let _ = self.checked.set(());
        Ok(())
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
