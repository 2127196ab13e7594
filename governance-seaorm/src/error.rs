//! Driver errors → [`GovernanceError`], keeping the source.

use governance_abstractions::GovernanceError;
use sea_orm::sqlx::error::DatabaseError;
use sea_orm::{DbErr, RuntimeErr, SqlErr, sqlx};

/// True when `error` is a unique-key violation (any backend).
pub(crate) fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

fn sqlx_error(error: &DbErr) -> Option<&sqlx::Error> {
    match error {
        DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e))
        | DbErr::Conn(RuntimeErr::SqlxError(e)) => Some(e),
        _ => None,
    }
}

fn database_error(error: &DbErr) -> Option<&dyn DatabaseError> {
    sqlx_error(error).and_then(sqlx::Error::as_database_error)
}

/// True when PostgreSQL reported a column or table the schema lacks
/// (42703, 42P01): a database not migrated that far yet.
pub(crate) fn is_undefined_object(error: &DbErr) -> bool {
    #[cfg(feature = "postgres")]
    return database_error(error)
        .and_then(|database| database.try_downcast_ref::<sqlx::postgres::PgDatabaseError>())
        .is_some_and(|pg| matches!(pg.code(), "42703" | "42P01"));
    #[cfg(not(feature = "postgres"))]
    return {
        let _ = error;
        false
    };
}

/// The MySQL error number, when the MySQL driver is built and reported it.
pub(crate) fn mysql_number(database: &dyn DatabaseError) -> Option<u16> {
    #[cfg(feature = "mysql")]
    return database.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().map(|e| e.number());
    #[cfg(not(feature = "mysql"))]
    return {
        let _ = database;
        None
    };
}

/// The MySQL error number of a SeaORM error, if the server reported one.
pub(crate) fn mysql_error_number(error: &DbErr) -> Option<u16> {
    database_error(error).and_then(mysql_number)
}

/// What kind of failure the database reported.
enum Class {
    /// The server went away or refuses connections: retry later.
    Unavailable,
    /// Serialization failure, deadlock, busy: retrying may succeed.
    Transient,
    /// Anything else.
    Permanent,
}

fn classify(database: &dyn DatabaseError) -> Class {
    #[cfg(feature = "postgres")]
    if let Some(pg) = database.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        let code = pg.code();
        return match code {
            // 25006: a write on a read-only server (a standby, or a primary
            // demoted by a failover): another node takes the writes.
            "57P01" | "57P02" | "57P03" | "53300" | "25006" => Class::Unavailable,
            _ if code.starts_with("08") => Class::Unavailable,
            // 57014: statement timeout (or a cancel): retrying may succeed.
            "40001" | "40P01" | "55P03" | "57014" => Class::Transient,
            _ => Class::Permanent,
        };
    }
    if let Some(number) = mysql_number(database) {
        return match number {
            1040 | 1053 | 2006 | 2013 => Class::Unavailable,
            // 1317: query interrupted; 3024: max_execution_time exceeded.
            1020 | 1205 | 1213 | 1317 | 3024 => Class::Transient,
            _ => Class::Permanent,
        };
    }
    #[cfg(feature = "sqlite")]
    if let Some(lite) = database.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
        let extended: i32 = lite.code().and_then(|c| c.parse().ok()).unwrap_or(0);
        if matches!(extended & 0xff, 5 | 6) {
            return Class::Transient;
        }
    }
    Class::Permanent
}

/// True when the server rolled back the whole transaction, not just the
/// statement (MySQL/MariaDB on a deadlock): savepoints are gone with it.
pub(crate) fn transaction_lost(error: &DbErr) -> bool {
    mysql_error_number(error) == Some(1213)
}

/// True when `error` says the server rolled back the store's whole
/// transaction, so that nothing of it committed and running it again from
/// the start is safe: a MySQL/MariaDB deadlock victim, or on Galera a
/// transaction aborted by a replicated write or by DDL (both error 1213,
/// at any statement or at `COMMIT`); on PostgreSQL a deadlock victim
/// (40P01) or a serialization failure (40001). A lost connection is not
/// one: the commit may have happened.
pub(crate) fn rolled_back(error: &GovernanceError) -> bool {
    let GovernanceError::Backend { source, .. } = error else { return false };
    let Some(db) = source.downcast_ref::<DbErr>() else { return false };
    if transaction_lost(db) {
        return true;
    }
    #[cfg(feature = "postgres")]
    if let Some(pg) = database_error(db).and_then(|d| d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()) {
        return matches!(pg.code(), "40P01" | "40001");
    }
    false
}

