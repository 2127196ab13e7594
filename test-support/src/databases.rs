//! Fresh databases and application logins on a server, through sqlx with
//! statement logging off (some statements hold a password).

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conformance_tests::SetupError;
use sqlx::{ConnectOptions, Connection};

#[cfg(feature = "mysql-server")]
use crate::MYSQL_URL_ENV;
#[cfg(feature = "pg-server")]
use crate::POSTGRES_URL_ENV;
#[cfg(feature = "mysql-server")]
use crate::urls::mysql_identifier;
#[cfg(feature = "pg-server")]
use crate::urls::postgres_identifier;
use crate::urls::{database_name, redacted, scrubbed, with_database, with_login};

const PREFIX: &str = "gov_cf_";
/// Databases whose creating process holds a session lock while it lives.
const LOCKED_PREFIX: &str = "gov_cf_l";
/// Databases of the earlier scheme (no lock) are dropped after this.
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

/// How long connecting to a server may take before it counts as not
/// answering: a refused port fails at once, an unreachable host here.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `error` with its chain of causes.
fn causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(&format!(": {text}"));
        }
        source = cause.source();
    }
    message
}

/// One administrative connection, statement logging off.
enum Admin {
    #[cfg(feature = "pg-server")]
    Postgres(sqlx::PgConnection),
    #[cfg(feature = "mysql-server")]
    MySql(sqlx::MySqlConnection),
}

impl Admin {
    /// One connection (no pool: a pool retries a refused connection until
    /// its acquire timeout and then reports only that it timed out), within
    /// [`CONNECT_TIMEOUT`]. The error names the cause, never the password.
    async fn connect(server: Server, url: &str) -> Result<Self, String> {
        let connecting = async {
            Ok::<_, sqlx::Error>(match server {
                #[cfg(feature = "pg-server")]
                Server::Postgres => Admin::Postgres(
                    url.parse::<sqlx::postgres::PgConnectOptions>()?.disable_statement_logging().connect().await?,
                ),
                #[cfg(feature = "mysql-server")]
                Server::MySql => Admin::MySql(
                    url.parse::<sqlx::mysql::MySqlConnectOptions>()?.disable_statement_logging().connect().await?,
                ),
            })
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(admin)) => Ok(admin),
            Ok(Err(error)) => Err(scrubbed(&causes(&error), url)),
            Err(_) => Err(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())),
        }
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

    /// Takes the session lock that says "the process that created database
    /// `name` is alive" (false: another session holds it). The server
    /// releases it when this connection ends, however the process ended.
    async fn try_lock(&mut self, name: &str) -> Result<bool, sqlx::Error> {
        match self {
            #[cfg(feature = "pg-server")]
            Admin::Postgres(conn) => {
                sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                    .bind(LOCK_CLASS)
                    .bind(lock_key(name))
                    .fetch_one(conn)
                    .await
            }
            #[cfg(feature = "mysql-server")]
            Admin::MySql(conn) => {
                let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 0)").bind(name).fetch_one(conn).await?;
                Ok(got == Some(1))
            }
        }
    }

    /// Releases the lock [`try_lock`](Self::try_lock) took (its database is gone).
    async fn unlock(&mut self, name: &str) -> Result<(), sqlx::Error> {
        match self {
            #[cfg(feature = "pg-server")]
            Admin::Postgres(conn) => sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                .bind(LOCK_CLASS)
                .bind(lock_key(name))
                .execute(conn)
                .await
                .map(drop),
            #[cfg(feature = "mysql-server")]
            Admin::MySql(conn) => sqlx::query("SELECT RELEASE_LOCK(?)").bind(name).execute(conn).await.map(drop),
        }
    }

    /// Whether some session (of any process, on any host) holds the lock of
    /// database `name`.
    async fn is_locked(&mut self, name: &str) -> Result<bool, sqlx::Error> {
        match self {
            #[cfg(feature = "pg-server")]
            Admin::Postgres(conn) => {
                // pg_locks shows every database's advisory locks, whichever
                // database the holder is connected to.
                sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
                     AND classid::text::int8 = $1 AND objid::text::int8 = $2 AND objsubid = 2)",
                )
                .bind(i64::from(LOCK_CLASS))
                .bind(i64::from(lock_key(name)))
                .fetch_one(conn)
                .await
            }
            #[cfg(feature = "mysql-server")]
            Admin::MySql(conn) => {
                let holder: Option<i64> =
                    sqlx::query_scalar("SELECT IS_USED_LOCK(?)").bind(name).fetch_one(conn).await?;
                Ok(holder.is_some())
            }
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

