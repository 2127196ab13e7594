//! sqlx errors → [`GovernanceError`], keeping the source.

use governance_abstractions::GovernanceError;
use sqlx::postgres::PgDatabaseError;

fn postgres(error: &sqlx::Error) -> Option<&PgDatabaseError> {
    error.as_database_error()?.try_downcast_ref::<PgDatabaseError>()
}

/// True when the statement violated a unique constraint.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    postgres(error).is_some_and(|pg| pg.code() == "23505")
}

/// True when the statement named a column or table the schema lacks
/// (42703, 42P01): a database not migrated that far yet.
pub(crate) fn is_undefined_object(error: &sqlx::Error) -> bool {
    postgres(error).is_some_and(|pg| matches!(pg.code(), "42703" | "42P01"))
}

/// The constraint a unique violation hit (`Some("")` when the server did
/// not name it); `None` for any other error.
pub(crate) fn unique_constraint(error: &sqlx::Error) -> Option<&str> {
    postgres(error).filter(|pg| pg.code() == "23505").map(|pg| pg.constraint().unwrap_or_default())
}

/// Lost, refused or shut-down connections are `Unavailable`, and so is a
/// write sent to a read-only server (25006: a standby, or a primary demoted
/// by a failover — another node takes the writes); serialization failures,
/// deadlocks and lock timeouts a retryable `Backend`; the rest (bad
/// credentials included) a plain `Backend`.
pub(crate) fn map(error: sqlx::Error) -> GovernanceError {
    let unavailable = match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        other => postgres(other).is_some_and(|pg| {
            pg.code().starts_with("08") || matches!(pg.code(), "57P01" | "57P02" | "57P03" | "53300" | "25006")
        }),
    };
    if unavailable {
        return GovernanceError::Unavailable { source: Box::new(error) };
    }
    let retryable = postgres(&error).is_some_and(|pg| matches!(pg.code(), "40001" | "40P01" | "55P03" | "57014"));
    GovernanceError::backend(retryable, error)
}

/// True when `error` says the server rolled back the whole statement or
/// transaction the store ran on its own: a deadlock victim (40P01) or a
/// serialization failure (40001). Nothing of it committed, so running it
/// again is safe (`provider::rerun_rolled_back`).
pub(crate) fn rolled_back(error: &GovernanceError) -> bool {
    let GovernanceError::Backend { source, .. } = error else { return false };
    source.downcast_ref::<sqlx::Error>().and_then(postgres).is_some_and(|pg| matches!(pg.code(), "40P01" | "40001"))
}

/// A unique violation that the transaction's snapshot cannot explain: the
/// colliding row was committed after a REPEATABLE READ or SERIALIZABLE
/// caller's transaction took its snapshot. Only a fresh transaction sees it.
pub(crate) fn invisible_collision() -> GovernanceError {
    GovernanceError::backend(
        true,
        "a concurrent write is not visible to this transaction's snapshot; retry the whole transaction",
    )
}
