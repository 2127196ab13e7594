//! Rows ↔ domain values. A row that does not decode is a backend error: the
//! database holds something this library never wrote. Integrity reads are
//! the exception: they report such a history row as [`Unreadable`] so that
//! `verify` can name it.

use governance_abstractions::provider::{
    CheckpointParts, StoredPrincipal, StoredRequest, TransitionWrite, decode_checkpoint, decode_record, decode_request,
    restore_stored_json, stored_delegation,
};
use governance_abstractions::{
    Checkpoint, Decision, Evidence, GovernanceError, GovernanceRequest, HistoryRecord, NewRequest, Principal,
    ReadRecord, RecordId, RedactionRef, RequestId, RequestRef, SealEntry, TargetRef, Timestamp, Unreadable,
    ValidationProblem, WorkspaceId,
};
use sea_orm::ActiveValue::Set;
use sea_orm::{DbBackend, FromQueryResult, QueryResult};
use serde_json::Value;
use uuid::Uuid;

use crate::entity::{ByPosition, TextList, UtcTime, bind_value, checkpoint, history, request, seal};

fn corrupt(what: &str, detail: impl std::fmt::Display) -> GovernanceError {
    GovernanceError::backend(false, format!("stored {what} does not decode: {detail}"))
}

fn stored_json(mut value: Value) -> Value {
    restore_stored_json(&mut value);
    value
}

fn parse<T: std::str::FromStr>(what: &str, text: &str) -> Result<T, GovernanceError> {
    text.parse().map_err(|_| corrupt(what, text))
}

fn json<T: serde::de::DeserializeOwned>(what: &str, value: Value) -> Result<T, GovernanceError> {
    serde_json::from_value(value).map_err(|e| corrupt(what, e))
}