/// The first key of every PostgreSQL advisory lock this module takes
/// ("govc"), so they never meet an application's.
#[cfg(feature = "pg-server")]
const LOCK_CLASS: i32 = 0x676f_7663;

/// The second key: FNV-1a of the database name, kept positive (pg_locks
/// shows the keys as unsigned OIDs).
#[cfg(feature = "pg-server")]
fn lock_key(name: &str) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    (hash & 0x7fff_ffff) as i32
}

/// Whether `name` is a database (or `<database>_app` login) of this
/// module's current scheme, whose creator holds a session lock while alive.
fn is_locked_scheme(name: &str) -> bool {
    name.starts_with(LOCKED_PREFIX)
}

/// A new database name: `gov_cf_l<pid>_<random>`, short enough that its
/// login `<name>_app` fits MySQL's 32-character user names.
fn new_name() -> String {
    // A UUIDv7 ends in random bits.
    let random = uuid::Uuid::now_v7().simple().to_string();
    format!("{LOCKED_PREFIX}{}_{}", std::process::id(), &random[random.len() - 6..])
}

/// Creates a fresh database on the `server` at `server_url` and returns its
/// URL, after dropping the test databases of processes that are gone.
///
/// The database is dropped when the Tokio runtime this is called on shuts
/// down — the end of a `#[tokio::test]`, or of a `#[tokio::main]` — so use
/// the URL on that runtime. Should the process end first (killed, aborted),
/// the server sees it (the connection holding the database's lock closes)
/// and the next run's sweep on that server drops it. [`fresh_test_database`]
/// drops it as soon as its guard goes instead.
pub async fn fresh_database(server_url: &str, server: Server) -> Result<String, SetupError> {
    let (url, name) = create(server_url, server).await?;
    // Off Tokio there is no runtime to tie it to: it goes with the process
    // (the sweep, or `drop_created_databases`).
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let guard = DatabaseGuard { server, server_url: server_url.to_owned(), name };
        // A task that never ends holds the guard: the runtime drops it, and
        // so the database, when it shuts down.
        runtime.spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
    }
    Ok(url)
}

/// [`fresh_database`] on the configured `server`, or `None` after a
/// `SKIPPED` notice on stderr when no server is configured and none is
/// required; panics (naming the variable) when the setup fails or a
/// required server is missing. For tests that need a database of their own
/// rather than a provider factory.
pub async fn fresh_database_or_skip(server: Server) -> Option<String> {
    let url = match server_url(server).await {
        Ok(server_url) => fresh_database(&server_url, server).await,
        Err(error) => Err(error),
    };
    match url {
        Ok(url) => Some(url),
        Err(error) if crate::setup_fails(&error) => panic!("{}: {error}", server.variable()),
        Err(error) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED {server:?}: {error}");
            None
        }
    }
}

/// A test database that is dropped when the last clone of it goes.
#[derive(Clone)]
pub struct TestDatabase {
    url: String,
    _guard: Arc<DatabaseGuard>,
}

impl TestDatabase {
    /// The database's URL (the server URL's credentials).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase").field("url", &redacted(&self.url)).finish()
    }
}

/// [`fresh_database`], dropped (with its login) when the returned value and
/// all its clones are gone, also when the test failed.
pub async fn fresh_test_database(server_url: &str, server: Server) -> Result<TestDatabase, SetupError> {
    let (url, name) = create(server_url, server).await?;
    let guard = DatabaseGuard { server, server_url: server_url.to_owned(), name };
    Ok(TestDatabase { url, _guard: Arc::new(guard) })
}

