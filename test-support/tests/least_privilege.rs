//! The application role cannot rewrite what it may only append.
//!
//! On PostgreSQL (both providers' schemas) and MySQL/MariaDB, a database is
//! migrated by its owner and its application login granted with the
//! provider's own `grant_application_role`, exactly as the conformance
//! suite runs. Then, connected as that login like an attacker holding the
//! application's credentials, every way to change or remove stored history,
//! checkpoints and seal entries (and request columns fixed at creation) is
//! tried, and each must be refused by the server with a privilege error
//! (or the append-only guard). Each refused statement is first shown to be
//! valid: the owner runs it in a transaction that is rolled back (on MySQL,
//! where DDL cannot roll back, only the DML). Afterwards every row reads
//! back unchanged and verification is clean.
//!
//! On SQLite there are no roles: every replace form is refused on each
//! connection the provider opens.

use std::sync::Arc;

use audit_history::{Sealer, verify};
use conformance_tests::random_workspace;
use governance_abstractions::provider::TRANSITION_COLUMNS;
use governance_abstractions::{
    Action, Actor, Checkpoint, Decision, Evidence, GovernanceError, GovernanceRequest, GovernanceService,
    GovernanceStore, HistoryFilter, HistoryRecord, IntegrityStore, NewRequest, PageRequest, SealedRecord, TargetRef,
    Timestamp, ValidationProblem, WorkspaceId,
};
use governance_postgres::PostgresStore;
use governance_seaorm::sea_orm::sqlx::{self, AssertSqlSafe, Connection, MySqlConnection, PgConnection, Row};
use governance_seaorm::sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use governance_seaorm::{ApplicationRole, RoleGrants, SeaOrmStore};
use governance_test_support::{RoleSplit, Server, postgres_role_split, seaorm_role_split, setup_fails};

/// The insert-only tables, each with a text column to rewrite, its MySQL
/// type, and its primary key.
const INSERT_ONLY: [(&str, &str, &str, &str); 3] = [
    ("governance_history", "reason", "TEXT NULL", "workspace_id, id"),
    ("governance_checkpoints", "root", "CHAR(64) NOT NULL", "workspace_id, seq"),
    ("governance_seals", "content_hash", "CHAR(64) NOT NULL", "workspace_id, leaf_index"),
];

const REQUESTS: &str = "governance_requests";

// ---------------------------------------------------------------- setup

/// A role split, or `None` (with a notice) when the server is not
/// configured and not required.
fn available(split: Result<RoleSplit, conformance_tests::SetupError>, what: &str) -> Option<RoleSplit> {
    match split {
        Ok(split) => Some(split),
        Err(why) if !setup_fails(&why) => {
            eprintln!("skipped: {what}: {why}");
            None
        }
        Err(why) => panic!("{what} required: {why}"),
    }
}

/// What the store holds for a workspace, read back through the store.
#[derive(Debug, PartialEq)]
struct Snapshot {
    request: GovernanceRequest,
    history: Vec<HistoryRecord>,
    checkpoints: Vec<Checkpoint>,
    sealed: Vec<SealedRecord>,
}

async fn snapshot(store: &Arc<dyn GovernanceStore>, ws: &WorkspaceId, request: &GovernanceRequest) -> Snapshot {
    Snapshot {
        request: store.get_request(ws, request.id()).await.expect("request reads"),
        history: store.query_history(ws, &HistoryFilter::default(), &PageRequest::all()).await.expect("history").items,
        checkpoints: store.checkpoints(ws, 0, 100).await.expect("checkpoints"),
        sealed: store.sealed_records(ws, 0, 100).await.expect("seals"),
    }
}

/// Through the store (as the application role): a request created with an
/// idempotency key and approved, a decision record with a key, all sealed.
/// Every kind of row the insert-only tables hold exists afterwards.
async fn seed(store: &Arc<dyn GovernanceStore>, ws: &WorkspaceId) -> (GovernanceRequest, Snapshot) {
    let service = GovernanceService::new(Arc::clone(store));
    let spec = NewRequest::new(ws.clone(), TargetRef::new("flag", "beta"), "enable", Actor::user("dev"))
        .idempotency_key("request-1");
    let created = service.create(spec).await.expect("the role creates requests").into_inner();
    service.apply(ws, created.id(), &Actor::user("ops").into(), Action::Approve).await.expect("and transitions them");
    let evidence = Evidence::decision(ws.clone(), Actor::user("alice"), "invoice", "create", Decision::Denied)
        .idempotency_key("evidence-1");
    let record = HistoryRecord::new(evidence, Timestamp::now()).expect("a valid record");
    store.append_history(&[record]).await.expect("and appends evidence");
    let integrity: Arc<dyn IntegrityStore> = Arc::clone(store) as Arc<dyn IntegrityStore>;
    let report = Sealer::new(integrity).seal(ws).await.expect("and seals");
    assert!(!report.checkpoints.is_empty(), "a checkpoint was written");
    let request = store.get_request(ws, created.id()).await.expect("reads");
    let before = snapshot(store, ws, &request).await;
    assert!(before.history.len() >= 3 && !before.sealed.is_empty(), "{before:?}");
    (request, before)
}

