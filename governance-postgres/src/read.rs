//! The read paths: one workspace per query, keyset pages on `(created_at, id)`
//! compared as a row value, which the `(workspace_id, …, created_at, id)`
//! indexes serve as a range scan.

use governance_abstractions::provider::postgres_schema::{LIVE_COLUMNS_QUERY, SchemaStage, check_postgres_columns};
use governance_abstractions::provider::postgres_statements::{self, COUNT_MARK, CountParam, CountRow};
use governance_abstractions::{
    Count, CountQuery, Direction, EntityKind, GovernanceError, GovernanceRequest, HistoryFilter, HistoryRecord, Page,
    PageRequest, Position, RecordId, RequestFilter, RequestId, Result, TimeRange, WorkspaceId,
};
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row};

use crate::SchemaProfile;
use crate::error::map;
use crate::rows::{histories_from, history_columns, history_from, request_columns, request_from};

fn window(sql: &mut QueryBuilder<Postgres>, range: &TimeRange) {
    if let Some(from) = range.from {
        sql.push(" AND created_at >= ").push_bind(from.as_datetime());
    }
    if let Some(until) = range.until {
        sql.push(" AND created_at < ").push_bind(until.as_datetime());
    }
}

/// Appends the keyset condition, the order and the `limit + 1`.
fn keyset(sql: &mut QueryBuilder<Postgres>, page: &PageRequest) -> Result<()> {
    let after = page.position()?;
    let (comparison, order) = match page.direction {
        Direction::Forward => (">", "ASC"),
        Direction::Backward => ("<", "DESC"),
    };
    if let Some(Position { created_at, id }) = after {
        sql.push(format!(" AND (created_at, id) {comparison} ("))
            .push_bind(created_at.as_datetime())
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    sql.push(format!(" ORDER BY created_at {order}, id {order}"));
    if let Some(limit) = page.fetch_limit() {
        sql.push(" LIMIT ").push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
    }
    Ok(())
}

pub(crate) async fn get_request(pool: &PgPool, workspace: &WorkspaceId, id: RequestId) -> Result<GovernanceRequest> {
    let row = sqlx::query(concat!(
        "SELECT ",
        request_columns!(),
        " FROM governance_requests WHERE workspace_id = $1 AND id = $2"
    ))
    .bind(workspace.as_str())
    .bind(id.as_uuid())
    .fetch_optional(pool)
    .await
    .map_err(map)?
    .ok_or_else(|| GovernanceError::NotFound {
        kind: EntityKind::Request,
        workspace: workspace.clone(),
        id: id.to_string(),
    })?;
    request_from(&row)
}

/// The request query, after `prefix` (the select list, or `EXPLAIN` and it).
pub(crate) fn requests_sql(
    prefix: &str,
    workspace: &WorkspaceId,
    filter: &RequestFilter,
    page: &PageRequest,
) -> Result<QueryBuilder<Postgres>> {
    filter.validate()?;
    let mut sql = QueryBuilder::new(format!("{prefix} FROM governance_requests WHERE workspace_id = "));
    sql.push_bind(workspace.as_str());
    if !filter.statuses.is_empty() {
        // Literals (fixed enum texts), so the planner can use the partial
        // pending-queue index.
        let statuses: Vec<String> = filter.statuses.iter().map(|s| format!("'{}'", s.as_str())).collect();
        sql.push(format!(" AND status IN ({})", statuses.join(", ")));
    }
    if let Some(reason) = filter.pending_reason {
        sql.push(" AND pending_reason = ").push_bind(reason.as_str());
    }
    if let Some(actor) = &filter.actor {
        sql.push(" AND actor_kind = ").push_bind(actor.kind.as_str());
        sql.push(" AND actor_id = ").push_bind(actor.id.clone());
    }
    if let Some(operation) = &filter.operation {
        sql.push(" AND operation = ").push_bind(operation.clone());
    }
    if let Some(category) = &filter.category {
        sql.push(" AND category = ").push_bind(category.clone());
    }
    if let Some(target) = &filter.target {
        sql.push(" AND state_type = ").push_bind(target.state_type.clone());
        sql.push(" AND state_id = ").push_bind(target.state_id.clone());
    }
    if !filter.tags.is_empty() {
        sql.push(" AND tags @> ").push_bind(filter.tags.clone());
    }
    if let Some(by) = filter.expires_by {
        sql.push(" AND expires_at <= ").push_bind(by.as_datetime());
    }
    window(&mut sql, &filter.created);
    keyset(&mut sql, page)?;
    Ok(sql)
}

pub(crate) async fn query_requests(
    pool: &PgPool,
    workspace: &WorkspaceId,
    filter: &RequestFilter,
    page: &PageRequest,
) -> Result<Page<GovernanceRequest>> {
    let mut sql = requests_sql(SELECT_REQUESTS, workspace, filter, page)?;
    let rows = sql.build().fetch_all(pool).await.map_err(map)?;
    let requests = rows.iter().map(request_from).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_fetched(requests, page, Position::of_request))
}

