//! The application role: what the application's login may do on the
//! governance tables, granted in one place ([`SeaOrmStore::grant_application_role`]).
//!
//! The tables' owner (the user that ran the migrations) keeps everything
//! else: ALTER, DROP (which TRUNCATE needs on MySQL), triggers. The
//! application role reads every table, inserts into every table, and
//! updates only the request columns a transition writes
//! ([`TRANSITION_COLUMNS`]). SQLite has no roles: see [`RoleGrants::NotApplicable`].

use governance_abstractions::provider::TRANSITION_COLUMNS;
use governance_abstractions::provider::postgres_schema::{DERIVED_TABLES, ROLL_UP_FUNCTION};
use governance_abstractions::{GovernanceError, Result, ValidationProblem};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, TransactionTrait, Value};

use crate::migration::SUCCESSOR_GUARD;
use crate::{SeaOrmStore, error};

/// Every table of the schema, in the order the grants name them.
pub const GOVERNANCE_TABLES: [&str; 4] =
    ["governance_requests", "governance_history", "governance_checkpoints", "governance_seals"];

const REQUESTS: &str = "governance_requests";

/// PostgreSQL truncates longer identifiers with only a notice: a longer
/// name would silently name another role.
const POSTGRES_MAX_IDENTIFIER_BYTES: usize = 63;
/// MySQL/MariaDB host names (and a generous bound on any name here).
const MAX_NAME_BYTES: usize = 255;

/// Table privileges withheld on MySQL/MariaDB beyond what is granted:
/// revoking one that is not held is a no-op once the table has a grant.
const MYSQL_WITHHELD: &str =
    "ALTER, CREATE, CREATE VIEW, DELETE, DROP, GRANT OPTION, INDEX, REFERENCES, SHOW VIEW, TRIGGER";

/// Who receives the application's grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplicationRole {
    name: String,
    host: Option<String>,
}

impl ApplicationRole {
    /// A role by name: a PostgreSQL role; on MySQL/MariaDB a role, or the
    /// account `name`@`%`. Empty names and names containing NUL are
    /// validation errors.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        check(&name, "role")?;
        Ok(Self { name, host: None })
    }

    /// A MySQL/MariaDB account, `user`@`host` as in `CREATE USER` (`%`,
    /// `10.0.0.%`, `127.0.0.1`, …). PostgreSQL refuses a host.
    pub fn account(user: impl Into<String>, host: impl Into<String>) -> Result<Self> {
        let (name, host) = (user.into(), host.into());
        check(&name, "role")?;
        check(&host, "role.host")?;
        Ok(Self { name, host: Some(host) })
    }

    /// The role or user name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The account's host (MySQL/MariaDB), if given.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The grantee as SQL: a quoted PostgreSQL identifier, or a MySQL account
    /// name quoted with backticks.
    fn grantee(&self, backend: DbBackend) -> Result<String> {
        match backend {
            DbBackend::Postgres => {
                if self.host.is_some() {
                    return Err(GovernanceError::validation(
                        "role.host",
                        ValidationProblem::Inconsistent("a PostgreSQL role has no host"),
                    ));
                }
                if self.name.len() > POSTGRES_MAX_IDENTIFIER_BYTES {
                    return Err(GovernanceError::validation(
                        "role",
                        ValidationProblem::TooLong { max: POSTGRES_MAX_IDENTIFIER_BYTES, actual: self.name.len() },
                    ));
                }
                Ok(postgres_quote(&self.name))
            }
            _ => Ok(match &self.host {
                Some(host) => format!("{}@{}", mysql_quote(&self.name), mysql_quote(host)),
                None => mysql_quote(&self.name),
            }),
        }
    }

    /// How `information_schema` may spell this grantee (MySQL/MariaDB):
    /// `'name'@'host'` (a role without host also as `'name'@'%'` and
    /// `'name'`), each as is (MariaDB writes `'` and `\` in names
    /// unescaped) and with `'` and `\` escaped (`\'` or `''`, and `\\`).
    fn information_schema_grantees(&self) -> Vec<String> {
        let forms: Vec<Vec<&str>> = match &self.host {
            Some(host) => vec![vec![&self.name, host]],
            None => vec![vec![&self.name, "%"], vec![&self.name]],
        };
        let escapes: [fn(&str) -> String; 3] = [
            |part| part.to_owned(),
            |part| part.replace('\\', "\\\\").replace('\'', "\\'"),
            |part| part.replace('\\', "\\\\").replace('\'', "''"),
        ];
        let mut grantees = Vec::new();
        for parts in &forms {
            for escape in escapes {
                let grantee = parts.iter().map(|part| format!("'{}'", escape(part))).collect::<Vec<_>>().join("@");
                if !grantees.contains(&grantee) {
                    grantees.push(grantee);
                }
            }
        }
        grantees
    }
}

