//! Opening the store a URL names, failing fast and clearly when the
//! database does not answer.
//!
//! The providers' own `connect` functions build a pool with sqlx's
//! defaults: a refused connection is retried for the whole 30 s acquire
//! timeout and then reported only as "pool timed out". So the command first
//! makes one direct connection within [`CONNECT_TIMEOUT`] (the real cause,
//! at once), then builds the pool itself with the drivers' own timeouts.

use std::sync::Arc;
use std::time::Duration;

use governance_abstractions::GovernanceStore;
use governance_postgres::PostgresStore;
use governance_seaorm::SeaOrmStore;
use governance_seaorm::sea_orm::{ConnectOptions, Database};
use governance_test_support::{CONNECT_TIMEOUT, redacted, scrubbed};

use crate::error::{CliError, causes};
use crate::{Target, UrlProvider};

/// How long a command waits for a pooled connection once the server has
/// answered.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the command may create what is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `migrate`: a missing SQLite file is created.
    Migrate,
    /// Everything else: a missing SQLite file is an error, not a new empty
    /// database that would verify clean.
    Existing,
}

/// A store opened from a URL.
pub(crate) struct Opened {
    store: Kind,
    url: String,
}

enum Kind {
    Postgres(PostgresStore),
    SeaOrm(SeaOrmStore),
}

impl Opened {
    /// The store, for the library's functions.
    pub(crate) fn store(&self) -> Arc<dyn GovernanceStore> {
        match &self.store {
            Kind::Postgres(store) => Arc::new(store.clone()),
            Kind::SeaOrm(store) => Arc::new(store.clone()),
        }
    }

    /// The provider's name, as the conformance suite calls it.
    pub(crate) fn provider(&self) -> &'static str {
        match &self.store {
            Kind::Postgres(_) => "postgres",
            Kind::SeaOrm(_) if self.url.starts_with("sqlite:") => "seaorm-sqlite",
            Kind::SeaOrm(_) if self.url.starts_with("mysql:") || self.url.starts_with("mariadb:") => "seaorm-mysql",
            Kind::SeaOrm(_) => "seaorm-postgres",
        }
    }

    /// The provider's `roll_up_counts` on PostgreSQL (either provider: the
    /// counts are the shared schema's), or `None` where the backend keeps
    /// no hourly counts.
    pub(crate) async fn roll_up_counts(
        &self,
        workspace: &governance_abstractions::WorkspaceId,
    ) -> Option<governance_abstractions::Result<u64>> {
        match &self.store {
            Kind::Postgres(store) => Some(store.roll_up_counts(workspace).await),
            Kind::SeaOrm(store) if self.provider() == "seaorm-postgres" => Some(store.roll_up_counts(workspace).await),
            Kind::SeaOrm(_) => None,
        }
    }

    /// The URL as it may be shown.
    pub(crate) fn shown_url(&self) -> String {
        redacted(&self.url)
    }

    pub(crate) async fn migrate(&self) -> Result<(), CliError> {
        let migrated = match &self.store {
            Kind::Postgres(store) => store.migrate().await,
            Kind::SeaOrm(store) => store.migrate().await,
        };
        migrated.map_err(|e| CliError::store(format!("migrating {}", self.shown_url()), &e))
    }

    /// A store error while doing `what` on this database.
    pub(crate) fn failed(&self, what: &str, error: &dyn std::error::Error) -> CliError {
        CliError::Store { what: format!("{what} on {}", self.shown_url()), cause: scrubbed(&causes(error), &self.url) }
    }
}

/// The scheme's kind of database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Postgres,
    MySql,
    Sqlite,
}

fn scheme(url: &str) -> Result<Scheme, CliError> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        Ok(Scheme::Postgres)
    } else if lower.starts_with("mysql://") || lower.starts_with("mariadb://") {
        Ok(Scheme::MySql)
    } else if lower.starts_with("sqlite:") {
        Ok(Scheme::Sqlite)
    } else {
        Err(CliError::Usage(format!(
            "{} is not a database URL this command knows: use postgres://, mysql:// or sqlite:PATH",
            redacted(url)
        )))
    }
}

/// The file of a `sqlite:` URL (`sqlite:PATH`, `sqlite://PATH`, a query string dropped).
fn sqlite_path(url: &str) -> &str {
    let rest = &url["sqlite:".len()..];
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    rest.split_once('?').map_or(rest, |(path, _)| path)
}

