//! The whole conformance suite against the memory provider.

/// Every case under `suite::` (`cargo test suite::<provider>::cas_` runs one
/// group), so a run that gets the suite elsewhere can leave it out with
/// `-- --skip suite::`.
mod suite {
    mod memory {
        conformance_tests::conformance_suite!(governance_memory::testing::MemoryFactory);
    }
}