pub(crate) async fn get_history_record(pool: &PgPool, workspace: &WorkspaceId, id: RecordId) -> Result<HistoryRecord> {
    let row = sqlx::query(concat!(
        "SELECT ",
        history_columns!(),
        " FROM governance_history WHERE workspace_id = $1 AND id = $2"
    ))
    .bind(workspace.as_str())
    .bind(id.as_uuid())
    .fetch_optional(pool)
    .await
    .map_err(map)?
    .ok_or_else(|| GovernanceError::NotFound {
        kind: EntityKind::HistoryRecord,
        workspace: workspace.clone(),
        id: id.to_string(),
    })?;
    history_from(&row)
}

/// History of one request, in revision order.
pub(crate) const HISTORY_FOR_REQUEST: &str = concat!(
    "SELECT ",
    history_columns!(),
    " FROM governance_history WHERE workspace_id = $1 AND request_id = $2 ORDER BY request_revision, created_at, id"
);

/// The select list of request reads: named columns, so a column added by a
/// later migration cannot break the prepared statements of running instances.
pub(crate) const SELECT_REQUESTS: &str = concat!("SELECT ", request_columns!());

pub(crate) async fn history_for_request(
    pool: &PgPool,
    workspace: &WorkspaceId,
    request: RequestId,
) -> Result<Vec<HistoryRecord>> {
    let rows = sqlx::query(HISTORY_FOR_REQUEST)
        .bind(workspace.as_str())
        .bind(request.as_uuid())
        .fetch_all(pool)
        .await
        .map_err(map)?;
    histories_from(&rows)
}

fn history_conditions(sql: &mut QueryBuilder<Postgres>, filter: &HistoryFilter) {
    if let Some(id) = filter.request_id {
        sql.push(" AND request_id = ").push_bind(id.as_uuid());
    }
    if let Some(category) = filter.category {
        sql.push(" AND category = ").push_bind(category.as_str());
    }
    if let Some(code) = &filter.code {
        sql.push(" AND code = ").push_bind(code.clone());
    }
    if let Some(actor) = &filter.actor {
        sql.push(" AND actor_kind = ").push_bind(actor.kind.as_str());
        sql.push(" AND actor_id = ").push_bind(actor.id.clone());
    }
    if let Some(object_type) = &filter.object_type {
        sql.push(" AND object_type = ").push_bind(object_type.clone());
    }
    if let Some(operation) = &filter.operation {
        sql.push(" AND operation = ").push_bind(operation.clone());
    }
    if let Some(decision) = filter.decision {
        sql.push(" AND decision = ").push_bind(decision.as_str());
    }
    if let Some(outcome) = filter.outcome {
        sql.push(" AND outcome = ").push_bind(outcome.as_str());
    }
    if let Some(correlation) = &filter.correlation_id {
        sql.push(" AND correlation_id = ").push_bind(correlation.clone());
    }
    window(sql, &filter.created);
}

pub(crate) async fn query_history(
    pool: &PgPool,
    workspace: &WorkspaceId,
    filter: &HistoryFilter,
    page: &PageRequest,
) -> Result<Page<HistoryRecord>> {
    let mut sql = history_sql("", workspace, filter, page)?;
    let rows = sql.build().fetch_all(pool).await.map_err(map)?;
    let records = histories_from(&rows)?;
    Ok(Page::from_fetched(records, page, Position::of_record))
}