async fn unchanged(store: &Arc<dyn GovernanceStore>, ws: &WorkspaceId, request: &GovernanceRequest, before: &Snapshot) {
    assert_eq!(&snapshot(store, ws, request).await, before, "every row reads back unchanged");
    let verification = verify(store.as_ref(), ws, None).await.expect("verifies");
    assert!(verification.is_clean(), "verification is clean: {verification:?}");
}

/// One statement the application role must not be able to run.
struct Attack {
    sql: String,
    /// DDL: on MySQL it commits on its own, so the owner cannot try it.
    ddl: bool,
}

fn dml(sql: impl Into<String>) -> Attack {
    Attack { sql: sql.into(), ddl: false }
}

fn ddl(sql: impl Into<String>) -> Attack {
    Attack { sql: sql.into(), ddl: true }
}

/// MySQL/MariaDB only: the counter a supersession writes on its successor
/// (so a multi-primary cluster certifies that row); it carries no meaning,
/// and the application role may update it.
const SUCCESSOR_GUARD: &str = "successor_guard";

/// The request columns a transition never writes.
fn frozen(columns: &[String]) -> Vec<&str> {
    let frozen: Vec<&str> = columns
        .iter()
        .map(String::as_str)
        .filter(|column| !TRANSITION_COLUMNS.contains(column) && *column != SUCCESSOR_GUARD)
        .collect();
    for column in ["workspace_id", "id", "intent", "requested_by", "created_at", "creation_digest"] {
        assert!(frozen.contains(&column), "{column} is frozen: {frozen:?}");
    }
    frozen
}

// ----------------------------------------------------------- PostgreSQL

/// The SQLSTATE of a refused statement (`None`: it ran).
async fn postgres_try(conn: &mut PgConnection, sql: &str) -> Option<String> {
    match sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(&mut *conn).await {
        Ok(_) => None,
        Err(error) => {
            Some(error.as_database_error().and_then(|e| e.code()).map_or_else(|| error.to_string(), |c| c.into()))
        }
    }
}

async fn postgres_names(conn: &mut PgConnection, sql: &str) -> Vec<String> {
    let rows = sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).fetch_all(&mut *conn).await.expect("catalog reads");
    rows.iter().map(|row| row.try_get::<String, _>(0).expect("a name")).collect()
}

