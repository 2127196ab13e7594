//! The conformance suite against the SeaORM provider (seaorm_mysql).

mod seaorm_mysql {
    conformance_tests::conformance_suite!(conformance_tests::providers::SeaOrmServerFactory::mysql());
}
