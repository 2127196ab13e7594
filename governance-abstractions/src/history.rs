//! Append-only audit history: request transitions and standalone decision
//! evidence, correlated by stable ids.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::canonical_sha256;
use crate::request::{validate_principal, validate_timestamp};
use crate::validate::{self, limits};
use crate::{GovernanceError, Principal, RecordId, RequestId, Timestamp, ValidationProblem, WorkspaceId};

text_enum! {
    /// Where a record comes from.
    #[non_exhaustive]
    pub enum HistoryCategory {
        /// A request status move.
        Lifecycle => "lifecycle",
        /// An approver's decision.
        Approval => "approval",
        /// Stale-version handling at execution.
        VersionResolution => "version_resolution",
        /// Standalone evidence of a policy evaluation.
        Decision => "decision",
    }
}

text_enum! {
    /// A policy decision.
    pub enum Decision {
        /// The write was allowed.
        Approved => "approved",
        /// The write was blocked.
        Denied => "denied",
    }
}

text_enum! {
    /// What the application did in the end.
    pub enum Outcome {
        /// The mutation ran.
        Approved => "approved",
        /// The mutation was blocked.
        Denied => "denied",
        /// The request failed (invalid input, transport failure, …).
        Error => "error",
    }
}

/// The request (and its revision) a record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestRef {
    /// The request.
    pub id: RequestId,
    /// The revision the record belongs to.
    pub revision: u64,
}

/// Which redaction policy produced the stored payloads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedactionRef {
    /// Policy name.
    pub policy: String,
    /// Policy version.
    pub version: String,
}

/// The content of a history record: everything but its id, time and hash.
///
/// Two appends with the same idempotency key are the same record exactly when
/// their evidence is equal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The tenant.
    pub workspace_id: WorkspaceId,
    /// The request this belongs to, if any.
    pub request: Option<RequestRef>,
    /// Where the record comes from.
    pub category: HistoryCategory,
    /// What happened, e.g. `request.approved` (see [`codes`](crate::codes)).
    pub code: String,
    /// Who acted, and on whose behalf.
    pub actor: Principal,
    /// The kind of object governed.
    pub object_type: String,
    /// The operation governed.
    pub operation: String,
    /// The policy decision, when there was one.
    pub decision: Option<Decision>,
    /// The application outcome, when known.
    pub outcome: Option<Outcome>,
    /// Human-readable reason.
    pub reason: Option<String>,
    /// Machine-readable reasons.
    pub reason_codes: Vec<String>,
    /// Correlation id of the evaluation (`ctx_id`).
    pub correlation_id: Option<String>,
    /// Trace hash of the evaluation.
    pub trace_hash: Option<String>,
    /// Makes the append safe to retry: unique per workspace.
    pub idempotency_key: Option<String>,
    /// The policy version that decided.
    pub policy_version: Option<String>,
    /// Evaluation latency in microseconds.
    pub latency_us: Option<u64>,
    /// The (redacted) request payload.
    pub request_json: Option<Value>,
    /// The (redacted) response payload.
    pub response_json: Option<Value>,
    /// The redaction policy applied to the payloads, if any.
    pub redaction: Option<RedactionRef>,
}

impl Evidence {
    /// Evidence of a policy decision with no optional fields set.
    pub fn decision(
        workspace_id: WorkspaceId,
        actor: impl Into<Principal>,
        object_type: impl Into<String>,
        operation: impl Into<String>,
        decision: Decision,
    ) -> Self {
        Self {
            workspace_id,
            request: None,
            category: HistoryCategory::Decision,
            code: match decision {
                Decision::Approved => crate::codes::DECISION_APPROVED,
                Decision::Denied => crate::codes::DECISION_DENIED,
            }
            .to_owned(),
            actor: actor.into(),
            object_type: object_type.into(),
            operation: operation.into(),
            decision: Some(decision),
            outcome: None,
            reason: None,
            reason_codes: Vec::new(),
            correlation_id: None,
            trace_hash: None,
            idempotency_key: None,
            policy_version: None,
            latency_us: None,
            request_json: None,
            response_json: None,
            redaction: None,
        }
    }

    /// True when both carry the same content in canonical form (RFC 8785), so
    /// a payload that a database re-encoded (key order, `1.0` vs `1`) still
    /// matches. This decides idempotent replay versus conflict on every provider.
    pub fn same_content(&self, other: &Evidence) -> bool {
        self == other
            || matches!(
                (canonical_sha256("evidence", self), canonical_sha256("evidence", other)),
                (Ok(a), Ok(b)) if a == b
            )
    }