/// The statement of [`query_history`], after `prefix` (e.g. `EXPLAIN `).
pub(crate) fn history_sql(
    prefix: &str,
    workspace: &WorkspaceId,
    filter: &HistoryFilter,
    page: &PageRequest,
) -> Result<QueryBuilder<Postgres>> {
    filter.validate()?;
    let mut sql = QueryBuilder::new(format!(
        concat!("{}SELECT ", history_columns!(), " FROM governance_history WHERE workspace_id = "),
        prefix
    ));
    sql.push_bind(workspace.as_str().to_owned());
    history_conditions(&mut sql, filter);
    keyset(&mut sql, page)?;
    Ok(sql)
}

pub(crate) async fn count_history(
    pool: &PgPool,
    profile: SchemaProfile,
    workspace: &WorkspaceId,
    query: &CountQuery,
) -> Result<Vec<Count>> {
    // One connection for the watermark and the count: a second pool
    // checkout costs more than the round trip.
    let hours = counted_hours(profile, query)?;
    let mut conn = pool.acquire().await.map_err(map)?;
    let mark = match hours {
        None => None,
        Some(_) => mark(&mut conn, workspace).await?,
    };
    let mut count = postgres_statements::CountAttempts::new(workspace, query, mark);
    loop {
        let (sql, params) = count.statement()?;
        let rows = bound(&sql, params)?.fetch_all(&mut *conn).await.map_err(map)?;
        let rows = rows
            .iter()
            .map(|row| Ok(CountRow::from_columns(row.try_get("key").map_err(map)?, row.try_get("n").map_err(map)?)))
            .collect::<Result<Vec<_>>>()?;
        if let Some(counts) = count.finish(rows)? {
            return Ok(counts);
        }
    }
}

/// The plan of [`count_history`]'s statement, with the watermark it would
/// read now.
pub(crate) async fn explain_count_history(
    pool: &PgPool,
    profile: SchemaProfile,
    workspace: &WorkspaceId,
    query: &CountQuery,
) -> Result<Vec<sqlx::postgres::PgRow>> {
    let hours = counted_hours(profile, query)?;
    let mut conn = pool.acquire().await.map_err(map)?;
    let mark = match hours {
        None => None,
        Some(_) => mark(&mut conn, workspace).await?,
    };
    let (sql, params) = postgres_statements::count_history(workspace, query, mark.as_deref())?;
    let explained = format!("EXPLAIN {sql}");
    bound(&explained, params)?.fetch_all(&mut *conn).await.map_err(map)
}

/// The workspace's watermark ([`COUNT_MARK`]). None in a database not
/// migrated as far as this version (its counts may lack what the watermark
/// reads): the count then reads the records, exact until `migrate()` runs.
async fn mark(conn: &mut PgConnection, workspace: &WorkspaceId) -> Result<Option<String>> {
    match sqlx::query_scalar(COUNT_MARK).bind(workspace.as_str()).fetch_optional(conn).await {
        Ok(mark) => Ok(mark),
        Err(error) if crate::error::is_undefined_object(&error) => Ok(None),
        Err(error) => Err(map(error)),
    }
}

/// `sql` with the count's parameters bound; a parameter of a kind this
/// version does not know is an error, never a statement short of a value.
fn bound(sql: &str, params: Vec<CountParam>) -> Result<sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for param in params {
        query = match param {
            CountParam::Text(text) => query.bind(text),
            CountParam::Int(n) => query.bind(n),
            CountParam::Time(at) => query.bind(at.as_datetime()),
            other => {
                return Err(GovernanceError::backend(
                    false,
                    format!("a count parameter this version cannot bind: {other:?}"),
                ));
            }
        };
    }
    Ok(query)
}

/// The whole hours a count may read from the hourly counts: none on the
/// distributed profile (it keeps none). Validates the query first: a window
/// bound outside the storable years is the same validation error on every
/// provider, not a different count on each.
fn counted_hours(profile: SchemaProfile, query: &CountQuery) -> Result<Option<(Option<i64>, Option<i64>)>> {
    query.validate()?;
    Ok(match profile {
        SchemaProfile::Standard => postgres_statements::whole_hours(&query.window),
        SchemaProfile::Distributed => None,
    })
}

/// Where a reader of the commit-safe feed stands: after `(tx_id, id)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FeedCursor(String);

impl FeedCursor {
    /// Before the first record.
    pub fn start() -> Self {
        Self("x0".to_owned())
    }

    fn after(tx: i64, id: uuid::Uuid) -> Self {
        Self(format!("x1{tx:016x}{}", id.simple()))
    }

