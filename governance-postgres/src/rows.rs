//! Rows ↔ domain values, and history records as column arrays for
//! `UNNEST` (one statement, binary-encoded, for any number of records).

use chrono::{DateTime, Utc};
use governance_abstractions::provider::postgres_statements::HistoryRows;
use governance_abstractions::provider::{
    CheckpointParts, StoredPrincipal, StoredRequest, decode_checkpoint, decode_record, decode_request,
    restore_stored_json, stored_delegation,
};
use governance_abstractions::{
    Checkpoint, Decision, Evidence, GovernanceError, GovernanceRequest, HistoryRecord, NewRequest, Principal,
    ReadRecord, RecordId, RedactionRef, RequestId, RequestRef, SealEntry, TargetRef, Timestamp, Unreadable,
    WorkspaceId,
};
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;

/// The history columns, in the order every statement names them.
macro_rules! history_columns {
    () => {
        "workspace_id, id, request_id, request_revision, category, code, actor_kind, \
    actor_id, actor, object_type, operation, decision, outcome, reason, reason_codes, correlation_id, trace_hash, \
    idempotency_key, policy_version, latency_us, request_json, response_json, redaction_policy, redaction_version, \
    created_at, content_hash"
    };
}
pub(crate) use history_columns;

/// The request columns, in the order of the insert's parameters `$1..$25`.
macro_rules! request_columns {
    () => {
        "workspace_id, id, state_type, state_id, operation, actor_kind, actor_id, \
    requested_by, intent, status, pending_reason, approvals, expected_state_version, stale_strategy, expires_at, \
    superseded_by, idempotency_key, category, tags, metadata, revision, created_at, updated_at, creation_digest, \
    state_digest"
    };
}
pub(crate) use request_columns;

/// The checkpoint columns, in the order of the insert's parameters `$1..$8`.
macro_rules! checkpoint_columns {
    () => {
        "workspace_id, seq, first_index, record_count, root, previous, created_at, digest"
    };
}
pub(crate) use checkpoint_columns;

/// The seal entry columns.
macro_rules! seal_columns {
    () => {
        "leaf_index, record_id, content_hash, checkpoint_seq"
    };
}
pub(crate) use seal_columns;

/// What does not decode in a stored row: a value this library never writes.
/// Kept apart from [`GovernanceError`] so the integrity reads can report it
/// per row ([`Unreadable`]) while the other reads fail with it.
#[derive(Debug)]
pub(crate) struct Corrupt(String);

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Corrupt {}

impl From<Corrupt> for GovernanceError {
    fn from(corrupt: Corrupt) -> Self {
        GovernanceError::backend(false, corrupt)
    }
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> Corrupt {
    Corrupt(format!("stored {what} does not decode: {detail}"))
}

fn get<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
    row: &'r PgRow,
    column: &str,
) -> Result<T, Corrupt> {
    row.try_get(column).map_err(|e| corrupt(column, e))
}

fn stored_json(mut value: Value) -> Value {
    restore_stored_json(&mut value);
    value
}

fn parse<T: std::str::FromStr>(what: &str, text: &str) -> Result<T, Corrupt> {
    text.parse().map_err(|_| corrupt(what, text))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, value: Value) -> Result<T, Corrupt> {
    serde_json::from_value(value).map_err(|e| corrupt(what, e))
}

/// A principal from its JSON column (the delegation chain, or in older
/// rows the whole principal) and its actor's `kind` and `id` columns, which
/// filters and counts read: they are the actor.
fn principal(
    sqlx::types::Json(stored): sqlx::types::Json<StoredPrincipal>,
    kind: &str,
    id: String,
    what: &str,
) -> Result<Principal, Corrupt> {
    stored.into_principal(kind, id).map_err(|e| corrupt(what, e))
}

fn unsigned(what: &str, value: i64) -> Result<u64, Corrupt> {
    u64::try_from(value).map_err(|_| corrupt(what, value))
}