/// Drops every test database this process created that is still there (and
/// their logins). For programs with their own `main`: tests rely on guards
/// and on the sweep of databases whose process is gone.
pub async fn drop_created_databases() {
    let created: Vec<Created> = std::mem::take(&mut *registry());
    for database in created {
        let _ = janitor::request_drop(database).await;
    }
}

/// A database this process created and has not dropped yet.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Created {
    server: Server,
    server_url: String,
    name: String,
}

fn registry() -> std::sync::MutexGuard<'static, Vec<Created>> {
    static CREATED: Mutex<Vec<Created>> = Mutex::new(Vec::new());
    CREATED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Drops its database when the last [`TestDatabase`] clone goes.
struct DatabaseGuard {
    server: Server,
    server_url: String,
    name: String,
}

impl Drop for DatabaseGuard {
    fn drop(&mut self) {
        let created = Created { server: self.server, server_url: self.server_url.clone(), name: self.name.clone() };
        let mut list = registry();
        let Some(at) = list.iter().position(|c| c == &created) else { return };
        list.remove(at);
        drop(list);
        // Waits (bounded) so that a test process's last database is gone
        // before the process ends; the janitor thread does the I/O, since
        // this may run on a runtime that cannot block on itself.
        if let Err(why) = janitor::drop_blocking(created) {
            let _ = writeln!(
                std::io::stderr(),
                "could not drop test database {}: {why}; the next run's sweep drops it",
                self.name
            );
        }
    }
}

/// Connects, sweeps, locks and creates: the database's URL and name.
async fn create(server_url: &str, server: Server) -> Result<(String, String), SetupError> {
    let unavailable = |e: &dyn std::fmt::Display| SetupError::Unavailable(format!("{}: {e}", redacted(server_url)));
    let mut admin = Admin::connect(server, server_url).await.map_err(|e| unavailable(&e))?;
    sweep(&mut admin, server).await.map_err(|e| unavailable(&scrubbed(&causes(&e), server_url)))?;
    let mut name = new_name();
    // The lock first, then the database: no sweep ever sees it unlocked.
    let mut attempts = 0;
    while !janitor::lock(server, server_url, &name).await.map_err(|e| unavailable(&e))? {
        attempts += 1;
        if attempts > 5 {
            return Err(unavailable(&"could not take a test database lock"));
        }
        name = new_name();
    }
    let create = match server {
        #[cfg(feature = "pg-server")]
        Server::Postgres => format!("CREATE DATABASE {}", postgres_identifier(&name)),
        #[cfg(feature = "mysql-server")]
        Server::MySql => {
            format!("CREATE DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", mysql_identifier(&name))
        }
    };
    admin.execute(create).await.map_err(|e| unavailable(&scrubbed(&causes(&e), server_url)))?;
    admin.close().await;
    registry().push(Created { server, server_url: server_url.to_owned(), name: name.clone() });
    Ok((with_database(server_url, &name), name))
}