/// A principal from its JSON column (the delegation chain, or in older
/// rows the whole principal) and its actor's `kind` and `id` columns, which
/// filters and counts read: they are the actor.
fn principal(what: &str, stored: Value, kind: &str, id: String) -> Result<Principal, GovernanceError> {
    json::<StoredPrincipal>(what, stored)?.into_principal(kind, id).map_err(|e| corrupt(what, e))
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    // Domain values are plain data: serializing them cannot fail.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// A time as a time column holds it.
pub(crate) fn stored(at: Timestamp) -> UtcTime {
    UtcTime(at.as_datetime())
}

/// A time bound as `backend` compares it with a time column: zoned on
/// PostgreSQL (`timestamptz`, no session time zone applies), naive UTC
/// elsewhere.
pub(crate) fn time_value(backend: DbBackend, at: Timestamp) -> sea_orm::Value {
    let value = stored(at).into();
    if backend == DbBackend::Postgres { UtcTime::on_postgres(value) } else { value }
}

fn utc(at: UtcTime) -> Timestamp {
    Timestamp::from_datetime(at.0)
}

fn revision(what: &str, value: i64) -> Result<u64, GovernanceError> {
    u64::try_from(value).map_err(|_| corrupt(what, value))
}

fn signed(value: u64) -> i64 {
    // Validation keeps revisions and latencies within 2^53.
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A request as a row.
#[cfg(test)]
pub(crate) fn request_row(request: &GovernanceRequest) -> request::Model {
    let spec = request.spec();
    request::Model {
        workspace_id: spec.workspace_id.as_str().to_owned(),
        id: request.id().as_uuid(),
        state_type: spec.target.state_type.clone(),
        state_id: spec.target.state_id.clone(),
        operation: spec.operation.clone(),
        actor_kind: spec.requested_by.actor.kind.as_str().to_owned(),
        actor_id: spec.requested_by.actor.id.clone(),
        requested_by: to_json(&stored_delegation(&spec.requested_by)),
        intent: spec.intent.clone(),
        status: request.status().as_str().to_owned(),
        pending_reason: request.pending_reason().map(|r| r.as_str().to_owned()),
        approvals: to_json(&spec.approvals),
        expected_state_version: spec.expected_state_version,
        stale_strategy: spec.stale_strategy.as_str().to_owned(),
        expires_at: spec.expires_at.map(stored),
        superseded_by: request.superseded_by().map(|id| id.as_uuid()),
        idempotency_key: spec.idempotency_key.clone(),
        category: spec.category.clone(),
        tags: TextList(spec.tags.clone()),
        metadata: spec.metadata.clone(),
        revision: signed(request.revision()),
        created_at: stored(request.created_at()),
        updated_at: stored(request.updated_at()),
        creation_digest: request.creation_digest().to_owned(),
        state_digest: Some(request.state_digest().to_owned()),
    }
}

/// The columns a transition writes, exactly
/// [`TRANSITION_COLUMNS`](governance_abstractions::provider::TRANSITION_COLUMNS):
/// every other column is left unset, so the key and everything fixed at
/// creation (target, requester, intent, idempotency key, …) are never
/// rewritten.
pub(crate) fn transition_update(write: &TransitionWrite<'_>) -> request::ActiveModel {
    request::ActiveModel {
        status: Set(write.status.as_str().to_owned()),
        pending_reason: Set(write.pending_reason.map(|r| r.as_str().to_owned())),
        approvals: Set(to_json(&write.approvals)),
        expected_state_version: Set(write.expected_state_version),
        superseded_by: Set(write.superseded_by.map(|id| id.as_uuid())),
        metadata: Set(write.metadata.clone()),
        revision: Set(signed(write.revision)),
        updated_at: Set(stored(write.updated_at)),
        state_digest: Set(Some(write.state_digest.to_owned())),
        ..Default::default()
    }
}

/// A row as a request; its stored state digest is kept as read (the
/// lifecycle checks it before computing a transition from the request).
pub(crate) fn request_from(row: request::Model) -> Result<GovernanceRequest, GovernanceError> {
    let workspace_id = WorkspaceId::new(row.workspace_id).map_err(|e| corrupt("workspace id", e))?;
    let requested_by = principal("requested_by", row.requested_by, &row.actor_kind, row.actor_id)?;
    let mut spec = NewRequest::new(
        workspace_id,
        TargetRef { state_type: row.state_type, state_id: row.state_id },
        row.operation,
        requested_by,
    );
    spec.intent = row.intent;
    spec.approvals = json("approvals", row.approvals)?;
    spec.expected_state_version = row.expected_state_version;
    spec.stale_strategy = parse("stale_strategy", &row.stale_strategy)?;
    spec.expires_at = row.expires_at.map(utc);
    spec.idempotency_key = row.idempotency_key;
    spec.category = row.category;
    spec.tags = row.tags.0;
    spec.metadata = stored_json(row.metadata);
    decode_request(StoredRequest {
        id: RequestId::from_uuid(row.id),
        spec,
        status: parse("status", &row.status)?,
        pending_reason: row.pending_reason.as_deref().map(|r| parse("pending_reason", r)).transpose()?,
        superseded_by: row.superseded_by.map(RequestId::from_uuid),
        revision: revision("revision", row.revision)?,
        created_at: utc(row.created_at),
        updated_at: utc(row.updated_at),
        creation_digest: row.creation_digest,
        state_digest: row.state_digest,
    })
    .map_err(|e| corrupt("request", e))
}

/// A request's row as the values of an insert, in the entity's column
/// order, each bound as `backend` stores its column (only times and lists
/// differ by backend): one copy of each value, with no model and no query
/// builder in between (a unit test holds them equal to [`request_row`]'s
/// bound by [`bind_value`], column by column).
pub(crate) fn request_values(backend: DbBackend, request: &GovernanceRequest) -> Vec<sea_orm::Value> {
    use request::Column as C;
    let spec = request.spec();
    let bind = |column, value| bind_value(backend, column, value);
    vec![
        spec.workspace_id.as_str().into(),
        request.id().as_uuid().into(),
        spec.target.state_type.as_str().into(),
        spec.target.state_id.as_str().into(),
        spec.operation.as_str().into(),
        spec.requested_by.actor.kind.as_str().into(),
        spec.requested_by.actor.id.as_str().into(),
        to_json(&stored_delegation(&spec.requested_by)).into(),
        spec.intent.clone().into(),
        request.status().as_str().into(),
        request.pending_reason().map(|r| r.as_str()).into(),
        to_json(&spec.approvals).into(),
        spec.expected_state_version.into(),
        spec.stale_strategy.as_str().into(),
        bind(C::ExpiresAt, spec.expires_at.map(stored).into()),
        request.superseded_by().map(|id| id.as_uuid()).into(),
        spec.idempotency_key.clone().into(),
        spec.category.clone().into(),
        bind(C::Tags, TextList(spec.tags.clone()).into()),
        spec.metadata.clone().into(),
        signed(request.revision()).into(),
        bind(C::CreatedAt, stored(request.created_at()).into()),
        bind(C::UpdatedAt, stored(request.updated_at()).into()),
        request.creation_digest().into(),
        Some(request.state_digest()).into(),
    ]
}

/// A record's row as the values of an insert, appended to `values` in the
/// entity's column order, each bound as `backend` stores its column (a unit
/// test holds them equal to [`history_row`]'s, column by column).
pub(crate) fn push_history_values(backend: DbBackend, record: &HistoryRecord, values: &mut Vec<sea_orm::Value>) {
    use history::Column as C;
    let e = record.evidence();
    let bind = |column, value| bind_value(backend, column, value);
    values.extend([
        e.workspace_id.as_str().into(),
        record.id().as_uuid().into(),
        e.request.map(|r| r.id.as_uuid()).into(),
        e.request.map(|r| signed(r.revision)).into(),
        e.category.as_str().into(),
        e.code.as_str().into(),
        e.actor.actor.kind.as_str().into(),
        e.actor.actor.id.as_str().into(),
        to_json(&stored_delegation(&e.actor)).into(),
        e.object_type.as_str().into(),
        e.operation.as_str().into(),
        e.decision.map(|d| d.as_str()).into(),
        e.outcome.map(|o| o.as_str()).into(),
        e.reason.clone().into(),
        bind(C::ReasonCodes, TextList(e.reason_codes.clone()).into()),
        e.correlation_id.clone().into(),
        e.trace_hash.clone().into(),
        e.idempotency_key.clone().into(),
        e.policy_version.clone().into(),
        e.latency_us.map(signed).into(),
        e.request_json.clone().into(),
        e.response_json.clone().into(),
        e.redaction.as_ref().map(|r| r.policy.as_str()).into(),
        e.redaction.as_ref().map(|r| r.version.as_str()).into(),
        bind(C::CreatedAt, stored(record.created_at()).into()),
        record.content_hash().into(),
    ]);
}

/// A record as a row.
#[cfg(test)]
pub(crate) fn history_row(record: &HistoryRecord) -> history::Model {
    let e = record.evidence();
    history::Model {
        workspace_id: e.workspace_id.as_str().to_owned(),
        id: record.id().as_uuid(),
        request_id: e.request.map(|r| r.id.as_uuid()),
        request_revision: e.request.map(|r| signed(r.revision)),
        category: e.category.as_str().to_owned(),
        code: e.code.clone(),
        actor_kind: e.actor.actor.kind.as_str().to_owned(),
        actor_id: e.actor.actor.id.clone(),
        actor: to_json(&stored_delegation(&e.actor)),
        object_type: e.object_type.clone(),
        operation: e.operation.clone(),
        decision: e.decision.map(|d| d.as_str().to_owned()),
        outcome: e.outcome.map(|o| o.as_str().to_owned()),
        reason: e.reason.clone(),
        reason_codes: TextList(e.reason_codes.clone()),
        correlation_id: e.correlation_id.clone(),
        trace_hash: e.trace_hash.clone(),
        idempotency_key: e.idempotency_key.clone(),
        policy_version: e.policy_version.clone(),
        latency_us: e.latency_us.map(signed),
        request_json: e.request_json.clone(),
        response_json: e.response_json.clone(),
        redaction_policy: e.redaction.as_ref().map(|r| r.policy.clone()),
        redaction_version: e.redaction.as_ref().map(|r| r.version.clone()),
        created_at: stored(record.created_at()),
        content_hash: record.content_hash().to_owned(),
    }
}

/// A row as a record, its content hash as stored (checked by whoever relies on it).
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
    let actor = principal("actor", row.actor, &row.actor_kind, row.actor_id)?;
    // `Evidence` is non-exhaustive: start from a decision and set every
    // stored field, the placeholder decision included.
    let mut evidence = Evidence::decision(workspace_id, actor, row.object_type, row.operation, Decision::Approved);
    evidence.request = request;
    evidence.category = parse("category", &row.category)?;
    evidence.code = row.code;
    evidence.decision = row.decision.as_deref().map(|d| parse("decision", d)).transpose()?;
    evidence.outcome = row.outcome.as_deref().map(|o| parse("outcome", o)).transpose()?;
    evidence.reason = row.reason;
    evidence.reason_codes = row.reason_codes.0;
    evidence.correlation_id = row.correlation_id;
    evidence.trace_hash = row.trace_hash;
    evidence.idempotency_key = row.idempotency_key;
    evidence.policy_version = row.policy_version;
    evidence.latency_us = row.latency_us.map(|l| revision("latency_us", l)).transpose()?;
    evidence.request_json = row.request_json.map(stored_json);
    evidence.response_json = row.response_json.map(stored_json);
    evidence.redaction = redaction;
    Ok(decode_record(RecordId::from_uuid(row.id), utc(row.created_at), evidence, row.content_hash))
}

/// A history row of a raw query (columns named `{prefix}{column}`) as an
/// integrity read returns it: the record, or [`Unreadable`] when only its id
/// and time decode, so `verify` can name the row instead of failing. A row
/// whose id or time does not decode either cannot be placed in the log: a
/// backend error.
pub(crate) fn read_record(row: &QueryResult, prefix: &str) -> Result<ReadRecord, GovernanceError> {
    let problem = match ByPosition::<history::Model>::from_query_result(row, prefix) {
        Ok(ByPosition(model)) => match history_from(model) {
            Ok(record) => return Ok(Ok(record)),
            Err(error) => error.to_string(),
        },
        Err(error) => corrupt("history row", error).to_string(),
    };
    let id: Uuid = row.try_get(prefix, "id").map_err(|_| corrupt("history row", &problem))?;
    let created_at: UtcTime = row.try_get(prefix, "created_at").map_err(|_| corrupt("history row", &problem))?;
    Ok(Err(Unreadable { id: RecordId::from_uuid(id), created_at: utc(created_at), problem }))
}

/// A sequence number or leaf index as a `BIGINT`: larger ones cannot be stored.
pub(crate) fn bigint(field: &'static str, value: u64) -> Result<i64, GovernanceError> {
    i64::try_from(value).map_err(|_| GovernanceError::validation(field, ValidationProblem::OutOfRange))
}

/// A checkpoint as a row.
pub(crate) fn checkpoint_row(checkpoint: &Checkpoint) -> Result<checkpoint::Model, GovernanceError> {
    Ok(checkpoint::Model {
        workspace_id: checkpoint.workspace_id().as_str().to_owned(),
        seq: bigint("checkpoint.seq", checkpoint.seq())?,
        first_index: bigint("checkpoint.first_index", checkpoint.first_index())?,
        record_count: bigint("checkpoint.record_count", checkpoint.record_count())?,
        root: checkpoint.root().to_owned(),
        previous: checkpoint.previous().map(str::to_owned),
        created_at: stored(checkpoint.created_at()),
        digest: checkpoint.digest().to_owned(),
    })
}

/// A row as a checkpoint, its digest as stored (`verify` recomputes it).
pub(crate) fn checkpoint_from(row: checkpoint::Model) -> Result<Checkpoint, GovernanceError> {
    Ok(decode_checkpoint(CheckpointParts {
        workspace_id: WorkspaceId::new(row.workspace_id).map_err(|e| corrupt("workspace id", e))?,
        seq: revision("checkpoint seq", row.seq)?,
        first_index: revision("checkpoint first_index", row.first_index)?,
        record_count: revision("checkpoint record_count", row.record_count)?,
        root: row.root,
        previous: row.previous,
        created_at: utc(row.created_at),
        digest: row.digest,
    }))
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

#[cfg(test)]
mod tests {
    use governance_abstractions::provider::TRANSITION_COLUMNS;
    use governance_abstractions::{Action, Actor, NewRequest, RequestId, TargetRef, Timestamp, WorkspaceId, lifecycle};
    use sea_orm::{ActiveModelTrait, IdenStatic, IntoActiveModel, Iterable, ModelTrait};

    use super::*;

    fn backends() -> Vec<DbBackend> {
        vec![DbBackend::Postgres, DbBackend::MySql, DbBackend::Sqlite]
    }

    /// The insert's values are the entity row's, column by column, as each
    /// backend binds them: a column added to the entity and not here, or
    /// two values out of order, fails this.
    #[test]
    fn insert_values_are_the_rows_values_in_column_order() {
        let ws = WorkspaceId::new("acme").expect("valid");
        let mut spec = NewRequest::new(ws.clone(), TargetRef::new("flag", "f"), "enable", Actor::user("dev"));
        spec.intent = "why".into();
        spec.tags = vec!["a".into(), "b".into()];
        spec.category = Some("ops".into());
        spec.idempotency_key = Some("k".into());
        spec.expires_at = Some(Timestamp::now());
        spec.metadata = serde_json::json!({"n": 1.5});
        let creation = lifecycle::create(spec, RequestId::new(), Timestamp::now()).expect("valid");
        let mut full = Evidence::decision(ws.clone(), Actor::user("u"), "invoice", "pay", Decision::Denied);
        full.request = Some(RequestRef { id: creation.request().id(), revision: 3 });
        full.reason = Some("over limit".into());
        full.reason_codes = vec!["limit".into(), "risk".into()];
        full.correlation_id = Some("c".into());
        full.trace_hash = Some("t".into());
        full.idempotency_key = Some("i".into());
        full.policy_version = Some("p".into());
        full.latency_us = Some(7);
        full.request_json = Some(serde_json::json!({"a": [1, "x"]}));
        full.response_json = Some(serde_json::json!(null));
        let full = HistoryRecord::new(full, Timestamp::now()).expect("valid");
        let records = [creation.record().clone(), full];
        for backend in backends() {
            let row = request_row(creation.request());
            let values = request_values(backend, creation.request());
            assert_eq!(values.len(), request::Column::iter().count());
            for (column, value) in request::Column::iter().zip(values) {
                assert_eq!(value, bind_value(backend, column, row.get(column)), "{backend:?} {}", column.as_str());
            }
            for record in &records {
                let row = history_row(record);
                let mut values = Vec::new();
                push_history_values(backend, record, &mut values);
                assert_eq!(values.len(), history::Column::iter().count());
                for (column, value) in history::Column::iter().zip(values) {
                    assert_eq!(value, bind_value(backend, column, row.get(column)), "{backend:?} {}", column.as_str());
                }
            }
        }
    }

    /// The update sets exactly the columns every provider writes on a
    /// transition, and nothing fixed at creation.
    #[test]
    fn a_transition_sets_exactly_the_transition_columns() {
        let ws = WorkspaceId::new("acme").expect("valid");
        let spec = NewRequest::new(ws, TargetRef::new("flag", "f"), "enable", Actor::user("dev"));
        let creation = lifecycle::create(spec, RequestId::new(), Timestamp::now()).expect("valid");
        let by = Actor::user("dev").into();
        let transition =
            lifecycle::apply(creation.request(), &by, &Action::Approve, Timestamp::now()).expect("allowed");
        let update = transition_update(&transition.write());
        let mut set: Vec<&str> =
            request::Column::iter().filter(|column| update.get(*column).is_set()).map(|c| c.as_str()).collect();
        let mut expected = TRANSITION_COLUMNS.to_vec();
        set.sort_unstable();
        expected.sort_unstable();
        assert_eq!(set, expected);
        // Each with the new state's value, as a full row of it holds.
        let row = request_row(transition.request()).into_active_model();
        for column in request::Column::iter().filter(|column| update.get(*column).is_set()) {
            assert_eq!(update.get(column).into_value(), row.get(column).into_value(), "{}", column.as_str());
        }
    }
}
