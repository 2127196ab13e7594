//! The read paths: one workspace per query, keyset pages on `(created_at, id)`.

use governance_abstractions::provider::postgres_statements::{self, COUNT_MARK, CountParam, CountRow};
use governance_abstractions::provider::rank_counts;
use governance_abstractions::{
    Checkpoint, Count, CountBy, CountQuery, Direction, EntityKind, GovernanceError, GovernanceRequest, HistoryFilter,
    HistoryRecord, Page, PageRequest, Position, ReadRecord, RecordId, RequestFilter, RequestId, Result, SealedRecord,
    TimeRange, WorkspaceId,
};
use sea_orm::sea_query::{Asterisk, Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, JoinType, Order, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, RelationDef, Select, Statement,
};

use crate::convert::{checkpoint_from, history_from, read_record, request_from, seal_from, time_value};
use crate::entity::{ByPosition, all_by_position, checkpoint, history, request, seal};
use crate::error::map;

/// Rows strictly beyond `after` in `direction`, ordered that way, `limit + 1` of them.
fn keyset<E: EntityTrait>(
    backend: DbBackend,
    select: Select<E>,
    page: &PageRequest,
    created_at: E::Column,
    id: E::Column,
) -> Result<Select<E>> {
    let after = page.position()?;
    let order = match page.direction {
        Direction::Forward => Order::Asc,
        Direction::Backward => Order::Desc,
    };
    let mut select = select.order_by(created_at, order.clone()).order_by(id, order);
    if let Some(after) = after {
        select = select.filter(beyond(backend, created_at, id, after, page.direction));
    }
    if let Some(limit) = page.fetch_limit() {
        select = select.limit(limit);
    }
    Ok(select)
}

/// Rows strictly beyond `after` in `direction`.
fn beyond<C: ColumnTrait>(
    backend: DbBackend,
    created_at: C,
    id: C,
    after: Position,
    direction: Direction,
) -> Condition {
    let Position { created_at: at, id: last } = after;
    let at = time_value(backend, at);
    // The redundant bound on created_at lets every planner use the
    // (workspace_id, created_at, id) index as a range.
    match direction {
        Direction::Forward => Condition::all().add(created_at.gte(at.clone())).add(
            Condition::any()
                .add(created_at.gt(at.clone()))
                .add(Condition::all().add(created_at.eq(at)).add(id.gt(last))),
        ),
        Direction::Backward => Condition::all().add(created_at.lte(at.clone())).add(
            Condition::any()
                .add(created_at.lt(at.clone()))
                .add(Condition::all().add(created_at.eq(at)).add(id.lt(last))),
        ),
    }
}

fn window<C: ColumnTrait>(backend: DbBackend, condition: Condition, column: C, range: &TimeRange) -> Condition {
    let condition = match range.from {
        Some(from) => condition.add(column.gte(time_value(backend, from))),
        None => condition,
    };
    match range.until {
        Some(until) => condition.add(column.lt(time_value(backend, until))),
        None => condition,
    }
}