fn workspace(row: &PgRow) -> Result<WorkspaceId, Corrupt> {
    WorkspaceId::new(get::<String>(row, "workspace_id")?).map_err(|e| corrupt("workspace_id", e))
}

/// Validation keeps revisions and latencies within 2^53.
pub(crate) fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn at(time: Timestamp) -> DateTime<Utc> {
    time.as_datetime()
}

/// Binds `records` as the column arrays of
/// [`HistoryRows::Arrays`](governance_abstractions::provider::postgres_statements::HistoryRows::Arrays):
/// every record's reason codes in one flat list, each record's bounds in it
/// last.
///
/// `form` is `Arrays` or `ArraysJsonCodes` (reason codes as one `jsonb` list
/// per record, no bounds).
pub(crate) fn bind_history<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    records: &[&'q HistoryRecord],
    form: HistoryRows,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    use sqlx::types::Json;
    let e = |r: &&'q HistoryRecord| r.evidence();
    let column = |f: fn(&'q HistoryRecord) -> Option<&'q str>| records.iter().map(|r| f(r)).collect::<Vec<_>>();
    let flat = form == HistoryRows::Arrays;
    let query = query
        .bind(records.iter().map(|r| e(r).workspace_id.as_str()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.id().as_uuid()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| e(r).request.map(|q| q.id.as_uuid())).collect::<Vec<_>>())
        .bind(records.iter().map(|r| e(r).request.map(|q| signed(q.revision))).collect::<Vec<_>>())
        .bind(records.iter().map(|r| e(r).category.as_str()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| e(r).code.as_str()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| e(r).actor.actor.kind.as_str()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| e(r).actor.actor.id.as_str()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| Json(stored_delegation(&e(r).actor))).collect::<Vec<_>>())
        .bind(records.iter().map(|r| e(r).object_type.as_str()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| e(r).operation.as_str()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| e(r).decision.map(|d| d.as_str())).collect::<Vec<_>>())
        .bind(records.iter().map(|r| e(r).outcome.map(|o| o.as_str())).collect::<Vec<_>>())
        .bind(column(|r| r.evidence().reason.as_deref()));
    let query = if flat {
        query.bind(records.iter().flat_map(|r| e(r).reason_codes.iter().map(String::as_str)).collect::<Vec<_>>())
    } else {
        query.bind(records.iter().map(|r| Json(&e(r).reason_codes)).collect::<Vec<_>>())
    };
    let query = query
        .bind(column(|r| r.evidence().correlation_id.as_deref()))
        .bind(column(|r| r.evidence().trace_hash.as_deref()))
        .bind(column(|r| r.evidence().idempotency_key.as_deref()))
        .bind(column(|r| r.evidence().policy_version.as_deref()))
        .bind(records.iter().map(|r| e(r).latency_us.map(signed)).collect::<Vec<_>>())
        .bind(records.iter().map(|r| e(r).request_json.as_ref().map(Json)).collect::<Vec<_>>())
        .bind(records.iter().map(|r| e(r).response_json.as_ref().map(Json)).collect::<Vec<_>>())
        .bind(column(|r| r.evidence().redaction.as_ref().map(|x| x.policy.as_str())))
        .bind(column(|r| r.evidence().redaction.as_ref().map(|x| x.version.as_str())))
        .bind(records.iter().map(|r| r.created_at().as_datetime()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.content_hash()).collect::<Vec<_>>());
    if !flat {
        return query;
    }
    // Positions from 1, as the server slices; a validated batch holds at
    // most 1 000 records of 64 codes, far below `i32::MAX`.
    let (mut from, mut to) = (Vec::with_capacity(records.len()), Vec::with_capacity(records.len()));
    let mut last = 0usize;
    for record in records {
        from.push(i32::try_from(last + 1).unwrap_or(i32::MAX));
        last += e(record).reason_codes.len();
        to.push(i32::try_from(last).unwrap_or(i32::MAX));
    }
    query.bind(from).bind(to)
}

/// Binds one record's 26 columns as the next parameters, the
/// [`HistoryRows::Values(1)`](governance_abstractions::provider::postgres_statements::HistoryRows::Values)
/// row of a single-record append, creation or transition: cheaper for the
/// server than `UNNEST`.
pub(crate) fn bind_history_row<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    record: &'q HistoryRecord,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    use sqlx::types::Json;
    let e = record.evidence();
    query
        .bind(e.workspace_id.as_str())
        .bind(record.id().as_uuid())
        .bind(e.request.map(|q| q.id.as_uuid()))
        .bind(e.request.map(|q| signed(q.revision)))
        .bind(e.category.as_str())
        .bind(e.code.as_str())
        .bind(e.actor.actor.kind.as_str())
        .bind(e.actor.actor.id.as_str())
        .bind(Json(stored_delegation(&e.actor)))
        .bind(e.object_type.as_str())
        .bind(e.operation.as_str())
        .bind(e.decision.map(|d| d.as_str()))
        .bind(e.outcome.map(|o| o.as_str()))
        .bind(e.reason.as_deref())
        .bind(&e.reason_codes)
        .bind(e.correlation_id.as_deref())
        .bind(e.trace_hash.as_deref())
        .bind(e.idempotency_key.as_deref())
        .bind(e.policy_version.as_deref())
        .bind(e.latency_us.map(signed))
        .bind(e.request_json.as_ref().map(Json))
        .bind(e.response_json.as_ref().map(Json))
        .bind(e.redaction.as_ref().map(|x| x.policy.as_str()))
        .bind(e.redaction.as_ref().map(|x| x.version.as_str()))
        .bind(record.created_at().as_datetime())
        .bind(record.content_hash())
}

