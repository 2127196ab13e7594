//! One error type for the runtime, keeping every source.

use std::path::PathBuf;
use std::time::Duration;

use governance_abstractions::{GovernanceError, RecordId};

/// What went wrong recording, relaying, sealing or exporting evidence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The evidence was refused as input (validation, idempotency conflict):
    /// nothing was stored or spooled, and no mutation ran.
    #[error("evidence refused: {0}")]
    Refused(#[source] GovernanceError),

    /// Fail-closed: the evidence is not known to be stored, so the mutation
    /// did not run.
    ///
    /// A store that did not answer within the recorder's deadline, or that
    /// the recorder knows to be down, is
    /// [`GovernanceError::Unavailable`] whose source is a
    /// [`DeadlineExceeded`] or a [`BreakerOpen`]; see
    /// [`AuditError::is_deadline_exceeded`] and [`AuditError::is_breaker_open`].
    ///
    /// Past the deadline the write was abandoned, not undone: the store may
    /// still commit it. With an open breaker the write was not sent. Either
    /// way no [`Receipt`](crate::Receipt) exists; a caller that retries
    /// should give the evidence an idempotency key
    /// ([`Evidence::idempotency_key`](governance_abstractions::Evidence::idempotency_key)):
    /// the retry then stores it, or answers
    /// [`Durability::Replayed`](crate::Durability::Replayed) with the record
    /// that did commit late, never a second record.
    #[error("evidence {how} (fail-closed, the mutation did not run): {0}", how = not_stored(.0))]
    NotStored(#[source] GovernanceError),

    /// Fail-open, but the spool is full: the mutation did not run.
    #[error("evidence spool full ({used} of {capacity} bytes; the mutation did not run)")]
    SpoolFull {
        /// Bytes in the spool.
        used: u64,
        /// The spool's bound.
        capacity: u64,
    },

    /// A spool file operation failed.
    #[error("evidence spool {path}: {source}")]
    Spool {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Another process holds the spool directory.
    #[error("evidence spool {0} is in use by another process")]
    SpoolLocked(PathBuf),

    /// The store failed (sealing, verifying, exporting, relaying).
    #[error("store: {0}")]
    Store(#[source] GovernanceError),

    /// A stored record no longer matches its hash (or its seal entry, or no
    /// longer decodes, or is gone): it is not sealed or exported.
    #[error("record {record} is missing, unreadable or does not match its content hash; run verify")]
    Tampered {
        /// The record.
        record: RecordId,
    },

    /// The workspace's sealed log has no entry at `index` although later
    /// ones exist: seal entries were removed. Nothing past it is exported.
    #[error("the sealed log of workspace {workspace} has no entry {index}; run verify")]
    LogGap {
        /// The workspace.
        workspace: governance_abstractions::WorkspaceId,
        /// The missing leaf index.
        index: u64,
    },

    /// An export file operation failed.
    #[error("export {path}: {source}")]
    Export {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The store did not answer within the deadline: the write was abandoned.
///
/// It may still have committed (the store got the request and its answer
/// never came); a fail-open recorder has spooled the record anyway, and the
/// relay's resend of the same record id and hash is then a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the evidence store did not answer within {}", millis(*.deadline))]
pub struct DeadlineExceeded {
    /// The deadline that passed.
    pub deadline: Duration,
}

/// The store is known to be down (the recorder's circuit breaker is open):
/// the write was not sent to it at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the evidence store is down (no answer for {}); the next try is in {}", millis(*.down_for), millis(*.retry_in))]
pub struct BreakerOpen {
    /// Since the breaker opened.
    pub down_for: Duration,
    /// Until a write is sent to the store again to see whether it is back.
    pub retry_in: Duration,
}

/// How sure a fail-closed refusal is that nothing was stored.
fn not_stored(error: &GovernanceError) -> &'static str {
    match error {
        GovernanceError::Unavailable { source } if source.is::<DeadlineExceeded>() => {
            "not known to be stored (it may still commit)"
        }
        GovernanceError::Unavailable { source } if source.is::<BreakerOpen>() => "not stored (the store was not tried)",
        GovernanceError::Unavailable { .. } => "not known to be stored",
        _ => "not stored",
    }
}

fn millis(duration: Duration) -> String {
    format!("{} ms", duration.as_millis())
}

impl AuditError {
    /// True when the store did not answer within the deadline.
    pub fn is_deadline_exceeded(&self) -> bool {
        self.unavailable_source().is_some_and(|source| source.is::<DeadlineExceeded>())
    }

    /// True when the write was refused without trying the store because the
    /// store is known to be down.
    pub fn is_breaker_open(&self) -> bool {
        self.unavailable_source().is_some_and(|source| source.is::<BreakerOpen>())
    }

    fn unavailable_source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match self {
            AuditError::NotStored(GovernanceError::Unavailable { source })
            | AuditError::Store(GovernanceError::Unavailable { source }) => Some(source.as_ref()),
            _ => None,
        }
    }

    pub(crate) fn spool(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AuditError {
        let path = path.into();
        move |source| AuditError::Spool { path, source }
    }

    pub(crate) fn export(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AuditError {
        let path = path.into();
        move |source| AuditError::Export { path, source }
    }
}

/// `error` as `GovernanceError::Unavailable`: what the recorder and relay
/// make of a store that did not answer in time or is known to be down.
pub(crate) fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> GovernanceError {
    GovernanceError::Unavailable { source: Box::new(error) }
}

/// True when the store did not answer (unreachable, connection lost, past
/// the deadline): what the circuit breaker counts. A store that answered
/// with an error, even a retryable one (a deadlock, a busy database), is up.
pub(crate) fn is_outage(error: &GovernanceError) -> bool {
    matches!(error, GovernanceError::Unavailable { .. })
}

/// The error and every source under it, one line: what `rejected.jsonl`
/// keeps, and what tells one poison failure from another.
pub(crate) fn chain(error: &GovernanceError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// True for store errors about the record itself (it will never be taken),
/// false for errors about the store (it may take it later).
pub(crate) fn is_rejection(error: &GovernanceError) -> bool {
    matches!(
        error,
        GovernanceError::Validation { .. }
            | GovernanceError::IdempotencyConflict { .. }
            | GovernanceError::AlreadyExists { .. }
    )
}
