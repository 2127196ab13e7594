//! The application role: what the application's login may do on the
//! governance tables, granted in one place.
//!
//! The tables' owner (the role that ran the migrations) keeps everything
//! else: ALTER, DROP, TRUNCATE, triggers. The application role reads every
//! table, inserts into every table, and updates only the request columns a
//! transition writes ([`TRANSITION_COLUMNS`]). It cannot update or delete
//! history, checkpoints or seal entries, nor change a request's key, tenant,
//! requester, intent or anything else fixed at creation.

use governance_abstractions::provider::TRANSITION_COLUMNS;
use governance_abstractions::{GovernanceError, Result, ValidationProblem};
use sqlx::{AssertSqlSafe, PgPool};

use crate::{PostgresStore, error};

/// Every table of the schema, in the order the grants name them.
pub const GOVERNANCE_TABLES: [&str; 4] =
    ["governance_requests", "governance_history", "governance_checkpoints", "governance_seals"];

/// The tables of derived data (the hourly and daily decision counts and their
/// watermarks): the application role reads them and nothing else; the
/// roll-up writes them as the tables' owner.
pub use governance_abstractions::provider::postgres_schema::DERIVED_TABLES;

/// The roll-up function, with its signature (see
/// [`PostgresStore::roll_up_counts`]).
use governance_abstractions::provider::postgres_schema::ROLL_UP_FUNCTION;

/// PostgreSQL truncates longer identifiers (NAMEDATALEN - 1) with only a
/// notice: a longer name would silently name another role.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// The statements [`grant_application_role`] runs for `role` when the
/// tables live in `schema`: first every privilege the role holds on the
/// governance tables is revoked (so the result is exactly these grants,
/// whatever was granted before), then
///
/// - `USAGE` on the schema;
/// - `SELECT, INSERT` on every governance table;
/// - `UPDATE` of the [`TRANSITION_COLUMNS`] of `governance_requests`;
/// - `SELECT` on the [`DERIVED_TABLES`] and `EXECUTE` on the roll-up
///   function, which writes them as the tables' owner.
///
/// Nothing else: no `UPDATE` elsewhere, no `DELETE`, `TRUNCATE`,
/// `REFERENCES` or `TRIGGER`. Names are quoted (`"` doubled); a name that is
/// empty, contains NUL or is longer than 63 bytes is a validation error.
pub fn application_role_grants(schema: &str, role: &str) -> Result<Vec<String>> {
    grants(schema, role, true)
}

/// The grants, with those on the derived tables or without them (a schema
/// of the distributed profile has none).
fn grants(schema: &str, role: &str, derived_tables: bool) -> Result<Vec<String>> {
    let role = quote(role, "role")?;
    let schema = quote(schema, "schema")?;
    let tables: Vec<String> = GOVERNANCE_TABLES.iter().map(|table| format!("{schema}.{table}")).collect();
    let tables = tables.join(", ");
    let derived: Vec<String> = DERIVED_TABLES.iter().map(|table| format!("{schema}.{table}")).collect();
    let derived = derived.join(", ");
    let update =
        format!("GRANT UPDATE ({}) ON TABLE {schema}.governance_requests TO {role}", TRANSITION_COLUMNS.join(", "));
    if !derived_tables {
        return Ok(vec![
            format!("REVOKE ALL ON TABLE {tables} FROM {role}"),
            format!("GRANT USAGE ON SCHEMA {schema} TO {role}"),
            format!("GRANT SELECT, INSERT ON TABLE {tables} TO {role}"),
            update,
        ]);
    }
    Ok(vec![
        format!("REVOKE ALL ON TABLE {tables}, {derived} FROM {role}"),
        format!("REVOKE ALL ON FUNCTION {schema}.{ROLL_UP_FUNCTION} FROM {role}"),
        format!("GRANT USAGE ON SCHEMA {schema} TO {role}"),
        format!("GRANT SELECT, INSERT ON TABLE {tables} TO {role}"),
        update,
        format!("GRANT SELECT ON TABLE {derived} TO {role}"),
        format!("GRANT EXECUTE ON FUNCTION {schema}.{ROLL_UP_FUNCTION} TO {role}"),
    ])
}