/// Binds a request's columns in `request_columns!` order.
pub(crate) fn bind_request<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    request: &'q GovernanceRequest,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let spec = request.spec();
    query
        .bind(spec.workspace_id.as_str())
        .bind(request.id().as_uuid())
        .bind(&spec.target.state_type)
        .bind(&spec.target.state_id)
        .bind(&spec.operation)
        .bind(spec.requested_by.actor.kind.as_str())
        .bind(&spec.requested_by.actor.id)
        .bind(sqlx::types::Json(stored_delegation(&spec.requested_by)))
        .bind(&spec.intent)
        .bind(request.status().as_str())
        .bind(request.pending_reason().map(|r| r.as_str()))
        .bind(sqlx::types::Json(&spec.approvals))
        .bind(spec.expected_state_version)
        .bind(spec.stale_strategy.as_str())
        .bind(spec.expires_at.map(at))
        .bind(request.superseded_by().map(|id| id.as_uuid()))
        .bind(spec.idempotency_key.as_deref())
        .bind(spec.category.as_deref())
        .bind(&spec.tags)
        .bind(sqlx::types::Json(&spec.metadata))
        .bind(signed(request.revision()))
        .bind(at(request.created_at()))
        .bind(at(request.updated_at()))
        .bind(request.creation_digest())
        .bind(request.state_digest())
}

