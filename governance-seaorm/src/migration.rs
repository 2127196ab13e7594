//! The schema, as a `sea-orm-migration` [`Migrator`] an application can run
//! (or call [`SeaOrmStore::migrate`](crate::SeaOrmStore::migrate), which also
//! serialises concurrent runs).
//!
//! Each backend gets its own DDL: binary collation for identifiers and
//! `DATETIME(6)` on MySQL; on PostgreSQL exactly the schema of
//! `governance-postgres` (`migration/postgres.rs`), so that either provider can
//! migrate and use the same database. On every backend the database itself
//! refuses UPDATE, DELETE (and TRUNCATE) of history rows, checkpoints and
//! seal entries.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

mod frozen;
pub(crate) mod lock;
mod postgres;

pub use lock::{
    LEASE as LOCK_LEASE, LOCK_TABLE, MigrationLockLost, MigrationLocked, RENEW_EVERY as LOCK_RENEW_EVERY,
    WAIT as LOCK_WAIT,
};
pub(crate) use postgres::check_schema as check_postgres_schema;

/// Runs the governance schema migrations. Its bookkeeping table is
/// `governance_migrations`, so it never mixes with the application's own.
#[derive(Debug, Clone, Copy, Default)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateTables),
            Box::new(CreateIntegrityTables),
            Box::new(AddStateDigest),
            Box::new(frozen::GuardFrozenRequestColumns),
            Box::new(CheckTimeRange),
            Box::new(postgres::SharePostgresSchema),
            Box::new(LeanRequestIndexes),
            Box::new(SuccessorGuard),
            Box::new(DecisionCounts),
            Box::new(DailyCounts),
            Box::new(DaysInStep),
        ]
    }

    fn migration_table_name() -> DynIden {
        "governance_migrations".into_iden()
    }
}

struct CreateTables;

impl MigrationName for CreateTables {
    fn name(&self) -> &str {
        "m20261123_000001_create_governance_tables"
    }
}

// async-trait's expansion names the manager's lifetime itself.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for CreateTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, postgres::TABLES, MYSQL, SQLITE).await
    }
}

struct CreateIntegrityTables;

impl MigrationName for CreateIntegrityTables {
    fn name(&self) -> &str {
        "m20261123_000002_create_integrity_tables"
    }
}

#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for CreateIntegrityTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, postgres::INTEGRITY, MYSQL_INTEGRITY, SQLITE_INTEGRITY).await
    }
}

struct AddStateDigest;

impl MigrationName for AddStateDigest {
    fn name(&self) -> &str {
        "m20261201_000003_add_state_digest"
    }
}

/// Adds `governance_requests.state_digest`: nullable, because rows written
/// before it have none (the provider then computes the digest from the row,
/// and a transition's update accepts a row without one).
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for AddStateDigest {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // MySQL DDL commits on its own and SQLite has no `ADD COLUMN IF NOT
        // EXISTS`: a run interrupted after the column was added must still
        // re-run.
        if manager.get_database_backend() != DbBackend::Postgres
            && manager.has_column("governance_requests", "state_digest").await?
        {
            return Ok(());
        }
        run(manager, postgres::STATE_DIGEST, MYSQL_STATE_DIGEST, SQLITE_STATE_DIGEST).await
    }
}

struct CheckTimeRange;

impl MigrationName for CheckTimeRange {
    fn name(&self) -> &str {
        "m20261215_000005_check_time_range"
    }
}

/// PostgreSQL only: CHECK constraints keep every time column within the
/// range the library stores (1970-01-01 up to the end of 9999). The library
/// never writes anything else, but a role that may update a request could
/// set `updated_at = 'infinity'`, and the driver's time decoder panics on
/// it (and on years past 262143): reads, `verify` and the sealer would
/// panic on the row instead of reporting it. MySQL's `DATETIME` and the
/// SQLite text the driver parses hold no such value (a bad one is a decode
/// error, not a panic), so there this migration does nothing.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for CheckTimeRange {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        run(manager, postgres::TIME_RANGE, &[], &[]).await
    }
}

