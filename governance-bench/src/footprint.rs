//! Bytes of table and index each side keeps per operation: the growth of
//! every relation over N creates + one transition by the provider, then
//! over N by the event-sourced baseline, on the same database. Growth is
//! what was written: a transition's `UPDATE` leaves the old row version
//! (and its index entries) behind until vacuum makes the space reusable,
//! which is real write cost even if the space is later reused.

use governance_abstractions::GovernanceService;
use governance_postgres::sqlx::{self, PgPool};
use governance_seaorm::sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, Value};

use crate::baseline::Outcome;
use crate::event_sourced::EventStore;
use crate::vs_event_sourced::{event_sourced_flow, library_flow};
use crate::workloads::workspace;

/// The tables of both sides: the provider's two, the baseline's one.
const LIBRARY_TABLES: [&str; 2] = ["governance_requests", "governance_history"];
const EVENT_TABLES: [&str; 1] = ["events"];

/// How the sizes of relations are read on one backend.
#[derive(Debug, Clone)]
pub(crate) enum Sizer {
    /// `pg_relation_size` of every index, and of the table with its TOAST
    /// (`pg_total_relation_size` less `pg_indexes_size`): file sizes,
    /// exact to the 8 KiB page as soon as a page is allocated.
    Postgres(PgPool),
    /// MySQL/MariaDB: the pages of every index after `ANALYZE TABLE`
    /// (`size` in `mysql.innodb_index_stats`, what `data_length` and
    /// `index_length` add up; the clustered primary key holds the rows).
    /// InnoDB gives a segment its first 32 pages one at a time, then whole
    /// 1 MiB extents, so only below that are the figures exact to the
    /// 16 KiB page: see [`Sizer::max_operations`].
    /// SQLite: the `dbstat` virtual table (page granularity), or the whole
    /// file (`page_count × page_size`) where it is not compiled in.
    Sea(DatabaseConnection),
}

/// One relation's size.
#[derive(Clone, Debug)]
struct Relation {
    name: String,
    table: String,
    index: bool,
    bytes: i64,
}

fn text<E: std::fmt::Display>(error: E) -> String {
    error.to_string()
}

impl Sizer {
    /// The most operations the sizes stay exact over: on MySQL, as many as
    /// keep the largest segment (the history's rows, about 1.6 KB per
    /// operation) within its 32 single pages; elsewhere any number.
    fn max_operations(&self) -> u64 {
        match self {
            Sizer::Sea(connection) if connection.get_database_backend() == DbBackend::MySql => 300,
            _ => u64::MAX,
        }
    }

    async fn relations(&self) -> Outcome<Vec<Relation>> {
        let tables: Vec<String> = LIBRARY_TABLES.iter().chain(&EVENT_TABLES).map(|t| (*t).to_owned()).collect();
        match self {
            Sizer::Postgres(pool) => {
                let rows: Vec<(String, String, bool, i64)> = sqlx::query_as(
                    "SELECT c.relname::text, c.relname::text, false,
                            (pg_total_relation_size(c.oid) - pg_indexes_size(c.oid))::bigint
                       FROM pg_class c
                      WHERE c.relname = ANY($1) AND c.relkind = 'r' AND pg_table_is_visible(c.oid)
                     UNION ALL
                     SELECT i.relname::text, t.relname::text, true, pg_relation_size(i.oid)::bigint
                       FROM pg_index x
                       JOIN pg_class t ON t.oid = x.indrelid
                       JOIN pg_class i ON i.oid = x.indexrelid
                      WHERE t.relname = ANY($1) AND pg_table_is_visible(t.oid)",
                )
                .bind(&tables)
                .fetch_all(pool)
                .await
                .map_err(text)?;
                Ok(rows.into_iter().map(|(name, table, index, bytes)| Relation { name, table, index, bytes }).collect())
            }
            Sizer::Sea(connection) => match connection.get_database_backend() {
                DbBackend::MySql => mysql_relations(connection, &tables).await,
                _ => sqlite_relations(connection, &tables).await,
            },
        }
    }
}

async fn query(connection: &DatabaseConnection, sql: &str, tables: &[String]) -> Outcome<Vec<Relation>> {
    let marks = vec!["?"; tables.len()].join(", ");
    let sql = sql.replace("{tables}", &marks);
    let values = tables.iter().map(|t| Value::from(t.as_str()));
    let statement = Statement::from_sql_and_values(connection.get_database_backend(), sql, values);
    let rows = connection.query_all_raw(statement).await.map_err(text)?;
    rows.iter()
        .map(|r| {
            Ok(Relation {
                name: r.try_get("", "name").map_err(text)?,
                table: r.try_get("", "tbl").map_err(text)?,
                index: r.try_get::<i64>("", "is_index").map_err(text)? != 0,
                bytes: r.try_get("", "bytes").map_err(text)?,
            })
        })
        .collect()
}

