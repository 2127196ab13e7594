//! Fresh databases and application logins on a server, through sqlx with
//! statement logging off (some statements hold a password).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conformance_tests::SetupError;
use sqlx::{ConnectOptions, Connection};

use crate::urls::{database_name, mysql_identifier, postgres_identifier, redacted, with_database, with_login};
use crate::{MYSQL_URL_ENV, POSTGRES_URL_ENV};

const PREFIX: &str = "gov_cf_";
const STALE_AFTER: Duration = Duration::from_secs(6 * 3600);

/// A database server kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// PostgreSQL (`GOVERNANCE_POSTGRES_URL`).
    #[cfg(feature = "pg-server")]
    Postgres,
    /// MySQL or MariaDB (`GOVERNANCE_MYSQL_URL`).
    #[cfg(feature = "mysql-server")]
    MySql,
}

impl Server {
    /// The variable naming this server's URL.
    pub fn variable(self) -> &'static str {
        match self {
            #[cfg(feature = "pg-server")]
            Server::Postgres => POSTGRES_URL_ENV,
            #[cfg(feature = "mysql-server")]
            Server::MySql => MYSQL_URL_ENV,
        }
    }
}

/// The URL of `server` from its variable; else a container's, if Docker
/// answers; else why there is none.
pub async fn server_url(server: Server) -> Result<String, SetupError> {
    let variable = server.variable();
    if let Ok(url) = std::env::var(variable)
        && !url.trim().is_empty()
    {
        return Ok(url);
    }
    match containers::url(server).await {
        Ok(url) => Ok(url),
        Err(why) => Err(SetupError::NotConfigured(format!("{variable} is unset and no container could start: {why}"))),
    }
}

/// Throwaway servers for machines without configured databases.
mod containers {
    use testcontainers::core::{ContainerPort, WaitFor};
    use testcontainers::runners::AsyncRunner;
    use testcontainers::{ContainerAsync, GenericImage, ImageExt};
    use tokio::sync::OnceCell;

    use super::Server;

    /// The URL of a container of `server`, started once per process.
    pub(super) async fn url(server: Server) -> Result<String, String> {
        match server {
            #[cfg(feature = "pg-server")]
            Server::Postgres => {
                static POSTGRES: OnceCell<Result<String, String>> = OnceCell::const_new();
                let image = GenericImage::new("postgres", "16-alpine")
                    .with_exposed_port(ContainerPort::Tcp(5432))
                    .with_wait_for(WaitFor::message_on_stderr("database system is ready to accept connections"))
                    .with_env_var("POSTGRES_HOST_AUTH_METHOD", "trust");
                POSTGRES.get_or_init(|| start(image, 5432, "postgres://postgres@{host}:{port}/postgres")).await.clone()
            }
            #[cfg(feature = "mysql-server")]
            Server::MySql => {
                static MARIADB: OnceCell<Result<String, String>> = OnceCell::const_new();
                let image = GenericImage::new("mariadb", "11")
                    .with_exposed_port(ContainerPort::Tcp(3306))
                    .with_wait_for(WaitFor::message_on_stderr("ready for connections"))
                    .with_env_var("MARIADB_ALLOW_EMPTY_ROOT_PASSWORD", "1");
                MARIADB.get_or_init(|| start(image, 3306, "mysql://root@{host}:{port}/mysql")).await.clone()
            }
        }
    }