struct LeanRequestIndexes;

impl MigrationName for LeanRequestIndexes {
    fn name(&self) -> &str {
        "m20261229_000007_lean_request_indexes"
    }
}

/// Fewer index entries per request write. PostgreSQL and SQLite: the
/// pending queue, with or without a reason, on one partial index over
/// pending requests in queue order, and no status index over every request
/// (the only status query with an order of its own is the pending queue; a
/// filter on another status walks the `(created_at, id)` order like any
/// other filter). MySQL/MariaDB have no partial indexes: there the status
/// index serves the pending queue, and the index by status and reason,
/// which held every request too, goes.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for LeanRequestIndexes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // MySQL DDL commits on its own and has no `DROP INDEX IF EXISTS`
        // (MariaDB has): an interrupted run must still re-run.
        if manager.get_database_backend() == DbBackend::MySql
            && !manager.has_index("governance_requests", "governance_requests_pending").await?
        {
            return Ok(());
        }
        run(manager, postgres::LEAN_REQUEST_INDEXES, MYSQL_LEAN_REQUEST_INDEXES, SQLITE_LEAN_REQUEST_INDEXES).await
    }
}

/// The MySQL/MariaDB request column a supersession writes on its successor
/// (see [`SuccessorGuard`]); in no entity, never read.
pub(crate) const SUCCESSOR_GUARD: &str = "successor_guard";

struct SuccessorGuard;

impl MigrationName for SuccessorGuard {
    fn name(&self) -> &str {
        "m20261230_000008_successor_guard"
    }
}

/// MySQL/MariaDB: a counter on each request that a supersession increments
/// on its successor's row. The successor is checked under a lock, and a
/// lock holds on one server only: a multi-primary cluster (Galera)
/// certifies the rows a transaction writes, not the rows it locks, so
/// without a write a cancel of the successor through another node could
/// commit alongside the supersession. Writing the row makes the two
/// conflict at certification, where one of them loses. PostgreSQL and
/// SQLite need no such column (one writer node).
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for SuccessorGuard {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // DDL commits on its own here: a re-run after a crash must work.
        if manager.get_database_backend() != DbBackend::MySql
            || manager.has_column("governance_requests", SUCCESSOR_GUARD).await?
        {
            return Ok(());
        }
        run(manager, &[], MYSQL_SUCCESSOR_GUARD, &[]).await
    }
}

struct DecisionCounts;

impl MigrationName for DecisionCounts {
    fn name(&self) -> &str {
        "m20261231_000009_decision_counts"
    }
}

/// PostgreSQL only: the hourly decision counts of the shared schema, so a
/// database this crate migrated is the one `governance-postgres` expects
/// (the `roll_up_counts` of either crate keeps them). Derived data:
/// nothing this crate writes needs them; its counts read them once a
/// roll-up ran.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for DecisionCounts {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, postgres::DECISION_COUNTS, &[], &[]).await
    }
}

struct DailyCounts;

impl MigrationName for DailyCounts {
    fn name(&self) -> &str {
        "m20270101_000010_daily_counts"
    }
}

/// PostgreSQL only: the daily decision counts of the shared schema, beside
/// the hourly ones (see [`DecisionCounts`]).
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for DailyCounts {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, postgres::DAILY_COUNTS, &[], &[]).await
    }
}

struct DaysInStep;

impl MigrationName for DaysInStep {
    fn name(&self) -> &str {
        "m20270102_000011_days_in_step"
    }
}

/// PostgreSQL only: the daily counts are read only while the roll-up that
/// last moved the watermark kept them in step with the hourly ones (see
/// [`DecisionCounts`]).
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for DaysInStep {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, postgres::DAYS_IN_STEP, &[], &[]).await
    }
}