/// Drops the test databases (and logins) whose creating process is gone:
/// those of the current scheme whose lock no session holds, and those of
/// the earlier scheme (no lock) older than six hours. Failures to drop are
/// ignored: another process may be dropping the same one.
async fn sweep(admin: &mut Admin, server: Server) -> Result<(), sqlx::Error> {
    let listing = match server {
        #[cfg(feature = "pg-server")]
        Server::Postgres => "SELECT datname::text, '' FROM pg_database WHERE datname LIKE 'gov\\_cf\\_%'",
        #[cfg(feature = "mysql-server")]
        Server::MySql => {
            "SELECT CAST(schema_name AS CHAR), '' FROM information_schema.schemata WHERE schema_name LIKE 'gov\\_cf\\_%'"
        }
    };
    let names = admin.pairs(listing).await?;
    let horizon = now_secs().saturating_sub(STALE_AFTER.as_secs());
    for (name, _) in names {
        if is_gone(admin, &name, horizon).await? {
            drop_database(admin, server, &name).await;
        }
    }
    let listing = match server {
        #[cfg(feature = "pg-server")]
        Server::Postgres => "SELECT rolname::text, '' FROM pg_roles WHERE rolname LIKE 'gov\\_cf\\_%\\_app'",
        #[cfg(feature = "mysql-server")]
        Server::MySql => {
            "SELECT CAST(User AS CHAR), CAST(Host AS CHAR) FROM mysql.user WHERE User LIKE 'gov\\_cf\\_%\\_app'"
        }
    };
    // Logins whose database went without them (a drop cut short).
    let Ok(logins) = admin.pairs(listing).await else { return Ok(()) };
    for (login, host) in logins {
        let database = login.strip_suffix(LOGIN_SUFFIX).unwrap_or(&login);
        if is_gone(admin, database, horizon).await? {
            let _ = admin.execute(drop_login(server, &login, &host)).await;
        }
    }
    Ok(())
}

/// Whether the process that created test database `name` is gone.
async fn is_gone(admin: &mut Admin, name: &str, horizon: u64) -> Result<bool, sqlx::Error> {
    if is_locked_scheme(name) { Ok(!admin.is_locked(name).await?) } else { Ok(created_before(name, horizon)) }
}

/// Drops database `name` and its logins, ignoring failures.
async fn drop_database(admin: &mut Admin, server: Server, name: &str) {
    let drop = match server {
        #[cfg(feature = "pg-server")]
        Server::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", postgres_identifier(name)),
        #[cfg(feature = "mysql-server")]
        Server::MySql => format!("DROP DATABASE IF EXISTS {}", mysql_identifier(name)),
    };
    let _ = admin.execute(drop).await;
    let login = format!("{name}{LOGIN_SUFFIX}");
    match server {
        #[cfg(feature = "pg-server")]
        Server::Postgres => {
            let _ = admin.execute(drop_login(server, &login, "")).await;
        }
        #[cfg(feature = "mysql-server")]
        Server::MySql => {
            // The account's host is wherever its creator connected from.
            let hosts =
                "SELECT CAST(User AS CHAR), CAST(Host AS CHAR) FROM mysql.user WHERE User LIKE 'gov\\_cf\\_%\\_app'";
            let accounts = admin.pairs(hosts).await.unwrap_or_default();
            for (user, host) in accounts.into_iter().filter(|(user, _)| user == &login) {
                let _ = admin.execute(drop_login(server, &user, &host)).await;
            }
        }
    }
}

fn drop_login(server: Server, name: &str, _host: &str) -> String {
    match server {
        #[cfg(feature = "pg-server")]
        Server::Postgres => format!("DROP ROLE IF EXISTS {}", postgres_identifier(name)),
        #[cfg(feature = "mysql-server")]
        Server::MySql => format!("DROP USER IF EXISTS {}@{}", mysql_identifier(name), mysql_identifier(_host)),
    }
}

/// Whether `name` is a test database's (or login's) of the earlier scheme
/// (`gov_cf_<unix seconds>_<pid>_<n>`, no lock) created before `horizon`.
fn created_before(name: &str, horizon: u64) -> bool {
    let created = name.strip_prefix(PREFIX).and_then(|rest| rest.split('_').next()).and_then(|s| s.parse().ok());
    created.is_some_and(|secs: u64| secs < horizon)
}

/// The suffix of a test database's application login (`<database>_app`).
const LOGIN_SUFFIX: &str = "_app";

/// The thread that holds this process's lock connections and drops
/// databases for guards: it has a runtime of its own, so a guard dropped
/// anywhere (inside a test's runtime, or after it shut down) can wait for it.
mod janitor {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    use std::time::Duration;

    use tokio::sync::{mpsc, oneshot};

    use super::{Admin, Created, Server, drop_database};

    /// How long a guard waits for its database to be dropped.
    const DROP_TIMEOUT: Duration = Duration::from_secs(20);

