//! The conformance suite against the sqlx PostgreSQL provider.

mod postgres {
    conformance_tests::conformance_suite!(conformance_tests::providers::PostgresFactory);
}
