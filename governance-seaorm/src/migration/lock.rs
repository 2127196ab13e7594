//! The cluster-wide migration lock of MySQL/MariaDB servers that replicate
//! to several writable nodes (MariaDB Galera).
//!
//! `GET_LOCK` is node-local on Galera: two migrators on two nodes both get
//! it, run the same DDL at once, and collide (duplicate bookkeeping rows,
//! triggers created twice) or stall each other in total-order isolation. So
//! there the lock is a row: one primary key in `governance_migrations_lock`,
//! inserted with autocommit. Galera certifies a commit against every node's,
//! so only one insert of the key commits cluster-wide; a loser sees a
//! duplicate key (the winner's row has arrived) or a deadlock (1213, its
//! commit failed certification), waits with backoff and tries again until a
//! deadline, then gives up with a retryable [`MigrationLocked`].
//!
//! A row carries an expiry. The holder renews it every [`RENEW_EVERY`] while
//! it migrates; a row not renewed for [`LEASE`] belongs to a migrator that
//! crashed or lost its node, and the next one takes it over (an `UPDATE …
//! WHERE expires_at < now`, which again only one node's commit survives).
//! Expiry is compared with each node's own clock: nodes must agree on the
//! time within seconds, as Galera needs anyway.
//!
//! Whoever gets the row next has applied every write set that came before
//! the holder's delete (Galera commits in one total order on every node, and
//! the new insert of the same key cannot commit before the delete is
//! applied), so it sees every migration and bookkeeping row of the run
//! before it.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use governance_abstractions::{GovernanceError, Result};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, Value};

use crate::error;

/// The lock table: one row per held lock. Not part of the governance
/// schema proper: the owner alone uses it, the application role is granted
/// nothing on it.
pub const LOCK_TABLE: &str = "governance_migrations_lock";

/// How long a lock row stays valid without being renewed.
pub const LEASE: Duration = Duration::from_secs(60);

/// How often the holder renews its row while it migrates.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// How long a migrator waits for a lock held by another before giving up.
pub const WAIT: Duration = Duration::from_secs(120);

/// The lock's key: one migration lock per database.
const NAME: &str = "migrate";

/// Another migrator held the cluster-wide migration lock for as long as
/// this one waited. Retryable: the source of a retryable
/// [`GovernanceError::Backend`]; migrating again once that run is done (or its
/// lease has run out) succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationLocked {
    /// The server and connection that holds it (`host:port/connection`).
    pub holder: String,
    /// When it took the lock (UTC, the holder's node clock).
    pub acquired_at: String,
    /// When the lock runs out unless renewed (UTC).
    pub expires_at: String,
    /// How long this migrator waited.
    pub waited: Duration,
}

impl std::fmt::Display for MigrationLocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "another migration holds the lock in {LOCK_TABLE} ({} since {} UTC, lease until {} UTC); waited {:?}: \
             migrate again once it is done",
            self.holder, self.acquired_at, self.expires_at, self.waited
        )
    }
}

impl std::error::Error for MigrationLocked {}

/// The lock row could not be kept: it was taken over while this run
/// migrated (the run went unrenewed for longer than [`LEASE`]), so another
/// run may have migrated beside it. Retryable: migrations are re-runnable,
/// and a new run checks and completes the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationLockLost;

impl std::fmt::Display for MigrationLockLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the migration lock in {LOCK_TABLE} was taken over while migrating: migrate again")
    }
}

impl std::error::Error for MigrationLockLost {}

/// True when the server replicates writes to other writable nodes with
/// Galera (`wsrep_on`); MySQL has no such variable.
pub(crate) async fn is_galera(db: &DatabaseConnection) -> Result<bool> {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::MySql, "SHOW VARIABLES LIKE 'wsrep_on'"))
        .await
        .map_err(error::map)?;
    let value = row.map(|row| row.try_get::<String>("", "Value")).transpose().map_err(error::map)?;
    Ok(value.is_some_and(|v| v.eq_ignore_ascii_case("ON")))
}

/// A held lock row; [`release`](Held::release) deletes it.
pub(crate) struct Held {
    db: DatabaseConnection,
    owner: String,
    renewing: tokio::task::JoinHandle<()>,
    lost: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

fn statement(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::MySql, sql, values)
}

/// The row someone else holds, for the error after waiting.
async fn holder(db: &DatabaseConnection) -> std::result::Result<Option<(String, String, String)>, DbErr> {
    let sql = format!(
        "SELECT holder, DATE_FORMAT(acquired_at, '%Y-%m-%d %H:%i:%s') AS acquired, \
         DATE_FORMAT(expires_at, '%Y-%m-%d %H:%i:%s') AS expires FROM {LOCK_TABLE} WHERE name = ?"
    );
    let row = db.query_one_raw(statement(&sql, vec![NAME.into()])).await?;
    row.map(|row| Ok((row.try_get("", "holder")?, row.try_get("", "acquired")?, row.try_get("", "expires")?)))
        .transpose()
}

/// A contender lost a race for the row: it waits and tries again.
fn lost_race(error: &DbErr) -> bool {
    // 1062 duplicate key: the holder's row is here. 1213: this commit failed
    // Galera certification against another node's. 1205: a lock wait
    // timeout behind another local contender.
    error::is_unique_violation(error) || matches!(error::mysql_error_number(error), Some(1062 | 1205 | 1213))
}