pub(crate) fn request_from(row: &PgRow) -> Result<GovernanceRequest, GovernanceError> {
    let spec = NewRequest {
        workspace_id: workspace(row)?,
        target: TargetRef { state_type: get(row, "state_type")?, state_id: get(row, "state_id")? },
        operation: get(row, "operation")?,
        requested_by: principal(
            get(row, "requested_by")?,
            get(row, "actor_kind")?,
            get(row, "actor_id")?,
            "requested_by",
        )?,
        intent: get(row, "intent")?,
        approvals: from_json("approvals", get(row, "approvals")?)?,
        expected_state_version: get(row, "expected_state_version")?,
        stale_strategy: parse("stale_strategy", &get::<String>(row, "stale_strategy")?)?,
        expires_at: get::<Option<DateTime<Utc>>>(row, "expires_at")?.map(Timestamp::from_datetime),
        idempotency_key: get(row, "idempotency_key")?,
        category: get(row, "category")?,
        tags: get(row, "tags")?,
        metadata: stored_json(get(row, "metadata")?),
    };
    decode_request(StoredRequest {
        id: RequestId::from_uuid(get(row, "id")?),
        spec,
        status: parse("status", &get::<String>(row, "status")?)?,
        pending_reason: get::<Option<String>>(row, "pending_reason")?
            .map(|r| parse("pending_reason", &r))
            .transpose()?,
        superseded_by: get::<Option<uuid::Uuid>>(row, "superseded_by")?.map(RequestId::from_uuid),
        revision: unsigned("revision", get(row, "revision")?)?,
        created_at: Timestamp::from_datetime(get(row, "created_at")?),
        updated_at: Timestamp::from_datetime(get(row, "updated_at")?),
        creation_digest: get(row, "creation_digest")?,
        // NULL on rows written before the state digest column existed.
        state_digest: get(row, "state_digest")?,
    })
}

/// A history row for the reads that fail on an undecodable row.
pub(crate) fn history_from(row: &PgRow) -> Result<HistoryRecord, GovernanceError> {
    Ok(decoded_history::<Checked>(row, record_key(row)?)?)
}

/// A history row for the integrity reads: undecodable beyond its id and
/// creation time, it comes back as [`Unreadable`] so `verify` can name it.
/// Only a row without a usable id or time fails the read.
pub(crate) fn read_record_from(row: &PgRow) -> Result<ReadRecord, GovernanceError> {
    let (id, created_at) = record_key(row)?;
    Ok(decoded_history::<Checked>(row, (id, created_at)).map_err(|problem| Unreadable {
        id,
        created_at,
        problem: problem.0,
    }))
}

/// The place of each column in a history row: every statement that reads
/// history rows selects `history_columns!()` first, in that order (the
/// feed adds its cursor after them). Reading by place spares a lookup of
/// the column's name in every column of every row, which was a fifth of
/// the cost of decoding a record; a test keeps these in step with the
/// macro, and a row with other columns still fails with a typed error
/// (each read checks the column's type).
mod at {
    pub(super) const WORKSPACE_ID: usize = 0;
    pub(super) const ID: usize = 1;
    pub(super) const REQUEST_ID: usize = 2;
    pub(super) const REQUEST_REVISION: usize = 3;
    pub(super) const CATEGORY: usize = 4;
    pub(super) const CODE: usize = 5;
    pub(super) const ACTOR_KIND: usize = 6;
    pub(super) const ACTOR_ID: usize = 7;
    pub(super) const ACTOR: usize = 8;
    pub(super) const OBJECT_TYPE: usize = 9;
    pub(super) const OPERATION: usize = 10;
    pub(super) const DECISION: usize = 11;
    pub(super) const OUTCOME: usize = 12;
    pub(super) const REASON: usize = 13;
    pub(super) const REASON_CODES: usize = 14;
    pub(super) const CORRELATION_ID: usize = 15;
    pub(super) const TRACE_HASH: usize = 16;
    pub(super) const IDEMPOTENCY_KEY: usize = 17;
    pub(super) const POLICY_VERSION: usize = 18;
    pub(super) const LATENCY_US: usize = 19;
    pub(super) const REQUEST_JSON: usize = 20;
    pub(super) const RESPONSE_JSON: usize = 21;
    pub(super) const REDACTION_POLICY: usize = 22;
    pub(super) const REDACTION_VERSION: usize = 23;
    pub(super) const CREATED_AT: usize = 24;
    pub(super) const CONTENT_HASH: usize = 25;
}