/// "The tags column holds `tag`": an element of PostgreSQL's `text[]`,
/// of the JSON array elsewhere.
fn has_tag(backend: DbBackend, tag: &str) -> Condition {
    let expression = match backend {
        DbBackend::Postgres => Expr::cust_with_values(r#"$1 = ANY("governance_requests"."tags")"#, [tag.to_owned()]),
        DbBackend::MySql => {
            let element = serde_json::Value::String(tag.to_owned()).to_string();
            Expr::cust_with_values("JSON_CONTAINS(`governance_requests`.`tags`, ?)", [element])
        }
        _ => Expr::cust_with_values(
            r#"EXISTS (SELECT 1 FROM json_each("governance_requests"."tags") WHERE json_each.value = ?)"#,
            [tag.to_owned()],
        ),
    };
    Condition::all().add(expression)
}

fn request_condition(backend: DbBackend, workspace: &WorkspaceId, filter: &RequestFilter) -> Condition {
    use request::Column as C;
    let mut c = Condition::all().add(C::WorkspaceId.eq(workspace.as_str()));
    if !filter.statuses.is_empty() {
        // Literals (fixed enum texts), not parameters: a partial index (the
        // pending queue's, the expiry sweep's) serves only a query whose
        // predicate implies the index's, which a bound value does not in a
        // generic PostgreSQL plan or in SQLite's planner. One status is an
        // equality: SQLite matches `status IN ('pending')` to no partial
        // index's `WHERE status = 'pending'`.
        let status = Expr::col((request::Entity, C::Status));
        let mut statuses: Vec<Expr> = filter.statuses.iter().map(|s| Expr::cust(format!("'{}'", s.as_str()))).collect();
        c = c.add(match statuses.len() {
            1 => status.eq(statuses.remove(0)),
            _ => status.is_in(statuses),
        });
    }
    if let Some(reason) = filter.pending_reason {
        c = c.add(C::PendingReason.eq(reason.as_str()));
    }
    if let Some(actor) = &filter.actor {
        c = c.add(C::ActorKind.eq(actor.kind.as_str())).add(C::ActorId.eq(actor.id.as_str()));
    }
    if let Some(operation) = &filter.operation {
        c = c.add(C::Operation.eq(operation.as_str()));
    }
    if let Some(category) = &filter.category {
        c = c.add(C::Category.eq(category.as_str()));
    }
    if let Some(target) = &filter.target {
        c = c.add(C::StateType.eq(target.state_type.as_str())).add(C::StateId.eq(target.state_id.as_str()));
    }
    for tag in &filter.tags {
        c = c.add(has_tag(backend, tag));
    }
    if let Some(by) = filter.expires_by {
        c = c.add(C::ExpiresAt.is_not_null()).add(C::ExpiresAt.lte(time_value(backend, by)));
    }
    window(backend, c, C::CreatedAt, &filter.created)
}

fn history_condition(backend: DbBackend, workspace: &WorkspaceId, filter: &HistoryFilter) -> Condition {
    use history::Column as C;
    let mut c = Condition::all().add(C::WorkspaceId.eq(workspace.as_str()));
    if let Some(id) = filter.request_id {
        c = c.add(C::RequestId.eq(id.as_uuid()));
    }
    if let Some(category) = filter.category {
        c = c.add(C::Category.eq(category.as_str()));
    }
    if let Some(code) = &filter.code {
        c = c.add(C::Code.eq(code.as_str()));
    }
    if let Some(actor) = &filter.actor {
        c = c.add(C::ActorKind.eq(actor.kind.as_str())).add(C::ActorId.eq(actor.id.as_str()));
    }
    if let Some(object_type) = &filter.object_type {
        c = c.add(C::ObjectType.eq(object_type.as_str()));
    }
    if let Some(operation) = &filter.operation {
        c = c.add(C::Operation.eq(operation.as_str()));
    }
    if let Some(decision) = filter.decision {
        c = c.add(C::Decision.eq(decision.as_str()));
    }
    if let Some(outcome) = filter.outcome {
        c = c.add(C::Outcome.eq(outcome.as_str()));
    }
    if let Some(correlation) = &filter.correlation_id {
        c = c.add(C::CorrelationId.eq(correlation.as_str()));
    }
    window(backend, c, C::CreatedAt, &filter.created)
}

pub(crate) async fn get_request<C: ConnectionTrait>(
    conn: &C,
    workspace: &WorkspaceId,
    id: RequestId,
) -> Result<GovernanceRequest> {
    let row = request::Entity::find_by_id((workspace.as_str().to_owned(), id.as_uuid()))
        .into_model::<ByPosition<request::Model>>()
        .one(conn)
        .await
        .map_err(map)?;
    let ByPosition(row) = row.ok_or_else(|| GovernanceError::NotFound {
        kind: EntityKind::Request,
        workspace: workspace.clone(),
        id: id.to_string(),
    })?;
    request_from(row)
}

/// The request query for `filter` and `page`.
fn requests_select(
    backend: DbBackend,
    workspace: &WorkspaceId,
    filter: &RequestFilter,
    page: &PageRequest,
) -> Result<Select<request::Entity>> {
    filter.validate()?;
    let select = request::Entity::find().filter(request_condition(backend, workspace, filter));
    keyset(backend, select, page, request::Column::CreatedAt, request::Column::Id)
}

pub(crate) async fn query_requests<C: ConnectionTrait>(
    conn: &C,
    workspace: &WorkspaceId,
    filter: &RequestFilter,
    page: &PageRequest,
) -> Result<Page<GovernanceRequest>> {
    let backend = conn.get_database_backend();
    let select = requests_select(backend, workspace, filter, page)?;
    let rows = all_by_position::<request::Model, _>(conn, select.build(backend)).await.map_err(map)?;
    let requests = rows.into_iter().map(request_from).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_fetched(requests, page, Position::of_request))
}

