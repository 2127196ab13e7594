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

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governance_seaorm::sea_orm::{ConnectionTrait, Database, DbBackend, Statement, Value};

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
    let unavailable = |e: &dyn std::fmt::Display| SetupError::Unavailable(format!("{server_url}: {e}"));
    let admin = Database::connect(server_url).await.map_err(|e| unavailable(&e))?;
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
    use super::with_database;

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