async fn postgres_attacks(owner: &mut PgConnection, ws: &WorkspaceId) -> Vec<Attack> {
    let ws = ws.as_str();
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(&mut *owner)
        .await
        .expect("version");
    let mut attacks = Vec::new();
    for (table, column, _, key) in INSERT_ONLY {
        let only = format!("WHERE workspace_id = '{ws}'");
        let on = key.split(", ").map(|k| format!("t.{k} = s.{k}")).collect::<Vec<_>>().join(" AND ");
        attacks.extend([
            dml(format!("UPDATE {table} SET {column} = 'rewritten' {only}")),
            dml(format!("DELETE FROM {table} {only}")),
            dml(format!("TRUNCATE {table}")),
            dml(format!("TRUNCATE {table} CASCADE")),
            dml(format!(
                "INSERT INTO {table} SELECT * FROM {table} {only} ON CONFLICT ({key}) DO UPDATE SET {column} = 'rewritten'"
            )),
            ddl(format!("ALTER TABLE {table} ALTER COLUMN {column} TYPE text USING 'rewritten'")),
            ddl(format!("ALTER TABLE {table} DISABLE TRIGGER USER")),
            ddl(format!("ALTER TABLE {table} DISABLE TRIGGER ALL")),
            ddl(format!("ALTER TABLE {table} RENAME TO {table}_old")),
            ddl(format!("DROP TABLE {table}")),
            ddl(format!("DROP TABLE {table} CASCADE")),
        ]);
        if version >= 150_000 {
            attacks.extend([
                dml(format!(
                    "MERGE INTO {table} t USING (SELECT * FROM {table} {only}) s ON {on} WHEN MATCHED THEN DELETE"
                )),
                dml(format!(
                    "MERGE INTO {table} t USING (SELECT * FROM {table} {only}) s ON {on} \
                     WHEN MATCHED THEN UPDATE SET {column} = 'rewritten'"
                )),
            ]);
        }
        let triggers =
            format!("SELECT tgname::text FROM pg_trigger WHERE tgrelid = '{table}'::regclass AND NOT tgisinternal");
        let triggers = postgres_names(owner, &triggers).await;
        assert!(triggers.len() >= 2, "{table} is guarded by triggers: {triggers:?}");
        for trigger in triggers {
            attacks.push(ddl(format!("DROP TRIGGER {trigger} ON {table}")));
            attacks.push(ddl(format!("ALTER TABLE {table} DISABLE TRIGGER {trigger}")));
        }
    }
    let columns = postgres_names(
        owner,
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = 'governance_requests' ORDER BY ordinal_position",
    )
    .await;
    let only = format!("WHERE workspace_id = '{ws}'");
    attacks.push(dml(format!("UPDATE {REQUESTS} SET intent = 'rewritten' {only}")));
    for column in frozen(&columns) {
        attacks.push(dml(format!("UPDATE {REQUESTS} SET {column} = {column} {only}")));
    }
    attacks.extend([
        dml(format!("DELETE FROM {REQUESTS} {only}")),
        dml(format!("TRUNCATE {REQUESTS}")),
        dml(format!(
            "INSERT INTO {REQUESTS} SELECT * FROM {REQUESTS} {only} \
             ON CONFLICT (workspace_id, id) DO UPDATE SET intent = 'rewritten'"
        )),
        ddl(format!("ALTER TABLE {REQUESTS} ALTER COLUMN intent TYPE text USING 'rewritten'")),
        ddl(format!("DROP TABLE {REQUESTS} CASCADE")),
    ]);
    // The derived counts: read-only for the role (the roll-up writes them
    // as the owner), so a count cannot be forged either.
    attacks.extend([
        dml(format!("INSERT INTO governance_history_counts VALUES ('{ws}', 'operation', 'denied', 0, 'forged', 1)")),
        dml(format!("UPDATE governance_history_counts SET n = n + 1 {only}")),
        dml(format!("DELETE FROM governance_history_counts {only}")),
        dml("TRUNCATE governance_history_counts".to_owned()),
        dml(format!(
            "INSERT INTO governance_history_daily_counts VALUES ('{ws}', 'operation', 'denied', 0, 'forged', 1)"
        )),
        dml(format!("UPDATE governance_history_daily_counts SET n = n + 1 {only}")),
        dml(format!("DELETE FROM governance_history_daily_counts {only}")),
        dml("TRUNCATE governance_history_daily_counts".to_owned()),
        dml(format!("INSERT INTO governance_count_rollups VALUES ('{ws}-forged', '0', NULL, NULL)")),
        dml(format!("UPDATE governance_count_rollups SET through_tx = '0' {only}")),
        dml(format!("DELETE FROM governance_count_rollups {only}")),
        ddl("DROP FUNCTION governance_roll_up_counts(text)".to_owned()),
        ddl("ALTER FUNCTION governance_roll_up_counts(text) SECURITY INVOKER".to_owned()),
        ddl("ALTER FUNCTION governance_roll_up_counts(text) SET search_path = pg_temp".to_owned()),
    ]);
    attacks
}

/// Every attack refused for the application role on a PostgreSQL database
/// of either provider.
async fn postgres_refuses(split: &RoleSplit, store: Arc<dyn GovernanceStore>) {
    let ws = random_workspace();
    let (request, before) = seed(&store, &ws).await;
    let mut owner = PgConnection::connect(split.owner_url()).await.expect("owner connects");
    let mut app = PgConnection::connect(split.application_url()).await.expect("application role connects");
    let attacks = postgres_attacks(&mut owner, &ws).await;

    // Valid statements: the owner can run each (or meets the append-only
    // guard, 55000); nothing it does is kept.
    for attack in &attacks {
        let mut txn = owner.begin().await.expect("begin");
        let outcome = postgres_try(&mut txn, &attack.sql).await;
        txn.rollback().await.expect("rollback");
        assert!(matches!(outcome.as_deref(), None | Some("55000")), "the owner's {}: {outcome:?}", attack.sql);
    }

    // The application role: refused by privilege (42501), also after trying
    // to skip ordinary triggers with the replica role (itself refused).
    for replica in [false, true] {
        if replica {
            let set = postgres_try(&mut app, "SET session_replication_role = replica").await;
            assert_eq!(set.as_deref(), Some("42501"), "the application role cannot set the replica role");
        }
        for attack in &attacks {
            let outcome = postgres_try(&mut app, &attack.sql).await;
            assert_eq!(outcome.as_deref(), Some("42501"), "{} (replica tried: {replica})", attack.sql);
        }
    }
    // What the role may do still works on that connection.
    for allowed in [
        format!("UPDATE {REQUESTS} SET status = status, revision = revision WHERE false"),
        format!("SELECT count(*) FROM {REQUESTS}, governance_history, governance_checkpoints, governance_seals"),
        "SELECT pg_snapshot_xmin(pg_current_snapshot())".to_owned(),
    ] {
        assert_eq!(postgres_try(&mut app, &allowed).await, None, "{allowed}");
    }
    let _ = app.close().await;
    let _ = owner.close().await;
    unchanged(&store, &ws, &request, &before).await;
}

