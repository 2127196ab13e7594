//! The write paths. On the pool each write is one statement (data-modifying
//! CTEs make it atomic without BEGIN/COMMIT round trips); inside a caller's
//! transaction each runs in a savepoint so a refused write leaves the
//! caller's transaction usable.

use std::collections::HashSet;
use std::sync::LazyLock;

use governance_abstractions::provider::postgres_statements::HistoryRows;
use governance_abstractions::provider::{
    AppendStorage, InsertAttempt, TransitionWrite, append_history_with, check_commit_target, check_successor,
    postgres_statements, validate_creation, validate_transition,
};
use governance_abstractions::{
    Creation, EntityKind, GovernanceError, GovernanceRequest, HistoryRecord, RequestStatus, Result, Stored, Transition,
    WorkspaceId,
};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{Acquire, PgConnection, Postgres, Row};

use crate::SchemaProfile;
use crate::error::{invisible_collision, is_unique_violation, map};
use crate::rows::{
    bind_history, bind_history_row, bind_request, history_columns, history_from, request_columns, request_from, signed,
};

/// The statements, built once from the texts both PostgreSQL providers
/// send ([`postgres_statements`]). A creation has one record, bound as a
/// plain `VALUES` row: for one row the server plans and reads that for less
/// than `UNNEST` over 26 one-element arrays.
static CREATE_SQL: LazyLock<String> = LazyLock::new(|| postgres_statements::create_request(HistoryRows::Values(1)));

/// The columns [`bind_transition`] binds, in its order: the shared
/// [`TRANSITION_COLUMNS`](governance_abstractions::provider::TRANSITION_COLUMNS) (a unit test holds the two equal, so the `SET`
/// clause, built from the shared list, cannot pair a column with another's
/// value).
#[cfg(test)]
const BOUND_TRANSITION_COLUMNS: [&str; 9] = [
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

/// The array form of a store's history rows: the distributed profile's
/// engines may have no array slicing (CockroachDB has none), so there each
/// record's reason codes travel as a `jsonb` list.
pub(crate) fn array_form(profile: SchemaProfile) -> HistoryRows {
    match profile {
        SchemaProfile::Standard => HistoryRows::Arrays,
        SchemaProfile::Distributed => HistoryRows::ArraysJsonCodes,
    }
}

/// A statement built for each array form.
struct ByForm {
    arrays: LazyLock<String>,
    json_codes: LazyLock<String>,
}

impl ByForm {
    fn get(&self, form: HistoryRows) -> &str {
        if form == HistoryRows::Arrays { &self.arrays } else { &self.json_codes }
    }
}

/// A transition ([`postgres_statements::transition`]), its records as
/// column arrays; [`TRANSITION_ONE_SQL`] for the common single record.
static TRANSITION_SQL: ByForm = ByForm {
    arrays: LazyLock::new(|| postgres_statements::transition(HistoryRows::Arrays, false)),
    json_codes: LazyLock::new(|| postgres_statements::transition(HistoryRows::ArraysJsonCodes, false)),
};
static TRANSITION_ONE_SQL: LazyLock<String> =
    LazyLock::new(|| postgres_statements::transition(HistoryRows::Values(1), false));

/// A supersession: the older request's transition, written only while the
/// successor is still at the revision and digest it was computed against.
static SUPERSEDE_SQL: ByForm = ByForm {
    arrays: LazyLock::new(|| postgres_statements::transition(HistoryRows::Arrays, true)),
    json_codes: LazyLock::new(|| postgres_statements::transition(HistoryRows::ArraysJsonCodes, true)),
};
static SUPERSEDE_ONE_SQL: LazyLock<String> =
    LazyLock::new(|| postgres_statements::transition(HistoryRows::Values(1), true));

/// The stored row of the request a missed transition was computed from,
/// locked until the end of the slow path's transaction.
const LOCK_TARGET_SQL: &str =
    concat!("SELECT ", request_columns!(), " FROM governance_requests WHERE workspace_id = $1 AND id = $2 FOR UPDATE");

/// The stored row of a supersession's successor, share-locked as the
/// statement's guard locks it.
const LOCK_SUCCESSOR_SQL: &str =
    concat!("SELECT ", request_columns!(), " FROM governance_requests WHERE workspace_id = $1 AND id = $2 FOR SHARE");

const APPEND_ONE_SQL: &str = concat!(
    "INSERT INTO governance_history (",
    history_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, \
     $23, $24, $25, $26)"
);