const MYSQL_SUCCESSOR_GUARD: &[&str] =
    &["ALTER TABLE governance_requests ADD COLUMN successor_guard BIGINT NOT NULL DEFAULT 0"];

const MYSQL_LEAN_REQUEST_INDEXES: &[&str] = &["ALTER TABLE governance_requests DROP INDEX governance_requests_pending"];

// SQLite DDL is transactional: the migration applies whole or not at all.
const SQLITE_LEAN_REQUEST_INDEXES: &[&str] = &[
    "DROP INDEX IF EXISTS governance_requests_pending",
    "CREATE INDEX governance_requests_pending ON governance_requests (workspace_id, created_at, id)
        WHERE status = 'pending'",
    "DROP INDEX IF EXISTS governance_requests_status",
];

/// Runs the backend's statements, with MySQL's collation filled in.
async fn run(manager: &SchemaManager<'_>, postgres: &[&str], mysql: &[&str], sqlite: &[&str]) -> Result<(), DbErr> {
    let backend = manager.get_database_backend();
    let statements = match backend {
        DbBackend::Postgres => postgres,
        DbBackend::MySql => mysql,
        DbBackend::Sqlite => sqlite,
        other => return Err(DbErr::Migration(format!("unsupported backend {other:?}"))),
    };
    let collation = if backend == DbBackend::MySql { mysql_nopad_collation(manager).await? } else { "" };
    for statement in statements {
        let statement = statement.replace("{collation}", collation);
        if backend == DbBackend::MySql && statement.starts_with(CREATE_TRIGGER_IF_NOT_EXISTS) {
            create_mysql_trigger(manager, &statement).await?;
        } else {
            manager.get_connection().execute_unprepared(&statement).await?;
        }
    }
    Ok(())
}

const CREATE_TRIGGER_IF_NOT_EXISTS: &str = "CREATE TRIGGER IF NOT EXISTS ";

/// Runs a `CREATE TRIGGER IF NOT EXISTS` statement on MySQL/MariaDB.
/// MariaDB and MySQL 8.0.29+ take it as it is; an older MySQL does not
/// know the clause, so there the trigger is looked up first and created
/// without it when missing (the migration lock keeps the check and the
/// creation together).
pub(crate) async fn create_mysql_trigger(manager: &SchemaManager<'_>, statement: &str) -> Result<(), DbErr> {
    use sea_orm::{ConnectionTrait, Statement};
    let connection = manager.get_connection();
    let version = connection
        .query_one_raw(Statement::from_string(DbBackend::MySql, "SELECT VERSION() AS v"))
        .await?
        .map(|row| row.try_get::<String>("", "v"))
        .transpose()?
        .unwrap_or_default();
    if trigger_if_not_exists_supported(&version) {
        connection.execute_unprepared(statement).await?;
        return Ok(());
    }
    let Some(rest) = statement.strip_prefix(CREATE_TRIGGER_IF_NOT_EXISTS) else {
        return Err(DbErr::Migration(format!("not a CREATE TRIGGER IF NOT EXISTS statement: {statement}")));
    };
    let name = rest.split_whitespace().next().unwrap_or_default();
    let exists = connection
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::MySql,
            "SELECT COUNT(*) AS n FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() AND TRIGGER_NAME = ?",
            [name.into()],
        ))
        .await?
        .map(|row| row.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0)
        > 0;
    if !exists {
        connection.execute_unprepared(&format!("CREATE TRIGGER {rest}")).await?;
    }
    Ok(())
}

/// MariaDB (since 10.1.4) and MySQL from 8.0.29 accept `CREATE TRIGGER IF
/// NOT EXISTS`.
fn trigger_if_not_exists_supported(version: &str) -> bool {
    if version.contains("MariaDB") {
        return true;
    }
    let mut parts = version.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor, patch) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor, patch) >= (8, 0, 29)
}

