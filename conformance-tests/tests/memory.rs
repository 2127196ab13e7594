//! The conformance suite against the in-memory provider.

mod memory {
    conformance_tests::conformance_suite!(conformance_tests::providers::MemoryFactory);
}