pub(crate) async fn get_history_record<C: ConnectionTrait>(
    conn: &C,
    workspace: &WorkspaceId,
    id: RecordId,
) -> Result<HistoryRecord> {
    let row = history::Entity::find_by_id((workspace.as_str().to_owned(), id.as_uuid()))
        .into_model::<ByPosition<history::Model>>()
        .one(conn)
        .await
        .map_err(map)?;
    let ByPosition(row) = row.ok_or_else(|| GovernanceError::NotFound {
        kind: EntityKind::HistoryRecord,
        workspace: workspace.clone(),
        id: id.to_string(),
    })?;
    history_from(row)
}

/// The history of one request, in revision order.
fn request_history_select(workspace: &WorkspaceId, request: RequestId) -> Select<history::Entity> {
    use history::Column as C;
    history::Entity::find()
        .filter(C::WorkspaceId.eq(workspace.as_str()))
        .filter(C::RequestId.eq(request.as_uuid()))
        .order_by_asc(C::RequestRevision)
        .order_by_asc(C::CreatedAt)
        .order_by_asc(C::Id)
}

pub(crate) async fn history_for_request<C: ConnectionTrait>(
    conn: &C,
    workspace: &WorkspaceId,
    request: RequestId,
) -> Result<Vec<HistoryRecord>> {
    let select = request_history_select(workspace, request).build(conn.get_database_backend());
    let rows = all_by_position::<history::Model, _>(conn, select).await.map_err(map)?;
    rows.into_iter().map(history_from).collect()
}

/// The history query for `filter` and `page`.
fn history_select(
    backend: DbBackend,
    workspace: &WorkspaceId,
    filter: &HistoryFilter,
    page: &PageRequest,
) -> Result<Select<history::Entity>> {
    filter.validate()?;
    let select = history::Entity::find().filter(history_condition(backend, workspace, filter));
    keyset(backend, select, page, history::Column::CreatedAt, history::Column::Id)
}

pub(crate) async fn query_history<C: ConnectionTrait>(
    conn: &C,
    workspace: &WorkspaceId,
    filter: &HistoryFilter,
    page: &PageRequest,
) -> Result<Page<HistoryRecord>> {
    let backend = conn.get_database_backend();
    let select = history_select(backend, workspace, filter, page)?.build(backend);
    let rows = all_by_position::<history::Model, _>(conn, select).await.map_err(map)?;
    let records = rows.into_iter().map(history_from).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_fetched(records, page, Position::of_record))
}