/// Maps a SeaORM error: lost or unreachable servers are `Unavailable`;
/// serialization failures, deadlocks, statement timeouts and interrupted
/// queries and a busy SQLite a retryable `Backend`; the rest (bad credentials included) a plain `Backend`.
pub(crate) fn map(error: DbErr) -> GovernanceError {
    let class = match (&error, database_error(&error)) {
        (_, Some(database)) => classify(database),
        (DbErr::ConnectionAcquire(_) | DbErr::Conn(_), None) => Class::Unavailable,
        _ => match sqlx_error(&error) {
            Some(
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed,
            ) => Class::Unavailable,
            _ => Class::Permanent,
        },
    };
    match class {
        Class::Unavailable => GovernanceError::Unavailable { source: Box::new(error) },
        Class::Transient => GovernanceError::backend(true, error),
        Class::Permanent
            if database_error(&error).is_some_and(|d| broken_trigger_cache(mysql_number(d), d.message())) =>
        {
            GovernanceError::backend(false, BrokenTriggerCache(error))
        }
        Class::Permanent => GovernanceError::backend(false, error),
    }
}

/// MariaDB's answer when the copy of a table's triggers it parsed into its
/// table cache cannot be used: 1064 "Trigger '…' has an error in its body"
/// (or "Unknown trigger …"). The triggers the migrations create parse; a
/// copy is broken when the server was interrupted while parsing it (a
/// MariaDB bug, met when Galera aborts the transaction that opened the
/// table), and it stays broken until the table is flushed.
fn broken_trigger_cache(number: Option<u16>, message: &str) -> bool {
    number == Some(1064) && message.contains("has an error in its body")
}

/// The source of the [`Backend`](GovernanceError::Backend) error a statement
/// meets when MariaDB's cached copy of a table's triggers is broken (see
/// `docs/operations.md`): not retryable, since the server hands the same
/// copy out again, and cleared by `FLUSH TABLES governance_requests,
/// governance_history` on that server, which needs `RELOAD`. Nothing was
/// written by the failed statement.
#[derive(Debug)]
pub struct BrokenTriggerCache(DbErr);

impl std::fmt::Display for BrokenTriggerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: this server's cached copy of the table's triggers is broken (a MariaDB bug after an aborted \
             transaction); FLUSH TABLES governance_requests, governance_history on this server clears it",
            self.0
        )
    }
}

impl std::error::Error for BrokenTriggerCache {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// A unique violation that the transaction's snapshot cannot explain: the
/// colliding row was committed after the snapshot was taken (REPEATABLE READ
/// or SERIALIZABLE in a caller's transaction). Only a fresh transaction sees it.
pub(crate) fn invisible_collision() -> GovernanceError {
    GovernanceError::backend(
        true,
        "a concurrent write is not visible to this transaction's snapshot; retry the whole transaction",
    )
}

#[cfg(test)]
mod tests {
    use super::broken_trigger_cache;

    /// What MariaDB 10.11 answered in the Galera races, and what it must
    /// not be mistaken for.
    #[test]
    fn a_broken_trigger_cache_is_told_from_a_syntax_error() {
        for message in [
            "Trigger 'governance_requests_frozen_columns' has an error in its body: 'Undeclared variable: NEW'",
            "Unknown trigger has an error in its body: 'Query was empty'",
        ] {
            assert!(broken_trigger_cache(Some(1064), message), "{message}");
        }
        let syntax = "You have an error in your SQL syntax; check the manual near 'SELEC' at line 1";
        assert!(!broken_trigger_cache(Some(1064), syntax));
        assert!(!broken_trigger_cache(Some(1644), "has an error in its body"));
        assert!(!broken_trigger_cache(None, "has an error in its body"));
    }
}
