//! Where the suite finds database servers, and a fresh database per process.
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
//! [`application_login`] adds the application's login to such a database
//! (`<database>_app`, with a random password), so the suite can run as the
//! role the providers' grant functions set up while the owner keeps the
//! schema; logins of stale databases are dropped with them. URLs shown in
//! messages go through [`redacted`]: no output shows a password.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governance_seaorm::sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement, Value,
};

use crate::harness::SetupError;

/// The PostgreSQL server URL variable.
pub const POSTGRES_URL_ENV: &str = "GOVERNANCE_POSTGRES_URL";
/// The MySQL/MariaDB server URL variable.
pub const MYSQL_URL_ENV: &str = "GOVERNANCE_MYSQL_URL";

const PREFIX: &str = "gov_cf_";
const STALE_AFTER: Duration = Duration::from_secs(6 * 3600);

/// The server URL in `variable`; else a container's, if Docker answers;
/// else why there is none.
pub async fn server_url(variable: &str) -> Result<String, SetupError> {
    if let Ok(url) = std::env::var(variable)
        && !url.trim().is_empty()
    {
        return Ok(url);
    }
    let container = if variable == POSTGRES_URL_ENV { &containers::POSTGRES } else { &containers::MARIADB };
    let image = if variable == POSTGRES_URL_ENV { containers::postgres() } else { containers::mariadb() };
    match container.get_or_init(|| containers::start(image)).await {
        Ok(url) => Ok(url.clone()),
        Err(why) => Err(SetupError::NotConfigured(format!("{variable} is unset and no container could start: {why}"))),
    }
}

/// Throwaway servers for machines without configured databases.
mod containers {
    use testcontainers::core::{ContainerPort, WaitFor};
    use testcontainers::runners::AsyncRunner;
    use testcontainers::{ContainerAsync, GenericImage, ImageExt};
    use tokio::sync::OnceCell;

    pub(super) static POSTGRES: OnceCell<Result<String, String>> = OnceCell::const_new();
    pub(super) static MARIADB: OnceCell<Result<String, String>> = OnceCell::const_new();

    /// The image, its port, and the URL template (`{host}`, `{port}`).
    pub(super) struct Server(ContainerRequestBuilder, u16, &'static str);
    type ContainerRequestBuilder = testcontainers::ContainerRequest<GenericImage>;

    pub(super) fn postgres() -> Server {
        let image = GenericImage::new("postgres", "16-alpine")
            .with_exposed_port(ContainerPort::Tcp(5432))
            .with_wait_for(WaitFor::message_on_stderr("database system is ready to accept connections"))
            .with_env_var("POSTGRES_HOST_AUTH_METHOD", "trust");
        Server(image, 5432, "postgres://postgres@{host}:{port}/postgres")
    }

    pub(super) fn mariadb() -> Server {
        let image = GenericImage::new("mariadb", "11")
            .with_exposed_port(ContainerPort::Tcp(3306))
            .with_wait_for(WaitFor::message_on_stderr("ready for connections"))
            .with_env_var("MARIADB_ALLOW_EMPTY_ROOT_PASSWORD", "1");
        Server(image, 3306, "mysql://root@{host}:{port}/mysql")
    }

    /// Starts the container and keeps it for the life of the process.
    pub(super) async fn start(Server(request, port, template): Server) -> Result<String, String> {
        static KEEP: std::sync::Mutex<Vec<ContainerAsync<GenericImage>>> = std::sync::Mutex::new(Vec::new());
        let container = request.start().await.map_err(|e| e.to_string())?;
        let host = container.get_host().await.map_err(|e| e.to_string())?;
        let mapped = container.get_host_port_ipv4(port).await.map_err(|e| e.to_string())?;
        KEEP.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(container);
        Ok(template.replace("{host}", &host.to_string()).replace("{port}", &mapped.to_string()))
    }
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Creates a fresh database on the server at `server_url` and returns its
/// URL, after dropping databases of earlier runs that are older than six hours.
pub async fn fresh_database(server_url: &str, backend: DbBackend) -> Result<String, SetupError> {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let unavailable = |e: &dyn std::fmt::Display| SetupError::Unavailable(format!("{}: {e}", redacted(server_url)));
    let admin = quiet_connect(server_url).await.map_err(|e| unavailable(&e))?;
    let listing = match backend {
        DbBackend::Postgres => "SELECT datname AS name FROM pg_database WHERE datname LIKE 'gov\\_cf\\_%'",
        _ => "SELECT schema_name AS name FROM information_schema.schemata WHERE schema_name LIKE 'gov\\_cf\\_%'",
    };
    let rows = admin.query_all_raw(Statement::from_string(backend, listing)).await.map_err(|e| unavailable(&e))?;
    let horizon = now_secs().saturating_sub(STALE_AFTER.as_secs());
    for row in rows {
        let Ok(name) = row.try_get::<String>("", "name") else { continue };
        let created = name.strip_prefix(PREFIX).and_then(|rest| rest.split('_').next()).and_then(|s| s.parse().ok());
        if created.is_some_and(|secs: u64| secs < horizon) {
            let drop = match backend {
                DbBackend::Postgres => format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                _ => format!("DROP DATABASE IF EXISTS `{name}`"),
            };
            // Another process may be dropping it too; either way it goes.
            let _ = admin.execute_unprepared(&drop).await;
        }
    }
    drop_stale_logins(&admin, backend, horizon).await;
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("{PREFIX}{}_{}_{n}", now_secs(), std::process::id());
    let create = match backend {
        DbBackend::Postgres => format!("CREATE DATABASE \"{name}\""),
        _ => format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
    };
    admin.execute_unprepared(&create).await.map_err(|e| unavailable(&e))?;
    let _ = admin.close().await;
    Ok(with_database(server_url, &name))
}

/// A one-connection pool to `url` that logs no statement (sqlx logs each
/// statement it runs by default; some of these hold a password).
async fn quiet_connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url);
    options.max_connections(1).min_connections(0).sqlx_logging(false);
    Database::connect(options).await
}

