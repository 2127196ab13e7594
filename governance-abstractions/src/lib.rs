//! Governance requests and their audit history: the domain, the lifecycle and
//! the storage contracts. No database code lives here.
//!
//! # The model
//!
//! A [`GovernanceRequest`] asks to change some governed state. It moves
//! through [`RequestStatus`]es by [`Action`]s; [`lifecycle::MOVES`] is the one
//! table of allowed moves. Every write carries a [`revision`](GovernanceRequest::revision)
//! (1 on creation, +1 per write) for optimistic concurrency, and produces
//! [`HistoryRecord`]s that are committed atomically with it. Applications also
//! append standalone decision [`Evidence`] (policy evaluations) to the same
//! append-only history.
//!
//! # The contracts
//!
//! Write and read sides are separate traits, all object-safe:
//! [`RequestWriter`], [`RequestReader`], [`HistoryWriter`], [`HistoryReader`],
//! and the insert-only checkpoint storage of tamper evidence, [`IntegrityStore`]
//! (see [`integrity`]), bundled as [`GovernanceStore`] so a provider is used as
//! `Arc<dyn GovernanceStore>`. Every failure is one [`GovernanceError`].
//! [`GovernanceService`] runs a change end to end with bounded retry.
//!
//! # Example: an approval flow
//!
//! ```
//! use std::sync::Arc;
//! use governance_abstractions::*;
//! use governance_memory::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), GovernanceError> {
//! let service = GovernanceService::new(Arc::new(MemoryStore::new()));
//! let ws = WorkspaceId::new("acme")?;
//! let spec = NewRequest::new(ws.clone(), TargetRef::new("flag", "checkout-v2"), "enable", Actor::user("dev"))
//!     .intent("roll out the new checkout")
//!     .approval(Actor::user("lead"), 1)
//!     .approval(Actor::user("sec"), 2);
//! let request = service.create(spec).await?.into_inner();
//!
//! let (lead, sec) = (Actor::user("lead").into(), Actor::user("sec").into());
//! let requester: Principal = Actor::user("dev").into();
//! let approve = || Action::Decide { verdict: Verdict::Approved, comment: None };
//! service.apply(&ws, request.id(), &requester, Action::Submit { reason: PendingReason::Approval }).await?;
//! service.apply(&ws, request.id(), &lead, approve()).await?;
//! let done = service.apply(&ws, request.id(), &sec, approve()).await?;
//! assert_eq!(done.request().status(), RequestStatus::Approved);
//!
//! let executed = service.apply(&ws, request.id(), &requester, Action::Execute { current_version: None }).await?;
//! assert_eq!(executed.request().status(), RequestStatus::Executed);
//! assert_eq!(executed.request().revision(), 5);
//!
//! // Every revision left its history, in order.
//! let history = service.store().history_for_request(&ws, request.id()).await?;
//! assert_eq!(history.first().map(|r| r.evidence().code.as_str()), Some(codes::REQUEST_CREATED));
//! assert_eq!(history.last().map(|r| r.evidence().code.as_str()), Some(codes::REQUEST_EXECUTED));
//! # Ok(())
//! # }
//! ```
//!
//! # Implementing a provider
//!
//! A provider implements the five traits; what only providers need (decoding
//! rows, the columns a transition writes, the shared checks and the append
//! loop) is in [`provider`]. What every provider must do (the
//! `conformance-tests` crate checks each point):
//!
//! 1. **Validate first.** Call [`provider::validate_creation`],
//!    [`provider::validate_transition`] or [`provider::validate_history_batch`]
//!    before touching storage, so bad input is the same typed error everywhere
//!    and changes nothing. They cost nothing for values the lifecycle built:
//!    a record's hash is computed once, when it is built.
//! 2. **Create** the request (with its [`state_digest`](GovernanceRequest::state_digest))
//!    and its creation record in one transaction. A duplicate id is
//!    [`AlreadyExists`](GovernanceError::AlreadyExists); a reused `(workspace,
//!    idempotency key)` returns the stored original when the
//!    [`creation_digest`](GovernanceRequest::creation_digest) matches and
//!    [`IdempotencyConflict`](GovernanceError::IdempotencyConflict) otherwise.
//! 3. **Commit** a [`Transition`] as one conditional update of exactly the
//!    columns [`provider::TRANSITION_COLUMNS`] names (values from
//!    [`Transition::write`]) `… WHERE workspace = ? AND id = ? AND revision =
//!    expected_revision() AND status = expected_status() AND state_digest =
//!    expected_digest()` plus its records, in one transaction (a row stored
//!    without a digest is held to the digest of its stored content: decode
//!    it, compare, and write `… AND state_digest IS NULL` under a lock); a supersession ([`Transition::successor`]) also checks and
//!    locks its successor's revision and digest in that transaction. Zero
//!    rows updated: read the row; missing is [`NotFound`](GovernanceError::NotFound),
//!    else [`provider::check_commit_target`] and [`provider::check_successor`]
//!    decide ([`Conflict`](GovernanceError::Conflict) with the actual
//!    revision, or a validation error for a transition not computed from the
//!    stored state).
//! 4. **Append** history atomically per batch through
//!    [`provider::append_history_with`] (or [`provider::plan_history_append`]):
//!    replay or conflict per idempotency key ([`Evidence::same_content`]
//!    decides), a re-sent identical record replayed, a reused id
//!    [`AlreadyExists`](GovernanceError::AlreadyExists); never an update or delete.
//! 5. **Read** within one workspace only, paging by the `(created_at, id)`
//!    key with [`PageRequest::fetch_limit`] and [`Page::from_fetched`]; decode
//!    cursors with [`PageRequest::position`] so a bad one is
//!    [`InvalidCursor`](GovernanceError::InvalidCursor); validate filters
//!    (time bounds included) with their `validate`. Rows become domain values
//!    only through [`provider::decode_request`], [`provider::decode_record`]
//!    and [`provider::decode_checkpoint`].
//! 6. **Seal** through [`IntegrityStore`]: list unsealed records (an
//!    anti-join against the seal entries; a row that does not decode is an
//!    [`Unreadable`], not an error), append a [`Checkpoint`] with its
//!    [`SealEntry`]s atomically after [`provider::validate_checkpoint`] against
//!    the latest stored one (a taken `seq` or an already sealed record is
//!    [`AlreadyExists`](GovernanceError::AlreadyExists)), read them back in
//!    order. Insert-only, like history.
//! 7. **Keep sources**: map driver errors to
//!    [`Unavailable`](GovernanceError::Unavailable) or
//!    [`Backend`](GovernanceError::Backend) with the driver error as source,
//!    marking serialization failures and deadlocks retryable.
//!
//! Store enums as their [`as_str`](RequestStatus::as_str) text and timestamps
//! with microsecond precision.