/// What [`SeaOrmStore::grant_application_role`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub enum RoleGrants {
    /// The statements it ran, in order.
    Granted(Vec<String>),
    /// SQLite has no roles or grants: whoever can write the database file
    /// can change every row of it. Nothing was done. The store's own
    /// connections refuse every statement that would rewrite history,
    /// checkpoints or seal entries; against someone with the file, seal the
    /// history and keep the anchor elsewhere (`docs/audit.md`).
    NotApplicable,
}

/// The request columns the application role may update on MySQL/MariaDB:
/// the transition columns, and the counter a supersession writes on its
/// successor (so that a multi-primary cluster certifies that row).
fn mysql_updatable() -> impl Iterator<Item = &'static str> {
    TRANSITION_COLUMNS.iter().copied().chain([SUCCESSOR_GUARD])
}

/// The statements [`SeaOrmStore::grant_application_role`] runs for `role`
/// on `backend`, the tables living in `schema` (the PostgreSQL schema, or
/// the MySQL/MariaDB database). Empty on SQLite.
///
/// - PostgreSQL, in one transaction: revoke everything the role holds on
///   the governance tables, the hourly and daily decision counts
///   ([`DERIVED_TABLES`]) and the roll-up function, then grant `USAGE` on
///   the schema, `SELECT, INSERT` on every governance table, `UPDATE` of
///   the [`TRANSITION_COLUMNS`] of `governance_requests`, `SELECT` on the
///   derived counts (which counts read) and `EXECUTE` on the roll-up
///   function (which writes them as the tables' owner; see
///   [`SeaOrmStore::roll_up_counts`]).
/// - MySQL/MariaDB, per table: grant `SELECT, INSERT` (and on
///   `governance_requests` `UPDATE` of the transition columns and of
///   `successor_guard`, the counter a supersession writes), then revoke
///   every other table privilege — `UPDATE` too on the insert-only tables —
///   (the server commits each statement on its own, and this order never
///   leaves the role without a privilege it needs). These fixed statements
///   cannot name privileges held by column, nor `UPDATE` of the whole
///   request table (revoking it also revokes the column grants):
///   [`SeaOrmStore::grant_application_role`] reads those from
///   `information_schema` and revokes them too, so the role ends with
///   exactly these.
///
/// Names are quoted (`"` doubled on PostgreSQL, `` ` `` doubled on MySQL).
pub fn application_role_grants(backend: DbBackend, schema: &str, role: &ApplicationRole) -> Result<Vec<String>> {
    check(schema, "schema")?;
    let grantee = role.grantee(backend)?;
    let updatable = TRANSITION_COLUMNS.join(", ");
    match backend {
        DbBackend::Postgres => {
            let schema = postgres_quote(schema);
            let tables: Vec<String> = GOVERNANCE_TABLES.iter().map(|table| format!("{schema}.{table}")).collect();
            let tables = tables.join(", ");
            let derived: Vec<String> = DERIVED_TABLES.iter().map(|table| format!("{schema}.{table}")).collect();
            let derived = derived.join(", ");
            Ok(vec![
                format!("REVOKE ALL ON TABLE {tables}, {derived} FROM {grantee}"),
                format!("REVOKE ALL ON FUNCTION {schema}.{ROLL_UP_FUNCTION} FROM {grantee}"),
                format!("GRANT USAGE ON SCHEMA {schema} TO {grantee}"),
                format!("GRANT SELECT, INSERT ON TABLE {tables} TO {grantee}"),
                format!("GRANT UPDATE ({updatable}) ON TABLE {schema}.{REQUESTS} TO {grantee}"),
                format!("GRANT SELECT ON TABLE {derived} TO {grantee}"),
                format!("GRANT EXECUTE ON FUNCTION {schema}.{ROLL_UP_FUNCTION} TO {grantee}"),
            ])
        }
        DbBackend::MySql => {
            let database = mysql_quote(schema);
            let mut statements = Vec::new();
            for table in GOVERNANCE_TABLES {
                let on = format!("{database}.{}", mysql_quote(table));
                if table == REQUESTS {
                    let columns: Vec<String> = mysql_updatable().map(mysql_quote).collect();
                    statements
                        .push(format!("GRANT SELECT, INSERT, UPDATE ({}) ON {on} TO {grantee}", columns.join(", ")));
                    statements.push(format!("REVOKE {MYSQL_WITHHELD} ON {on} FROM {grantee}"));
                } else {
                    statements.push(format!("GRANT SELECT, INSERT ON {on} TO {grantee}"));
                    statements.push(format!("REVOKE {MYSQL_WITHHELD}, UPDATE ON {on} FROM {grantee}"));
                }
            }
            Ok(statements)
        }
        _ => Ok(Vec::new()),
    }
}