static APPEND_SQL: ByForm = ByForm {
    arrays: LazyLock::new(|| postgres_statements::append_history(HistoryRows::Arrays)),
    json_codes: LazyLock::new(|| postgres_statements::append_history(HistoryRows::ArraysJsonCodes)),
};

/// Runs one statement, in a savepoint when `isolate` (inside a caller's
/// transaction a failed statement would otherwise abort it).
async fn run(
    conn: &mut PgConnection,
    isolate: bool,
    query: Query<'_, Postgres, PgArguments>,
) -> sqlx::Result<Vec<PgRow>> {
    if !isolate {
        return query.fetch_all(conn).await;
    }
    let mut savepoint = conn.begin().await?;
    match query.fetch_all(&mut *savepoint).await {
        Ok(rows) => {
            savepoint.commit().await?;
            Ok(rows)
        }
        Err(error) => {
            // Report the statement's failure, not the rollback's.
            let _ = savepoint.rollback().await;
            Err(error)
        }
    }
}

pub(crate) async fn create_request(
    conn: &mut PgConnection,
    isolate: bool,
    creation: &Creation,
) -> Result<Stored<GovernanceRequest>> {
    validate_creation(creation)?;
    let request = creation.request();
    let query = bind_request(sqlx::query(sqlx::AssertSqlSafe(CREATE_SQL.as_str())), request);
    let query = bind_history_row(query, creation.record());
    match run(conn, isolate, query).await {
        Ok(rows) if !rows.is_empty() => Ok(Stored::New(request.clone())),
        Ok(_) => resolve_create_clash(conn, creation).await,
        Err(error) if is_unique_violation(&error) => resolve_create_clash(conn, creation).await,
        Err(error) => Err(map(error)),
    }
}

/// Nothing was created: a replay, an idempotency conflict, or a taken id.
async fn resolve_create_clash(conn: &mut PgConnection, creation: &Creation) -> Result<Stored<GovernanceRequest>> {
    let request = creation.request();
    let workspace = request.workspace_id();
    if let Some(key) = request.idempotency_key() {
        let original = sqlx::query(concat!(
            "SELECT ",
            request_columns!(),
            " FROM governance_requests WHERE workspace_id = $1 AND idempotency_key = $2"
        ))
        .bind(workspace.as_str())
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map)?;
        if let Some(original) = original {
            let original = request_from(&original)?;
            if original.creation_digest() != request.creation_digest() {
                return Err(GovernanceError::IdempotencyConflict {
                    kind: EntityKind::Request,
                    workspace: workspace.clone(),
                    key: key.to_owned(),
                    existing: original.id().to_string(),
                });
            }
            return Ok(Stored::Replayed(original));
        }
    }
    for (kind, table, id) in [
        (EntityKind::Request, "governance_requests", request.id().as_uuid()),
        (EntityKind::HistoryRecord, "governance_history", creation.record().id().as_uuid()),
    ] {
        let sql = sqlx::AssertSqlSafe(format!("SELECT 1 FROM {table} WHERE workspace_id = $1 AND id = $2"));
        let taken = sqlx::query(sql).bind(workspace.as_str()).bind(id).fetch_optional(&mut *conn).await.map_err(map)?;
        if taken.is_some() {
            return Err(GovernanceError::AlreadyExists { kind, workspace: workspace.clone(), id: id.to_string() });
        }
    }
    Err(invisible_collision())
}

/// Binds the written columns `$6..$14` in [`BOUND_TRANSITION_COLUMNS`] order.
fn bind_transition<'q>(
    query: Query<'q, Postgres, PgArguments>,
    write: TransitionWrite<'q>,
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(write.status.as_str())
        .bind(write.pending_reason.map(|r| r.as_str()))
        .bind(sqlx::types::Json(write.approvals))
        .bind(write.expected_state_version)
        .bind(write.superseded_by.map(|id| id.as_uuid()))
        .bind(sqlx::types::Json(write.metadata))
        .bind(signed(write.revision))
        .bind(write.updated_at.as_datetime())
        .bind(write.state_digest)
}

