//! The conformance suite against the SeaORM provider (seaorm_postgres).

mod seaorm_postgres {
    conformance_tests::conformance_suite!(conformance_tests::providers::SeaOrmServerFactory::postgres());
}