/// MariaDB's `utf8mb4_nopad_bin`, or MySQL 8's `utf8mb4_0900_bin` (NO PAD).
async fn mysql_nopad_collation(manager: &SchemaManager<'_>) -> Result<&'static str, DbErr> {
    use sea_orm::{ConnectionTrait, Statement};
    let probe = "SELECT COUNT(*) AS n FROM information_schema.COLLATIONS WHERE COLLATION_NAME = 'utf8mb4_nopad_bin'";
    let row = manager.get_connection().query_one_raw(Statement::from_string(DbBackend::MySql, probe)).await?;
    let mariadb = row.map(|row| row.try_get::<i64>("", "n")).transpose()?.unwrap_or(0) > 0;
    Ok(if mariadb { "utf8mb4_nopad_bin" } else { "utf8mb4_0900_bin" })
}

// Identifiers are VARCHAR with a binary NO PAD collation (`{collation}`):
// byte-exact and case-sensitive, and "acme" differs from "acme " (utf8mb4_bin
// pads, which would let one workspace read another's rows). Index prefixes
// keep the target key under InnoDB's 3072 bytes.
const MYSQL: &[&str] = &[
    r#"CREATE TABLE IF NOT EXISTS governance_requests (
        workspace_id VARCHAR(255) NOT NULL,
        id BINARY(16) NOT NULL,
        state_type VARCHAR(255) NOT NULL,
        state_id VARCHAR(255) NOT NULL,
        operation VARCHAR(255) NOT NULL,
        actor_kind VARCHAR(32) NOT NULL,
        actor_id VARCHAR(255) NOT NULL,
        requested_by JSON NOT NULL,
        intent TEXT NOT NULL,
        status VARCHAR(32) NOT NULL,
        pending_reason VARCHAR(32) NULL,
        approvals JSON NOT NULL,
        expected_state_version BIGINT NULL,
        stale_strategy VARCHAR(64) NOT NULL,
        expires_at DATETIME(6) NULL,
        superseded_by BINARY(16) NULL,
        idempotency_key VARCHAR(255) NULL,
        category VARCHAR(255) NULL,
        tags JSON NOT NULL,
        metadata JSON NOT NULL,
        revision BIGINT NOT NULL,
        created_at DATETIME(6) NOT NULL,
        updated_at DATETIME(6) NOT NULL,
        creation_digest CHAR(64) NOT NULL,
        PRIMARY KEY (workspace_id, id),
        UNIQUE KEY governance_requests_idempotency (workspace_id, idempotency_key),
        KEY governance_requests_created (workspace_id, created_at, id),
        KEY governance_requests_status (workspace_id, status, created_at, id),
        KEY governance_requests_pending (workspace_id, status, pending_reason, created_at, id),
        KEY governance_requests_target (workspace_id, state_type(64), state_id(191), created_at, id),
        KEY governance_requests_expiry (workspace_id, expires_at)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}"#,
    r#"CREATE TABLE IF NOT EXISTS governance_history (
        workspace_id VARCHAR(255) NOT NULL,
        id BINARY(16) NOT NULL,
        request_id BINARY(16) NULL,
        request_revision BIGINT NULL,
        category VARCHAR(32) NOT NULL,
        code VARCHAR(255) NOT NULL,
        actor_kind VARCHAR(32) NOT NULL,
        actor_id VARCHAR(255) NOT NULL,
        actor JSON NOT NULL,
        object_type VARCHAR(255) NOT NULL,
        operation VARCHAR(255) NOT NULL,
        decision VARCHAR(16) NULL,
        outcome VARCHAR(16) NULL,
        reason TEXT NULL,
        reason_codes JSON NOT NULL,
        correlation_id VARCHAR(255) NULL,
        trace_hash VARCHAR(255) NULL,
        idempotency_key VARCHAR(255) NULL,
        policy_version VARCHAR(255) NULL,
        latency_us BIGINT NULL,
        request_json JSON NULL,
        response_json JSON NULL,
        redaction_policy VARCHAR(255) NULL,
        redaction_version VARCHAR(255) NULL,
        created_at DATETIME(6) NOT NULL,
        content_hash CHAR(64) NOT NULL,
        PRIMARY KEY (workspace_id, id),
        UNIQUE KEY governance_history_idempotency (workspace_id, idempotency_key),
        KEY governance_history_created (workspace_id, created_at, id),
        KEY governance_history_request (workspace_id, request_id, request_revision, created_at, id),
        KEY governance_history_decision (workspace_id, decision, created_at)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}"#,
    // DDL is not transactional here: re-running after a crash must work, so
    // each trigger is created unless it is there (a run that stopped between
    // statements left it whole: DDL is atomic). Creating, never dropping,
    // also keeps the guard on while a second run passes over it.
    "CREATE TRIGGER IF NOT EXISTS governance_history_no_update BEFORE UPDATE ON governance_history FOR EACH ROW
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'governance_history is append-only: UPDATE refused'",
    "CREATE TRIGGER IF NOT EXISTS governance_history_no_delete BEFORE DELETE ON governance_history FOR EACH ROW
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'governance_history is append-only: DELETE refused'",
    // TRUNCATE fires no trigger on MySQL; InnoDB refuses to truncate a table
    // that a foreign key references, so this empty table guards it.
    r#"CREATE TABLE IF NOT EXISTS governance_history_truncate_guard (
        workspace_id VARCHAR(255) NOT NULL,
        id BINARY(16) NOT NULL,
        PRIMARY KEY (workspace_id, id),
        CONSTRAINT governance_history_truncate_guard_fk FOREIGN KEY (workspace_id, id)
            REFERENCES governance_history (workspace_id, id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}"#,
];