pub(crate) async fn commit_transition(
    conn: &mut PgConnection,
    isolate: bool,
    transition: &Transition,
    form: HistoryRows,
) -> Result<()> {
    validate_transition(transition)?;
    let expected = Digests {
        target: Some(transition.expected_digest()),
        successor: transition.successor().map(|s| s.state_digest.as_str()),
    };
    let outcome = run(conn, isolate, transition_query(transition, expected, form)).await;
    if moved(transition, outcome)? {
        return Ok(());
    }
    if let Some(refusal) = explain_from_digests(conn, transition).await? {
        return Err(refusal);
    }
    // A row stored without a digest: only its content can tell. This runs
    // in a transaction of its own (a savepoint inside a caller's), so the
    // rows it checks stay locked until its retry commits.
    let mut txn = conn.begin().await.map_err(map)?;
    match commit_over_rows_without_digest(&mut txn, transition, form).await {
        Ok(()) => txn.commit().await.map_err(map),
        Err(error) => {
            // Report the refusal, not the rollback's failure.
            let _ = txn.rollback().await;
            Err(error)
        }
    }
}

/// What the transition statement compares each row's `state_digest` with:
/// the expected digest, or `None` for a row stored without one.
#[derive(Clone, Copy)]
struct Digests<'a> {
    target: Option<&'a str>,
    successor: Option<&'a str>,
}

/// The transition statement, bound. Only the transition's columns are
/// written; the rest is fixed at creation.
fn transition_query<'q>(
    transition: &'q Transition,
    digests: Digests<'q>,
    form: HistoryRows,
) -> Query<'q, Postgres, PgArguments> {
    let next = transition.request();
    let one = transition.records().len() == 1;
    let sql = match (transition.successor(), one) {
        (None, true) => TRANSITION_ONE_SQL.as_str(),
        (None, false) => TRANSITION_SQL.get(form),
        (Some(_), true) => SUPERSEDE_ONE_SQL.as_str(),
        (Some(_), false) => SUPERSEDE_SQL.get(form),
    };
    let query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(next.workspace_id().as_str())
        .bind(next.id().as_uuid())
        .bind(signed(transition.expected_revision()))
        .bind(transition.expected_status().as_str())
        .bind(digests.target);
    let mut query = bind_transition(query, transition.write());
    if let Some(successor) = transition.successor() {
        query = query.bind(successor.id.as_uuid()).bind(signed(successor.revision)).bind(digests.successor);
    }
    match transition.records() {
        [record] => bind_history_row(query, record),
        records => bind_history(query, &records.iter().collect::<Vec<_>>(), form),
    }
}

/// Whether the transition statement moved the request.
fn moved(transition: &Transition, outcome: sqlx::Result<Vec<PgRow>>) -> Result<bool> {
    match outcome {
        Ok(rows) => Ok(rows.first().map_or(Ok(0), |row| row.try_get::<i64, _>("moved")).map_err(map)? == 1),
        Err(error) if is_unique_violation(&error) => Err(GovernanceError::AlreadyExists {
            kind: EntityKind::HistoryRecord,
            workspace: transition.request().workspace_id().clone(),
            id: transition.records().iter().map(|r| r.id().to_string()).collect::<Vec<_>>().join(", "),
        }),
        Err(error) => Err(map(error)),
    }
}

/// Why the statement matched no row, from the stored revisions, statuses
/// and digests, read without a lock: a lost race (a `Conflict`) is the
/// common miss and costs one light read, as before digests. `None` when the
/// request or its successor stores no digest: only the row's content can
/// tell (see [`commit_over_rows_without_digest`]).
async fn explain_from_digests(conn: &mut PgConnection, transition: &Transition) -> Result<Option<GovernanceError>> {
    let next = transition.request();
    let workspace = next.workspace_id();
    let Some((revision, status, digest)) = stored_state(conn, workspace, next.id()).await? else {
        return Ok(Some(GovernanceError::NotFound {
            kind: EntityKind::Request,
            workspace: workspace.clone(),
            id: next.id().to_string(),
        }));
    };
    let Some(digest) = digest else { return Ok(None) };
    if let Err(refusal) = check_commit_target(transition, revision, status, &digest) {
        return Ok(Some(refusal));
    }
    if let Some(successor) = transition.successor() {
        let refusal = match stored_state(conn, workspace, successor.id).await? {
            None => check_successor(transition, None),
            Some((_, _, None)) => return Ok(None),
            Some((revision, _, Some(digest))) => check_successor(transition, Some((revision, &digest))),
        };
        if let Err(refusal) = refusal {
            return Ok(Some(refusal));
        }
    }
    // The statement saw newer rows than these reads: the caller's
    // transaction reads an older snapshot.
    Ok(Some(invisible_collision()))
}