/// How the columns of a history row are read.
///
/// sqlx's `try_get` compares a column's type with the Rust type read for
/// every column of every row: about a fifth of the cost of decoding a
/// record. Every row of one statement's result has the same column types
/// (one row description), so a result's first row is read [`Checked`],
/// every column's declared type against the type [`decoded_history`] reads
/// it as (a `NULL` too), and the rows after it [`Trusted`].
trait Columns {
    /// The history column at `index` (see [`at`]), an error naming it when
    /// it does not decode.
    fn column<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
        row: &'r PgRow,
        index: usize,
    ) -> Result<T, Corrupt>;
}

fn column_name(index: usize) -> &'static str {
    HISTORY_COLUMNS.get(index).copied().unwrap_or("history column")
}

/// Checks each column's declared type before decoding it.
enum Checked {}

impl Columns for Checked {
    fn column<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
        row: &'r PgRow,
        index: usize,
    ) -> Result<T, Corrupt> {
        use sqlx::Column;
        let declared = row.try_column(index).map_err(|e| corrupt(column_name(index), e))?.type_info();
        if !T::compatible(declared) {
            return Err(corrupt(column_name(index), format!("a column of type {declared}")));
        }
        row.try_get_unchecked(index).map_err(|e| corrupt(column_name(index), e))
    }
}

/// Decodes without the type check: only for a row of a result whose first
/// row was read [`Checked`].
enum Trusted {}

impl Columns for Trusted {
    fn column<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
        row: &'r PgRow,
        index: usize,
    ) -> Result<T, Corrupt> {
        row.try_get_unchecked(index).map_err(|e| corrupt(column_name(index), e))
    }
}

/// The history column at `index`, its type checked.
fn column<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
    row: &'r PgRow,
    index: usize,
) -> Result<T, Corrupt> {
    Checked::column(row, index)
}

/// The names of the history columns, in `history_columns!()` order.
const HISTORY_COLUMNS: [&str; 26] = [
    "workspace_id",
    "id",
    "request_id",
    "request_revision",
    "category",
    "code",
    "actor_kind",
    "actor_id",
    "actor",
    "object_type",
    "operation",
    "decision",
    "outcome",
    "reason",
    "reason_codes",
    "correlation_id",
    "trace_hash",
    "idempotency_key",
    "policy_version",
    "latency_us",
    "request_json",
    "response_json",
    "redaction_policy",
    "redaction_version",
    "created_at",
    "content_hash",
];

fn record_key(row: &PgRow) -> Result<(RecordId, Timestamp), Corrupt> {
    Ok((RecordId::from_uuid(column(row, at::ID)?), Timestamp::from_datetime(column(row, at::CREATED_AT)?)))
}

/// The records of one statement's result, in order: the first row's
/// columns checked, the rest decoded as trusted (see [`Columns`]).
pub(crate) fn histories_from(rows: &[PgRow]) -> Result<Vec<HistoryRecord>, GovernanceError> {
    let Some((first, rest)) = rows.split_first() else { return Ok(Vec::new()) };
    let mut records = Vec::with_capacity(rows.len());
    records.push(history_from(first)?);
    for row in rest {
        let key = (
            RecordId::from_uuid(Trusted::column(row, at::ID)?),
            Timestamp::from_datetime(Trusted::column(row, at::CREATED_AT)?),
        );
        records.push(decoded_history::<Trusted>(row, key)?);
    }
    Ok(records)
}

/// A text enum column, parsed from the row's bytes: no `String` for a value
/// that only selects a variant.
fn text_enum<R: Columns, T: std::str::FromStr>(row: &PgRow, index: usize) -> Result<Option<T>, Corrupt> {
    R::column::<Option<&str>>(row, index)?.map(|text| parse(HISTORY_COLUMNS[index], text)).transpose()
}

