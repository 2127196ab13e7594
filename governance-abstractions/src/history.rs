//! Append-only audit history: request transitions and standalone decision
//! evidence, correlated by stable ids.

use std::sync::Arc;

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
///
/// Built with [`Evidence::decision`] and the chained setters below; the
/// fields stay readable and assignable, and new ones may be added without a
/// breaking change.
///
/// ```
/// use governance_abstractions::{Actor, Decision, Evidence, Outcome, WorkspaceId};
/// use serde_json::json;
///
/// let evidence = Evidence::decision(WorkspaceId::new("acme")?, Actor::service("billing"), "invoice", "refund", Decision::Denied)
///     .reason("over the refund limit")
///     .reason_codes(["limit.exceeded"])
///     .correlation_id("ctx-81")
///     .idempotency_key("refund-4711")
///     .outcome(Outcome::Denied)
///     .request_json(json!({ "amount": 1200 }));
/// assert_eq!(evidence.reason_codes, ["limit.exceeded"]);
/// # Ok::<(), governance_abstractions::GovernanceError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
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

    /// Sets the request (and revision) this evidence is about.
    pub fn request(mut self, request: RequestRef) -> Self {
        self.request = Some(request);
        self
    }

    /// Sets the category.
    pub fn category(mut self, category: HistoryCategory) -> Self {
        self.category = category;
        self
    }

    /// Sets the code (see [`codes`](crate::codes)).
    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.code = code.into();
        self
    }

    /// Sets the application outcome.
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = Some(outcome);
        self
    }

    /// Sets the human-readable reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Sets the machine-readable reasons.
    pub fn reason_codes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, codes: I) -> Self {
        self.reason_codes = codes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the correlation id (`ctx_id`).
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the trace hash.
    pub fn trace_hash(mut self, hash: impl Into<String>) -> Self {
        self.trace_hash = Some(hash.into());
        self
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the policy version.
    pub fn policy_version(mut self, version: impl Into<String>) -> Self {
        self.policy_version = Some(version.into());
        self
    }

    /// Sets the evaluation latency in microseconds.
    pub fn latency_us(mut self, latency: u64) -> Self {
        self.latency_us = Some(latency);
        self
    }

    /// Sets the request payload (redacted by the recorder before storage).
    pub fn request_json(mut self, payload: Value) -> Self {
        self.request_json = Some(payload);
        self
    }

    /// Sets the response payload (redacted by the recorder before storage).
    pub fn response_json(mut self, payload: Value) -> Self {
        self.response_json = Some(payload);
        self
    }

    /// Names the redaction policy applied to the payloads.
    pub fn redaction(mut self, redaction: RedactionRef) -> Self {
        self.redaction = Some(redaction);
        self
    }

    /// Checks only the nesting depth of the payloads, without recursion: the
    /// first thing to do before anything walks them.
    pub fn check_depth(&self) -> Result<(), GovernanceError> {
        if let Some(json) = &self.request_json {
            validate::json_depth("request_json", json)?;
        }
        if let Some(json) = &self.response_json {
            validate::json_depth("response_json", json)?;
        }
        Ok(())
    }

    /// True when both carry the same content in canonical form (RFC 8785), so
    /// a payload that a database re-encoded (key order, `1.0` vs `1`) still
    /// matches. This decides idempotent replay versus conflict on every
    /// provider. Evidence nested deeper than any store accepts is the same as
    /// nothing.
    pub fn same_content(&self, other: &Evidence) -> bool {
        if self.check_depth().is_err() || other.check_depth().is_err() {
            return false;
        }
        self == other
            || matches!(
                (canonical_sha256("evidence", self), canonical_sha256("evidence", other)),
                (Ok(a), Ok(b)) if a == b
            )
    }

    /// Checks every field against the shared rules and limits (the payloads'
    /// depth first).
    pub fn validate(&self) -> Result<(), GovernanceError> {
        self.check_depth()?;
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

impl Drop for Evidence {
    fn drop(&mut self) {
        // A payload nested too deep to validate must still drop safely.
        self.request_json.iter_mut().chain(self.response_json.iter_mut()).for_each(validate::defuse);
    }
}

/// One history record: evidence sealed with an id, a time and a content hash.
///
/// The fields are private, so a record's hash cannot drift from its content.
/// A record built here ([`HistoryRecord::new`], [`HistoryRecord::with_id`],
/// or by the lifecycle) was validated and hashed once, and a store trusts
/// that hash. A record read back from storage or deserialized carries the
/// hash as stored: [`check`](Self::check) compares it with its content, and
/// everything that relies on it (appending it again, sealing, `verify`,
/// export) does so.
#[derive(Clone, Serialize, Deserialize)]
pub struct HistoryRecord {
    id: RecordId,
    created_at: Timestamp,
    /// Shared, so the copies a store hands back (the stored record, a replay,
    /// a receipt) cost a reference count, not a copy of the payloads.
    evidence: Arc<Evidence>,
    content_hash: String,
    /// The canonical encoding's length when this process computed the hash;
    /// `None` when the hash came from outside and is not yet checked.
    #[serde(skip)]
    encoded_len: std::sync::OnceLock<usize>,
    /// Set once the evidence passed today's validation in this process.
    #[serde(skip)]
    validated: std::sync::OnceLock<bool>,
}

impl std::fmt::Debug for HistoryRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryRecord")
            .field("id", &self.id)
            .field("created_at", &self.created_at)
            .field("evidence", &self.evidence)
            .field("content_hash", &self.content_hash)
            .finish()
    }
}

impl PartialEq for HistoryRecord {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.created_at == other.created_at
            && self.content_hash == other.content_hash
            && self.evidence == other.evidence
    }
}