impl SeaOrmStore {
    /// Grants the application role exactly what the store needs
    /// ([`application_role_grants`]). Run it on a connection of the tables'
    /// owner, after [`migrate`](Self::migrate); it is re-runnable.
    ///
    /// The role (or account) must exist. It is refused — a validation error
    /// on `role` — when grants could not hold it: on PostgreSQL a superuser,
    /// a role with `CREATEROLE`, a member of the owner of the tables, of
    /// their schema or of the current database (since PostgreSQL 15 `public`
    /// belongs to `pg_database_owner`), or a role with `CREATE` on the schema
    /// (nothing is granted then); on both servers a role that afterwards still holds
    /// more on these tables than the grants give (through `PUBLIC`, a role it
    /// belongs to, or on MySQL/MariaDB privileges on the whole database or
    /// server). MySQL/MariaDB can only show this function the privileges its
    /// user may see in `information_schema`, and not those that come through
    /// roles granted to the account.
    ///
    /// On SQLite nothing is done: [`RoleGrants::NotApplicable`].
    pub async fn grant_application_role(&self, role: &ApplicationRole) -> Result<RoleGrants> {
        match self.db.get_database_backend() {
            DbBackend::Postgres => grant_postgres(self, role).await.map(RoleGrants::Granted),
            DbBackend::MySql => grant_mysql(self, role).await.map(RoleGrants::Granted),
            _ => Ok(RoleGrants::NotApplicable),
        }
    }
}

async fn grant_postgres(store: &SeaOrmStore, role: &ApplicationRole) -> Result<Vec<String>> {
    role.grantee(DbBackend::Postgres)?;
    let txn = store.db.begin().await.map_err(error::map)?;
    let schema = one_text(
        &txn,
        "SELECT n.nspname::text AS v FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.oid = to_regclass('governance_requests')",
        Vec::new(),
    )
    .await?
    .ok_or_else(missing_tables)?;
    let sql = "SELECT r.rolsuper AS superuser, r.rolcreaterole AS createrole, \
               pg_has_role(r.oid, c.relowner, 'MEMBER') AS owner, \
               pg_has_role(r.oid, n.nspowner, 'MEMBER') AS schema_owner, \
               EXISTS (SELECT 1 FROM pg_database d WHERE d.datname = current_database() \
                   AND pg_has_role(r.oid, d.datdba, 'MEMBER')) AS database_owner, \
               has_schema_privilege(r.oid, n.oid, 'CREATE') AS schema_create \
               FROM pg_roles r, pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE r.rolname = $1 AND c.oid = to_regclass('governance_requests')";
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, [Value::from(role.name())]))
        .await
        .map_err(error::map)?
        .ok_or_else(|| GovernanceError::validation("role", ValidationProblem::UnknownValue))?;
    let flag = |column: &str| row.try_get::<bool>("", column).map_err(error::map);
    for (column, why) in [
        ("superuser", "is a superuser: no grant or trigger binds it"),
        ("createrole", "has CREATEROLE: it could make itself a member of the tables' owner"),
        ("owner", "can act as the tables' owner"),
        ("schema_owner", "can act as the owner of the tables' schema, which may drop and recreate them"),
        (
            "database_owner",
            "can act as the database's owner (since PostgreSQL 15 the owner of the public schema), \
             which may drop and recreate the tables",
        ),
        (
            "schema_create",
            "has CREATE on the tables' schema (directly or through PUBLIC): revoke it (REVOKE CREATE ON SCHEMA … FROM PUBLIC)",
        ),
    ] {
        if flag(column)? {
            return Err(refused(why));
        }
    }
    let statements = application_role_grants(DbBackend::Postgres, &schema, role)?;
    for statement in &statements {
        txn.execute_unprepared(statement).await.map_err(error::map)?;
    }
    // What the role can do now, however it got it (PUBLIC, membership).
    let quoted_schema = postgres_quote(&schema);
    for table in GOVERNANCE_TABLES {
        let qualified = format!("{quoted_schema}.{table}");
        let sql = beyond_the_grants_sql(table == REQUESTS);
        let values = [Value::from(role.name()), Value::from(qualified), Value::from(TRANSITION_COLUMNS.join(","))];
        let more = txn
            .query_one_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, values))
            .await
            .map_err(error::map)?
            .map(|row| row.try_get::<bool>("", "more"))
            .transpose()
            .map_err(error::map)?
            .unwrap_or(true);
        if more {
            return Err(refused(
                "still holds more than the application role's privileges (through PUBLIC or a role it belongs to)",
            ));
        }
    }
    txn.commit().await.map_err(error::map)?;
    Ok(statements)
}