// SQLite compares TEXT with the BINARY collation by default (byte-exact).
// Times are stored by the driver as `YYYY-MM-DD HH:MM:SS` plus a fraction of
// 0, 3, 6 or 9 digits; the date and time are fixed-width and a shorter
// fraction sorts first, so text order is time order.
const SQLITE: &[&str] = &[
    r#"CREATE TABLE IF NOT EXISTS governance_requests (
        workspace_id TEXT NOT NULL,
        id BLOB NOT NULL,
        state_type TEXT NOT NULL,
        state_id TEXT NOT NULL,
        operation TEXT NOT NULL,
        actor_kind TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        intent TEXT NOT NULL,
        status TEXT NOT NULL,
        pending_reason TEXT,
        approvals TEXT NOT NULL,
        expected_state_version INTEGER,
        stale_strategy TEXT NOT NULL,
        expires_at TEXT,
        superseded_by BLOB,
        idempotency_key TEXT,
        category TEXT,
        tags TEXT NOT NULL,
        metadata TEXT NOT NULL,
        revision INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        creation_digest TEXT NOT NULL,
        PRIMARY KEY (workspace_id, id)
    )"#,
    "CREATE UNIQUE INDEX IF NOT EXISTS governance_requests_idempotency
        ON governance_requests (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS governance_requests_created ON governance_requests (workspace_id, created_at, id)",
    "CREATE INDEX IF NOT EXISTS governance_requests_pending
        ON governance_requests (workspace_id, pending_reason, created_at, id) WHERE status = 'pending'",
    "CREATE INDEX IF NOT EXISTS governance_requests_status ON governance_requests (workspace_id, status, created_at, id)",
    "CREATE INDEX IF NOT EXISTS governance_requests_target
        ON governance_requests (workspace_id, state_type, state_id, created_at, id)",
    "CREATE INDEX IF NOT EXISTS governance_requests_expiry ON governance_requests (workspace_id, created_at, id)
        WHERE expires_at IS NOT NULL AND status IN ('created', 'pending', 'approved')",
    r#"CREATE TABLE IF NOT EXISTS governance_history (
        workspace_id TEXT NOT NULL,
        id BLOB NOT NULL,
        request_id BLOB,
        request_revision INTEGER,
        category TEXT NOT NULL,
        code TEXT NOT NULL,
        actor_kind TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        actor TEXT NOT NULL,
        object_type TEXT NOT NULL,
        operation TEXT NOT NULL,
        decision TEXT,
        outcome TEXT,
        reason TEXT,
        reason_codes TEXT NOT NULL,
        correlation_id TEXT,
        trace_hash TEXT,
        idempotency_key TEXT,
        policy_version TEXT,
        latency_us INTEGER,
        request_json TEXT,
        response_json TEXT,
        redaction_policy TEXT,
        redaction_version TEXT,
        created_at TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        PRIMARY KEY (workspace_id, id)
    )"#,
    "CREATE UNIQUE INDEX IF NOT EXISTS governance_history_idempotency
        ON governance_history (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS governance_history_created ON governance_history (workspace_id, created_at, id)",
    "CREATE INDEX IF NOT EXISTS governance_history_request
        ON governance_history (workspace_id, request_id, request_revision, created_at, id) WHERE request_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS governance_history_decision
        ON governance_history (workspace_id, decision, created_at) WHERE decision IS NOT NULL",
    "CREATE TRIGGER IF NOT EXISTS governance_history_no_update BEFORE UPDATE ON governance_history
        BEGIN SELECT RAISE(ABORT, 'governance_history is append-only: UPDATE refused'); END",
    "CREATE TRIGGER IF NOT EXISTS governance_history_no_delete BEFORE DELETE ON governance_history
        BEGIN SELECT RAISE(ABORT, 'governance_history is append-only: DELETE refused'); END",
];

