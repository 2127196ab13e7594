//! The whole conformance suite against the memory provider.

mod memory {
    conformance_tests::conformance_suite!(governance_memory::testing::MemoryFactory);
}