/// The revision, status and state digest of a stored request, if any.
async fn stored_state(
    conn: &mut PgConnection,
    workspace: &WorkspaceId,
    id: governance_abstractions::RequestId,
) -> Result<Option<(u64, RequestStatus, Option<String>)>> {
    let row = sqlx::query(
        "SELECT revision, status, state_digest FROM governance_requests WHERE workspace_id = $1 AND id = $2",
    )
    .bind(workspace.as_str())
    .bind(id.as_uuid())
    .fetch_optional(conn)
    .await
    .map_err(map)?;
    let Some(row) = row else { return Ok(None) };
    let revision: i64 = row.try_get("revision").map_err(map)?;
    let status: String = row.try_get("status").map_err(map)?;
    let digest: Option<String> = row.try_get("state_digest").map_err(map)?;
    Ok(Some((u64::try_from(revision).unwrap_or(0), status.parse()?, digest)))
}

/// The statement matched no row and the request or its successor is stored
/// without a digest.
///
/// Reads both rows locked (the successor first, as the statement's guard
/// does, so the two paths take their locks in one order) and decodes them:
/// a row without a digest gets the digest of its stored content. Both at
/// the state the transition was computed from, and one of them without a
/// digest: the statement runs once more, matching that row on `NULL`, while
/// the locks keep both as checked. Otherwise the checks name the refusal,
/// the older request's first: a forged copy of a row without a digest
/// computes another digest, a validation error.
async fn commit_over_rows_without_digest(
    conn: &mut PgConnection,
    transition: &Transition,
    form: HistoryRows,
) -> Result<()> {
    let next = transition.request();
    let workspace = next.workspace_id();
    let successor = match transition.successor() {
        Some(successor) => Some(locked_state(conn, LOCK_SUCCESSOR_SQL, workspace, successor.id).await?),
        None => None,
    };
    let Some(target) = locked_state(conn, LOCK_TARGET_SQL, workspace, next.id()).await? else {
        return Err(GovernanceError::NotFound {
            kind: EntityKind::Request,
            workspace: workspace.clone(),
            id: next.id().to_string(),
        });
    };
    check_commit_target(transition, target.revision, target.status, &target.digest)?;
    if let Some(successor) = &successor {
        check_successor(transition, successor.as_ref().map(|s| (s.revision, s.digest.as_str())))?;
    }
    let successor = successor.flatten();
    if target.stored && successor.as_ref().is_none_or(|s| s.stored) {
        // Both rows store the digests the statement compared with: it saw
        // other rows than these reads (the caller's transaction reads an
        // older snapshot).
        return Err(invisible_collision());
    }
    let digests = Digests {
        target: target.stored.then_some(transition.expected_digest()),
        successor: transition
            .successor()
            .filter(|_| successor.as_ref().is_some_and(|s| s.stored))
            .map(|s| s.state_digest.as_str()),
    };
    let outcome = transition_query(transition, digests, form).fetch_all(&mut *conn).await;
    if moved(transition, outcome)? { Ok(()) } else { Err(invisible_collision()) }
}

/// A stored request as a commit depends on it.
struct RowState {
    revision: u64,
    status: RequestStatus,
    /// The stored digest, or for a row without one the digest of its content.
    digest: String,
    /// Whether the row stores a digest.
    stored: bool,
}

/// Reads (and locks, by `sql`) a stored request, if any.
async fn locked_state(
    conn: &mut PgConnection,
    sql: &'static str,
    workspace: &WorkspaceId,
    id: governance_abstractions::RequestId,
) -> Result<Option<RowState>> {
    let row = sqlx::query(sql).bind(workspace.as_str()).bind(id.as_uuid()).fetch_optional(conn).await.map_err(map)?;
    let Some(row) = row else { return Ok(None) };
    let stored_digest: Option<String> = row.try_get("state_digest").map_err(map)?;
    let stored = stored_digest.is_some();
    let (revision, status, digest) = match stored_digest {
        Some(digest) => {
            let revision: i64 = row.try_get("revision").map_err(map)?;
            let status: String = row.try_get("status").map_err(map)?;
            (u64::try_from(revision).unwrap_or(0), status.parse()?, digest)
        }
        // The decoder computes the digest of what the row holds.
        None => {
            let request = request_from(&row)?;
            (request.revision(), request.status(), request.state_digest().to_owned())
        }
    };
    Ok(Some(RowState { revision, status, digest, stored }))
}

