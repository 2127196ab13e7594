//! The PostgreSQL schema that `governance-postgres` (sqlx) and
//! `governance-seaorm` share: one database can be migrated by either,
//! and read and written by both.
//!
//! The two providers do not depend on each other, so the expected column
//! types live here, where both can check a database against them before and
//! after migrating: tables of the same names that hold something else must
//! be refused, not adopted (every statement would then fail to decode, or
//! worse, decode into something else). The check compares what
//! `information_schema.columns` reports, in its `udt_name` vocabulary
//! (`timestamptz`, `_text` for `text[]`, `int8`, …), for the schema the
//! providers create their tables in (`current_schema()`). The providers'
//! tests compare the whole catalog (indexes, constraints, triggers,
//! functions) of databases migrated by each; this table is what every
//! `migrate()` checks cheaply.

use std::fmt;

/// One column of the shared schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostgresColumn {
    /// The table.
    pub table: &'static str,
    /// The column.
    pub column: &'static str,
    /// Its type as `information_schema.columns.udt_name` names it.
    pub udt_name: &'static str,
    /// Added by a later migration: a database that is not migrated that
    /// far yet lacks it (and gets it from `migrate()`).
    pub added_later: bool,
}

const fn column(table: &'static str, column: &'static str, udt_name: &'static str) -> PostgresColumn {
    PostgresColumn { table, column, udt_name, added_later: false }
}

const fn later(table: &'static str, column: &'static str, udt_name: &'static str) -> PostgresColumn {
    PostgresColumn { table, column, udt_name, added_later: true }
}

const REQUESTS: &str = "governance_requests";
const HISTORY: &str = "governance_history";
const CHECKPOINTS: &str = "governance_checkpoints";
const SEALS: &str = "governance_seals";
const ROLLUPS: &str = "governance_count_rollups";
const COUNTS: &str = "governance_history_counts";
const DAILY_COUNTS: &str = "governance_history_daily_counts";

/// The tables of the shared schema.
pub const POSTGRES_TABLES: [&str; 7] = [REQUESTS, HISTORY, CHECKPOINTS, SEALS, ROLLUPS, COUNTS, DAILY_COUNTS];

/// The tables that hold derived data only: the hourly and daily decision
/// counts and their watermarks, which a roll-up computes from
/// `governance_history`.
/// Schemas without a transaction order (`governance-postgres`'s distributed
/// profile) do without them.
pub const DERIVED_TABLES: [&str; 3] = [ROLLUPS, COUNTS, DAILY_COUNTS];

/// The function that folds a workspace's new decision records into the
/// hourly and daily counts, with its signature (`SECURITY DEFINER`, run as the
/// tables' owner: the application role may call it, never write a count).
pub const ROLL_UP_FUNCTION: &str = "governance_roll_up_counts(text)";

