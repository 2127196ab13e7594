//! The whole conformance suite against the sqlx PostgreSQL provider, as the
//! application role (`GOVERNANCE_POSTGRES_URL`).

/// Every case under `suite::` (`cargo test suite::<provider>::cas_` runs one
/// group), so a run that gets the suite elsewhere can leave it out with
/// `-- --skip suite::`.
mod suite {
    mod postgres {
        conformance_tests::conformance_suite!(governance_test_support::PostgresFactory);
    }
}