    /// Checks every field against the shared rules and limits.
    pub fn validate(&self) -> Result<(), GovernanceError> {
        validate::identifier("workspace_id", self.workspace_id.as_str())?;
        if let Some(request) = self.request
            && (request.revision == 0 || request.revision > limits::MAX_SAFE_INTEGER as u64)
        {
            return Err(GovernanceError::validation("request.revision", ValidationProblem::OutOfRange));
        }
        validate::identifier("code", &self.code)?;
        validate_principal("actor", &self.actor)?;
        validate::identifier("object_type", &self.object_type)?;
        validate::identifier("operation", &self.operation)?;
        if let Some(reason) = &self.reason {
            validate::text("reason", reason)?;
        }
        validate::identifier_list("reason_codes", &self.reason_codes)?;
        validate::optional_identifier("correlation_id", self.correlation_id.as_deref())?;
        validate::optional_identifier("trace_hash", self.trace_hash.as_deref())?;
        validate::optional_identifier("idempotency_key", self.idempotency_key.as_deref())?;
        validate::optional_identifier("policy_version", self.policy_version.as_deref())?;
        if let Some(latency) = self.latency_us
            && latency > limits::MAX_SAFE_INTEGER as u64
        {
            return Err(GovernanceError::validation("latency_us", ValidationProblem::OutOfRange));
        }
        if let Some(json) = &self.request_json {
            validate::json("request_json", json)?;
        }
        if let Some(json) = &self.response_json {
            validate::json("response_json", json)?;
        }
        if let Some(redaction) = &self.redaction {
            validate::identifier("redaction.policy", &redaction.policy)?;
            validate::identifier("redaction.version", &redaction.version)?;
        }
        Ok(())
    }
}

/// One stored history record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// Stable id (UUIDv7).
    pub id: RecordId,
    /// When it was recorded.
    pub created_at: Timestamp,
    /// The content.
    pub evidence: Evidence,
    /// [`HistoryRecord::compute_hash`] at creation: SHA-256 over the RFC 8785
    /// encoding of id, time and evidence.
    pub content_hash: String,
}

#[derive(Serialize)]
struct HashInput<'a> {
    id: RecordId,
    created_at: Timestamp,
    evidence: &'a Evidence,
}

impl HistoryRecord {
    /// Seals evidence into a record with a fresh id.
    pub fn new(evidence: Evidence, created_at: Timestamp) -> Result<Self, GovernanceError> {
        Self::with_id(RecordId::new(), evidence, created_at)
    }

    /// Seals evidence into a record with the given id (e.g. one replayed from a spool).
    pub fn with_id(id: RecordId, evidence: Evidence, created_at: Timestamp) -> Result<Self, GovernanceError> {
        let mut record = Self { id, created_at, evidence, content_hash: String::new() };
        record.content_hash = record.compute_hash()?;
        Ok(record)
    }

    /// The tenant.
    pub fn workspace_id(&self) -> &WorkspaceId {
        &self.evidence.workspace_id
    }

    /// Recomputes the content hash from the fields.
    pub fn compute_hash(&self) -> Result<String, GovernanceError> {
        canonical_sha256(
            "history record",
            &HashInput { id: self.id, created_at: self.created_at, evidence: &self.evidence },
        )
    }

    /// Checks every field, and that the content hash matches the content.
    pub fn validate(&self) -> Result<(), GovernanceError> {
        self.evidence.validate()?;
        validate_timestamp("created_at", self.created_at)?;
        if self.compute_hash()? != self.content_hash {
            return Err(GovernanceError::validation(
                "content_hash",
                ValidationProblem::Inconsistent("does not match the record's content"),
            ));
        }
        Ok(())
    }
}

/// Record codes this library writes.
pub mod codes {
    /// A request was created.
    pub const REQUEST_CREATED: &str = "request.created";
    /// A request was submitted and now waits.
    pub const REQUEST_SUBMITTED: &str = "request.submitted";
    /// A request was approved.
    pub const REQUEST_APPROVED: &str = "request.approved";
    /// A request was rejected.
    pub const REQUEST_REJECTED: &str = "request.rejected";
    /// A request was canceled.
    pub const REQUEST_CANCELED: &str = "request.canceled";
    /// A request expired.
    pub const REQUEST_EXPIRED: &str = "request.expired";
    /// A request was superseded by a newer one.
    pub const REQUEST_SUPERSEDED: &str = "request.superseded";
    /// A request was executed.
    pub const REQUEST_EXECUTED: &str = "request.executed";
    /// A request's metadata was replaced.
    pub const REQUEST_ANNOTATED: &str = "request.annotated";
    /// An approver decided a requirement.
    pub const APPROVAL_DECIDED: &str = "approval.decided";
    /// The expected state version matched at execution.
    pub const VERSION_VALIDATED: &str = "version.validated";
    /// Stale version, strategy RejectStale.
    pub const VERSION_REJECTED_STALE: &str = "version.rejected_stale";
    /// Stale version, strategy RequireRenewedApproval.
    pub const VERSION_RENEWED_APPROVAL_REQUIRED: &str = "version.renewed_approval_required";
    /// Stale version, strategy RevalidateOnLatestState.
    pub const VERSION_REVALIDATION_REQUIRED: &str = "version.revalidation_required";
    /// Standalone evidence: a policy approved a write.
    pub const DECISION_APPROVED: &str = "decision.approved";
    /// Standalone evidence: a policy denied a write.
    pub const DECISION_DENIED: &str = "decision.denied";
}