/// Every column of the shared schema, in table order, with its type.
pub const POSTGRES_COLUMNS: &[PostgresColumn] = &[
    column(REQUESTS, "workspace_id", "text"),
    column(REQUESTS, "id", "uuid"),
    column(REQUESTS, "state_type", "text"),
    column(REQUESTS, "state_id", "text"),
    column(REQUESTS, "operation", "text"),
    column(REQUESTS, "actor_kind", "text"),
    column(REQUESTS, "actor_id", "text"),
    column(REQUESTS, "requested_by", "jsonb"),
    column(REQUESTS, "intent", "text"),
    column(REQUESTS, "status", "text"),
    column(REQUESTS, "pending_reason", "text"),
    column(REQUESTS, "approvals", "jsonb"),
    column(REQUESTS, "expected_state_version", "int8"),
    column(REQUESTS, "stale_strategy", "text"),
    column(REQUESTS, "expires_at", "timestamptz"),
    column(REQUESTS, "superseded_by", "uuid"),
    column(REQUESTS, "idempotency_key", "text"),
    column(REQUESTS, "category", "text"),
    column(REQUESTS, "tags", "_text"),
    column(REQUESTS, "metadata", "jsonb"),
    column(REQUESTS, "revision", "int8"),
    column(REQUESTS, "created_at", "timestamptz"),
    column(REQUESTS, "updated_at", "timestamptz"),
    column(REQUESTS, "creation_digest", "text"),
    later(REQUESTS, "state_digest", "text"),
    column(HISTORY, "workspace_id", "text"),
    column(HISTORY, "id", "uuid"),
    column(HISTORY, "request_id", "uuid"),
    column(HISTORY, "request_revision", "int8"),
    column(HISTORY, "category", "text"),
    column(HISTORY, "code", "text"),
    column(HISTORY, "actor_kind", "text"),
    column(HISTORY, "actor_id", "text"),
    column(HISTORY, "actor", "jsonb"),
    column(HISTORY, "object_type", "text"),
    column(HISTORY, "operation", "text"),
    column(HISTORY, "decision", "text"),
    column(HISTORY, "outcome", "text"),
    column(HISTORY, "reason", "text"),
    column(HISTORY, "reason_codes", "_text"),
    column(HISTORY, "correlation_id", "text"),
    column(HISTORY, "trace_hash", "text"),
    column(HISTORY, "idempotency_key", "text"),
    column(HISTORY, "policy_version", "text"),
    column(HISTORY, "latency_us", "int8"),
    column(HISTORY, "request_json", "jsonb"),
    column(HISTORY, "response_json", "jsonb"),
    column(HISTORY, "redaction_policy", "text"),
    column(HISTORY, "redaction_version", "text"),
    column(HISTORY, "created_at", "timestamptz"),
    column(HISTORY, "content_hash", "text"),
    // Missing from databases that governance-seaorm migrated before the
    // schema was shared; its migration adds it.
    later(HISTORY, "tx_id", "xid8"),
    column(CHECKPOINTS, "workspace_id", "text"),
    column(CHECKPOINTS, "seq", "int8"),
    column(CHECKPOINTS, "first_index", "int8"),
    column(CHECKPOINTS, "record_count", "int8"),
    column(CHECKPOINTS, "root", "text"),
    column(CHECKPOINTS, "previous", "text"),
    column(CHECKPOINTS, "created_at", "timestamptz"),
    column(CHECKPOINTS, "digest", "text"),
    column(SEALS, "workspace_id", "text"),
    column(SEALS, "leaf_index", "int8"),
    column(SEALS, "record_id", "uuid"),
    column(SEALS, "content_hash", "text"),
    column(SEALS, "checkpoint_seq", "int8"),
    later(ROLLUPS, "workspace_id", "text"),
    later(ROLLUPS, "through_tx", "xid8"),
    later(ROLLUPS, "probe_id", "uuid"),
    later(ROLLUPS, "probe_tx", "xid8"),
    later(ROLLUPS, "days_through_tx", "xid8"),
    later(COUNTS, "workspace_id", "text"),
    later(COUNTS, "dimension", "text"),
    later(COUNTS, "decision", "text"),
    later(COUNTS, "hour", "int8"),
    later(COUNTS, "key", "text"),
    later(COUNTS, "n", "int8"),
    later(DAILY_COUNTS, "workspace_id", "text"),
    later(DAILY_COUNTS, "dimension", "text"),
    later(DAILY_COUNTS, "decision", "text"),
    later(DAILY_COUNTS, "day", "int8"),
    later(DAILY_COUNTS, "key", "text"),
    later(DAILY_COUNTS, "n", "int8"),
];

/// The query that reads the live columns the check compares: rows of
/// `(table_name, column_name, udt_name)`, all `text`, for the governance
/// tables in the schema that unqualified names create tables in.
pub const LIVE_COLUMNS_QUERY: &str = "SELECT table_name::text AS table_name, column_name::text AS column_name, \
     udt_name::text AS udt_name FROM information_schema.columns \
     WHERE table_schema = current_schema() AND table_name IN \
     ('governance_requests', 'governance_history', 'governance_checkpoints', 'governance_seals', \
     'governance_count_rollups', 'governance_history_counts', 'governance_history_daily_counts')";

/// When a database is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaStage {
    /// Before migrating: a table may be missing (the migrations create it),
    /// and so may a column [added later](PostgresColumn::added_later); what
    /// is there must have the shared schema's type.
    BeforeMigrating,
    /// After migrating: every table and column is there, with its type.
    Migrated,
}

/// A column whose live type is not the shared schema's: the tables under
/// the governance names hold something else. Providers return it as the
/// source of a non-retryable [`GovernanceError::Backend`](crate::GovernanceError::Backend),
/// where a caller can downcast to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaMismatch {
    /// The table.
    pub table: String,
    /// The column.
    pub column: String,
    /// Its live type (`udt_name`), or `None` when the column is missing.
    pub found: Option<String>,
    /// The shared schema's type (`udt_name`).
    pub expected: &'static str,
}

/// `udt_name` as SQL spells the type: arrays are `_element` there.
fn spelled(udt_name: &str) -> String {
    match udt_name.strip_prefix('_') {
        Some(element) => format!("{element}[]"),
        None => udt_name.to_owned(),
    }
}

impl fmt::Display for SchemaMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expected = spelled(self.expected);
        match &self.found {
            Some(found) => {
                write!(f, "{}.{} is {}, the governance schema has {expected}", self.table, self.column, spelled(found))?
            }
            None => write!(f, "{}.{} is missing, the governance schema has it as {expected}", self.table, self.column)?,
        }
        f.write_str(
            ": the tables of that name in this schema were not created by the governance migrations. \
             A database migrated by governance-seaorm before its PostgreSQL schema was shared with \
             governance-postgres is converted by governance-seaorm's `migrate()`; anything else must be \
             moved out of the way (rename the tables, or point the store at another database or schema) \
             before migrating. Nothing was changed.",
        )
    }
}

impl std::error::Error for SchemaMismatch {}

