//! Rows ↔ domain values. A row that does not decode is a backend error: the
//! database holds something this library never wrote.

use governance_abstractions::{
    Checkpoint, Evidence, GovernanceError, GovernanceRequest, HistoryRecord, NewRequest, Principal, RecordId,
    RedactionRef, RequestId, RequestRef, SealEntry, TargetRef, Timestamp, ValidationProblem, WorkspaceId,
};
use sea_orm::ActiveValue::NotSet;
use sea_orm::{ActiveModelTrait, IntoActiveModel};
use serde_json::Value;

use crate::entity::{checkpoint, history, request, seal};

fn corrupt(what: &str, detail: impl std::fmt::Display) -> GovernanceError {
    GovernanceError::backend(false, format!("stored {what} does not decode: {detail}"))
}

fn stored_json(mut value: Value) -> Value {
    governance_abstractions::restore_stored_json(&mut value);
    value
}

fn parse<T: std::str::FromStr>(what: &str, text: &str) -> Result<T, GovernanceError> {
    text.parse().map_err(|_| corrupt(what, text))
}

fn json<T: serde::de::DeserializeOwned>(what: &str, value: Value) -> Result<T, GovernanceError> {
    serde_json::from_value(value).map_err(|e| corrupt(what, e))
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    // Domain values are plain data: serializing them cannot fail.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The stored form of a time: naive, in UTC.
pub(crate) fn naive(at: Timestamp) -> chrono::NaiveDateTime {
    at.as_datetime().naive_utc()
}

fn utc(at: chrono::NaiveDateTime) -> Timestamp {
    Timestamp::from_datetime(at.and_utc())
}

fn revision(what: &str, value: i64) -> Result<u64, GovernanceError> {
    u64::try_from(value).map_err(|_| corrupt(what, value))
}

fn signed(value: u64) -> i64 {
    // Validation keeps revisions and latencies within 2^53.
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A request as a row.
pub(crate) fn request_row(request: &GovernanceRequest) -> request::Model {
    let spec = &request.spec;
    request::Model {
        workspace_id: spec.workspace_id.as_str().to_owned(),
        id: request.id.as_uuid(),
        state_type: spec.target.state_type.clone(),
        state_id: spec.target.state_id.clone(),
        operation: spec.operation.clone(),
        actor_kind: spec.requested_by.actor.kind.as_str().to_owned(),
        actor_id: spec.requested_by.actor.id.clone(),
        requested_by: to_json(&spec.requested_by),
        intent: spec.intent.clone(),
        status: request.status.as_str().to_owned(),
        pending_reason: request.pending_reason.map(|r| r.as_str().to_owned()),
        approvals: to_json(&spec.approvals),
        expected_state_version: spec.expected_state_version,
        stale_strategy: spec.stale_strategy.as_str().to_owned(),
        expires_at: spec.expires_at.map(naive),
        superseded_by: request.superseded_by.map(|id| id.as_uuid()),
        idempotency_key: spec.idempotency_key.clone(),
        category: spec.category.clone(),
        tags: to_json(&spec.tags),
        metadata: spec.metadata.clone(),
        revision: signed(request.revision),
        created_at: naive(request.created_at),
        updated_at: naive(request.updated_at),
        creation_digest: request.creation_digest.clone(),
    }
}

/// The columns a transition rewrites: everything but the key and what never
/// changes after creation.
pub(crate) fn request_update(request: &GovernanceRequest) -> request::ActiveModel {
    let mut update = request_row(request).into_active_model().reset_all();
    update.workspace_id = NotSet;
    update.id = NotSet;
    update.created_at = NotSet;
    update.creation_digest = NotSet;
    update.idempotency_key = NotSet;
    update
}

/// A row as a request.
pub(crate) fn request_from(row: request::Model) -> Result<GovernanceRequest, GovernanceError> {
    let workspace_id = WorkspaceId::new(row.workspace_id).map_err(|e| corrupt("workspace id", e))?;
    let requested_by: Principal = json("requested_by", row.requested_by)?;
    Ok(GovernanceRequest {
        id: RequestId::from_uuid(row.id),
        spec: NewRequest {
            workspace_id,
            target: TargetRef { state_type: row.state_type, state_id: row.state_id },
            operation: row.operation,
            requested_by,
            intent: row.intent,
            approvals: json("approvals", row.approvals)?,
            expected_state_version: row.expected_state_version,
            stale_strategy: parse("stale_strategy", &row.stale_strategy)?,
            expires_at: row.expires_at.map(utc),
            idempotency_key: row.idempotency_key,
            category: row.category,
            tags: json("tags", row.tags)?,
            metadata: stored_json(row.metadata),
        },
        status: parse("status", &row.status)?,
        pending_reason: row.pending_reason.as_deref().map(|r| parse("pending_reason", r)).transpose()?,
        superseded_by: row.superseded_by.map(RequestId::from_uuid),
        revision: revision("revision", row.revision)?,
        created_at: utc(row.created_at),
        updated_at: utc(row.updated_at),
        creation_digest: row.creation_digest,
    })
}

/// A record as a row.
pub(crate) fn history_row(record: &HistoryRecord) -> history::Model {
    let e = &record.evidence;
    history::Model {
        workspace_id: e.workspace_id.as_str().to_owned(),
        id: record.id.as_uuid(),
        request_id: e.request.map(|r| r.id.as_uuid()),
        request_revision: e.request.map(|r| signed(r.revision)),
        category: e.category.as_str().to_owned(),
        code: e.code.clone(),
        actor_kind: e.actor.actor.kind.as_str().to_owned(),
        actor_id: e.actor.actor.id.clone(),
        actor: to_json(&e.actor),
        object_type: e.object_type.clone(),
        operation: e.operation.clone(),
        decision: e.decision.map(|d| d.as_str().to_owned()),
        outcome: e.outcome.map(|o| o.as_str().to_owned()),
        reason: e.reason.clone(),
        reason_codes: to_json(&e.reason_codes),
        correlation_id: e.correlation_id.clone(),
        trace_hash: e.trace_hash.clone(),
        idempotency_key: e.idempotency_key.clone(),
        policy_version: e.policy_version.clone(),
        latency_us: e.latency_us.map(signed),
        request_json: e.request_json.clone(),
        response_json: e.response_json.clone(),
        redaction_policy: e.redaction.as_ref().map(|r| r.policy.clone()),
        redaction_version: e.redaction.as_ref().map(|r| r.version.clone()),
        created_at: naive(record.created_at),
        content_hash: record.content_hash.clone(),
    }
}

/// A row as a record.
pub(crate) fn history_from(row: history::Model) -> Result<HistoryRecord, GovernanceError> {
    let workspace_id = WorkspaceId::new(row.workspace_id).map_err(|e| corrupt("workspace id", e))?;
    let request = match (row.request_id, row.request_revision) {
        (Some(id), Some(rev)) => {
            Some(RequestRef { id: RequestId::from_uuid(id), revision: revision("request_revision", rev)? })
        }
        (None, None) => None,
        _ => return Err(corrupt("request reference", "id and revision must be set together")),
    };
    let redaction = match (row.redaction_policy, row.redaction_version) {
        (Some(policy), Some(version)) => Some(RedactionRef { policy, version }),
        _ => None,
    };
    let actor: Principal = json("actor", row.actor)?;
    Ok(HistoryRecord {
        id: RecordId::from_uuid(row.id),
        created_at: utc(row.created_at),
        evidence: Evidence {
            workspace_id,
            request,
            category: parse("category", &row.category)?,
            code: row.code,
            actor,
            object_type: row.object_type,
            operation: row.operation,
            decision: row.decision.as_deref().map(|d| parse("decision", d)).transpose()?,
            outcome: row.outcome.as_deref().map(|o| parse("outcome", o)).transpose()?,
            reason: row.reason,
            reason_codes: json("reason_codes", row.reason_codes)?,
            correlation_id: row.correlation_id,
            trace_hash: row.trace_hash,
            idempotency_key: row.idempotency_key,
            policy_version: row.policy_version,
            latency_us: row.latency_us.map(|l| revision("latency_us", l)).transpose()?,
            request_json: row.request_json.map(stored_json),
            response_json: row.response_json.map(stored_json),
            redaction,
        },
        content_hash: row.content_hash,
    })
}

/// A sequence number or leaf index as a `BIGINT`: larger ones cannot be stored.
pub(crate) fn bigint(field: &'static str, value: u64) -> Result<i64, GovernanceError> {
    i64::try_from(value).map_err(|_| GovernanceError::validation(field, ValidationProblem::OutOfRange))
}

/// A checkpoint as a row.
pub(crate) fn checkpoint_row(checkpoint: &Checkpoint) -> Result<checkpoint::Model, GovernanceError> {
    Ok(checkpoint::Model {
        workspace_id: checkpoint.workspace_id.as_str().to_owned(),
        seq: bigint("checkpoint.seq", checkpoint.seq)?,
        first_index: bigint("checkpoint.first_index", checkpoint.first_index)?,
        record_count: bigint("checkpoint.record_count", checkpoint.record_count)?,
        root: checkpoint.root.clone(),
        previous: checkpoint.previous.clone(),
        created_at: naive(checkpoint.created_at),
        digest: checkpoint.digest.clone(),
    })
}

/// A row as a checkpoint.
pub(crate) fn checkpoint_from(row: checkpoint::Model) -> Result<Checkpoint, GovernanceError> {
    Ok(Checkpoint {
        workspace_id: WorkspaceId::new(row.workspace_id).map_err(|e| corrupt("workspace id", e))?,
        seq: revision("checkpoint seq", row.seq)?,
        first_index: revision("checkpoint first_index", row.first_index)?,
        record_count: revision("checkpoint record_count", row.record_count)?,
        root: row.root,
        previous: row.previous,
        created_at: utc(row.created_at),
        digest: row.digest,
    })
}

/// A seal entry as a row of `workspace`.
pub(crate) fn seal_row(workspace: &WorkspaceId, entry: &SealEntry) -> Result<seal::Model, GovernanceError> {
    Ok(seal::Model {
        workspace_id: workspace.as_str().to_owned(),
        leaf_index: bigint("entries.index", entry.index)?,
        record_id: entry.record_id.as_uuid(),
        content_hash: entry.content_hash.clone(),
        checkpoint_seq: bigint("entries.checkpoint", entry.checkpoint)?,
    })
}

/// A row as a seal entry.
pub(crate) fn seal_from(row: seal::Model) -> Result<SealEntry, GovernanceError> {
    Ok(SealEntry {
        index: revision("seal leaf_index", row.leaf_index)?,
        record_id: RecordId::from_uuid(row.record_id),
        content_hash: row.content_hash,
        checkpoint: revision("seal checkpoint_seq", row.checkpoint_seq)?,
    })
}