async fn mysql_relations(connection: &DatabaseConnection, tables: &[String]) -> Outcome<Vec<Relation>> {
    // The figures below are the persistent statistics: refresh them first.
    connection.execute_unprepared(&format!("ANALYZE TABLE {}", tables.join(", "))).await.map_err(text)?;
    query(
        connection,
        "SELECT IF(index_name = 'PRIMARY', table_name, CONCAT(table_name, '.', index_name)) AS name,
                table_name AS tbl, index_name <> 'PRIMARY' AS is_index,
                CAST(stat_value * @@innodb_page_size AS SIGNED) AS bytes
           FROM mysql.innodb_index_stats
          WHERE database_name = DATABASE() AND stat_name = 'size' AND table_name IN ({tables})",
        tables,
    )
    .await
}

async fn sqlite_relations(connection: &DatabaseConnection, tables: &[String]) -> Outcome<Vec<Relation>> {
    let per_btree = query(
        connection,
        "SELECT s.name AS name, m.tbl_name AS tbl, m.type = 'index' AS is_index, SUM(s.pgsize) AS bytes
           FROM dbstat s JOIN sqlite_master m ON m.name = s.name
          WHERE m.tbl_name IN ({tables}) GROUP BY s.name, m.tbl_name, m.type",
        tables,
    )
    .await;
    if per_btree.is_ok() {
        return per_btree;
    }
    // Without dbstat: the whole file, attributed to every table (each side
    // is measured alone, so the growth of the file is that side's).
    let statement = Statement::from_string(
        DbBackend::Sqlite,
        "SELECT page_count * page_size AS bytes FROM pragma_page_count(), pragma_page_size()",
    );
    let row = connection.query_one_raw(statement).await.map_err(text)?.ok_or("no page count")?;
    let bytes: i64 = row.try_get("", "bytes").map_err(text)?;
    Ok(vec![Relation { name: "database file".into(), table: "*".into(), index: false, bytes }])
}

/// One line of the bytes-per-operation report.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Footprint {
    pub(crate) provider: String,
    /// `library` (the provider) or `event-sourced` (the baseline).
    pub(crate) side: &'static str,
    pub(crate) table: String,
    /// A table, an index, or `total` (every relation of the side).
    pub(crate) relation: String,
    pub(crate) kind: &'static str,
    /// Creates + one transition each that the growth is divided by.
    pub(crate) operations: u64,
    pub(crate) bytes_per_op: f64,
}

/// `after - before` per relation of `tables`, per operation, with the total.
fn growth(
    provider: &str,
    side: &'static str,
    tables: &[&str],
    before: &[Relation],
    after: &[Relation],
    operations: u64,
) -> Vec<Footprint> {
    let per_op = |bytes: i64| bytes as f64 / operations.max(1) as f64;
    let mut lines = Vec::new();
    let mut total = 0;
    for relation in after.iter().filter(|r| r.table == "*" || tables.contains(&r.table.as_str())) {
        let was = before.iter().find(|b| b.name == relation.name).map_or(0, |b| b.bytes);
        total += relation.bytes - was;
        lines.push(Footprint {
            provider: provider.to_owned(),
            side,
            table: relation.table.clone(),
            relation: relation.name.clone(),
            kind: if relation.index { "index" } else { "table" },
            operations,
            bytes_per_op: per_op(relation.bytes - was),
        });
    }
    // Tables first, then the indexes, largest first.
    lines.sort_by(|a, b| (a.kind != "table").cmp(&(b.kind != "table")).then(b.bytes_per_op.total_cmp(&a.bytes_per_op)));
    lines.push(Footprint {
        provider: provider.to_owned(),
        side,
        table: tables.join(" + "),
        relation: "total".into(),
        kind: "total",
        operations,
        bytes_per_op: per_op(total),
    });
    lines
}

/// Measures both sides of `provider` over `operations` creates + one
/// transition each, one at a time.
pub(crate) async fn measure(
    provider: &str,
    sizer: &Sizer,
    service: &GovernanceService,
    events: &dyn EventStore,
    operations: u64,
) -> Outcome<Vec<Footprint>> {
    let operations = operations.min(sizer.max_operations());
    let (ours, theirs) = (workspace("bytes"), workspace("bytes-base"));
    let start = sizer.relations().await?;
    for n in 0..operations {
        library_flow(service, &ours, n).await?;
    }
    let middle = sizer.relations().await?;
    for n in 0..operations {
        event_sourced_flow(events, &theirs, n).await?;
    }
    let end = sizer.relations().await?;
    let mut lines = growth(provider, "library", &LIBRARY_TABLES, &start, &middle, operations);
    lines.extend(growth(provider, "event-sourced", &EVENT_TABLES, &middle, &end, operations));
    Ok(lines)
}