// Hashes are 64 hex digits, as `content_hash` in the history table.
const MYSQL_INTEGRITY: &[&str] = &[
    r#"CREATE TABLE IF NOT EXISTS governance_checkpoints (
        workspace_id VARCHAR(255) NOT NULL,
        seq BIGINT NOT NULL,
        first_index BIGINT NOT NULL,
        record_count BIGINT NOT NULL,
        root CHAR(64) NOT NULL,
        previous CHAR(64) NULL,
        created_at DATETIME(6) NOT NULL,
        digest CHAR(64) NOT NULL,
        PRIMARY KEY (workspace_id, seq)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}"#,
    r#"CREATE TABLE IF NOT EXISTS governance_seals (
        workspace_id VARCHAR(255) NOT NULL,
        leaf_index BIGINT NOT NULL,
        record_id BINARY(16) NOT NULL,
        content_hash CHAR(64) NOT NULL,
        checkpoint_seq BIGINT NOT NULL,
        PRIMARY KEY (workspace_id, leaf_index),
        UNIQUE KEY governance_seals_record (workspace_id, record_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}"#,
    "CREATE TRIGGER IF NOT EXISTS governance_checkpoints_no_update BEFORE UPDATE ON governance_checkpoints FOR EACH ROW
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'governance_checkpoints is append-only: UPDATE refused'",
    "CREATE TRIGGER IF NOT EXISTS governance_checkpoints_no_delete BEFORE DELETE ON governance_checkpoints FOR EACH ROW
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'governance_checkpoints is append-only: DELETE refused'",
    "CREATE TRIGGER IF NOT EXISTS governance_seals_no_update BEFORE UPDATE ON governance_seals FOR EACH ROW
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'governance_seals is append-only: UPDATE refused'",
    "CREATE TRIGGER IF NOT EXISTS governance_seals_no_delete BEFORE DELETE ON governance_seals FOR EACH ROW
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'governance_seals is append-only: DELETE refused'",
    // The history table's TRUNCATE guard, once per table.
    r#"CREATE TABLE IF NOT EXISTS governance_checkpoints_truncate_guard (
        workspace_id VARCHAR(255) NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (workspace_id, seq),
        CONSTRAINT governance_checkpoints_truncate_guard_fk FOREIGN KEY (workspace_id, seq)
            REFERENCES governance_checkpoints (workspace_id, seq)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}"#,
    r#"CREATE TABLE IF NOT EXISTS governance_seals_truncate_guard (
        workspace_id VARCHAR(255) NOT NULL,
        leaf_index BIGINT NOT NULL,
        PRIMARY KEY (workspace_id, leaf_index),
        CONSTRAINT governance_seals_truncate_guard_fk FOREIGN KEY (workspace_id, leaf_index)
            REFERENCES governance_seals (workspace_id, leaf_index)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={collation}"#,
];

