//! One error type for the runtime, keeping every source.

use std::path::PathBuf;

use governance_abstractions::{GovernanceError, RecordId};

/// What went wrong recording, relaying, sealing or exporting evidence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The evidence was refused as input (validation, idempotency conflict):
    /// nothing was stored or spooled, and no mutation ran.
    #[error("evidence refused: {0}")]
    Refused(#[source] GovernanceError),

    /// Fail-closed: the store did not take the evidence, so the mutation did not run.
    #[error("evidence not stored (fail-closed, the mutation did not run): {0}")]
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

    /// A spool line that was acknowledged (complete and synced) no longer
    /// parses or no longer matches its hash. Nothing after it is skipped.
    #[error("evidence spool {path} is corrupt at byte {offset}: {problem}")]
    SpoolCorrupt {
        /// The file.
        path: PathBuf,
        /// Where the bad line starts.
        offset: u64,
        /// What is wrong.
        problem: String,
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

impl AuditError {
    pub(crate) fn spool(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AuditError {
        let path = path.into();
        move |source| AuditError::Spool { path, source }
    }

    pub(crate) fn export(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AuditError {
        let path = path.into();
        move |source| AuditError::Export { path, source }
    }
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