async fn grant_mysql(store: &SeaOrmStore, role: &ApplicationRole) -> Result<Vec<String>> {
    let db = &store.db;
    let database = one_text(db, "SELECT DATABASE() AS v", Vec::new()).await?.ok_or_else(|| {
        GovernanceError::validation("database", ValidationProblem::Inconsistent("the connection has no database"))
    })?;
    let mut statements = application_role_grants(DbBackend::MySql, &database, role)?;
    for statement in &statements {
        mysql_run(db, statement).await?;
    }
    let grantees = role.information_schema_grantees();
    let placeholders = vec!["?"; grantees.len()].join(", ");
    let who = || grantees.iter().cloned().map(Value::from).collect::<Vec<_>>();
    let tables = GOVERNANCE_TABLES.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
    let updatable = mysql_updatable().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(", ");
    let in_database = || [who(), vec![Value::from(database.clone())]].concat();
    let grantee = role.grantee(DbBackend::MySql)?;
    let quoted_database = mysql_quote(&database);

    // Leftovers the fixed statements cannot name: table privileges beyond
    // SELECT and INSERT (UPDATE of the whole request table among them) and
    // column privileges beyond UPDATE of the transition columns. A
    // table-level REVOKE UPDATE also takes the column UPDATE grants, so the
    // transition columns are granted again right after it.
    let mut leftovers = Vec::new();
    let sql = format!(
        "SELECT CAST(TABLE_NAME AS CHAR) AS t, CAST(PRIVILEGE_TYPE AS CHAR) AS p, '' AS c \
         FROM information_schema.TABLE_PRIVILEGES WHERE GRANTEE IN ({placeholders}) \
         AND TABLE_SCHEMA = ? AND TABLE_NAME IN ({tables}) AND PRIVILEGE_TYPE NOT IN ('SELECT', 'INSERT')"
    );
    let mut regrant = false;
    for (table, privilege, _) in mysql_rows(db, sql, in_database()).await? {
        regrant |= table == REQUESTS && privilege == "UPDATE";
        leftovers.push(format!("REVOKE {privilege} ON {quoted_database}.{} FROM {grantee}", mysql_quote(&table)));
    }
    if regrant {
        let columns: Vec<String> = mysql_updatable().map(mysql_quote).collect();
        leftovers.push(format!(
            "GRANT UPDATE ({}) ON {quoted_database}.{} TO {grantee}",
            columns.join(", "),
            mysql_quote(REQUESTS)
        ));
    }
    let sql = format!(
        "SELECT CAST(TABLE_NAME AS CHAR) AS t, CAST(PRIVILEGE_TYPE AS CHAR) AS p, CAST(COLUMN_NAME AS CHAR) AS c \
         FROM information_schema.COLUMN_PRIVILEGES WHERE GRANTEE IN ({placeholders}) \
         AND TABLE_SCHEMA = ? AND TABLE_NAME IN ({tables}) \
         AND NOT (TABLE_NAME = '{REQUESTS}' AND PRIVILEGE_TYPE = 'UPDATE' AND COLUMN_NAME IN ({updatable}))"
    );
    for (table, privilege, column) in mysql_rows(db, sql, in_database()).await? {
        // After a table-level REVOKE UPDATE these are gone already.
        if regrant && privilege == "UPDATE" {
            continue;
        }
        leftovers.push(format!(
            "REVOKE {privilege} ({}) ON {quoted_database}.{} FROM {grantee}",
            mysql_quote(&column),
            mysql_quote(&table)
        ));
    }
    for statement in leftovers {
        match db.execute_unprepared(&statement).await {
            Ok(_) => statements.push(statement),
            // 1147: not held by this account (the row was another spelling
            // of the grantee); the checks below decide.
            Err(e) if mysql_number(&e) == Some(1147) => {}
            Err(e) => return Err(mysql_error(e)),
        }
    }

    let checks = [
        (
            format!(
                "SELECT COUNT(*) AS n FROM information_schema.USER_PRIVILEGES \
                 WHERE GRANTEE IN ({placeholders}) AND PRIVILEGE_TYPE <> 'USAGE'"
            ),
            who(),
            "holds privileges on the whole server (ON *.*), which no table grant narrows",
        ),
        (
            format!(
                "SELECT COUNT(*) AS n FROM information_schema.SCHEMA_PRIVILEGES \
                 WHERE GRANTEE IN ({placeholders}) AND ? LIKE TABLE_SCHEMA"
            ),
            in_database(),
            "holds privileges on the whole database (ON db.*), which no table grant narrows",
        ),
        (
            format!(
                "SELECT COUNT(*) AS n FROM information_schema.TABLE_PRIVILEGES WHERE GRANTEE IN ({placeholders}) \
                 AND TABLE_SCHEMA = ? AND TABLE_NAME IN ({tables}) AND PRIVILEGE_TYPE NOT IN ('SELECT', 'INSERT')"
            ),
            in_database(),
            "holds more than SELECT and INSERT on a governance table (UPDATE of the whole request table?)",
        ),
        (
            format!(
                "SELECT COUNT(*) AS n FROM information_schema.COLUMN_PRIVILEGES WHERE GRANTEE IN ({placeholders}) \
                 AND TABLE_SCHEMA = ? AND TABLE_NAME IN ({tables}) \
                 AND NOT (TABLE_NAME = '{REQUESTS}' AND PRIVILEGE_TYPE = 'UPDATE' AND COLUMN_NAME IN ({updatable}))"
            ),
            in_database(),
            "holds column privileges beyond UPDATE of the transition columns",
        ),
    ];
    for (sql, values, why) in checks {
        let row = db
            .query_one_raw(Statement::from_sql_and_values(DbBackend::MySql, sql, values))
            .await
            .map_err(error::map)?;
        let n = row.map(|row| row.try_get::<i64>("", "n")).transpose().map_err(error::map)?.unwrap_or(0);
        if n > 0 {
            return Err(refused(why));
        }
    }
    Ok(statements)
}