    /// Starts the container and keeps it for the life of the process.
    async fn start(
        request: testcontainers::ContainerRequest<GenericImage>,
        port: u16,
        template: &str,
    ) -> Result<String, String> {
        static KEEP: std::sync::Mutex<Vec<ContainerAsync<GenericImage>>> = std::sync::Mutex::new(Vec::new());
        let container = request.start().await.map_err(|e| e.to_string())?;
        let host = container.get_host().await.map_err(|e| e.to_string())?;
        let mapped = container.get_host_port_ipv4(port).await.map_err(|e| e.to_string())?;
        KEEP.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(container);
        Ok(template.replace("{host}", &host.to_string()).replace("{port}", &mapped.to_string()))
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// One administrative connection, statement logging off.
enum Admin {
    #[cfg(feature = "pg-server")]
    Postgres(sqlx::PgConnection),
    #[cfg(feature = "mysql-server")]
    MySql(sqlx::MySqlConnection),
}

impl Admin {
    async fn connect(server: Server, url: &str) -> Result<Self, sqlx::Error> {
        Ok(match server {
            #[cfg(feature = "pg-server")]
            Server::Postgres => Admin::Postgres(
                url.parse::<sqlx::postgres::PgConnectOptions>()?.disable_statement_logging().connect().await?,
            ),
            #[cfg(feature = "mysql-server")]
            Server::MySql => Admin::MySql(
                url.parse::<sqlx::mysql::MySqlConnectOptions>()?.disable_statement_logging().connect().await?,
            ),
        })
    }

    /// Runs one statement this module wrote.
    async fn execute(&mut self, sql: String) -> Result<(), sqlx::Error> {
        let sql = sqlx::AssertSqlSafe(sql);
        match self {
            #[cfg(feature = "pg-server")]
            Admin::Postgres(conn) => sqlx::raw_sql(sql).execute(conn).await.map(drop),
            #[cfg(feature = "mysql-server")]
            Admin::MySql(conn) => sqlx::raw_sql(sql).execute(conn).await.map(drop),
        }
    }

    /// The rows of a query returning two text columns.
    async fn pairs(&mut self, sql: &'static str) -> Result<Vec<(String, String)>, sqlx::Error> {
        match self {
            #[cfg(feature = "pg-server")]
            Admin::Postgres(conn) => sqlx::query_as(sql).fetch_all(conn).await,
            #[cfg(feature = "mysql-server")]
            Admin::MySql(conn) => sqlx::query_as(sql).fetch_all(conn).await,
        }
    }

    async fn close(self) {
        let _ = match self {
            #[cfg(feature = "pg-server")]
            Admin::Postgres(conn) => conn.close().await,
            #[cfg(feature = "mysql-server")]
            Admin::MySql(conn) => conn.close().await,
        };
    }
}

/// Creates a fresh database on the `server` at `server_url` and returns its
/// URL, after dropping databases of earlier runs that are older than six hours.
pub async fn fresh_database(server_url: &str, server: Server) -> Result<String, SetupError> {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let unavailable = |e: &dyn std::fmt::Display| SetupError::Unavailable(format!("{}: {e}", redacted(server_url)));
    let mut admin = Admin::connect(server, server_url).await.map_err(|e| unavailable(&e))?;
    let listing = match server {
        #[cfg(feature = "pg-server")]
        Server::Postgres => "SELECT datname::text, '' FROM pg_database WHERE datname LIKE 'gov\\_cf\\_%'",
        #[cfg(feature = "mysql-server")]
        Server::MySql => {
            "SELECT CAST(schema_name AS CHAR), '' FROM information_schema.schemata WHERE schema_name LIKE 'gov\\_cf\\_%'"
        }
    };
    let names = admin.pairs(listing).await.map_err(|e| unavailable(&e))?;
    let horizon = now_secs().saturating_sub(STALE_AFTER.as_secs());
    for (name, _) in names {
        if created_before(&name, horizon) {
            let drop = match server {
                #[cfg(feature = "pg-server")]
                Server::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", postgres_identifier(&name)),
                #[cfg(feature = "mysql-server")]
                Server::MySql => format!("DROP DATABASE IF EXISTS {}", mysql_identifier(&name)),
            };
            // Another process may be dropping it too; either way it goes.
            let _ = admin.execute(drop).await;
        }
    }
    drop_stale_logins(&mut admin, server, horizon).await;
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("{PREFIX}{}_{}_{n}", now_secs(), std::process::id());
    let create = match server {
        #[cfg(feature = "pg-server")]
        Server::Postgres => format!("CREATE DATABASE \"{name}\""),
        #[cfg(feature = "mysql-server")]
        Server::MySql => format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
    };
    admin.execute(create).await.map_err(|e| unavailable(&e))?;
    admin.close().await;
    Ok(with_database(server_url, &name))
}

/// Whether `name` is a test database's (or login's) created before `horizon`.
fn created_before(name: &str, horizon: u64) -> bool {
    let created = name.strip_prefix(PREFIX).and_then(|rest| rest.split('_').next()).and_then(|s| s.parse().ok());
    created.is_some_and(|secs: u64| secs < horizon)
}

/// The suffix of a test database's application login (`<database>_app`).
const LOGIN_SUFFIX: &str = "_app";

/// Drops the application logins of test databases older than `horizon`
/// (their databases are gone by now, and with them the role's grants).
/// Failures are ignored: another process may be dropping them too.
async fn drop_stale_logins(admin: &mut Admin, server: Server, horizon: u64) {
    let listing = match server {
        #[cfg(feature = "pg-server")]
        Server::Postgres => "SELECT rolname::text, '' FROM pg_roles WHERE rolname LIKE 'gov\\_cf\\_%\\_app'",
        #[cfg(feature = "mysql-server")]
        Server::MySql => {
            "SELECT CAST(User AS CHAR), CAST(Host AS CHAR) FROM mysql.user WHERE User LIKE 'gov\\_cf\\_%\\_app'"
        }
    };
    let Ok(logins) = admin.pairs(listing).await else { return };
    for (name, _host) in logins {
        if !created_before(&name, horizon) {
            continue;
        }
        let drop = match server {
            #[cfg(feature = "pg-server")]
            Server::Postgres => format!("DROP ROLE IF EXISTS {}", postgres_identifier(&name)),
            #[cfg(feature = "mysql-server")]
            Server::MySql => format!("DROP USER IF EXISTS {}@{}", mysql_identifier(&name), mysql_identifier(&_host)),
        };
        let _ = admin.execute(drop).await;
    }
}

/// An application login to one test database: a role (PostgreSQL) or an
/// account (MySQL/MariaDB) with a random password, holding no privileges
/// until the provider's grant function gives them.
#[derive(Clone)]
pub struct Login {
    name: String,
    host: Option<String>,
    url: String,
}

impl Login {
    /// The role or user name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The MySQL/MariaDB account's host: where the server sees this
    /// process connect from. `None` on PostgreSQL.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The database URL with this login's credentials (it holds the
    /// password: show it only through [`redacted`]).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("url", &redacted(&self.url))
            .finish()
    }
}

/// Creates the application login of the test database at `database_url`
/// (connected as its owner): `<database>_app`, unique like the database, so
/// concurrent test processes never share or collide on one. On MySQL/MariaDB
/// the account's host is the one the server sees this connection come from,
/// so no other (anonymous) account can shadow it.
pub async fn application_login(database_url: &str, server: Server) -> Result<Login, SetupError> {
    let unavailable = |e: &dyn std::fmt::Display| SetupError::Unavailable(format!("{}: {e}", redacted(database_url)));
    let database = database_name(database_url)
        .ok_or_else(|| SetupError::Unavailable(format!("{}: no database in the URL", redacted(database_url))))?;
    let name = format!("{database}{LOGIN_SUFFIX}");
    // Two UUIDv7s: 148 random bits, hex only (nothing to quote or encode).
    let password = format!("{}{}", uuid::Uuid::now_v7().simple(), uuid::Uuid::now_v7().simple());
    let mut owner = Admin::connect(server, database_url).await.map_err(|e| unavailable(&e))?;
    let created: Result<Option<String>, sqlx::Error> = async {
        match server {
            #[cfg(feature = "pg-server")]
            Server::Postgres => {
                owner
                    .execute(format!("CREATE ROLE {} LOGIN PASSWORD '{password}'", postgres_identifier(&name)))
                    .await?;
                Ok(None)
            }
            #[cfg(feature = "mysql-server")]
            Server::MySql => {
                let rows = owner.pairs("SELECT SUBSTRING_INDEX(USER(), '@', -1), ''").await?;
                let host = rows.into_iter().next().map_or_else(|| "%".to_owned(), |(host, _)| host);
                let account = format!("{}@{}", mysql_identifier(&name), mysql_identifier(&host));
                owner.execute(format!("CREATE USER {account} IDENTIFIED BY '{password}'")).await?;
                Ok(Some(host))
            }
        }
    }
    .await;
    owner.close().await;
    // The statement holds the password: never let an error echo it.
    let host = created.map_err(|e| unavailable(&format!("creating login {name}: {e}").replace(&password, "***")))?;
    Ok(Login { url: with_login(database_url, &name, &password), name, host })
}