/// Takes the cluster-wide migration lock, waiting up to [`WAIT`].
pub(crate) async fn acquire(db: &DatabaseConnection) -> Result<Held> {
    create_table(db).await?;
    let owner = uuid::Uuid::now_v7().to_string();
    let lease = LEASE.as_secs();
    let insert = format!(
        "INSERT INTO {LOCK_TABLE} (name, owner, holder, acquired_at, expires_at) \
         VALUES (?, ?, CONCAT(@@hostname, ':', @@port, '/', CONNECTION_ID()), UTC_TIMESTAMP(6), \
         UTC_TIMESTAMP(6) + INTERVAL {lease} SECOND)"
    );
    // A row whose lease ran out is taken over in one statement: of two nodes
    // taking it at once, one commit fails certification (1213).
    let take_over = format!(
        "UPDATE {LOCK_TABLE} SET owner = ?, holder = CONCAT(@@hostname, ':', @@port, '/', CONNECTION_ID()), \
         acquired_at = UTC_TIMESTAMP(6), expires_at = UTC_TIMESTAMP(6) + INTERVAL {lease} SECOND \
         WHERE name = ? AND expires_at < UTC_TIMESTAMP(6)"
    );
    let started = std::time::Instant::now();
    // Jittered, so contenders on several nodes do not retry in lockstep.
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(1))
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        match db.execute_raw(statement(&insert, vec![NAME.into(), owner.clone().into()])).await {
            Ok(_) => break,
            Err(e) if lost_race(&e) => {}
            Err(e) => return Err(error::map(e)),
        }
        match db.execute_raw(statement(&take_over, vec![owner.clone().into(), NAME.into()])).await {
            Ok(done) if done.rows_affected() == 1 => break,
            Ok(_) => {}
            Err(e) if lost_race(&e) => {}
            Err(e) => return Err(error::map(e)),
        }
        if started.elapsed() >= WAIT {
            let (holder, acquired_at, expires_at) =
                holder(db).await.map_err(error::map)?.unwrap_or_else(|| ("nobody now".into(), "-".into(), "-".into()));
            return Err(GovernanceError::backend(
                true,
                MigrationLocked { holder, acquired_at, expires_at, waited: started.elapsed() },
            ));
        }
        tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
    }
    let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renewing = tokio::spawn(renew(db.clone(), owner.clone(), lost.clone()));
    Ok(Held { db: db.clone(), owner, renewing, lost })
}

/// Keeps the lease of a held row fresh until aborted; marks it lost when
/// the row is no longer this run's.
async fn renew(db: DatabaseConnection, owner: String, lost: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let lease = LEASE.as_secs();
    let sql = format!(
        "UPDATE {LOCK_TABLE} SET expires_at = UTC_TIMESTAMP(6) + INTERVAL {lease} SECOND WHERE name = ? AND owner = ?"
    );
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        match db.execute_raw(statement(&sql, vec![NAME.into(), owner.clone().into()])).await {
            Ok(done) if done.rows_affected() == 0 => {
                lost.store(true, std::sync::atomic::Ordering::SeqCst);
                return;
            }
            // A failed renewal is tried again; the lease outlasts several.
            _ => {}
        }
    }
}

impl Held {
    /// Stops renewing and deletes the row (only this run's own). Reports
    /// [`MigrationLockLost`] when the row was taken over meanwhile.
    pub(crate) async fn release(mut self) -> Result<()> {
        self.renewing.abort();
        let _ = (&mut self.renewing).await;
        let sql = format!("DELETE FROM {LOCK_TABLE} WHERE name = ? AND owner = ?");
        let deleted = self.db.execute_raw(statement(&sql, vec![NAME.into(), self.owner.clone().into()])).await;
        let deleted = deleted.map_err(error::map)?;
        if deleted.rows_affected() == 0 || self.lost.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(GovernanceError::backend(true, MigrationLockLost));
        }
        Ok(())
    }
}

/// A run dropped before it released (its `migrate()` future cancelled)
/// stops renewing: its row then runs out after [`LEASE`] instead of being
/// kept alive by a task nobody waits for.
impl Drop for Held {
    fn drop(&mut self) {
        self.renewing.abort();
    }
}

/// Creates the lock table unless it is there. Concurrent creations from
/// several nodes are safe: `IF NOT EXISTS` DDL runs in one total order.
async fn create_table(db: &DatabaseConnection) -> Result<()> {
    let exists = format!(
        "SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{LOCK_TABLE}'"
    );
    let row = db.query_one_raw(Statement::from_string(DbBackend::MySql, exists)).await.map_err(error::map)?;
    if row.map(|row| row.try_get::<i64>("", "n")).transpose().map_err(error::map)?.unwrap_or(0) > 0 {
        return Ok(());
    }
    let create = format!(
        "CREATE TABLE IF NOT EXISTS {LOCK_TABLE} (
            name VARCHAR(64) NOT NULL PRIMARY KEY,
            owner CHAR(36) NOT NULL,
            holder VARCHAR(255) NOT NULL,
            acquired_at DATETIME(6) NOT NULL,
            expires_at DATETIME(6) NOT NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    );
    db.execute_unprepared(&create).await.map_err(error::map)?;
    Ok(())
}