fn decoded_history<R: Columns>(row: &PgRow, (id, created_at): (RecordId, Timestamp)) -> Result<HistoryRecord, Corrupt> {
    let request = match (
        R::column::<Option<uuid::Uuid>>(row, at::REQUEST_ID)?,
        R::column::<Option<i64>>(row, at::REQUEST_REVISION)?,
    ) {
        (Some(id), Some(revision)) => {
            Some(RequestRef { id: RequestId::from_uuid(id), revision: unsigned("request_revision", revision)? })
        }
        (None, None) => None,
        _ => return Err(corrupt("request reference", "id and revision must be set together")),
    };
    let redaction = match (
        R::column::<Option<String>>(row, at::REDACTION_POLICY)?,
        R::column::<Option<String>>(row, at::REDACTION_VERSION)?,
    ) {
        (Some(policy), Some(version)) => Some(RedactionRef { policy, version }),
        _ => None,
    };
    let workspace_id =
        WorkspaceId::new(R::column::<String>(row, at::WORKSPACE_ID)?).map_err(|e| corrupt("workspace_id", e))?;
    // Straight from the column's bytes: no JSON tree built only to be
    // walked once and dropped.
    let actor =
        principal(R::column(row, at::ACTOR)?, R::column(row, at::ACTOR_KIND)?, R::column(row, at::ACTOR_ID)?, "actor")?;
    // `Evidence` has no struct literal outside its crate: start from a
    // decision and overwrite every field with the stored one.
    let mut evidence = Evidence::decision(
        workspace_id,
        actor,
        R::column::<String>(row, at::OBJECT_TYPE)?,
        R::column::<String>(row, at::OPERATION)?,
        Decision::Approved,
    );
    evidence.request = request;
    evidence.category = parse("category", R::column::<&str>(row, at::CATEGORY)?)?;
    evidence.code = R::column(row, at::CODE)?;
    evidence.decision = text_enum::<R, _>(row, at::DECISION)?;
    evidence.outcome = text_enum::<R, _>(row, at::OUTCOME)?;
    evidence.reason = R::column(row, at::REASON)?;
    evidence.reason_codes = R::column(row, at::REASON_CODES)?;
    evidence.correlation_id = R::column(row, at::CORRELATION_ID)?;
    evidence.trace_hash = R::column(row, at::TRACE_HASH)?;
    evidence.idempotency_key = R::column(row, at::IDEMPOTENCY_KEY)?;
    evidence.policy_version = R::column(row, at::POLICY_VERSION)?;
    evidence.latency_us =
        R::column::<Option<i64>>(row, at::LATENCY_US)?.map(|l| unsigned("latency_us", l)).transpose()?;
    evidence.request_json = R::column::<Option<Value>>(row, at::REQUEST_JSON)?.map(stored_json);
    evidence.response_json = R::column::<Option<Value>>(row, at::RESPONSE_JSON)?.map(stored_json);
    evidence.redaction = redaction;
    Ok(decode_record(id, created_at, evidence, R::column(row, at::CONTENT_HASH)?))
}

pub(crate) fn checkpoint_from(row: &PgRow) -> Result<Checkpoint, GovernanceError> {
    Ok(decode_checkpoint(CheckpointParts {
        workspace_id: workspace(row)?,
        seq: unsigned("seq", get(row, "seq")?)?,
        first_index: unsigned("first_index", get(row, "first_index")?)?,
        record_count: unsigned("record_count", get(row, "record_count")?)?,
        root: get(row, "root")?,
        previous: get(row, "previous")?,
        created_at: Timestamp::from_datetime(get(row, "created_at")?),
        digest: get(row, "digest")?,
    }))
}