/// Compares the live columns (rows of [`LIVE_COLUMNS_QUERY`]) with
/// [`POSTGRES_COLUMNS`] at `stage`. The first column that differs, in the
/// table's order, is the error. Columns the shared schema does not name
/// are ignored: an application may add its own.
pub fn check_postgres_columns<'a>(
    live: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    stage: SchemaStage,
) -> Result<(), SchemaMismatch> {
    let live: Vec<(&str, &str, &str)> = live.into_iter().collect();
    let table_exists = |table: &str| live.iter().any(|(t, _, _)| *t == table);
    for expected in POSTGRES_COLUMNS {
        let found = live.iter().find(|(t, c, _)| *t == expected.table && *c == expected.column).map(|(_, _, u)| *u);
        let tolerated = match stage {
            SchemaStage::BeforeMigrating => !table_exists(expected.table) || expected.added_later,
            SchemaStage::Migrated => false,
        };
        match found {
            Some(udt_name) if udt_name == expected.udt_name => {}
            None if tolerated => {}
            found => {
                return Err(SchemaMismatch {
                    table: expected.table.to_owned(),
                    column: expected.column.to_owned(),
                    found: found.map(str::to_owned),
                    expected: expected.udt_name,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> Vec<(&'static str, &'static str, &'static str)> {
        POSTGRES_COLUMNS.iter().map(|c| (c.table, c.column, c.udt_name)).collect()
    }

    #[test]
    fn the_reference_passes_at_every_stage() {
        for stage in [SchemaStage::BeforeMigrating, SchemaStage::Migrated] {
            assert_eq!(check_postgres_columns(reference(), stage), Ok(()));
        }
        assert_eq!(check_postgres_columns([], SchemaStage::BeforeMigrating), Ok(()), "an empty database");
    }

    #[test]
    fn every_table_is_listed_and_every_column_once() {
        for table in POSTGRES_TABLES {
            assert!(POSTGRES_COLUMNS.iter().any(|c| c.table == table), "{table}");
        }
        for (n, a) in POSTGRES_COLUMNS.iter().enumerate() {
            assert!(POSTGRES_TABLES.contains(&a.table), "{a:?}");
            assert!(!POSTGRES_COLUMNS[n + 1..].iter().any(|b| (a.table, a.column) == (b.table, b.column)), "{a:?}");
        }
    }

    #[test]
    fn another_type_is_refused_and_named() {
        let mut live = reference();
        let at = live.iter().position(|c| *c == (HISTORY, "created_at", "timestamptz")).expect("listed");
        live[at].2 = "timestamp";
        for stage in [SchemaStage::BeforeMigrating, SchemaStage::Migrated] {
            let mismatch = check_postgres_columns(live.clone(), stage).expect_err("refused");
            assert_eq!(
                mismatch,
                SchemaMismatch {
                    table: HISTORY.into(),
                    column: "created_at".into(),
                    found: Some("timestamp".into()),
                    expected: "timestamptz"
                }
            );
            let text = mismatch.to_string();
            assert!(
                text.starts_with("governance_history.created_at is timestamp, the governance schema has timestamptz")
            );
            assert!(text.contains("migrate()"), "{text}");
        }
        let tags = live.iter_mut().find(|c| c.1 == "tags").expect("listed");
        tags.2 = "jsonb";
        let mismatch = check_postgres_columns(live, SchemaStage::Migrated).expect_err("refused");
        assert_eq!((mismatch.column.as_str(), mismatch.expected), ("tags", "_text"), "requests come first");
        assert!(mismatch.to_string().contains("is jsonb, the governance schema has text[]"), "{mismatch}");
    }

    #[test]
    fn missing_columns_are_refused_once_migrated() {
        let live: Vec<_> = reference().into_iter().filter(|c| c.1 != "tx_id").collect();
        assert_eq!(check_postgres_columns(live.clone(), SchemaStage::BeforeMigrating), Ok(()), "added later");
        let mismatch = check_postgres_columns(live, SchemaStage::Migrated).expect_err("refused");
        assert_eq!((mismatch.column.as_str(), mismatch.found.as_deref()), ("tx_id", None));
        assert!(mismatch.to_string().contains("governance_history.tx_id is missing"), "{mismatch}");

        // A table of that name without the shared columns is not ours.
        let foreign = vec![(REQUESTS, "id", "uuid"), (REQUESTS, "name", "text")];
        let mismatch = check_postgres_columns(foreign, SchemaStage::BeforeMigrating).expect_err("refused");
        assert_eq!(
            (mismatch.table.as_str(), mismatch.column.as_str(), mismatch.found.as_deref()),
            (REQUESTS, "workspace_id", None)
        );
        // A missing table is created by migrating.
        let only_requests: Vec<_> = reference().into_iter().filter(|c| c.0 == REQUESTS).collect();
        assert_eq!(check_postgres_columns(only_requests.clone(), SchemaStage::BeforeMigrating), Ok(()));
        assert!(check_postgres_columns(only_requests, SchemaStage::Migrated).is_err());
    }

    #[test]
    fn extra_columns_are_the_application_s() {
        let mut live = reference();
        live.push((REQUESTS, "app_note", "text"));
        assert_eq!(check_postgres_columns(live, SchemaStage::Migrated), Ok(()));
    }
}