/// Grants the application role exactly what the store needs
/// ([`application_role_grants`]), in one transaction. Run it as the tables'
/// owner after [`PostgresStore::migrate`]; it is re-runnable.
///
/// The role must exist (`CREATE ROLE … LOGIN`), and it is refused (a
/// validation error on `role`, nothing granted) when grants could not hold
/// it: a superuser, a role with `CREATEROLE` (it could make itself a member
/// of the owner), a member of the tables' owner (the owner itself
/// included), a member of the owner of their schema or of the current
/// database (either may drop and recreate the tables; since PostgreSQL 15
/// `public` belongs to `pg_database_owner`, so a database owner owns it),
/// or a role with `CREATE` on the schema (directly or through `PUBLIC`, as
/// `public` has by default before PostgreSQL 15); and when, after granting,
/// the role can still do more on these tables than the grants give (through
/// `PUBLIC` or a role it belongs to), the transaction rolls back with the
/// same error. The schema is the one `governance_requests` resolves to on
/// this connection; missing tables are a validation error on `database`.
pub async fn grant_application_role(pool: &PgPool, role: &str) -> Result<()> {
    quote(role, "role")?;
    let mut txn = pool.begin().await.map_err(error::map)?;
    let schema: Option<String> = sqlx::query_scalar(
        "SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.oid = to_regclass('governance_requests')",
    )
    .fetch_optional(&mut *txn)
    .await
    .map_err(error::map)?;
    let Some(schema) = schema else {
        return Err(GovernanceError::validation(
            "database",
            ValidationProblem::Inconsistent("the governance tables are missing: run migrate() first"),
        ));
    };
    let found: Option<(bool, bool, bool, bool, bool, bool)> =
        sqlx::query_as(ROLE_STANDING_SQL).bind(role).fetch_optional(&mut *txn).await.map_err(error::map)?;
    let Some((superuser, createrole, table_owner, schema_owner, database_owner, schema_create)) = found else {
        return Err(GovernanceError::validation("role", ValidationProblem::UnknownValue));
    };
    let why = [
        (superuser, SUPERUSER),
        (createrole, CREATEROLE),
        (table_owner, TABLE_OWNER),
        (schema_owner, SCHEMA_OWNER),
        (database_owner, DATABASE_OWNER),
        (schema_create, SCHEMA_CREATE),
    ];
    if let Some((_, why)) = why.into_iter().find(|(refused, _)| *refused) {
        return Err(refused(why));
    }
    // The distributed profile has no derived tables to grant on.
    let derived_tables: bool = sqlx::query_scalar(
        "SELECT to_regclass('governance_history_counts') IS NOT NULL AND to_regprocedure($1) IS NOT NULL",
    )
    .bind(ROLL_UP_FUNCTION)
    .fetch_one(&mut *txn)
    .await
    .map_err(error::map)?;
    for statement in grants(&schema, role, derived_tables)? {
        sqlx::raw_sql(AssertSqlSafe(statement)).execute(&mut *txn).await.map_err(error::map)?;
    }
    // What the role can do now, however it got it (PUBLIC, membership):
    // nothing beyond the grants, or nothing is granted.
    let schema = quote(&schema, "schema")?;
    for table in GOVERNANCE_TABLES {
        let more: bool = sqlx::query_scalar(AssertSqlSafe(beyond_the_grants_sql(table == "governance_requests")))
            .bind(role)
            .bind(format!("{schema}.{table}"))
            .bind(TRANSITION_COLUMNS.join(","))
            .fetch_one(&mut *txn)
            .await
            .map_err(error::map)?;
        if more {
            return Err(refused(BEYOND_THE_GRANTS));
        }
    }
    for table in DERIVED_TABLES.iter().filter(|_| derived_tables) {
        let more: bool = sqlx::query_scalar(
            "SELECT has_table_privilege($1::name, $2::text, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')",
        )
        .bind(role)
        .bind(format!("{schema}.{table}"))
        .fetch_one(&mut *txn)
        .await
        .map_err(error::map)?;
        if more {
            return Err(refused(BEYOND_THE_GRANTS));
        }
    }
    txn.commit().await.map_err(error::map)
}

