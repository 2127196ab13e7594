//! The whole conformance suite against SeaORM on each backend: SQLite (a
//! file per case), PostgreSQL (`GOVERNANCE_POSTGRES_URL`) and MySQL/MariaDB
//! (`GOVERNANCE_MYSQL_URL`), the server ones as the application role.

/// Every case under `suite::` (`cargo test suite::<provider>::cas_` runs one
/// group), so a run that gets the suite elsewhere can leave it out with
/// `-- --skip suite::`.
mod suite {
    mod seaorm_sqlite {
        conformance_tests::conformance_suite!(governance_seaorm::testing::SqliteFactory);
    }

    mod seaorm_postgres {
        conformance_tests::conformance_suite!(governance_test_support::SeaOrmServerFactory::postgres());
    }

    mod seaorm_mysql {
        conformance_tests::conformance_suite!(governance_test_support::SeaOrmServerFactory::mysql());
    }
}
