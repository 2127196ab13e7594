//! Test support the providers' tests share (not published): where database
//! servers are, a fresh database and application login per test process,
//! and the conformance factories of the server-backed providers.
//!
//! Servers come from `GOVERNANCE_POSTGRES_URL` / `GOVERNANCE_MYSQL_URL`; when
//! one is unset and a Docker engine answers, a `testcontainers` container
//! (PostgreSQL 16 / MariaDB 11) is started once per process instead. Each
//! test process creates its own database on that server (named
//! `gov_cf_<unix seconds>_<pid>_<n>`), so runs never see each other's rows,
//! and drops such databases left behind by runs older than six hours. Every
//! case still works in its own random workspace, so cases share the
//! process's database in parallel.
//!
//! The embedded providers need none of this: their factories are
//! `governance_memory::testing::MemoryFactory` and
//! `governance_seaorm::testing::SqliteFactory`.
//!
//! Features select the providers: `postgres` (sqlx), `seaorm-postgres`,
//! `seaorm-mysql`.

#[cfg(any(feature = "pg-server", feature = "mysql-server"))]
mod databases;
#[cfg(any(feature = "postgres", feature = "seaorm-postgres", feature = "seaorm-mysql"))]
mod factories;
mod urls;

pub use conformance_tests::runner::{REQUIRE_DATABASES_ENV, databases_required, require_databases, setup_fails};
#[cfg(any(feature = "pg-server", feature = "mysql-server"))]
pub use databases::{
    CONNECT_TIMEOUT, Login, Server, TestDatabase, application_login, drop_created_databases, fresh_database,
    fresh_database_or_skip, fresh_test_database, server_url,
};
#[cfg(feature = "postgres")]
pub use factories::{PostgresDistributedFactory, PostgresFactory, postgres_role_split, postgres_role_split_with};
#[cfg(any(feature = "postgres", feature = "seaorm-postgres", feature = "seaorm-mysql"))]
pub use factories::{RoleSplit, unavailable, with_causes};
#[cfg(any(feature = "seaorm-postgres", feature = "seaorm-mysql"))]
pub use factories::{SeaOrmServerFactory, seaorm_role_split};
pub use urls::{redacted, scrubbed, with_database, with_login};

/// The PostgreSQL server URL variable.
pub const POSTGRES_URL_ENV: &str = "GOVERNANCE_POSTGRES_URL";
/// The MySQL/MariaDB server URL variable.
pub const MYSQL_URL_ENV: &str = "GOVERNANCE_MYSQL_URL";

/// A port on 127.0.0.1 that nothing listens on (bound, then released): a
/// connection to it is refused.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0");
    listener.and_then(|l| l.local_addr()).map_or(1, |address| address.port())
}