/// What role `$1` is, relative to the tables: superuser, `CREATEROLE`, a
/// member of the owner of `governance_requests`, of its schema, of the
/// current database, and whether it may `CREATE` in the schema. No row: no
/// such role.
const ROLE_STANDING_SQL: &str = "SELECT r.rolsuper, r.rolcreaterole, pg_has_role(r.oid, c.relowner, 'MEMBER'), \
     pg_has_role(r.oid, n.nspowner, 'MEMBER'), \
     EXISTS (SELECT 1 FROM pg_database d WHERE d.datname = current_database() \
         AND pg_has_role(r.oid, d.datdba, 'MEMBER')), \
     has_schema_privilege(r.oid, n.oid, 'CREATE') \
     FROM pg_roles r, pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE r.rolname = $1 AND c.oid = to_regclass('governance_requests')";

const BEYOND_THE_GRANTS: &str =
    "still holds more than the application role's privileges (through PUBLIC or a role it belongs to)";
const SUPERUSER: &str = "is a superuser: no grant or trigger binds it";
const CREATEROLE: &str = "has CREATEROLE: it could make itself a member of the tables' owner";
const TABLE_OWNER: &str = "can act as the tables' owner";
const SCHEMA_OWNER: &str = "can act as the owner of the tables' schema, which may drop and recreate them";
const DATABASE_OWNER: &str = "can act as the database's owner (since PostgreSQL 15 the owner of the public schema), which may drop and recreate the tables";
const SCHEMA_CREATE: &str =
    "has CREATE on the tables' schema (directly or through PUBLIC): revoke it (REVOKE CREATE ON SCHEMA … FROM PUBLIC)";

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
             AND has_column_privilege($1::name, a.attrelid, a.attnum, 'UPDATE')))"
    )
}

impl PostgresStore {
    /// [`grant_application_role`] on this store's pool (connected as the
    /// tables' owner).
    pub async fn grant_application_role(&self, role: &str) -> Result<()> {
        grant_application_role(&self.pool, role).await
    }
}

fn refused(why: &'static str) -> GovernanceError {
    GovernanceError::validation("role", ValidationProblem::Inconsistent(why))
}

/// `name` as a quoted identifier, after checking it names exactly itself.
fn quote(name: &str, field: &'static str) -> Result<String> {
    if name.is_empty() {
        return Err(GovernanceError::validation(field, ValidationProblem::Empty));
    }
    if name.contains('\0') {
        return Err(GovernanceError::validation(field, ValidationProblem::ContainsNul));
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(GovernanceError::validation(
            field,
            ValidationProblem::TooLong { max: MAX_IDENTIFIER_BYTES, actual: name.len() },
        ));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_and_checked() {
        assert_eq!(quote("governance_app", "role").unwrap(), "\"governance_app\"");
        assert_eq!(quote("a\"; DROP TABLE x; --", "role").unwrap(), "\"a\"\"; DROP TABLE x; --\"");
        assert!(matches!(
            quote("", "role"),
            Err(GovernanceError::Validation { problem: ValidationProblem::Empty, .. })
        ));
        assert!(matches!(
            quote("a\0b", "role"),
            Err(GovernanceError::Validation { problem: ValidationProblem::ContainsNul, .. })
        ));
        assert!(quote(&"r".repeat(63), "role").is_ok());
        assert!(matches!(
            quote(&"r".repeat(64), "role"),
            Err(GovernanceError::Validation { problem: ValidationProblem::TooLong { max: 63, actual: 64 }, .. })
        ));
    }

    #[test]
    fn the_only_update_grant_is_the_transition_columns() {
        let statements = application_role_grants("public", "app").unwrap();
        let updates: Vec<&String> = statements.iter().filter(|s| s.contains("UPDATE")).collect();
        assert_eq!(updates.len(), 1, "{statements:?}");
        let columns = updates[0].split_once('(').and_then(|(_, rest)| rest.split_once(')')).unwrap().0;
        assert_eq!(columns.split(", ").collect::<Vec<_>>(), TRANSITION_COLUMNS);
        for statement in &statements {
            for forbidden in ["DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "ALL PRIVILEGES", "GRANT ALL"] {
                assert!(!statement.contains(forbidden), "{statement}");
            }
        }
        assert!(statements[0].starts_with("REVOKE ALL ON TABLE"), "revoked first: {statements:?}");
    }

    /// The provider page shows the SQL this function runs, verbatim.
    #[test]
    fn the_documented_grants_are_the_ones_run() {
        let page = include_str!("../../docs/providers/postgres.md");
        for statement in application_role_grants("public", "governance_app").unwrap() {
            assert!(page.contains(&format!("{statement};")), "docs/providers/postgres.md lacks: {statement};");
        }
    }
}