/// Runs one grant statement; an account that does not exist is a
/// validation error on `role`.
async fn mysql_run(db: &impl ConnectionTrait, statement: &str) -> Result<()> {
    db.execute_unprepared(statement).await.map(drop).map_err(mysql_error)
}

/// 1133: no such user (and GRANT may not create one); 1141: no such
/// account; 1410 (MySQL 8): GRANT may not create the missing account.
fn mysql_error(e: DbErr) -> GovernanceError {
    if matches!(mysql_number(&e), Some(1133 | 1141 | 1410)) {
        GovernanceError::validation("role", ValidationProblem::UnknownValue)
    } else {
        error::map(e)
    }
}

/// Rows of (`t`, `p`, `c`): a table, a privilege and a column (maybe
/// empty). A privilege or name that could not be written back into a
/// REVOKE as read is refused.
async fn mysql_rows(
    db: &impl ConnectionTrait,
    sql: String,
    values: Vec<Value>,
) -> Result<Vec<(String, String, String)>> {
    let rows =
        db.query_all_raw(Statement::from_sql_and_values(DbBackend::MySql, sql, values)).await.map_err(error::map)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let get = |column: &str| row.try_get::<String>("", column).map_err(error::map);
        let (table, privilege, column) = (get("t")?, get("p")?, get("c")?);
        if privilege.is_empty() || !privilege.bytes().all(|b| b.is_ascii_uppercase() || b == b' ') {
            return Err(refused("holds a privilege on a governance table that cannot be revoked by name"));
        }
        out.push((table, privilege, column));
    }
    Ok(out)
}