#[tokio::test]
async fn postgres_application_role_cannot_rewrite_history() {
    let Some(split) = available(postgres_role_split().await, "PostgreSQL") else { return };
    let store = PostgresStore::connect(split.application_url()).await.expect("the application role connects");
    // The commit-safe feed works for the role too (reads only).
    let ws = random_workspace();
    let feed = store.history_feed(&ws, &governance_postgres::FeedCursor::start(), 10).await.expect("feed reads");
    assert!(feed.records.is_empty());
    // So does the roll-up of the hourly counts, which writes them as the owner.
    assert_eq!(store.roll_up_counts(&ws).await.expect("the role may roll up"), 0);
    let roll_up = async |ws: WorkspaceId| store.roll_up_counts(&ws).await;
    counts_what_it_rolled_up(&store, roll_up).await;
    postgres_refuses(&split, Arc::new(store)).await;
}

/// The role rolls up the counts and reads them: a count over whole days
/// and hours reads the hourly and daily tables (`SELECT` granted), and
/// answers what the records say.
async fn counts_what_it_rolled_up<S, F>(store: &S, roll_up: F)
where
    S: GovernanceStore,
    F: AsyncFn(WorkspaceId) -> governance_abstractions::Result<u64>,
{
    use governance_abstractions::{CountBy, CountQuery, TimeRange};
    let ws = random_workspace();
    let hour = 3_600_000_000;
    let records: Vec<HistoryRecord> = (0..6)
        .map(|i| {
            let evidence = Evidence::decision(ws.clone(), Actor::user("u"), "invoice", "export", Decision::Denied);
            let at = Timestamp::now().add_micros(-(i * 9 * hour + 1)).expect("in range");
            HistoryRecord::new(evidence, at).expect("valid")
        })
        .collect();
    store.append_history(&records).await.expect("the role appends");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut folded = 0;
    while folded < 6 {
        folded += roll_up(ws.clone()).await.expect("the role may roll up");
        assert!(std::time::Instant::now() < deadline, "{folded} of 6 folded");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let week = TimeRange { from: Timestamp::now().add_micros(-7 * 24 * hour), until: None };
    let counts = store.count_history(&ws, &CountQuery::new(CountBy::Operation, week)).await.expect("the role counts");
    assert_eq!(counts.iter().map(|c| (c.key.as_str(), c.count)).collect::<Vec<_>>(), [("export", 6)]);
}

#[tokio::test]
async fn seaorm_postgres_application_role_cannot_rewrite_history() {
    let Some(split) = available(seaorm_role_split(Server::Postgres).await, "PostgreSQL") else { return };
    let store = SeaOrmStore::connect(split.application_url()).await.expect("the application role connects");
    let roll_up = async |ws: WorkspaceId| store.roll_up_counts(&ws).await;
    counts_what_it_rolled_up(&store, roll_up).await;
    postgres_refuses(&split, Arc::new(store)).await;
}

/// The grant function refuses roles that grants cannot hold, and makes a
/// role that held more hold exactly the grants.
#[tokio::test]
async fn postgres_grants_are_exact() {
    let Some(split) = available(postgres_role_split().await, "PostgreSQL") else { return };
    let owner = PostgresStore::connect(split.owner_url()).await.expect("owner connects");
    let role = split.login().name();
    let is = |result: Result<(), GovernanceError>, expected: fn(&ValidationProblem) -> bool| match result {
        Err(GovernanceError::Validation { field, problem }) if field == "role" && expected(&problem) => {}
        other => panic!("expected a refusal of the role, got {other:?}"),
    };
    let current: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(owner.pool()).await.unwrap();
    is(owner.grant_application_role(&current).await, |p| matches!(p, ValidationProblem::Inconsistent(_)));
    is(owner.grant_application_role("no_such_role_here").await, |p| matches!(p, ValidationProblem::UnknownValue));
    is(owner.grant_application_role("").await, |p| matches!(p, ValidationProblem::Empty));
    let quoted = format!("\"{role}\"");

    // Leftovers from hand-written grants are revoked by a re-run.
    let extra = format!("GRANT DELETE, TRUNCATE, UPDATE ON governance_history, governance_requests TO {quoted}");
    sqlx::raw_sql(AssertSqlSafe(extra)).execute(owner.pool()).await.unwrap();
    owner.grant_application_role(role).await.expect("re-runs");
    let held = |table: &str, privilege: &str| {
        let sql = "SELECT has_table_privilege($1::name, $2::text, $3::text)";
        sqlx::query_scalar::<_, bool>(sql).bind(role.to_owned()).bind(table.to_owned()).bind(privilege.to_owned())
    };
    for (table, privilege) in
        [("governance_history", "DELETE"), ("governance_history", "UPDATE"), (REQUESTS, "TRUNCATE")]
    {
        assert!(!held(table, privilege).fetch_one(owner.pool()).await.unwrap(), "{privilege} on {table} revoked");
    }
    assert!(held(REQUESTS, "SELECT").fetch_one(owner.pool()).await.unwrap(), "SELECT kept");
    let execute = "SELECT has_function_privilege($1::name, 'governance_roll_up_counts(text)', 'EXECUTE')";
    let may_roll_up = |who: &str| sqlx::query_scalar::<_, bool>(execute).bind(who.to_owned());
    assert!(may_roll_up(role).fetch_one(owner.pool()).await.unwrap(), "the role may roll up");
    assert!(!may_roll_up("public").fetch_one(owner.pool()).await.unwrap(), "PUBLIC may not");

    // A privilege through PUBLIC cannot be revoked from the role: refused,
    // and the run changes nothing.
    sqlx::query("GRANT DELETE ON governance_seals TO PUBLIC").execute(owner.pool()).await.unwrap();
    is(owner.grant_application_role(role).await, |p| matches!(p, ValidationProblem::Inconsistent(_)));
    sqlx::query("REVOKE DELETE ON governance_seals FROM PUBLIC").execute(owner.pool()).await.unwrap();
    owner.grant_application_role(role).await.expect("grants once PUBLIC holds nothing");

    refuses_whoever_can_recreate_the_tables(&split, async || owner.grant_application_role(role).await).await;
    owner.pool().close().await;
}

/// SeaORM on PostgreSQL: the same refusals of roles that could drop and
/// recreate the tables.
#[tokio::test]
async fn seaorm_postgres_refuses_roles_that_can_recreate_the_tables() {
    let Some(split) = available(seaorm_role_split(Server::Postgres).await, "PostgreSQL") else { return };
    let owner = SeaOrmStore::connect(split.owner_url()).await.expect("owner connects");
    let role = ApplicationRole::new(split.login().name()).unwrap();
    let grant = async || owner.grant_application_role(&role).await.map(drop);
    refuses_whoever_can_recreate_the_tables(&split, grant).await;
    let _ = owner.connection().clone().close().await;
}

/// The login is refused, nothing granted, while it owns the database
/// (since PostgreSQL 15 the owner of `public` through `pg_database_owner`),
/// owns the tables' schema, or has CREATE on it; and granted again once it
/// does not. `grant` runs the provider's grant function for the login.
async fn refuses_whoever_can_recreate_the_tables(
    split: &RoleSplit,
    grant: impl AsyncFn() -> Result<(), GovernanceError>,
) {
    let mut owner = PgConnection::connect(split.owner_url()).await.expect("owner connects");
    let role = format!("\"{}\"", split.login().name().replace('"', "\"\""));
    let (database, database_owner, schema, schema_owner): (String, String, String, String) = sqlx::query_as(
        "SELECT current_database()::text, pg_get_userbyid(d.datdba)::text, n.nspname::text, \
         n.nspowner::regrole::text FROM pg_database d, pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE d.datname = current_database() AND c.oid = to_regclass('governance_requests')",
    )
    .fetch_one(&mut owner)
    .await
    .expect("catalog reads");
    let (database, schema) = (format!("\"{database}\""), format!("\"{schema}\""));
    let cases = [
        (
            "owns the database",
            format!("ALTER DATABASE {database} OWNER TO {role}"),
            format!("ALTER DATABASE {database} OWNER TO \"{database_owner}\""),
        ),
        (
            "owns the schema",
            format!("ALTER SCHEMA {schema} OWNER TO {role}"),
            format!("ALTER SCHEMA {schema} OWNER TO {schema_owner}"),
        ),
        (
            "has CREATE on the schema",
            format!("GRANT CREATE ON SCHEMA {schema} TO {role}"),
            format!("REVOKE CREATE ON SCHEMA {schema} FROM {role}"),
        ),
    ];
    for (what, make, undo) in cases {
        sqlx::raw_sql(AssertSqlSafe(make.clone())).execute(&mut owner).await.expect(&make);
        let refused = grant().await;
        sqlx::raw_sql(AssertSqlSafe(undo.clone())).execute(&mut owner).await.expect(&undo);
        assert!(
            matches!(
                &refused,
                Err(GovernanceError::Validation { field, problem: ValidationProblem::Inconsistent(_) }) if field == "role"
            ),
            "a login that {what} is refused: {refused:?}"
        );
        grant().await.unwrap_or_else(|e| panic!("granted again once it no longer {what}: {e:?}"));
    }
    let _ = owner.close().await;
}

// -------------------------------------------------------- MySQL/MariaDB

/// The server's error number of a refused statement (`None`: it ran).
async fn mysql_try(conn: &mut MySqlConnection, sql: &str) -> Option<u16> {
    match sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(&mut *conn).await {
        Ok(_) => None,
        Err(error) => Some(
            error
                .as_database_error()
                .and_then(|e| e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
                .map_or(0, |e| e.number()),
        ),
    }
}

async fn mysql_names(conn: &mut MySqlConnection, sql: &str) -> Vec<String> {
    let rows = sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).fetch_all(&mut *conn).await.expect("catalog reads");
    rows.iter().map(|row| row.try_get::<String, _>(0).expect("a name")).collect()
}

/// Denied by privileges: table (1142) or column (1143).
const MYSQL_DENIED: [u16; 2] = [1142, 1143];
/// A trigger's SIGNAL (the append-only and frozen-column guards).
const MYSQL_GUARD: u16 = 1644;

#[tokio::test]
async fn seaorm_mysql_application_role_cannot_rewrite_history() {
    let Some(split) = available(seaorm_role_split(Server::MySql).await, "MySQL") else { return };
    let store: Arc<dyn GovernanceStore> =
        Arc::new(SeaOrmStore::connect(split.application_url()).await.expect("the application role connects"));
    let ws = random_workspace();
    let (request, before) = seed(&store, &ws).await;
    let mut owner = MySqlConnection::connect(split.owner_url()).await.expect("owner connects");
    let mut app = MySqlConnection::connect(split.application_url()).await.expect("application role connects");
    let only = format!("WHERE workspace_id = '{}'", ws.as_str());

    // (statement, also refused after foreign_key_checks = 0, DDL)
    let mut attacks: Vec<Attack> = Vec::new();
    for (table, column, kind, _) in INSERT_ONLY {
        attacks.extend([
            dml(format!("UPDATE {table} SET {column} = 'rewritten' {only}")),
            dml(format!("DELETE FROM {table} {only}")),
            dml(format!("REPLACE INTO {table} SELECT * FROM {table} {only}")),
            dml(format!(
                "INSERT INTO {table} SELECT * FROM {table} {only} ON DUPLICATE KEY UPDATE {column} = 'rewritten'"
            )),
            ddl(format!("TRUNCATE TABLE {table}")),
            ddl(format!("ALTER TABLE {table} MODIFY COLUMN {column} {kind}")),
            ddl(format!("ALTER TABLE {table} DROP COLUMN {column}")),
            ddl(format!("RENAME TABLE {table} TO {table}_old")),
            ddl(format!("DROP TABLE {table}")),
        ]);
        let triggers = format!(
            "SELECT CAST(TRIGGER_NAME AS CHAR) FROM information_schema.TRIGGERS \
             WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = '{table}'"
        );
        let triggers = mysql_names(&mut owner, &triggers).await;
        assert_eq!(triggers.len(), 2, "{table} is guarded by triggers: {triggers:?}");
        for trigger in triggers {
            attacks.push(ddl(format!("DROP TRIGGER {trigger}")));
        }
    }
    let columns = mysql_names(
        &mut owner,
        "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'governance_requests' ORDER BY ORDINAL_POSITION",
    )
    .await;
    attacks.push(dml(format!("UPDATE {REQUESTS} SET intent = 'rewritten' {only}")));
    for column in frozen(&columns) {
        attacks.push(dml(format!("UPDATE {REQUESTS} SET {column} = {column} {only}")));
    }
    attacks.extend([
        dml(format!("DELETE FROM {REQUESTS} {only}")),
        dml(format!("REPLACE INTO {REQUESTS} SELECT * FROM {REQUESTS} {only}")),
        ddl(format!("TRUNCATE TABLE {REQUESTS}")),
        ddl(format!("ALTER TABLE {REQUESTS} MODIFY COLUMN intent TEXT NOT NULL")),
        ddl(format!("DROP TABLE {REQUESTS}")),
    ]);
    // MariaDB checks the columns of ON DUPLICATE KEY UPDATE by table only:
    // there the frozen-column trigger refuses, as it refuses the owner.
    let rewrites =
        ["intent = 'rewritten'", "workspace_id = 'another'", "creation_digest = 'forged'", "actor_id = 'eve'"];
    let upserts: Vec<Attack> = rewrites
        .iter()
        .map(|set| dml(format!("INSERT INTO {REQUESTS} SELECT * FROM {REQUESTS} {only} ON DUPLICATE KEY UPDATE {set}")))
        .collect();

    // Valid statements: the owner can run each DML statement (or meets a
    // guard) in a transaction rolled back; TRUNCATE meets the foreign-key guard.
    for attack in attacks.iter().chain(&upserts).filter(|a| !a.ddl) {
        assert_eq!(mysql_try(&mut owner, "START TRANSACTION").await, None, "begin");
        let outcome = mysql_try(&mut owner, &attack.sql).await;
        assert_eq!(mysql_try(&mut owner, "ROLLBACK").await, None, "rollback");
        assert!(matches!(outcome, None | Some(MYSQL_GUARD)), "the owner's {}: {outcome:?}", attack.sql);
    }
    for (table, ..) in INSERT_ONLY {
        assert_eq!(mysql_try(&mut owner, &format!("TRUNCATE TABLE {table}")).await, Some(1701), "owner: {table}");
    }

    for no_foreign_key_checks in [false, true] {
        if no_foreign_key_checks {
            assert_eq!(mysql_try(&mut app, "SET foreign_key_checks = 0").await, None, "any session may set it");
        }
        for attack in &attacks {
            let outcome = mysql_try(&mut app, &attack.sql).await;
            assert!(
                outcome.is_some_and(|n| MYSQL_DENIED.contains(&n)),
                "{} (foreign_key_checks = 0: {no_foreign_key_checks}): {outcome:?}",
                attack.sql
            );
        }
        for attack in &upserts {
            let outcome = mysql_try(&mut app, &attack.sql).await;
            assert!(
                outcome.is_some_and(|n| MYSQL_DENIED.contains(&n) || n == MYSQL_GUARD),
                "{}: {outcome:?}",
                attack.sql
            );
        }
    }
    for allowed in [
        format!("UPDATE {REQUESTS} SET status = status, revision = revision WHERE 1 = 0"),
        format!("SELECT COUNT(*) FROM {REQUESTS}, governance_history, governance_checkpoints, governance_seals"),
    ] {
        assert_eq!(mysql_try(&mut app, &allowed).await, None, "{allowed}");
    }
    let _ = app.close().await;
    let _ = owner.close().await;
    unchanged(&store, &ws, &request, &before).await;
}

/// MySQL/MariaDB: a re-run revokes leftovers; broader privileges are refused.
#[tokio::test]
async fn seaorm_mysql_grants_are_exact() {
    let Some(split) = available(seaorm_role_split(Server::MySql).await, "MySQL") else { return };
    let owner = SeaOrmStore::connect(split.owner_url()).await.expect("owner connects");
    let login = split.login();
    let host = login.host().expect("an account has a host");
    let role = ApplicationRole::account(login.name(), host).unwrap();
    let account = format!("`{}`@`{host}`", login.name());
    let run = |sql: String| {
        let db = owner.connection().clone();
        async move { db.execute_unprepared(&sql).await.map(drop).map_err(|e| e.to_string()) }
    };
    let database = owner
        .connection()
        .query_one_raw(Statement::from_string(DbBackend::MySql, "SELECT DATABASE() AS db"))
        .await
        .unwrap()
        .and_then(|row| row.try_get::<String>("", "db").ok())
        .unwrap();
    let refused = |result: Result<RoleGrants, GovernanceError>| {
        assert!(
            matches!(result, Err(GovernanceError::Validation { ref field, problem: ValidationProblem::Inconsistent(_) }) if field == "role"),
            "{result:?}"
        )
    };
    // Leftovers on the tables, table-wide and by column, UPDATE of the
    // whole request table and of frozen columns among them: all revoked.
    run(format!("GRANT DELETE, DROP, ALTER, UPDATE ON `{database}`.`governance_history` TO {account}")).await.unwrap();
    run(format!("GRANT UPDATE ON `{database}`.`{REQUESTS}` TO {account}")).await.unwrap();
    run(format!("GRANT UPDATE (`intent`), REFERENCES (`actor_id`) ON `{database}`.`{REQUESTS}` TO {account}"))
        .await
        .unwrap();
    run(format!("GRANT UPDATE (`reason`) ON `{database}`.`governance_history` TO {account}")).await.unwrap();
    assert!(matches!(owner.grant_application_role(&role).await, Ok(RoleGrants::Granted(_))), "grants");
    let grants: Vec<String> = owner
        .connection()
        .query_all_raw(Statement::from_string(DbBackend::MySql, format!("SHOW GRANTS FOR {account}")))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect();
    let history = grants.iter().find(|g| g.contains("`governance_history`")).expect("history grant");
    assert!(history.starts_with("GRANT SELECT, INSERT ON"), "only SELECT, INSERT left: {history}");
    let requests = grants.iter().find(|g| g.contains(&format!("`{REQUESTS}`"))).expect("request grant");
    // SHOW GRANTS lists the columns in no particular order.
    let granted = requests.strip_prefix("GRANT SELECT, INSERT, UPDATE (").and_then(|rest| rest.split_once(") ON"));
    let mut granted: Vec<&str> =
        granted.map(|(columns, _)| columns.split(", ").map(|c| c.trim_matches('`')).collect()).unwrap_or_default();
    granted.sort_unstable();
    let mut expected = TRANSITION_COLUMNS.to_vec();
    expected.push(SUCCESSOR_GUARD);
    expected.sort_unstable();
    assert_eq!(granted, expected, "only SELECT, INSERT and UPDATE of the transition columns left: {requests}");
    // Exactly what the application needs still works.
    let mut app = MySqlConnection::connect(split.application_url()).await.expect("application role connects");
    let update = format!("UPDATE {REQUESTS} SET status = status WHERE 1 = 0");
    assert_eq!(mysql_try(&mut app, &update).await, None, "transition columns updatable");
    let frozen = format!("UPDATE {REQUESTS} SET intent = intent WHERE 1 = 0");
    assert!(mysql_try(&mut app, &frozen).await.is_some_and(|n| MYSQL_DENIED.contains(&n)), "intent frozen");
    let _ = app.close().await;

    run(format!("GRANT DELETE ON `{database}`.* TO {account}")).await.unwrap();
    refused(owner.grant_application_role(&role).await);
    run(format!("REVOKE DELETE ON `{database}`.* FROM {account}")).await.unwrap();
    assert!(matches!(owner.grant_application_role(&role).await, Ok(RoleGrants::Granted(_))));
    let missing = ApplicationRole::account("no_such_user_here", host).unwrap();
    assert!(
        matches!(
            owner.grant_application_role(&missing).await,
            Err(GovernanceError::Validation { problem: ValidationProblem::UnknownValue, .. })
        ),
        "an account that does not exist is not created"
    );
    let _ = owner.connection().clone().close().await;
}

// --------------------------------------------------------------- SQLite

/// Every replace form on every insert-only table, through the provider's
/// own connection: refused by the append-only triggers.
async fn sqlite_refuses(name: &str, store: SeaOrmStore) {
    let arc: Arc<dyn GovernanceStore> = Arc::new(store.clone());
    let ws = random_workspace();
    let (request, before) = seed(&arc, &ws).await;
    let only = format!("WHERE workspace_id = '{}'", ws.as_str());
    let mut attacks = Vec::new();
    for (table, column, _, _) in INSERT_ONLY {
        attacks.push(vec![format!("INSERT OR REPLACE INTO {table} SELECT * FROM {table} {only}")]);
        attacks.push(vec![format!("REPLACE INTO {table} SELECT * FROM {table} {only}")]);
        attacks.push(vec![format!(
            "INSERT INTO {table} SELECT * FROM {table} {only} ON CONFLICT DO UPDATE SET {column} = 'rewritten'"
        )]);
        attacks.push(vec![format!("UPDATE OR REPLACE {table} SET {column} = 'rewritten' {only}")]);
    }
    // Replacing through another unique key than the primary one: a copy
    // with a new id and the same idempotency key / the same sealed record.
    for (table, rows, change) in [
        ("governance_history", "AND idempotency_key IS NOT NULL", "id = randomblob(16)"),
        ("governance_seals", "", "leaf_index = leaf_index + 1000"),
    ] {
        attacks.push(vec![
            format!("CREATE TEMP TABLE attack_copy AS SELECT * FROM {table} {only} {rows}"),
            format!("UPDATE attack_copy SET {change}"),
            format!("INSERT OR REPLACE INTO {table} SELECT * FROM attack_copy"),
        ]);
    }
    for statements in &attacks {
        let txn = store.connection().begin().await.expect("begin");
        let mut outcome = Ok(());
        for sql in statements {
            outcome = txn.execute_unprepared(sql).await.map(drop);
            if outcome.is_err() {
                break;
            }
        }
        let _ = txn.rollback().await;
        let last = statements.last().expect("a statement");
        assert!(outcome.as_ref().is_err_and(|e| e.to_string().contains("append-only")), "{name}: {last}: {outcome:?}");
    }
    unchanged(&arc, &ws, &request, &before).await;
}

#[tokio::test]
async fn sqlite_connections_refuse_every_replace_form() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("opened.db");
    sqlite_refuses("open_sqlite", SeaOrmStore::open_sqlite(&file).await.expect("opens")).await;
    sqlite_refuses("open_sqlite_in_memory", SeaOrmStore::open_sqlite_in_memory().await.expect("opens")).await;
    let url = format!("sqlite:{}?mode=rwc", dir.path().join("connected.db").display());
    let connected = SeaOrmStore::connect(&url).await.expect("connects");
    connected.migrate().await.expect("migrates");
    sqlite_refuses("connect", connected).await;

    // The same statement on a connection the provider did not open (no
    // recursive triggers) replaces the row: whoever can open the file can
    // rewrite it, which is why SQLite needs sealing and an outside anchor.
    let mut raw = sqlx::SqliteConnection::connect(&format!("sqlite:{}", file.display())).await.expect("raw");
    let replaced = sqlx::raw_sql("INSERT OR REPLACE INTO governance_seals SELECT * FROM governance_seals")
        .execute(&mut raw)
        .await
        .expect("not refused without recursive triggers");
    assert!(replaced.rows_affected() > 0, "rows were replaced");
    let _ = raw.close().await;
    let store = SeaOrmStore::open_sqlite(&file).await.expect("opens");
    let grants = store.grant_application_role(&ApplicationRole::new("app").unwrap()).await.expect("no error");
    assert_eq!(grants, RoleGrants::NotApplicable, "SQLite has no roles");
}
