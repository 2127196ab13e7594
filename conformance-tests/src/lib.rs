//! The conformance suite every governance provider passes unchanged.
//!
//! - [`cases`]: async cases, each taking a fresh store and its own random
//!   workspace (so cases run in parallel on one database);
//! - [`conformance_suite!`]: expands every case into its own `#[tokio::test]`
//!   for one backend;
//! - [`runner`]: runs the suite (or one case, within a time limit) against a
//!   factory and reports each case, for a runner that prints a matrix over
//!   several backends.
//!
//! It depends on the contract only (`governance-abstractions` and
//! `audit-history`): no driver, no database. Each provider runs the suite
//! from its own tests, with its own factory.
//!
//! # Running the suite against a new backend
//!
//! Implement [`StoreFactory`] and call the macro from an integration test
//! (the crate using it needs `tokio` with the `macros` and `rt-multi-thread`
//! features as a dev-dependency):
//!
//! ```
//! use std::sync::Arc;
//! use async_trait::async_trait;
//! use conformance_tests::{Capabilities, Capability, SetupError, StoreFactory, TestStore};
//!
//! struct MyFactory;
//!
//! #[async_trait]
//! impl StoreFactory for MyFactory {
//!     fn name(&self) -> &str { "my-backend" }
//!
//!     fn capabilities(&self) -> Capabilities {
//!         // Say what is missing, and why: the skip is printed with this
//!         // reason. Tamper and raw access are what a backend's privileged
//!         // test path provides (see `TestStore::with_tamper`).
//!         Capabilities::all()
//!             .without(Capability::DatabaseEnforcedAppendOnly, "no SQL access")
//!             .without(Capability::Tamper, "no privileged path yet")
//!             .without(Capability::CorruptRows, "no privileged path yet")
//!     }
//!
//!     async fn open(&self) -> Result<TestStore, SetupError> {
//!         // Connect (or return SetupError::NotConfigured when no URL is set).
//!         Ok(TestStore::new(Arc::new(governance_memory::MemoryStore::new())))
//!     }
//! }
//!
//! mod my_backend {
//!     conformance_tests::conformance_suite!(super::MyFactory);
//! }
//! # fn main() {}
//! ```
//!
//! `cargo test my_backend::cas_` then runs the compare-and-set group.

pub mod cases;
pub mod faults;
mod fixtures;
mod harness;
pub mod runner;

pub use harness::{
    Capabilities, Capability, Case, CaseContext, CaseFailure, CaseFuture, CaseResult, CheckpointChange, CountRollUp,
    Group, KeepAlive, RawHistoryAccess, SetupError, StoreFactory, TamperAccess, TestStore, random_workspace,
};

crate::__with_cases!(registry);

/// Expands every conformance case into its own `#[tokio::test]` for the
/// backend whose [`StoreFactory`] `$factory` builds (evaluated per test).
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::__with_cases!(tests $factory);
    };
}

/// The crate's README, compiled and run as documentation tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