/// Whether role `$1` can do more on table `$2` (qualified) than the grants
/// give, however it got it: any of DELETE, TRUNCATE, REFERENCES, TRIGGER;
/// UPDATE of any column of an insert-only table; UPDATE of a request column
/// outside `$3` (the transition columns, comma-separated).
fn beyond_the_grants_sql(requests: bool) -> String {
    let update = if requests { "false" } else { "has_any_column_privilege($1::name, $2::text, 'UPDATE')" };
    format!(
        "SELECT (has_table_privilege($1::name, $2::text, 'DELETE, TRUNCATE, REFERENCES, TRIGGER') OR {update} \
         OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = $2::text::regclass AND a.attnum > 0 \
             AND NOT a.attisdropped AND a.attname::text <> ALL(string_to_array($3::text, ',')) \
             AND has_column_privilege($1::name, a.attrelid, a.attnum, 'UPDATE'))) AS more"
    )
}

/// The first column (`v`) of the first row, if any.
async fn one_text(db: &impl ConnectionTrait, sql: &str, values: Vec<Value>) -> Result<Option<String>> {
    let statement = Statement::from_sql_and_values(db.get_database_backend(), sql, values);
    let row = db.query_one_raw(statement).await.map_err(error::map)?;
    row.map(|row| row.try_get::<Option<String>>("", "v")).transpose().map_err(error::map).map(Option::flatten)
}

fn mysql_number(error: &DbErr) -> Option<u16> {
    use sea_orm::RuntimeErr;
    let (DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))) = error else { return None };
    error::mysql_number(e.as_database_error()?)
}

fn missing_tables() -> GovernanceError {
    GovernanceError::validation(
        "database",
        ValidationProblem::Inconsistent("the governance tables are missing: run migrate() first"),
    )
}

fn refused(why: &'static str) -> GovernanceError {
    GovernanceError::validation("role", ValidationProblem::Inconsistent(why))
}

fn check(name: &str, field: &'static str) -> Result<()> {
    if name.is_empty() {
        return Err(GovernanceError::validation(field, ValidationProblem::Empty));
    }
    if name.contains('\0') {
        return Err(GovernanceError::validation(field, ValidationProblem::ContainsNul));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(GovernanceError::validation(
            field,
            ValidationProblem::TooLong { max: MAX_NAME_BYTES, actual: name.len() },
        ));
    }
    Ok(())
}