#[derive(Serialize)]
struct HashInput<'a> {
    id: RecordId,
    created_at: Timestamp,
    evidence: &'a Evidence,
}

impl HistoryRecord {
    /// Validates evidence and seals it into a record with a fresh id.
    pub fn new(evidence: Evidence, created_at: Timestamp) -> Result<Self, GovernanceError> {
        Self::with_id(RecordId::new(), evidence, created_at)
    }

    /// Validates evidence and seals it into a record with the given id (e.g.
    /// one replayed from a spool).
    pub fn with_id(id: RecordId, evidence: Evidence, created_at: Timestamp) -> Result<Self, GovernanceError> {
        evidence.validate()?;
        validate_timestamp("created_at", created_at)?;
        let mut record = Self::decoded(id, created_at, evidence, String::new());
        // Validated evidence is within `MAX_JSON_DEPTH`: no second depth walk.
        let (hash, len) = record.canonical_hash_and_len()?;
        record.content_hash = hash;
        record.encoded_len = std::sync::OnceLock::from(len);
        record.validated = std::sync::OnceLock::from(true);
        Ok(record)
    }

    /// A record as a store read it: trusted for nothing until checked.
    pub(crate) fn decoded(id: RecordId, created_at: Timestamp, evidence: Evidence, content_hash: String) -> Self {
        Self {
            id,
            created_at,
            evidence: Arc::new(evidence),
            content_hash,
            encoded_len: std::sync::OnceLock::new(),
            validated: std::sync::OnceLock::new(),
        }
    }

    /// Stable id (UUIDv7).
    pub fn id(&self) -> RecordId {
        self.id
    }

    /// When it was recorded.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// The content.
    pub fn evidence(&self) -> &Evidence {
        &self.evidence
    }

    /// The content, by value.
    pub fn into_evidence(self) -> Evidence {
        Arc::try_unwrap(self.evidence).unwrap_or_else(|shared| (*shared).clone())
    }

    /// SHA-256 over the RFC 8785 encoding of id, time and evidence: computed
    /// here for a record built here, as stored for one read back (see
    /// [`check`](Self::check)).
    pub fn content_hash(&self) -> &str {
        &self.content_hash
    }

    /// The tenant.
    pub fn workspace_id(&self) -> &WorkspaceId {
        &self.evidence.workspace_id
    }

    /// True when this process computed or checked the hash against the content.
    pub fn is_checked(&self) -> bool {
        self.encoded_len.get().is_some()
    }

    /// Recomputes the content hash from the fields.
    pub fn compute_hash(&self) -> Result<String, GovernanceError> {
        self.hash_and_len().map(|(hash, _)| hash)
    }

    fn hash_and_len(&self) -> Result<(String, usize), GovernanceError> {
        for (field, json) in
            [("request_json", &self.evidence.request_json), ("response_json", &self.evidence.response_json)]
        {
            if let Some(json) = json {
                validate::json_depth_within(field, json, validate::HASHABLE_DEPTH)?;
            }
        }
        self.canonical_hash_and_len()
    }

    /// The hash and canonical length, for payloads already known to be
    /// within [`HASHABLE_DEPTH`](validate::HASHABLE_DEPTH).
    fn canonical_hash_and_len(&self) -> Result<(String, usize), GovernanceError> {
        crate::digest::canonical_sha256_len(
            "history record",
            &HashInput { id: self.id, created_at: self.created_at, evidence: &self.evidence },
        )
    }

    /// Checks that the content hash matches the content: free for a record
    /// built (or already checked) in this process, one hash for one read from
    /// storage or deserialized. This is integrity, not today's limits: a
    /// record stored under older limits still checks. Sealing, `verify` and
    /// export rely on it; appending a record also [`validate`](Self::validate)s it.
    pub fn check(&self) -> Result<(), GovernanceError> {
        self.checked_hash().map(drop)
    }

    /// Checks every field against today's limits, and the hash: what a store
    /// requires before it appends a record that was not built in this process.
    /// Free for a record built here (its evidence was validated then).
    pub fn validate(&self) -> Result<(), GovernanceError> {
        self.checked_len().map(drop)
    }

    /// The length of the record's canonical encoding after
    /// [`validate`](Self::validate): what the batch byte limit counts.
    pub fn checked_len(&self) -> Result<usize, GovernanceError> {
        if let (Some(len), Some(true)) = (self.encoded_len.get(), self.validated.get()) {
            return Ok(*len);
        }
        self.evidence.validate()?;
        validate_timestamp("created_at", self.created_at)?;
        let len = self.checked_hash()?;
        let _ = self.validated.set(true);
        Ok(len)
    }

    fn checked_hash(&self) -> Result<usize, GovernanceError> {
        if let Some(len) = self.encoded_len.get() {
            return Ok(*len);
        }
        let (hash, len) = self.hash_and_len()?;
        if hash != self.content_hash {
            return Err(GovernanceError::validation(
                "content_hash",
                ValidationProblem::Inconsistent("does not match the record's content"),
            ));
        }
        Ok(*self.encoded_len.get_or_init(|| len))
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
