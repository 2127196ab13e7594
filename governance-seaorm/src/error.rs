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

/// Whether the database refused for a reason that may pass on retry:
/// serialization failure or deadlock (PostgreSQL 40001/40P01, MySQL
/// 1213/1205), a busy or locked SQLite database (5/6).
fn is_transient(database: &dyn DatabaseError) -> bool {
    if let Some(pg) = database.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return matches!(pg.code(), "40001" | "40P01" | "55P03");
    }
    if let Some(my) = database.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return matches!(my.number(), 1205 | 1213);
    }
    if let Some(lite) = database.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
        let extended: i32 = lite.code().and_then(|c| c.parse().ok()).unwrap_or(0);
        return matches!(extended & 0xff, 5 | 6);
    }
    false
}

/// Maps a SeaORM error: lost or unreachable connections are `Unavailable`,
/// transient refusals a retryable `Backend`, the rest a plain `Backend`.
pub(crate) fn map(error: DbErr) -> GovernanceError {
    let unavailable = match &error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        other => sqlx_error(other).is_some_and(|e| {
            matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
            )
        }),
    };
    if unavailable {
        return GovernanceError::Unavailable { source: Box::new(error) };
    }
    let retryable = sqlx_error(&error).and_then(sqlx::Error::as_database_error).is_some_and(is_transient);
    GovernanceError::backend(retryable, error)
}
