//! MySQL/MariaDB: the server refuses a change of any request column fixed
//! at creation.
//!
//! The application role may update only the transition columns, but MariaDB
//! checks column privileges of `INSERT … ON DUPLICATE KEY UPDATE` by table
//! only: a user allowed to update one column of `governance_requests` could
//! rewrite any other (the intent, the requester, even the key) that way. A
//! `BEFORE UPDATE` trigger compares every column outside
//! [`TRANSITION_COLUMNS`] byte for byte and refuses the change, whatever the
//! statement. PostgreSQL checks the columns itself; SQLite has no privileges
//! (there this migration does nothing).

use governance_abstractions::provider::TRANSITION_COLUMNS;
use sea_orm::{DbBackend, IdenStatic, Iterable};
use sea_orm_migration::prelude::*;

use crate::entity::request;

/// The trigger's name.
pub(crate) const TRIGGER: &str = "governance_requests_frozen_columns";

pub(super) struct GuardFrozenRequestColumns;

impl MigrationName for GuardFrozenRequestColumns {
    fn name(&self) -> &str {
        "m20261215_000004_guard_frozen_request_columns"
    }
}

#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for GuardFrozenRequestColumns {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::MySql {
            return Ok(());
        }
        // DDL commits on its own here: re-running after a crash must work.
        let connection = manager.get_connection();
        connection.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {TRIGGER}")).await?;
        connection.execute_unprepared(&create_trigger()).await?;
        Ok(())
    }
}

/// The request columns a transition never writes.
pub(crate) fn frozen_columns() -> Vec<&'static str> {
    request::Column::iter()
        .map(|column| column.as_str())
        .filter(|column| !TRANSITION_COLUMNS.contains(column))
        .collect()
}

fn create_trigger() -> String {
    // Binary casts: no collation (trailing spaces, case) can hide a change.
    let unchanged: Vec<String> = frozen_columns()
        .iter()
        .map(|column| format!("CAST(OLD.`{column}` AS BINARY) <=> CAST(NEW.`{column}` AS BINARY)"))
        .collect();
    format!(
        "CREATE TRIGGER {TRIGGER} BEFORE UPDATE ON governance_requests FOR EACH ROW \
         BEGIN IF NOT ({}) THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = \
         'governance_requests: a column fixed at creation cannot change'; END IF; END",
        unchanged.join(" AND ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_every_column_but_the_transition_columns() {
        let frozen = frozen_columns();
        for column in
            ["workspace_id", "id", "intent", "requested_by", "idempotency_key", "created_at", "creation_digest"]
        {
            assert!(frozen.contains(&column), "{column} is frozen");
        }
        for column in TRANSITION_COLUMNS {
            assert!(!frozen.contains(column), "{column} is written by transitions");
        }
        assert_eq!(frozen.len() + TRANSITION_COLUMNS.len(), request::Column::iter().count());
        let sql = create_trigger();
        assert_eq!(sql.matches("<=>").count(), frozen.len(), "{sql}");
    }
}