fn postgres_quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn mysql_quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_quoted() {
        let role = ApplicationRole::new("a\"b`c").unwrap();
        assert_eq!(role.grantee(DbBackend::Postgres).unwrap(), "\"a\"\"b`c\"");
        assert_eq!(role.grantee(DbBackend::MySql).unwrap(), "`a\"b``c`");
        let account = ApplicationRole::account("app", "10.0.%").unwrap();
        assert_eq!(account.grantee(DbBackend::MySql).unwrap(), "`app`@`10.0.%`");
        assert!(matches!(
            account.grantee(DbBackend::Postgres),
            Err(GovernanceError::Validation { problem: ValidationProblem::Inconsistent(_), .. })
        ));
        assert!(matches!(
            ApplicationRole::new(""),
            Err(GovernanceError::Validation { problem: ValidationProblem::Empty, .. })
        ));
        assert!(matches!(
            ApplicationRole::account("app", "a\0"),
            Err(GovernanceError::Validation { problem: ValidationProblem::ContainsNul, .. })
        ));
        let long = ApplicationRole::new("r".repeat(64)).unwrap();
        assert!(matches!(
            long.grantee(DbBackend::Postgres),
            Err(GovernanceError::Validation { problem: ValidationProblem::TooLong { max: 63, actual: 64 }, .. })
        ));
        assert!(long.grantee(DbBackend::MySql).is_ok(), "MySQL refuses a long name itself");
    }

    #[test]
    fn information_schema_grantees_cover_escaped_names() {
        let account = ApplicationRole::account("o'b\\", "%").unwrap();
        assert_eq!(account.information_schema_grantees(), ["'o'b\\'@'%'", "'o\\'b\\\\'@'%'", "'o''b\\\\'@'%'"]);
        let role = ApplicationRole::new("app").unwrap();
        assert_eq!(role.information_schema_grantees(), ["'app'@'%'", "'app'"]);
    }

    #[test]
    fn grants_are_select_insert_and_the_transition_columns() {
        let role = ApplicationRole::new("app").unwrap();
        for backend in [DbBackend::Postgres, DbBackend::MySql] {
            let statements = application_role_grants(backend, "gov", &role).unwrap();
            let grants: Vec<&String> = statements.iter().filter(|s| s.starts_with("GRANT")).collect();
            for grant in &grants {
                let privileges = grant.trim_start_matches("GRANT ").split(" ON ").next().unwrap();
                let privileges = privileges.split_once(" (").map_or(privileges, |(kinds, _)| kinds);
                // Read-only on the derived hourly counts, and the function
                // that writes them as the tables' owner: nothing else.
                let derived = DERIVED_TABLES.iter().any(|table| grant.contains(table));
                let roll_up = grant.contains(&format!("FUNCTION \"gov\".{ROLL_UP_FUNCTION}"));
                let allowed: &[&str] = match (derived, roll_up) {
                    (true, false) => &["SELECT"],
                    (false, true) => &["EXECUTE"],
                    _ => &["USAGE", "SELECT, INSERT", "UPDATE", "SELECT, INSERT, UPDATE"],
                };
                assert!(allowed.contains(&privileges), "{backend:?}: {grant}");
            }
            if backend == DbBackend::Postgres {
                for table in DERIVED_TABLES {
                    assert!(grants.iter().any(|g| g.starts_with("GRANT SELECT ON") && g.contains(table)), "{table}");
                }
                assert!(grants.iter().any(|g| g.starts_with("GRANT EXECUTE ON FUNCTION")), "{statements:?}");
            }
            let updates: Vec<&&String> = grants.iter().filter(|s| s.contains("UPDATE")).collect();
            assert_eq!(updates.len(), 1, "{backend:?}: {statements:?}");
            assert!(updates[0].contains("governance_requests"), "{backend:?}");
            let columns = updates[0].split_once("UPDATE (").and_then(|(_, rest)| rest.split_once(')')).unwrap().0;
            let columns: Vec<String> = columns.split(", ").map(|c| c.trim_matches('`').to_owned()).collect();
            let expected: Vec<&str> = match backend {
                DbBackend::MySql => mysql_updatable().collect(),
                _ => TRANSITION_COLUMNS.to_vec(),
            };
            assert_eq!(columns, expected, "{backend:?}");
            for table in GOVERNANCE_TABLES {
                assert!(
                    grants.iter().any(|g| g.contains(table) && g.contains("SELECT, INSERT")),
                    "{backend:?} {table}"
                );
            }
        }
        let mysql = application_role_grants(DbBackend::MySql, "gov", &role).unwrap();
        for table in &GOVERNANCE_TABLES[1..] {
            assert!(
                mysql.iter().any(|s| s.starts_with("REVOKE")
                    && s.contains(table)
                    && s.contains("DELETE, DROP")
                    && s.ends_with(&format!("TRIGGER, UPDATE ON `gov`.`{table}` FROM `app`"))),
                "{table}: {mysql:?}"
            );
        }
        assert_eq!(application_role_grants(DbBackend::Sqlite, "main", &role).unwrap(), Vec::<String>::new());
    }

    /// The provider page shows the SQL this function runs, verbatim.
    #[test]
    fn the_documented_grants_are_the_ones_run() {
        let page = include_str!("../../docs/providers/seaorm.md");
        let role = ApplicationRole::account("governance_app", "%").unwrap();
        for statement in application_role_grants(DbBackend::MySql, "governance", &role).unwrap() {
            assert!(page.contains(&format!("{statement};")), "docs/providers/seaorm.md lacks: {statement};");
        }
        let role = ApplicationRole::new("governance_app").unwrap();
        for statement in application_role_grants(DbBackend::Postgres, "public", &role).unwrap() {
            assert!(page.contains(&format!("{statement};")), "docs/providers/seaorm.md lacks: {statement};");
        }
    }
}