/// The connection as the shared append loop's storage.
struct Append<'c> {
    conn: &'c mut PgConnection,
    isolate: bool,
    form: HistoryRows,
}

#[async_trait::async_trait]
impl AppendStorage for Append<'_> {
    async fn insert(&mut self, records: &[&HistoryRecord]) -> Result<InsertAttempt> {
        let query = match records {
            [one] => bind_history_row(sqlx::query(APPEND_ONE_SQL), one),
            _ => bind_history(sqlx::query(sqlx::AssertSqlSafe(APPEND_SQL.get(self.form))), records, self.form),
        };
        match run(self.conn, self.isolate, query).await {
            Ok(_) => Ok(InsertAttempt::Inserted),
            Err(error) if is_unique_violation(&error) => Ok(InsertAttempt::UniqueViolation),
            Err(error) => Err(map(error)),
        }
    }

    async fn related(&mut self, workspace: &WorkspaceId, records: &[HistoryRecord]) -> Result<Vec<HistoryRecord>> {
        related_records(self.conn, workspace.as_str(), records).await
    }
}

pub(crate) async fn append_history(
    conn: &mut PgConnection,
    isolate: bool,
    records: &[HistoryRecord],
    form: HistoryRows,
) -> Result<Vec<Stored<HistoryRecord>>> {
    append_history_with(&mut Append { conn, isolate, form }, records).await
}

/// Stored records of `workspace` sharing an id or idempotency key with `records`.
async fn related_records(
    conn: &mut PgConnection,
    workspace: &str,
    records: &[HistoryRecord],
) -> Result<Vec<HistoryRecord>> {
    let ids: Vec<uuid::Uuid> = records.iter().map(|r| r.id().as_uuid()).collect();
    let keys: Vec<&str> = records.iter().filter_map(|r| r.evidence().idempotency_key.as_deref()).collect();
    let rows = sqlx::query(concat!(
        "SELECT ",
        history_columns!(),
        " FROM governance_history WHERE workspace_id = $1 AND (id = ANY($2) OR idempotency_key = ANY($3))"
    ))
    .bind(workspace)
    .bind(&ids)
    .bind(&keys)
    .fetch_all(conn)
    .await
    .map_err(map)?;
    let mut seen = HashSet::new();
    rows.iter().map(history_from).filter(|r| r.as_ref().map_or(true, |r| seen.insert(r.id()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_binds_exactly_the_shared_columns_in_their_order() {
        assert_eq!(BOUND_TRANSITION_COLUMNS.as_slice(), governance_abstractions::provider::TRANSITION_COLUMNS);
    }

    /// The distributed profile's statements slice no array (CockroachDB
    /// has no slicing); the standard ones do, to read codes cheaply.
    #[test]
    fn only_the_standard_profile_slices_arrays() {
        for statements in [&TRANSITION_SQL, &SUPERSEDE_SQL, &APPEND_SQL] {
            let standard = statements.get(array_form(SchemaProfile::Standard));
            let distributed = statements.get(array_form(SchemaProfile::Distributed));
            assert!(standard.contains("[r.codes_from:r.codes_to]"), "{standard}");
            assert!(!distributed.contains(":r.") && distributed.contains("jsonb_array_elements_text"), "{distributed}");
        }
        for one in [&*CREATE_SQL, &*TRANSITION_ONE_SQL, &*SUPERSEDE_ONE_SQL, APPEND_ONE_SQL] {
            assert!(!one.contains("UNNEST"), "a single record is a VALUES row: {one}");
        }
    }

    /// The column lists this crate's own statements name are the shared ones.
    #[test]
    fn the_column_lists_are_the_shared_ones() {
        assert_eq!(history_columns!(), postgres_statements::HISTORY_COLUMNS);
        assert_eq!(request_columns!(), postgres_statements::REQUEST_COLUMNS);
    }
}
