//! MySQL/MariaDB: the server refuses a change of any request column fixed
//! at creation.
//!
//! The application role may update only the transition columns, but MariaDB
//! checks column privileges of `INSERT … ON DUPLICATE KEY UPDATE` by table
//! only: a user allowed to update one column of `governance_requests` could
//! rewrite any other (the intent, the requester, even the key) that way. A
//! `BEFORE UPDATE` trigger compares every column outside
//! [`TRANSITION_COLUMNS`](governance_abstractions::provider::TRANSITION_COLUMNS) byte for byte and refuses the change, whatever the
//! statement. PostgreSQL checks the columns itself; SQLite has no privileges
//! (there this migration does nothing).

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

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
        // Created unless it is there, never dropped first: a second run
        // (or one on another Galera node) never leaves the columns unguarded.
        super::create_mysql_trigger(manager, &create_trigger()).await
    }
}

/// The request columns a transition never writes, as `governance_requests`
/// has them at this migration: written out, not read from the entity, so a
/// column added later cannot change (or break) what this migration creates
/// on a fresh database. A later migration that adds, renames or drops a
/// request column must drop and recreate this trigger with the new list.
pub(crate) const FROZEN_COLUMNS: [&str; 16] = [
    "workspace_id",
    "id",
    "state_type",
    "state_id",
    "operation",
    "actor_kind",
    "actor_id",
    "requested_by",
    "intent",
    "stale_strategy",
    "expires_at",
    "idempotency_key",
    "category",
    "tags",
    "created_at",
    "creation_digest",
];

fn create_trigger() -> String {
    // Binary casts: no collation (trailing spaces, case) can hide a change.
    let unchanged: Vec<String> = FROZEN_COLUMNS
        .iter()
        .map(|column| format!("CAST(OLD.`{column}` AS BINARY) <=> CAST(NEW.`{column}` AS BINARY)"))
        .collect();
    format!(
        "CREATE TRIGGER IF NOT EXISTS {TRIGGER} BEFORE UPDATE ON governance_requests FOR EACH ROW \
         BEGIN IF NOT ({}) THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = \
         'governance_requests: a column fixed at creation cannot change'; END IF; END",
        unchanged.join(" AND ")
    )
}

#[cfg(test)]
mod tests {
    use governance_abstractions::provider::TRANSITION_COLUMNS;
    use sea_orm::{IdenStatic, Iterable};

    use super::*;
    use crate::entity::request;

    /// The list is this migration's; today's entity still matches it. When
    /// a request column is added, this fails: add a migration that
    /// recreates the trigger, and point this check at that one.
    #[test]
    fn guards_every_column_but_the_transition_columns() {
        for column in
            ["workspace_id", "id", "intent", "requested_by", "idempotency_key", "created_at", "creation_digest"]
        {
            assert!(FROZEN_COLUMNS.contains(&column), "{column} is frozen");
        }
        for column in TRANSITION_COLUMNS {
            assert!(!FROZEN_COLUMNS.contains(column), "{column} is written by transitions");
        }
        let entity: Vec<&str> = request::Column::iter()
            .map(|column| column.as_str())
            .filter(|column| !TRANSITION_COLUMNS.contains(column))
            .collect();
        assert_eq!(entity, FROZEN_COLUMNS, "the request columns changed: recreate the trigger in a new migration");
        let sql = create_trigger();
        assert_eq!(sql.matches("<=>").count(), FROZEN_COLUMNS.len(), "{sql}");
    }
}
