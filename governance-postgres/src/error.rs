//! sqlx errors → [`GovernanceError`], keeping the source.

use governance_abstractions::GovernanceError;
use sqlx::postgres::PgDatabaseError;

/// The unique constraint a statement violated, if that is what happened.
pub(crate) fn unique_violation(error: &sqlx::Error) -> Option<&str> {
    let database = error.as_database_error()?;
    let pg = database.try_downcast_ref::<PgDatabaseError>()?;
    (pg.code() == "23505").then(|| pg.constraint().unwrap_or(""))
}

/// Lost or unreachable connections are `Unavailable`; serialization
/// failures, deadlocks and lock timeouts a retryable `Backend`; the rest a
/// plain `Backend`.
pub(crate) fn map(error: sqlx::Error) -> GovernanceError {
    match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => GovernanceError::Unavailable { source: Box::new(error) },
        _ => {
            let retryable = error
                .as_database_error()
                .and_then(|d| d.try_downcast_ref::<PgDatabaseError>())
                .is_some_and(|pg| matches!(pg.code(), "40001" | "40P01" | "55P03" | "57P01"));
            GovernanceError::backend(retryable, error)
        }
    }
}