#[macro_use]
mod macros;

mod actor;
mod digest;
mod error;
mod history;
mod ids;
pub mod integrity;
pub mod lifecycle;
pub mod provider;
mod query;
mod request;
mod service;
mod settings;
mod store;
mod validate;

pub use actor::{Actor, ActorKind, Principal};
pub use digest::{canonical_json, canonical_sha256};
pub use error::{BoxError, EntityKind, GovernanceError, Result, ValidationProblem};
pub use history::{Decision, Evidence, HistoryCategory, HistoryRecord, Outcome, RedactionRef, RequestRef, codes};
pub use ids::{RecordId, RequestId, Timestamp, WorkspaceId};
pub use integrity::{Anchor, Checkpoint, IntegrityStore, ReadRecord, SealEntry, SealedRecord, Unreadable};
pub use lifecycle::{Action, ActionKind, Command, Creation, Successor, Transition, TransitionRule};
pub use query::{
    Count, CountBy, CountQuery, Cursor, Direction, HistoryFilter, Page, PageRequest, Position, RequestFilter, TimeRange,
};
pub use request::{
    ApprovalDecision, ApprovalRequirement, GovernanceRequest, NewRequest, PendingReason, RequestStatus, StaleStrategy,
    TargetRef, Verdict,
};
pub use service::{ExpiryReport, GovernanceService, RetryPolicy};
pub use settings::ConnectionSettings;
pub use store::{GovernanceStore, HistoryReader, HistoryWriter, RequestReader, RequestWriter, Stored};
pub use validate::limits;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// The crate's README, compiled and run as documentation tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct CrateReadmeDoctests;