/// Counts decision records. On PostgreSQL a window that holds whole hours
/// is counted over the hourly counts the shared schema keeps
/// ([`postgres_statements::CountAttempts`], the statement the sqlx
/// provider sends): the watermark is read, then the count, which reports
/// the watermark its own snapshot saw and is run again if a roll-up moved
/// it, so the count is exact whether or not a roll-up
/// ([`SeaOrmStore::roll_up_counts`](crate::SeaOrmStore::roll_up_counts))
/// ever ran. Everywhere else the window's records are counted.
pub(crate) async fn count_history<C: ConnectionTrait>(
    conn: &C,
    workspace: &WorkspaceId,
    query: &CountQuery,
) -> Result<Vec<Count>> {
    let Some(mark) = hourly_mark(conn, workspace, query).await? else {
        return count_records(conn, workspace, query).await;
    };
    let mut count = postgres_statements::CountAttempts::new(workspace, query, mark);
    loop {
        let (sql, params) = count.statement()?;
        let rows = conn.query_all_raw(postgres_count_statement(sql, params)?).await.map_err(map)?;
        let rows = rows
            .iter()
            .map(|row| {
                Ok(CountRow::from_columns(row.try_get("", "key").map_err(map)?, row.try_get("", "n").map_err(map)?))
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some(counts) = count.finish(rows)? {
            return Ok(counts);
        }
    }
}

/// On PostgreSQL, for a window with whole hours: the workspace's
/// watermark (`Some(None)` when it has none). `None` elsewhere: the count
/// reads records.
async fn hourly_mark<C: ConnectionTrait>(
    conn: &C,
    workspace: &WorkspaceId,
    query: &CountQuery,
) -> Result<Option<Option<String>>> {
    query.validate()?;
    if conn.get_database_backend() != DbBackend::Postgres || postgres_statements::whole_hours(&query.window).is_none() {
        return Ok(None);
    }
    let mark = Statement::from_sql_and_values(DbBackend::Postgres, COUNT_MARK, [workspace.as_str().into()]);
    match conn.query_one_raw(mark).await {
        Ok(Some(row)) => Ok(Some(Some(row.try_get_by_index::<String>(0).map_err(map)?))),
        Ok(None) => Ok(Some(None)),
        // A database not migrated as far as this version: the count reads
        // the records, exact until `migrate()` runs.
        Err(error) if crate::error::is_undefined_object(&error) => Ok(Some(None)),
        Err(error) => Err(map(error)),
    }
}

/// A PostgreSQL count statement with its parameters as SeaORM values.
fn postgres_count_statement(sql: String, params: Vec<CountParam>) -> Result<Statement> {
    const PG: DbBackend = DbBackend::Postgres;
    let values = params
        .into_iter()
        .map(|param| match param {
            CountParam::Text(text) => Ok(text.into()),
            CountParam::Int(n) => Ok(n.into()),
            CountParam::Time(at) => Ok(time_value(PG, at)),
            other => {
                Err(GovernanceError::backend(false, format!("a count parameter this version cannot bind: {other:?}")))
            }
        })
        .collect::<Result<Vec<sea_orm::Value>>>()?;
    Ok(Statement::from_sql_and_values(PG, sql, values))
}

async fn count_records<C: ConnectionTrait>(
    conn: &C,
    workspace: &WorkspaceId,
    query: &CountQuery,
) -> Result<Vec<Count>> {
    let statement = count_statement(conn.get_database_backend(), workspace, query)?;
    let rows = conn.query_all_raw(statement).await.map_err(map)?;
    let counts = rows.iter().filter_map(|row| count_row(row, query.by).transpose()).collect::<Result<Vec<_>>>()?;
    Ok(rank_counts(counts, query.limit))
}

/// One row of a count over records; `None` for a `NULL` reason code,
/// written around the library, which counts nowhere (the record's other
/// codes do). Skipped here, not in the statement: filtering it there cost
/// SQLite's count 9 %.
fn count_row(row: &sea_orm::QueryResult, by: CountBy) -> Result<Option<Count>> {
    let key = match by {
        CountBy::Principal => {
            let kind: String = row.try_get("", "actor_kind").map_err(map)?;
            let id: String = row.try_get("", "actor_id").map_err(map)?;
            format!("{kind}:{id}")
        }
        _ => match row.try_get::<Option<String>>("", "k").map_err(map)? {
            Some(key) => key,
            None => return Ok(None),
        },
    };
    let n: i64 = row.try_get("", "n").map_err(map)?;
    Ok(Some(Count { key, count: u64::try_from(n).unwrap_or(0) }))
}

/// The one statement [`count_history`] sends: rows of the group key (`k`,
/// or `actor_kind` and `actor_id`) and its count (`n`).
fn count_statement(backend: DbBackend, workspace: &WorkspaceId, query: &CountQuery) -> Result<Statement> {
    use history::Column as C;
    query.validate()?;
    let mut condition = Condition::all().add(C::WorkspaceId.eq(workspace.as_str())).add(C::Decision.is_not_null());
    if let Some(decision) = query.decision {
        condition = condition.add(C::Decision.eq(decision.as_str()));
    }
    let condition = window(backend, condition, C::CreatedAt, &query.window);
    let base = history::Entity::find().filter(condition).select_only();
    // COUNT(*), not of a column: on PostgreSQL the covering decision index
    // (workspace, decision, time; with reason codes, operation and actor)
    // then answers every count over a window alone (an index-only scan).
    let count = Expr::col(Asterisk).count();
    let statement = match query.by {
        CountBy::ReasonCode => return Ok(reason_code_statement(backend, workspace, query)),
        CountBy::Principal => {
            let grouped = base
                .column(C::ActorKind)
                .column(C::ActorId)
                .column_as(count, "n")
                .group_by(C::ActorKind)
                .group_by(C::ActorId);
            ranked(grouped, backend).build(backend)
        }
        CountBy::Operation | CountBy::Decision => {
            let column = if query.by == CountBy::Operation { C::Operation } else { C::Decision };
            let grouped = base.column_as(Expr::col(column), "k").column_as(count, "n").group_by(column);
            ranked(grouped, backend).build(backend)
        }
        _ => return Err(GovernanceError::backend(false, "count grouping not supported by this provider version")),
    };
    Ok(match decision_index_hint(backend, &query.window) {
        Some(hint) => {
            let sql =
                statement.sql.replacen("FROM `governance_history`", &format!("FROM `governance_history` {hint}"), 1);
            Statement { sql, ..statement }
        }
        None => statement,
    })
}

/// MySQL/MariaDB: the hint that makes a count over a bounded window read
/// the decision index. Left to itself the optimizer reads the whole
/// workspace through the primary key (`ref` on its `workspace_id` prefix)
/// and filters, because the decision index does not carry the counted
/// columns and each match costs a lookup; over a week of a long history
/// that reads every row of the workspace. An unbounded window counts every
/// decision record anyway, and there the primary key's scan is no worse.
fn decision_index_hint(backend: DbBackend, window: &TimeRange) -> Option<&'static str> {
    let bounded = window.from.is_some() || window.until.is_some();
    (backend == DbBackend::MySql && bounded).then_some("FORCE INDEX (governance_history_decision)")
}

/// A grouping ordered by its count, with a `LIMIT` no count reaches, on
/// SQLite: no part of the answer (`rank_counts` ranks and cuts after), but
/// SQLite 3.51 ran counts by principal and by operation 2–3.5 × faster with
/// it than bare, through the same index, in a 20,000-record workspace.
fn ranked(select: sea_orm::Select<history::Entity>, backend: DbBackend) -> sea_orm::Select<history::Entity> {
    if backend != DbBackend::Sqlite {
        return select;
    }
    select.order_by_desc(Expr::col("n")).limit(i64::MAX.unsigned_abs())
}

/// Counts reason codes in the database, unnesting each record's list with
/// the backend's own table function (`unnest` of PostgreSQL's `text[]`, the
/// JSON functions elsewhere). A `NULL` code (the library never stores one;
/// a row written around it may) comes back as a `NULL` key, which
/// [`count_records`] skips.
fn reason_code_statement(backend: DbBackend, workspace: &WorkspaceId, query: &CountQuery) -> Statement {
    use sea_orm::Value;
    let mut values: Vec<Value> = vec![workspace.as_str().into()];
    let mut conditions = String::from("h.workspace_id = {} AND h.decision IS NOT NULL");
    if let Some(decision) = query.decision {
        conditions.push_str(" AND h.decision = {}");
        values.push(decision.as_str().into());
    }
    if let Some(from) = query.window.from {
        conditions.push_str(" AND h.created_at >= {}");
        values.push(time_value(backend, from));
    }
    if let Some(until) = query.window.until {
        conditions.push_str(" AND h.created_at < {}");
        values.push(time_value(backend, until));
    }
    let mut n = 0;
    let conditions = conditions
        .split("{}")
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                return part.to_owned();
            }
            n += 1;
            let mark = if backend == DbBackend::Postgres { format!("${n}") } else { "?".to_owned() };
            format!("{mark}{part}")
        })
        .collect::<String>();
    // MySQL's JSON_TABLE column gets a binary collation, or it would group
    // case-insensitively in the connection's collation; that collation pads
    // ("a" equals "a "), so the byte length is grouped on too. Grouping on
    // `CAST(… AS BINARY)` instead costs a conversion per row.
    let sql = match backend {
        DbBackend::Postgres => format!(
            "SELECT r.code AS k, COUNT(*) AS n FROM governance_history h \
             CROSS JOIN LATERAL unnest(h.reason_codes) AS r(code) WHERE {conditions} GROUP BY r.code"
        ),
        DbBackend::MySql => format!(
            "SELECT r.code AS k, COUNT(*) AS n FROM governance_history h {}, \
             JSON_TABLE(h.reason_codes, '$[*]' COLUMNS \
             (code VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$')) AS r \
             WHERE {conditions} GROUP BY r.code, OCTET_LENGTH(r.code)",
            decision_index_hint(backend, &query.window).unwrap_or_default()
        ),
        // `ORDER BY … LIMIT -1` (no limit: `rank_counts` ranks and cuts
        // below) is no part of the answer, but SQLite 3.51 runs the grouping
        // 2.4× faster with it than bare, through the same index, in a
        // 20,000-record workspace; without the LIMIT it does not.
        _ => format!(
            "SELECT r.value AS k, COUNT(*) AS n FROM governance_history h, json_each(h.reason_codes) AS r \
             WHERE {conditions} GROUP BY r.value ORDER BY n DESC, k LIMIT -1"
        ),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// The plan the database chooses for `statement`, one line per row of its
/// `EXPLAIN` (PostgreSQL), `EXPLAIN` (MySQL/MariaDB: the table, access
/// type, key and rows of each row, as `column=value` pairs) or
/// `EXPLAIN QUERY PLAN` (SQLite).
async fn explain<C: ConnectionTrait>(conn: &C, statement: Statement) -> Result<Vec<String>> {
    let backend = statement.db_backend;
    let prefix = if backend == DbBackend::Sqlite { "EXPLAIN QUERY PLAN " } else { "EXPLAIN " };
    let explain = Statement { sql: format!("{prefix}{}", statement.sql), ..statement };
    let rows = conn.query_all_raw(explain).await.map_err(map)?;
    rows.iter()
        .map(|row| match backend {
            DbBackend::Sqlite => row.try_get::<String>("", "detail").map_err(map),
            DbBackend::MySql => Ok(["table", "type", "possible_keys", "key", "key_len", "ref", "rows", "Extra"]
                .iter()
                .filter_map(|column| {
                    let text = row.try_get::<Option<String>>("", column).ok().flatten();
                    let number = || row.try_get::<Option<i64>>("", column).ok().flatten().map(|n| n.to_string());
                    text.or_else(number).map(|value| format!("{column}={value}"))
                })
                .collect::<Vec<_>>()
                .join(" ")),
            _ => row.try_get_by_index::<String>(0).map_err(map),
        })
        .collect()
}

/// The plan of the request query for `filter` and `page`.
pub(crate) async fn explain_query_requests<C: ConnectionTrait>(
    conn: &C,
    workspace: &WorkspaceId,
    filter: &RequestFilter,
    page: &PageRequest,
) -> Result<Vec<String>> {
    let backend = conn.get_database_backend();
    explain(conn, requests_select(backend, workspace, filter, page)?.build(backend)).await
}

/// The plan of a request's history.
pub(crate) async fn explain_history_for_request<C: ConnectionTrait>(
    conn: &C,
    workspace: &WorkspaceId,
    request: RequestId,
) -> Result<Vec<String>> {
    let backend = conn.get_database_backend();
    explain(conn, request_history_select(workspace, request).build(backend)).await
}

/// The plan of the history query for `filter` and `page`.
pub(crate) async fn explain_query_history<C: ConnectionTrait>(
    conn: &C,
    workspace: &WorkspaceId,
    filter: &HistoryFilter,
    page: &PageRequest,
) -> Result<Vec<String>> {
    let backend = conn.get_database_backend();
    explain(conn, history_select(backend, workspace, filter, page)?.build(backend)).await
}

/// The plan of the count for `query`, with the watermark it would read now.
pub(crate) async fn explain_count_history<C: ConnectionTrait>(
    conn: &C,
    workspace: &WorkspaceId,
    query: &CountQuery,
) -> Result<Vec<String>> {
    match hourly_mark(conn, workspace, query).await? {
        Some(mark) => {
            let (sql, params) = postgres_statements::count_history(workspace, query, mark.as_deref())?;
            explain(conn, postgres_count_statement(sql, params)?).await
        }
        None => explain(conn, count_statement(conn.get_database_backend(), workspace, query)?).await,
    }
}

/// History records of the workspace that no seal entry names, after `after`
/// in `(created_at, id)` order: a `NOT EXISTS` anti-join on the seals'
/// unique `(workspace_id, record_id)` key. It reads and skips every sealed
/// row from `after` on, so its cost grows with the workspace's history.
/// Rows are decoded one by one, so one that does not decode comes back
/// [`Unreadable`](governance_abstractions::Unreadable) without failing the page.
pub(crate) async fn unsealed_history<C: ConnectionTrait>(
    conn: &C,
    workspace: &WorkspaceId,
    after: Option<Position>,
    limit: u32,
) -> Result<Vec<ReadRecord>> {
    // Before the query: past the year 9999 SQLite compares text and MySQL
    // refuses the value, so the same validation error everywhere.
    after.as_ref().map(Position::validate).transpose()?;
    use history::Column as H;
    let sealed = Query::select()
        .expr(Expr::val(1))
        .from(seal::Entity)
        .and_where(Expr::col((seal::Entity, seal::Column::WorkspaceId)).equals((history::Entity, H::WorkspaceId)))
        .and_where(Expr::col((seal::Entity, seal::Column::RecordId)).equals((history::Entity, H::Id)))
        .to_owned();
    let mut select = history::Entity::find()
        .filter(H::WorkspaceId.eq(workspace.as_str()))
        .filter(Condition::all().add(Expr::not_exists(sealed)))
        .order_by_asc(H::CreatedAt)
        .order_by_asc(H::Id)
        .limit(u64::from(limit));
    if let Some(after) = after {
        select = select.filter(beyond(conn.get_database_backend(), H::CreatedAt, H::Id, after, Direction::Forward));
    }
    let rows = conn.query_all_raw(select.build(conn.get_database_backend())).await.map_err(map)?;
    rows.iter().map(|row| read_record(row, "")).collect()
}

pub(crate) async fn checkpoints<C: ConnectionTrait>(
    conn: &C,
    workspace: &WorkspaceId,
    after: u64,
    limit: u32,
) -> Result<Vec<Checkpoint>> {
    use checkpoint::Column as C;
    // No stored seq exceeds i64::MAX.
    let Ok(after) = i64::try_from(after) else { return Ok(Vec::new()) };
    let rows = checkpoint::Entity::find()
        .filter(C::WorkspaceId.eq(workspace.as_str()))
        .filter(C::Seq.gt(after))
        .order_by_asc(C::Seq)
        .limit(u64::from(limit))
        .all(conn)
        .await
        .map_err(map)?;
    rows.into_iter().map(checkpoint_from).collect()
}

pub(crate) async fn latest_checkpoint<C: ConnectionTrait>(
    conn: &C,
    workspace: &WorkspaceId,
) -> Result<Option<Checkpoint>> {
    use checkpoint::Column as C;
    let row = checkpoint::Entity::find()
        .filter(C::WorkspaceId.eq(workspace.as_str()))
        .order_by_desc(C::Seq)
        .one(conn)
        .await
        .map_err(map)?;
    row.map(checkpoint_from).transpose()
}

/// The column prefixes of a two-entity select (SeaORM's `select_also`).
const SEAL: &str = "A_";
const RECORD: &str = "B_";

/// Seal entries from leaf index `from`, each left-joined to its record in
/// the same workspace. A seal entry that does not decode is a backend error;
/// a joined record that does not decode is [`Unreadable`](governance_abstractions::Unreadable).
pub(crate) async fn sealed_records<C: ConnectionTrait>(
    conn: &C,
    workspace: &WorkspaceId,
    from: u64,
    limit: u32,
) -> Result<Vec<SealedRecord>> {
    use seal::Column as S;
    let Ok(from) = i64::try_from(from) else { return Ok(Vec::new()) };
    let record: RelationDef = seal::Entity::belongs_to(history::Entity)
        .from((S::WorkspaceId, S::RecordId))
        .to((history::Column::WorkspaceId, history::Column::Id))
        .into();
    let rows = seal::Entity::find()
        .join(JoinType::LeftJoin, record)
        .filter(S::WorkspaceId.eq(workspace.as_str()))
        .filter(S::LeafIndex.gte(from))
        .order_by_asc(S::LeafIndex)
        .limit(u64::from(limit))
        .select_also(history::Entity);
    let rows = conn.query_all_raw(rows.build(conn.get_database_backend())).await.map_err(map)?;
    rows.iter()
        .map(|row| {
            let entry = seal::Model::from_query_result(row, SEAL).map_err(map)?;
            // The left join found no row when the record's key is NULL.
            let joined = row.try_get::<Option<uuid::Uuid>>(RECORD, "id").map_err(map)?;
            let record = joined.map(|_| read_record(row, RECORD)).transpose()?;
            Ok((seal_from(entry)?, record))
        })
        .collect()
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use governance_abstractions::{PendingReason, RequestStatus};
    use sea_orm::Statement;

    use super::*;
    use crate::SeaOrmStore;

    /// On MySQL every count over a bounded window names the decision
    /// index, and an unbounded one does not.
    #[test]
    fn mysql_counts_over_a_window_force_the_decision_index() {
        let ws = WorkspaceId::new("w").expect("valid");
        let week = TimeRange { from: Some(governance_abstractions::Timestamp::now()), until: None };
        for by in [CountBy::ReasonCode, CountBy::Principal, CountBy::Operation, CountBy::Decision] {
            let bounded = count_statement(DbBackend::MySql, &ws, &CountQuery::new(by, week)).expect("statement");
            assert!(bounded.sql.contains("FORCE INDEX (governance_history_decision)"), "{by:?}: {}", bounded.sql);
            let all = count_statement(DbBackend::MySql, &ws, &CountQuery::new(by, TimeRange::default())).expect("ok");
            assert!(!all.sql.contains("FORCE INDEX"), "{by:?}: {}", all.sql);
            for backend in [DbBackend::Postgres, DbBackend::Sqlite] {
                let other = count_statement(backend, &ws, &CountQuery::new(by, week)).expect("statement");
                assert!(!other.sql.contains("FORCE INDEX"), "{backend:?} {by:?}: {}", other.sql);
            }
        }
    }

    /// SQLite's plan of the request query this crate sends for `filter`.
    async fn plan(store: &SeaOrmStore, workspace: &WorkspaceId, filter: &RequestFilter) -> Vec<String> {
        let backend = DbBackend::Sqlite;
        let select = request::Entity::find().filter(request_condition(backend, workspace, filter));
        let select = keyset(backend, select, &PageRequest::first(50), request::Column::CreatedAt, request::Column::Id)
            .expect("a first page");
        let statement = select.build(backend);
        let explain = Statement { sql: format!("EXPLAIN QUERY PLAN {}", statement.sql), ..statement };
        let rows = store.connection().query_all_raw(explain).await.expect("explain");
        rows.iter().map(|row| row.try_get::<String>("", "detail").expect("detail")).collect()
    }

    /// The pending queue, with and without a reason, is a search of the
    /// index over pending requests only (SQLite uses a partial index only
    /// where the query's terms match its `WHERE`), and the expiry sweep of
    /// its own partial index.
    #[tokio::test]
    async fn the_queues_use_their_partial_indexes_on_sqlite() {
        let store = SeaOrmStore::open_sqlite_in_memory().await.expect("SQLite");
        let connection = store.connection();
        connection
            .execute_unprepared(
                "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 5000)
                 INSERT INTO governance_requests
                 SELECT 'big', randomblob(16), 'flag', 's' || n, 'update', 'user', 'u', '{}', '',
                        CASE WHEN n % 10 = 0 THEN 'pending' ELSE 'executed' END,
                        CASE WHEN n % 10 = 0 THEN 'approval' END, '[]', NULL, 'reject_stale', NULL, NULL, NULL,
                        NULL, '[]', '{}', 1, printf('2026-11-%02d 00:00:00.%06d', 1 + n % 28, n), '2026-11-01',
                        'digest', NULL
                 FROM g",
            )
            .await
            .expect("requests");
        connection.execute_unprepared("ANALYZE").await.expect("analyze");
        let ws = WorkspaceId::new("big").expect("valid");
        let queue = RequestFilter { statuses: vec![RequestStatus::Pending], ..RequestFilter::default() };
        let by_reason = RequestFilter { pending_reason: Some(PendingReason::Approval), ..queue.clone() };
        for filter in [&queue, &by_reason] {
            let plan = plan(&store, &ws, filter).await;
            assert!(
                plan.iter().any(|l| l.contains("USING INDEX governance_requests_pending ")),
                "{filter:?}: {plan:?}"
            );
            assert!(!plan.iter().any(|l| l.contains("TEMP B-TREE")), "{filter:?} sorts: {plan:?}");
        }
        let due = RequestFilter {
            statuses: vec![RequestStatus::Created, RequestStatus::Pending, RequestStatus::Approved],
            expires_by: Some(governance_abstractions::Timestamp::now()),
            ..RequestFilter::default()
        };
        let plan = plan(&store, &ws, &due).await;
        assert!(plan.iter().any(|l| l.contains("USING INDEX governance_requests_expiry ")), "{plan:?}");
    }
}
