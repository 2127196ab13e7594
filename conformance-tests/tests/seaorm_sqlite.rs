//! The conformance suite against the SeaORM provider (seaorm_sqlite).

mod seaorm_sqlite {
    conformance_tests::conformance_suite!(conformance_tests::providers::SeaOrmSqliteFactory);
}
