//! The one error type every provider returns.

use std::error::Error as StdError;
use std::fmt;

use crate::lifecycle::{ActionKind, TransitionRule};
use crate::{RequestId, RequestStatus, WorkspaceId};

/// A boxed driver or I/O error kept as the source of [`GovernanceError`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Shorthand for results of this crate.
pub type Result<T, E = GovernanceError> = std::result::Result<T, E>;

/// Which kind of stored thing an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntityKind {
    /// A governance request.
    Request,
    /// A history (audit) record.
    HistoryRecord,
    /// An integrity checkpoint (its id is the sequence number).
    Checkpoint,
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntityKind::Request => "request",
            EntityKind::HistoryRecord => "history record",
            EntityKind::Checkpoint => "checkpoint",
        })
    }
}

/// Why an input was refused. Every provider reports the same problem for the
/// same input, before touching storage.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValidationProblem {
    /// A required value is empty.
    Empty,
    /// Text contains a NUL character (PostgreSQL cannot store it, so no backend does).
    ContainsNul,
    /// A value is larger than its documented limit (bytes).
    TooLong {
        /// The limit.
        max: usize,
        /// The size given.
        actual: usize,
    },
    /// A list has more items than its documented limit.
    TooMany {
        /// The limit.
        max: usize,
        /// The count given.
        actual: usize,
    },
    /// A number or instant outside the range every backend can store.
    OutOfRange,
    /// A JSON document nested deeper than the limit.
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// Text that does not name a known value.
    UnknownValue,
    /// Text that does not parse.
    Malformed,
    /// Fields that contradict each other.
    Inconsistent(&'static str),
}

impl fmt::Display for ValidationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValidationProblem::Empty => f.write_str("must not be empty"),
            ValidationProblem::ContainsNul => f.write_str("must not contain a NUL character"),
            ValidationProblem::TooLong { max, actual } => {
                write!(f, "is {actual} bytes, the limit is {max}")
            }
            ValidationProblem::TooMany { max, actual } => {
                write!(f, "has {actual} items, the limit is {max}")
            }
            ValidationProblem::OutOfRange => f.write_str("is out of the supported range"),
            ValidationProblem::TooDeep { max } => write!(f, "is nested deeper than {max} levels"),
            ValidationProblem::UnknownValue => f.write_str("is not a known value"),
            ValidationProblem::Malformed => f.write_str("is malformed"),
            ValidationProblem::Inconsistent(why) => f.write_str(why),
        }
    }
}

/// Every failure a governance store or the lifecycle can report.
///
/// Providers map their driver errors into this enum and keep the driver error
/// as the [`source`](StdError::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GovernanceError {
    /// No such row in this workspace.
    #[error("{kind} {id} not found in workspace {workspace}")]
    NotFound {
        /// What was looked up.
        kind: EntityKind,
        /// The workspace searched.
        workspace: WorkspaceId,
        /// The id looked up.
        id: String,
    },

    /// A row with this id already exists (with different content).
    #[error("{kind} {id} already exists in workspace {workspace}")]
    AlreadyExists {
        /// What was written.
        kind: EntityKind,
        /// The workspace.
        workspace: WorkspaceId,
        /// The duplicate id.
        id: String,
    },

    /// Optimistic concurrency: the stored revision is not the one the write was
    /// based on. Nothing was written.
    #[error("request {id} is at revision {actual}, the write expected {expected}")]
    Conflict {
        /// The request.
        id: RequestId,
        /// The revision the write was based on.
        expected: u64,
        /// The revision found in storage.
        actual: u64,
    },

    /// The lifecycle does not allow this action in the request's status.
    #[error("cannot {action} request {id} in status {from}: {rule}")]
    InvalidTransition {
        /// The request.
        id: RequestId,
        /// Its status when the action was tried.
        from: RequestStatus,
        /// The action tried.
        action: ActionKind,
        /// The rule that refused it.
        rule: TransitionRule,
    },

    /// An idempotency key was reused in its workspace with different content.
    #[error(
        "idempotency key {key:?} in workspace {workspace} was already used for {kind} {existing} with different content"
    )]
    IdempotencyConflict {
        /// What was written.
        kind: EntityKind,
        /// The workspace.
        workspace: WorkspaceId,
        /// The reused key.
        key: String,
        /// The id of the stored row that holds the key.
        existing: String,
    },

    /// Bad input; nothing was written.
    #[error("invalid {field}: {problem}")]
    Validation {
        /// The offending field (dotted path).
        field: String,
        /// What is wrong with it.
        problem: ValidationProblem,
    },

    /// A page cursor that this library did not produce.
    #[error("invalid page cursor: {reason}")]
    InvalidCursor {
        /// Why it was refused.
        reason: &'static str,
    },

    /// The backend could not be reached (connection refused or lost). The
    /// write may or may not have committed if the loss happened mid-commit.
    #[error("storage backend unavailable")]
    Unavailable {
        /// The driver error.
        #[source]
        source: BoxError,
    },

    /// The backend refused for a reason of its own (serialization failure,
    /// deadlock, busy database, constraint, …).
    #[error("storage backend error")]
    Backend {
        /// Whether the same operation may succeed if simply tried again.
        retryable: bool,
        /// The driver error.
        #[source]
        source: BoxError,
    },

    /// [`GovernanceService`](crate::GovernanceService) retried a retryable
    /// failure and gave up (attempts or deadline spent, or a retry that
    /// would not be safe): `last` is the failure of the final attempt.
    /// [`is_conflict`](Self::is_conflict), [`is_retryable`](Self::is_retryable)
    /// and [`failure`](Self::failure) look through to it.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// Attempts made, the first included.
        attempts: u32,
        /// The final attempt's failure.
        #[source]
        last: Box<GovernanceError>,
    },
}

impl GovernanceError {
    /// A validation error for `field`.
    pub fn validation(field: impl Into<String>, problem: ValidationProblem) -> Self {
        GovernanceError::Validation { field: field.into(), problem }
    }

    /// A backend error that keeps its source.
    pub fn backend(retryable: bool, source: impl Into<BoxError>) -> Self {
        GovernanceError::Backend { retryable, source: source.into() }
    }

    /// True when retrying the same call (after re-reading, for a
    /// [`Conflict`](GovernanceError::Conflict)) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self.failure() {
            GovernanceError::Conflict { .. } | GovernanceError::Unavailable { .. } => true,
            GovernanceError::Backend { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// True for [`NotFound`](GovernanceError::NotFound).
    pub fn is_not_found(&self) -> bool {
        matches!(self.failure(), GovernanceError::NotFound { .. })
    }

    /// True for [`Conflict`](GovernanceError::Conflict), also after retries.
    pub fn is_conflict(&self) -> bool {
        matches!(self.failure(), GovernanceError::Conflict { .. })
    }

    /// The failure itself: for [`RetriesExhausted`](GovernanceError::RetriesExhausted)
    /// the final attempt's, else this error.
    pub fn failure(&self) -> &GovernanceError {
        match self {
            GovernanceError::RetriesExhausted { last, .. } => last.failure(),
            other => other,
        }
    }

    /// How many attempts [`GovernanceService`](crate::GovernanceService)
    /// made before giving up, when it retried.
    pub fn attempts(&self) -> Option<u32> {
        match self {
            GovernanceError::RetriesExhausted { attempts, .. } => Some(*attempts),
            _ => None,
        }
    }
}