// `INSERT OR REPLACE` deletes the row it replaces, so with
// `recursive_triggers` on it hits the DELETE trigger, as for history rows.
const SQLITE_INTEGRITY: &[&str] = &[
    r#"CREATE TABLE IF NOT EXISTS governance_checkpoints (
        workspace_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        first_index INTEGER NOT NULL,
        record_count INTEGER NOT NULL,
        root TEXT NOT NULL,
        previous TEXT,
        created_at TEXT NOT NULL,
        digest TEXT NOT NULL,
        PRIMARY KEY (workspace_id, seq)
    )"#,
    r#"CREATE TABLE IF NOT EXISTS governance_seals (
        workspace_id TEXT NOT NULL,
        leaf_index INTEGER NOT NULL,
        record_id BLOB NOT NULL,
        content_hash TEXT NOT NULL,
        checkpoint_seq INTEGER NOT NULL,
        PRIMARY KEY (workspace_id, leaf_index),
        UNIQUE (workspace_id, record_id)
    )"#,
    "CREATE TRIGGER IF NOT EXISTS governance_checkpoints_no_update BEFORE UPDATE ON governance_checkpoints
        BEGIN SELECT RAISE(ABORT, 'governance_checkpoints is append-only: UPDATE refused'); END",
    "CREATE TRIGGER IF NOT EXISTS governance_checkpoints_no_delete BEFORE DELETE ON governance_checkpoints
        BEGIN SELECT RAISE(ABORT, 'governance_checkpoints is append-only: DELETE refused'); END",
    "CREATE TRIGGER IF NOT EXISTS governance_seals_no_update BEFORE UPDATE ON governance_seals
        BEGIN SELECT RAISE(ABORT, 'governance_seals is append-only: UPDATE refused'); END",
    "CREATE TRIGGER IF NOT EXISTS governance_seals_no_delete BEFORE DELETE ON governance_seals
        BEGIN SELECT RAISE(ABORT, 'governance_seals is append-only: DELETE refused'); END",
];

// A hash of 64 hex digits, as `creation_digest`, in the binary NO PAD
// collation of every other text column.
const MYSQL_STATE_DIGEST: &[&str] =
    &["ALTER TABLE governance_requests ADD COLUMN state_digest CHAR(64) COLLATE {collation} NULL"];

const SQLITE_STATE_DIGEST: &[&str] = &["ALTER TABLE governance_requests ADD COLUMN state_digest TEXT"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_if_not_exists_by_server_version() {
        assert!(trigger_if_not_exists_supported("10.11.19-MariaDB-0+deb12u1"));
        assert!(trigger_if_not_exists_supported("11.4.2-MariaDB"));
        assert!(trigger_if_not_exists_supported("8.0.29"));
        assert!(trigger_if_not_exists_supported("8.4.0"));
        assert!(trigger_if_not_exists_supported("9.1.0-commercial"));
        assert!(!trigger_if_not_exists_supported("8.0.28"));
        assert!(!trigger_if_not_exists_supported("5.7.44-log"));
    }

    #[test]
    fn mysql_triggers_are_created_once_never_dropped() {
        for statement in MYSQL.iter().chain(MYSQL_INTEGRITY) {
            assert!(!statement.contains("DROP TRIGGER"), "{statement}");
            if statement.contains("CREATE TRIGGER") {
                assert!(statement.starts_with(CREATE_TRIGGER_IF_NOT_EXISTS), "{statement}");
            }
        }
    }
}