/// The suffix of a test database's application login (`<database>_app`).
const LOGIN_SUFFIX: &str = "_app";

/// Drops the application logins of test databases older than `horizon`
/// (their databases are gone by now, and with them the role's grants).
/// Failures are ignored: another process may be dropping them too.
async fn drop_stale_logins(admin: &DatabaseConnection, backend: DbBackend, horizon: u64) {
    let listing = match backend {
        DbBackend::Postgres => {
            "SELECT rolname AS name, '' AS host FROM pg_roles WHERE rolname LIKE 'gov\\_cf\\_%\\_app'"
        }
        _ => {
            "SELECT CAST(User AS CHAR) AS name, CAST(Host AS CHAR) AS host FROM mysql.user WHERE User LIKE 'gov\\_cf\\_%\\_app'"
        }
    };
    let Ok(rows) = admin.query_all_raw(Statement::from_string(backend, listing)).await else { return };
    for row in rows {
        let (Ok(name), Ok(host)) = (row.try_get::<String>("", "name"), row.try_get::<String>("", "host")) else {
            continue;
        };
        let created = name.strip_prefix(PREFIX).and_then(|rest| rest.split('_').next()).and_then(|s| s.parse().ok());
        if created.is_none_or(|secs: u64| secs >= horizon) {
            continue;
        }
        let drop = match backend {
            DbBackend::Postgres => format!("DROP ROLE IF EXISTS {}", postgres_identifier(&name)),
            _ => format!("DROP USER IF EXISTS {}@{}", mysql_identifier(&name), mysql_identifier(&host)),
        };
        let _ = admin.execute_unprepared(&drop).await;
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
pub async fn application_login(database_url: &str, backend: DbBackend) -> Result<Login, SetupError> {
    let unavailable = |e: &dyn std::fmt::Display| SetupError::Unavailable(format!("{}: {e}", redacted(database_url)));
    let database = database_name(database_url)
        .ok_or_else(|| SetupError::Unavailable(format!("{}: no database in the URL", redacted(database_url))))?;
    let name = format!("{database}{LOGIN_SUFFIX}");
    // Two UUIDv7s: 148 random bits, hex only (nothing to quote or encode).
    let password = format!("{}{}", uuid::Uuid::now_v7().simple(), uuid::Uuid::now_v7().simple());
    // Statement logging off: the CREATE statement holds the password.
    let owner = quiet_connect(database_url).await.map_err(|e| unavailable(&e))?;
    let created = async {
        match backend {
            DbBackend::Postgres => {
                let sql = format!("CREATE ROLE {} LOGIN PASSWORD '{password}'", postgres_identifier(&name));
                owner.execute_unprepared(&sql).await?;
                Ok(None)
            }
            _ => {
                let probe = "SELECT SUBSTRING_INDEX(USER(), '@', -1) AS host";
                let row = owner.query_one_raw(Statement::from_string(backend, probe)).await?;
                let host = row.map(|row| row.try_get::<String>("", "host")).transpose()?.unwrap_or_else(|| "%".into());
                let account = format!("{}@{}", mysql_identifier(&name), mysql_identifier(&host));
                owner.execute_unprepared(&format!("CREATE USER {account} IDENTIFIED BY '{password}'")).await?;
                Ok(Some(host))
            }
        }
    };
    let host: Result<Option<String>, DbErr> = created.await;
    let _ = owner.close().await;
    // The statement holds the password: never let an error echo it.
    let host = host.map_err(|e| unavailable(&format!("creating login {name}: {e}").replace(&password, "***")))?;
    Ok(Login { url: with_login(database_url, &name, &password), name, host })
}

/// The database name in `url` (its path), if any.
fn database_name(url: &str) -> Option<&str> {
    let base = url.split_once('?').map_or(url, |(base, _)| base);
    let authority_end = base.find("://")? + 3;
    let path = &base[authority_end..];
    let name = &path[path.find('/')? + 1..];
    (!name.is_empty()).then_some(name)
}

/// `url` with its credentials replaced by `user` and `password`
/// (percent-encoded).
pub fn with_login(url: &str, user: &str, password: &str) -> String {
    let Some(authority_start) = url.find("://").map(|i| i + 3) else { return url.to_owned() };
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let host = rest[..authority_end].rsplit_once('@').map_or(&rest[..authority_end], |(_, host)| host);
    format!(
        "{}{}:{}@{host}{}",
        &url[..authority_start],
        percent_encode(user),
        percent_encode(password),
        &rest[authority_end..]
    )
}

/// `url` with any password replaced by `***`, in the credentials and in a
/// `password=` query parameter: what messages may show.
pub fn redacted(url: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let base = match base.find("://").map(|i| i + 3) {
        None => base.to_owned(),
        Some(authority_start) => {
            let rest = &base[authority_start..];
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rsplit_once('@') {
                Some((credentials, host)) if credentials.contains(':') => {
                    let user = credentials.split_once(':').map_or(credentials, |(user, _)| user);
                    format!("{}{user}:***@{host}{}", &base[..authority_start], &rest[authority_end..])
                }
                _ => base.to_owned(),
            }
        }
    };
    let Some(query) = query else { return base };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn postgres_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn mysql_identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A statement from `sql` written with `?` placeholders, numbered `$1, $2, …`
/// on PostgreSQL (hand-written test statements are written once, `?`-style).
pub fn statement(backend: DbBackend, sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
    let sql = if backend == DbBackend::Postgres {
        let mut n = 0;
        let mut out = String::with_capacity(sql.len() + 16);
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(c);
            }
        }
        out
    } else {
        sql.to_owned()
    };
    Statement::from_sql_and_values(backend, sql, values)
}

#[cfg(test)]
mod tests {
    use super::{database_name, redacted, with_database, with_login};

    #[test]
    fn logins_replace_the_credentials_and_never_show_the_password() {
        assert_eq!(
            with_login("postgres://postgres@127.0.0.1:5432/gov?sslmode=disable", "app", "p@ss/w:rd"),
            "postgres://app:p%40ss%2Fw%3Ard@127.0.0.1:5432/gov?sslmode=disable"
        );
        assert_eq!(with_login("mysql://root:old@h/db", "a", "b"), "mysql://a:b@h/db");
        assert_eq!(with_login("mysql://h", "a", "b"), "mysql://a:b@h");
        assert_eq!(redacted("mysql://a:secret@h:3306/db?x=1"), "mysql://a:***@h:3306/db?x=1");
        assert_eq!(redacted("postgres://p%40ss:se@cret@h/db"), "postgres://p%40ss:***@h/db");
        assert_eq!(redacted("postgres://postgres@h/db"), "postgres://postgres@h/db");
        assert_eq!(redacted("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(redacted("postgres://h/db?user=u&password=secret&x=1"), "postgres://h/db?user=u&password=***&x=1");
        assert_eq!(redacted("mysql://a:s@h/db?PASSWORD=secret"), "mysql://a:***@h/db?PASSWORD=***");
        assert_eq!(redacted("postgres://h/db?sslmode=disable"), "postgres://h/db?sslmode=disable");
        let url = with_login("postgres://postgres@h/db", "app", "secret");
        assert!(!redacted(&url).contains("secret"));
        assert_eq!(database_name("postgres://u@h:1/gov_cf_1?x=y"), Some("gov_cf_1"));
        assert_eq!(database_name("postgres://u@h:1/"), None);
        assert_eq!(database_name("postgres://u@h:1"), None);
    }

    #[test]
    fn replaces_the_database_name_only() {
        assert_eq!(with_database("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
        assert_eq!(
            with_database("mysql://root@127.0.0.1:3306/test?ssl-mode=disabled", "x"),
            "mysql://root@127.0.0.1:3306/x?ssl-mode=disabled"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