    enum Job {
        Lock { server: Server, server_url: String, name: String, reply: oneshot::Sender<Result<bool, String>> },
        Drop { database: Created, reply: Reply },
    }

    enum Reply {
        Async(oneshot::Sender<Result<(), String>>),
        Blocking(std::sync::mpsc::Sender<Result<(), String>>),
    }

    fn jobs() -> Result<&'static mpsc::UnboundedSender<Job>, String> {
        static JOBS: OnceLock<Result<mpsc::UnboundedSender<Job>, String>> = OnceLock::new();
        JOBS.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            std::thread::Builder::new()
                .name("gov-cf-janitor".into())
                .spawn(move || runtime.block_on(serve(receiver)))
                .map_err(|e| e.to_string())?;
            Ok(sender)
        })
        .as_ref()
        .map_err(|why| format!("the test database janitor could not start: {why}"))
    }

    /// Takes the lock of database `name` on this process's lock connection
    /// to `server_url` (opened on first use, kept until the process ends).
    pub(super) async fn lock(server: Server, server_url: &str, name: &str) -> Result<bool, String> {
        let (reply, answer) = oneshot::channel();
        let job = Job::Lock { server, server_url: server_url.to_owned(), name: name.to_owned(), reply };
        jobs()?.send(job).map_err(|_| "the test database janitor stopped".to_owned())?;
        answer.await.map_err(|_| "the test database janitor stopped".to_owned())?
    }

    pub(super) async fn request_drop(database: Created) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        jobs()?.send(Job::Drop { database, reply: Reply::Async(reply) }).map_err(|_| "janitor stopped".to_owned())?;
        answer.await.map_err(|_| "janitor stopped".to_owned())?
    }

    pub(super) fn drop_blocking(database: Created) -> Result<(), String> {
        let (reply, answer) = std::sync::mpsc::channel();
        jobs()?
            .send(Job::Drop { database, reply: Reply::Blocking(reply) })
            .map_err(|_| "janitor stopped".to_owned())?;
        answer.recv_timeout(DROP_TIMEOUT).map_err(|_| format!("not dropped within {DROP_TIMEOUT:?}"))?
    }

    async fn serve(mut jobs: mpsc::UnboundedReceiver<Job>) {
        // One lock connection per server URL, for the life of the process.
        let mut holders: HashMap<String, Admin> = HashMap::new();
        while let Some(job) = jobs.recv().await {
            match job {
                Job::Lock { server, server_url, name, reply } => {
                    let _ = reply.send(take_lock(&mut holders, server, &server_url, &name).await);
                }
                Job::Drop { database, reply } => {
                    let outcome = drop_now(&mut holders, &database).await;
                    match reply {
                        Reply::Async(reply) => drop(reply.send(outcome)),
                        Reply::Blocking(reply) => drop(reply.send(outcome)),
                    }
                }
            }
        }
    }

    async fn take_lock(
        holders: &mut HashMap<String, Admin>,
        server: Server,
        server_url: &str,
        name: &str,
    ) -> Result<bool, String> {
        if !holders.contains_key(server_url) {
            holders.insert(server_url.to_owned(), Admin::connect(server, server_url).await?);
        }
        let Some(holder) = holders.get_mut(server_url) else { return Err("no lock connection".into()) };
        match holder.try_lock(name).await {
            Ok(taken) => Ok(taken),
            Err(error) => {
                // A broken lock connection would leave databases looking
                // abandoned: forget it, so the next lock opens a new one.
                holders.remove(server_url);
                Err(format!("taking the test database lock: {error}"))
            }
        }
    }

    async fn drop_now(holders: &mut HashMap<String, Admin>, database: &Created) -> Result<(), String> {
        let mut admin = Admin::connect(database.server, &database.server_url).await?;
        drop_database(&mut admin, database.server, &database.name).await;
        admin.close().await;
        if let Some(holder) = holders.get_mut(&database.server_url) {
            let _ = holder.unlock(&database.name).await;
        }
        Ok(())
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
