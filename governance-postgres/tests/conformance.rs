//! The whole conformance suite against the sqlx PostgreSQL provider, as the
//! application role (`GOVERNANCE_POSTGRES_URL`).

mod postgres {
    conformance_tests::conformance_suite!(governance_test_support::PostgresFactory);
}