    fn position(&self) -> Result<Option<(i64, uuid::Uuid)>> {
        let invalid = |reason| GovernanceError::InvalidCursor { reason };
        if self.0 == "x0" {
            return Ok(None);
        }
        let body = self.0.strip_prefix("x1").ok_or(invalid("not a feed cursor"))?;
        if body.len() != 48 || !body.is_ascii() {
            return Err(invalid("wrong length"));
        }
        let digits = &body[..16];
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("not hexadecimal"));
        }
        let tx = u64::from_str_radix(digits, 16)
            .ok()
            .and_then(|tx| i64::try_from(tx).ok())
            .ok_or(invalid("out of range"))?;
        let id = uuid::Uuid::try_parse(&body[16..]).map_err(|_| invalid("not an id"))?;
        Ok(Some((tx, id)))
    }

    /// The cursor as text, to store between runs.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for FeedCursor {
    fn from(text: String) -> Self {
        Self(text)
    }
}

/// A page of the feed.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedPage {
    /// Records in commit-safe order.
    pub records: Vec<HistoryRecord>,
    /// Resume here (the given cursor when the page is empty).
    pub next: FeedCursor,
}

/// Records of `workspace` after `cursor` in `(transaction, id)` order, only
/// from transactions older than every transaction still running: a record
/// that commits later always sorts after what a reader has already seen.
pub(crate) async fn history_feed(
    pool: &PgPool,
    workspace: &WorkspaceId,
    cursor: &FeedCursor,
    limit: u32,
) -> Result<FeedPage> {
    if limit == 0 {
        return Err(GovernanceError::validation("limit", governance_abstractions::ValidationProblem::OutOfRange));
    }
    // Compared as xid8, so the (workspace_id, tx_id, id) index serves it.
    let mut sql = QueryBuilder::new(concat!(
        "SELECT ",
        history_columns!(),
        ", tx_id::text::bigint AS tx FROM governance_history WHERE workspace_id = "
    ));
    sql.push_bind(workspace.as_str());
    sql.push(" AND tx_id < pg_snapshot_xmin(pg_current_snapshot())");
    if let Some((tx, id)) = cursor.position()? {
        sql.push(" AND (tx_id, id) > (").push_bind(tx.to_string()).push("::text::xid8, ").push_bind(id).push(")");
    }
    sql.push(" ORDER BY tx_id, id LIMIT ").push_bind(i64::from(limit));
    let rows = sql.build().fetch_all(pool).await.map_err(map)?;
    let next = match rows.last() {
        Some(row) => FeedCursor::after(row.try_get("tx").map_err(map)?, row.try_get("id").map_err(map)?),
        None => cursor.clone(),
    };
    let records = histories_from(&rows)?;
    Ok(FeedPage { records, next })
}

/// Compares the governance tables with the schema both PostgreSQL providers
/// share: tables of these names that hold something else are refused (a
/// [`SchemaMismatch`](governance_abstractions::provider::postgres_schema::SchemaMismatch)
/// as the source of a non-retryable `Backend` error), not adopted by the
/// migrations' `IF NOT EXISTS`.
pub(crate) async fn check_schema(conn: &mut PgConnection, stage: SchemaStage, profile: SchemaProfile) -> Result<()> {
    let live: Vec<(String, String, String)> = sqlx::query_as(LIVE_COLUMNS_QUERY).fetch_all(conn).await.map_err(map)?;
    let mut live: Vec<(&str, &str, &str)> = live.iter().map(|(t, c, u)| (t.as_str(), c.as_str(), u.as_str())).collect();
    if profile == SchemaProfile::Distributed && stage == SchemaStage::Migrated {
        // What the distributed profile lacks (the tx_id column, the derived
        // count tables) is checked as if there: every other column must be
        // the shared schema's.
        use governance_abstractions::provider::postgres_schema::{DERIVED_TABLES, POSTGRES_COLUMNS};
        let lacking = POSTGRES_COLUMNS
            .iter()
            .filter(|c| (c.table == "governance_history" && c.column == "tx_id") || DERIVED_TABLES.contains(&c.table));
        let missing: Vec<_> = lacking
            .filter(|c| !live.iter().any(|(t, col, _)| *t == c.table && *col == c.column))
            .map(|c| (c.table, c.column, c.udt_name))
            .collect();
        live.extend(missing);
    }
    check_postgres_columns(live, stage).map_err(|mismatch| GovernanceError::backend(false, mismatch))
}