pub(crate) fn seal_from(row: &PgRow) -> Result<SealEntry, GovernanceError> {
    Ok(SealEntry {
        index: unsigned("leaf_index", get(row, "leaf_index")?)?,
        record_id: RecordId::from_uuid(get(row, "record_id")?),
        content_hash: get(row, "content_hash")?,
        checkpoint: unsigned("checkpoint_seq", get(row, "checkpoint_seq")?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// History-shaped rows from literals: `request_revision` as `revision`.
    fn literal_rows(revision: &str) -> String {
        format!(
            "SELECT 'ws'::text, gen_random_uuid(), NULL::uuid, {revision}, 'decision'::text, \
             'decision.approved'::text, 'user'::text, 'u'::text, '{{}}'::jsonb, 'o'::text, 'op'::text, \
             'approved'::text, NULL::text, NULL::text, ARRAY['a']::text[], NULL::text, NULL::text, NULL::text, \
             NULL::text, NULL::int8, NULL::jsonb, '{{\"ok\": true}}'::jsonb, NULL::text, NULL::text, \
             now() + n * interval '1 second', 'hash'::text FROM generate_series(1, 3) AS n"
        )
    }

    /// Only a result's first row is type-checked, but it checks every
    /// column's declared type, a column that is `NULL` in every row too: a
    /// result whose columns are not the history columns fails, whichever
    /// rows hold values.
    #[tokio::test]
    async fn a_result_is_type_checked_once_for_every_row() {
        use sqlx::Connection;
        let Some(url) =
            governance_test_support::fresh_database_or_skip(governance_test_support::Server::Postgres).await
        else {
            return;
        };
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connects");
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(literal_rows("NULL::int8"))).fetch_all(&mut conn).await.expect("rows");
        let records = histories_from(&rows).expect("history rows decode");
        assert_eq!(records.len(), 3);
        assert_eq!(records[2].evidence().reason_codes, ["a"]);
        assert_eq!(records[1].evidence().response_json, Some(serde_json::json!({"ok": true})));
        for wrong in ["NULL::text", "NULL::int4", "NULL::numeric"] {
            let rows = sqlx::query(sqlx::AssertSqlSafe(literal_rows(wrong))).fetch_all(&mut conn).await.expect("rows");
            let error = histories_from(&rows).expect_err(wrong);
            let cause = std::error::Error::source(&error).map(ToString::to_string).unwrap_or_default();
            assert!(cause.contains("request_revision"), "{wrong}: {cause}");
        }
    }

    /// The places [`decoded_history`] reads by are the places of the
    /// columns every history statement selects.
    #[test]
    fn history_column_places_follow_the_select_list() {
        let selected: Vec<&str> = history_columns!().split(',').map(str::trim).collect();
        assert_eq!(selected, HISTORY_COLUMNS);
        let places = [
            (at::WORKSPACE_ID, "workspace_id"),
            (at::ID, "id"),
            (at::REQUEST_ID, "request_id"),
            (at::REQUEST_REVISION, "request_revision"),
            (at::CATEGORY, "category"),
            (at::CODE, "code"),
            (at::ACTOR_KIND, "actor_kind"),
            (at::ACTOR_ID, "actor_id"),
            (at::ACTOR, "actor"),
            (at::OBJECT_TYPE, "object_type"),
            (at::OPERATION, "operation"),
            (at::DECISION, "decision"),
            (at::OUTCOME, "outcome"),
            (at::REASON, "reason"),
            (at::REASON_CODES, "reason_codes"),
            (at::CORRELATION_ID, "correlation_id"),
            (at::TRACE_HASH, "trace_hash"),
            (at::IDEMPOTENCY_KEY, "idempotency_key"),
            (at::POLICY_VERSION, "policy_version"),
            (at::LATENCY_US, "latency_us"),
            (at::REQUEST_JSON, "request_json"),
            (at::RESPONSE_JSON, "response_json"),
            (at::REDACTION_POLICY, "redaction_policy"),
            (at::REDACTION_VERSION, "redaction_version"),
            (at::CREATED_AT, "created_at"),
            (at::CONTENT_HASH, "content_hash"),
        ];
        for (place, name) in places {
            assert_eq!(selected[place], name);
        }
    }
}
