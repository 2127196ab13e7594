//! Governance evidence at runtime: what an application calls around its
//! governed writes, on any provider.
//!
//! - [`Recorder`]: evaluate → persist evidence (approved, denied or error)
//!   → mutate only if approved. Fail-closed by default; fail-open writes to a
//!   durable local [`Spool`] that a [`Relay`] replays idempotently. A store
//!   deadline and a circuit breaker keep an outage from stalling writes.
//! - The spool numbers and checksums its lines: lost lines are reported,
//!   damaged ones quarantined; a record the store keeps refusing is set
//!   aside rather than holding the spool back.
//! - Evidence whose payloads are nested deeper than the stores accept is
//!   refused as input before anything walks them.
//! - [`RedactionPolicy`] (built in: [`KeyRedaction`]) runs before anything is
//!   hashed, stored, spooled, exported or logged.
//! - [`Sealer`] and [`verify`]: tamper evidence without a lock on the write
//!   path — checkpoints chain Merkle roots over the workspace's log. Rows that
//!   no longer match their hash, or no longer decode, are never sealed or
//!   exported, and `verify` names them.
//! - [`Exporter`]: JSONL by date, resumable with no gap and no duplicate.
//! - [`metrics`]: the counters every failure path increments; logs go
//!   through `tracing` and never carry payloads.
//!
//! `docs/audit.md` states the evidence contract and what the integrity model
//! does and does not prove.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use audit_history::{Exporter, Recorder, Sealer, verify};
//! use governance_abstractions::{Actor, ActorKind, Decision, Evidence, WorkspaceId};
//! use governance_memory::MemoryStore;
//!
//! let store = Arc::new(MemoryStore::new());
//! let workspace = WorkspaceId::new("acme")?;
//! let recorder = Recorder::new(store.clone());
//! let denied = Evidence::decision(
//!     workspace.clone(),
//!     Actor::new(ActorKind::User, "mallory"),
//!     "invoice",
//!     "delete",
//!     Decision::Denied,
//! );
//! let guarded = recorder.guard(denied, async |_| unreachable!("denied writes never run")).await?;
//! assert!(!guarded.approved());
//!
//! let sealed = Sealer::new(store.clone()).seal(&workspace).await?;
//! let anchor = sealed.anchor().expect("one record sealed"); // keep it outside the database
//! assert!(verify(store.as_ref(), &workspace, Some(&anchor)).await?.is_clean());
//!
//! let dir = tempfile::tempdir()?;
//! let exported = Exporter::new(store.clone(), dir.path()).export(&workspace).await?;
//! assert_eq!(exported.records, 1);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(demo()).unwrap();
//! ```

mod breaker;
mod deadline;
mod error;
mod export;
mod integrity;
pub mod metrics;
mod recorder;
mod redaction;
mod relay;
mod spool;

pub use breaker::{BreakerOptions, BreakerState};
pub use error::{AuditError, BreakerOpen, DeadlineExceeded};
pub use export::{ExportCursor, ExportLine, ExportReport, Exporter};
pub use integrity::{Problem, SealReport, Sealer, Verification, verify};
pub use recorder::{Durability, FailurePolicy, Guarded, Receipt, Recorder};
pub use redaction::{KeyRedaction, REDACTED, RedactionPolicy};
pub use relay::{DrainReport, Relay};
pub use spool::{OpenReport, Spool, SpoolOptions};

/// The crate's README, compiled and run as documentation tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