/// Opens the store `target` names.
pub(crate) async fn open(target: &Target, mode: Mode) -> Result<Opened, CliError> {
    let url = target.url.trim().to_owned();
    let scheme = scheme(&url)?;
    let unreachable = |cause: String| CliError::Unreachable { url: redacted(&url), cause: scrubbed(&cause, &url) };
    let store = match (scheme, target.provider) {
        (Scheme::Postgres, None | Some(UrlProvider::Postgres)) => {
            use governance_postgres::sqlx::ConnectOptions as _;
            use governance_postgres::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
            let options: PgConnectOptions = url.parse().map_err(|e| unreachable(causes(&e)))?;
            let options = options.disable_statement_logging();
            probe(options.connect()).await.map_err(unreachable)?;
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(|e| unreachable(causes(&e)))?;
            Kind::Postgres(PostgresStore::new(pool))
        }
        (Scheme::MySql | Scheme::Sqlite, Some(UrlProvider::Postgres)) => {
            return Err(CliError::Usage(format!(
                "--provider postgres opens postgres:// URLs only; {} is SeaORM's",
                redacted(&url)
            )));
        }
        (Scheme::Postgres | Scheme::MySql, _) => {
            probe_server(scheme, &url).await.map_err(unreachable)?;
            // SeaORM knows MariaDB by the MySQL scheme.
            let mut options = ConnectOptions::new(url.replacen("mariadb://", "mysql://", 1));
            options
                .max_connections(4)
                .min_connections(0)
                .connect_timeout(CONNECT_TIMEOUT)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .sqlx_logging(false);
            let db = Database::connect(options).await.map_err(|e| unreachable(causes(&e)))?;
            Kind::SeaOrm(SeaOrmStore::new(db))
        }
        (Scheme::Sqlite, _) => {
            let path = sqlite_path(&url);
            if path.is_empty() || path.contains(":memory:") {
                return Err(CliError::Usage(format!(
                    "{url}: name a SQLite file (an in-memory database holds nothing)"
                )));
            }
            let store = match mode {
                // open_sqlite creates the file, sets WAL and migrates.
                Mode::Migrate => SeaOrmStore::open_sqlite(path).await,
                Mode::Existing if !std::path::Path::new(path).is_file() => {
                    return Err(CliError::Usage(format!(
                        "no SQLite database at {path} (create it with `governance migrate --url {url}`)"
                    )));
                }
                Mode::Existing => SeaOrmStore::connect(&url).await,
            };
            Kind::SeaOrm(store.map_err(|e| unreachable(causes(&e)))?)
        }
    };
    Ok(Opened { store, url })
}

/// One direct connection within [`CONNECT_TIMEOUT`]: `Err` says why not.
async fn probe<C, E>(connecting: impl Future<Output = Result<C, E>>) -> Result<(), String>
where
    E: std::error::Error,
{
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(_connection)) => Ok(()),
        Ok(Err(error)) => Err(causes(&error)),
        Err(_) => Err(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())),
    }
}

/// [`probe`] for a SeaORM server URL, through the sqlx that SeaORM uses.
async fn probe_server(scheme: Scheme, url: &str) -> Result<(), String> {
    use governance_seaorm::sea_orm::sqlx::ConnectOptions as _;
    match scheme {
        Scheme::Postgres => {
            let options: governance_seaorm::sea_orm::sqlx::postgres::PgConnectOptions =
                url.parse().map_err(|e: governance_seaorm::sea_orm::sqlx::Error| causes(&e))?;
            probe(options.disable_statement_logging().connect()).await
        }
        Scheme::MySql => {
            let url = url.replacen("mariadb://", "mysql://", 1);
            let options: governance_seaorm::sea_orm::sqlx::mysql::MySqlConnectOptions =
                url.parse().map_err(|e: governance_seaorm::sea_orm::sqlx::Error| causes(&e))?;
            probe(options.disable_statement_logging().connect()).await
        }
        Scheme::Sqlite => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_pick_the_provider_and_sqlite_paths_are_read() {
        assert_eq!(scheme("postgres://u@h/db").ok(), Some(Scheme::Postgres));
        assert_eq!(scheme("PostgreSQL://u@h/db").ok(), Some(Scheme::Postgres));
        assert_eq!(scheme("mysql://u@h/db").ok(), Some(Scheme::MySql));
        assert_eq!(scheme("sqlite:gov.db").ok(), Some(Scheme::Sqlite));
        let error = scheme("http://u:secret@h/db").expect_err("not a database");
        assert!(!error.to_string().contains("secret"), "{error}");
        assert_eq!(sqlite_path("sqlite:gov.db"), "gov.db");
        assert_eq!(sqlite_path("sqlite:///tmp/gov.db?mode=rwc"), "/tmp/gov.db");
        assert_eq!(sqlite_path("sqlite://rel/gov.db"), "rel/gov.db");
    }
}
