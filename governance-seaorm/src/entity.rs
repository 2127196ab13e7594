//! The tables as SeaORM entities. Enum columns hold the abstractions'
//! `as_str` text; JSON columns hold what has no column of its own.
//!
//! Two column types differ per backend, so they have value types of their
//! own: times ([`UtcTime`]) and lists of text ([`TextList`]). On PostgreSQL
//! the tables are the ones `governance-postgres` creates (`timestamptz`,
//! `text[]`), so that either provider can use a database the other
//! migrated; on MySQL and SQLite times are naive UTC date-times and lists
//! are JSON arrays. Both types decode every backend's form. Their
//! [`Value`]s are the MySQL and SQLite forms (SeaORM builds
//! values without knowing the backend, and MySQL binds a zoned time as a
//! `TIMESTAMP`, which ends in 2038): the store binds them as PostgreSQL
//! stores them when it writes there, see [`UtcTime::on_postgres`] and
//! [`TextList::on_postgres`].

pub use values::{TextList, UtcTime};

use sea_orm::sea_query::{ColumnType, Expr, Query};
use sea_orm::{
    ColumnTrait, DbBackend, DbErr, EntityName, EntityTrait, IdenStatic, Iterable, ModelTrait, Statement, Value,
};

/// `value`, of `column`, bound as `backend` stores that column: the
/// entities' values are the MySQL and SQLite forms, and PostgreSQL's time
/// and list columns (`timestamptz`, `text[]`, as the entities declare
/// them) take theirs ([`UtcTime::on_postgres`], [`TextList::on_postgres`]).
pub fn bind_value<C: ColumnTrait>(backend: DbBackend, column: C, value: Value) -> Value {
    if backend != DbBackend::Postgres {
        return value;
    }
    match column.def().get_column_type() {
        ColumnType::TimestampWithTimeZone => UtcTime::on_postgres(value),
        #[cfg(feature = "postgres")]
        ColumnType::Array(_) => TextList::on_postgres(value),
        _ => value,
    }
}

/// One `INSERT` of `rows` (all columns) for `backend`, each value bound by
/// [`bind_value`]; `None` for no rows. SeaORM's own `Entity::insert` binds
/// the entities' values as they are, which PostgreSQL's `text[]` columns
/// refuse: write these tables there through the store, or through this.
pub fn insert_statement<M: ModelTrait>(backend: DbBackend, rows: &[M]) -> Result<Option<Statement>, DbErr> {
    if rows.is_empty() {
        return Ok(None);
    }
    let columns: Vec<<M::Entity as EntityTrait>::Column> = <M::Entity as EntityTrait>::Column::iter().collect();
    let mut insert = Query::insert();
    insert.into_table(M::Entity::default().table_ref()).columns(columns.iter().copied());
    for row in rows {
        let values = columns.iter().map(|column| Expr::val(bind_value(backend, *column, row.get(*column))));
        // Fails only for a row with another number of values than columns.
        insert.values(values).map_err(|e| DbErr::Custom(e.to_string()))?;
    }
    Ok(Some(backend.build(&insert)))
}

/// One `INSERT` of `rows` rows of `E`'s table, all columns in the
/// entity's order, over `values` (`rows` × the column count, in that order,
/// already bound for `backend`). The text is built once per table, backend
/// and row count (up to [`CACHED_ROWS`] rows) and the driver prepares it
/// once per connection, so a batch costs its values and nothing else.
pub(crate) fn insert_rows<E: EntityTrait>(backend: DbBackend, rows: usize, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(backend, insert_text::<E>(backend, rows), values)
}

/// Row counts whose insert texts are kept: every batch up to this size
/// (larger ones are built each time).
pub(crate) const CACHED_ROWS: usize = 128;

fn insert_text<E: EntityTrait>(backend: DbBackend, rows: usize) -> String {
    use std::collections::HashMap;
    use std::fmt::Write;
    use std::sync::{LazyLock, Mutex, PoisonError};
    /// Table, backend (its placeholders and quotes), rows.
    type Key = (String, &'static str, usize);
    static TEXTS: LazyLock<Mutex<HashMap<Key, String>>> = LazyLock::new(Mutex::default);
    let table = E::default().table_name().to_owned();
    let postgres = backend == DbBackend::Postgres;
    let name = match backend {
        DbBackend::MySql => "mysql",
        DbBackend::Postgres => "postgres",
        _ => "sqlite",
    };
    let key = (table, name, rows);
    if rows <= CACHED_ROWS
        && let Some(text) = TEXTS.lock().unwrap_or_else(PoisonError::into_inner).get(&key)
    {
        return text.clone();
    }
    // Quoted as SeaORM quotes them (fixed names: no quote inside).
    let quote = if backend == DbBackend::MySql { '`' } else { '"' };
    let columns: Vec<String> = E::Column::iter().map(|column| format!("{quote}{}{quote}", column.as_str())).collect();
    let mut text = format!("INSERT INTO {quote}{}{quote} ({}) VALUES ", key.0, columns.join(", "));
    let mut n = 0;
    for row in 0..rows {
        text.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns.len() {
            n += 1;
            let separator = if column == 0 { "" } else { ", " };
            // Writing into a String cannot fail.
            let _ = if postgres { write!(text, "{separator}${n}") } else { write!(text, "{separator}?") };
        }
        text.push(')');
    }
    if rows <= CACHED_ROWS {
        TEXTS.lock().unwrap_or_else(PoisonError::into_inner).insert(key, text.clone());
    }
    text
}

/// A row of an entity's own select (`Entity::find()`: every column, in the
/// entity's order) decoded by column position, and a `NULL` seen as such
/// before any value is decoded. The derived decoder looks every column up
/// by name and, for each `NULL` in an optional column, formats an error
/// (the column's name, escaped) that `Option` then discards: about a third
/// of the cost of reading a history row. With a prefix (a joined select)
/// it decodes by name, as the derived decoder does.
#[derive(Debug)]
pub(crate) struct ByPosition<M>(pub(crate) M);

/// Whether column `index` of `row` is `NULL`, read off the driver's row
/// without decoding it (`false` where the driver cannot tell, and the
/// value's decoder decides).
fn is_null(row: &sea_orm::QueryResult, index: usize) -> bool {
    #[allow(unused_imports)]
    use sea_orm::sqlx::{Row, ValueRef};
    #[cfg(feature = "postgres")]
    if let Some(row) = row.try_as_pg_row() {
        return row.try_get_raw(index).is_ok_and(|value| value.is_null());
    }
    #[cfg(feature = "mysql")]
    if let Some(row) = row.try_as_mysql_row() {
        return row.try_get_raw(index).is_ok_and(|value| value.is_null());
    }
    #[cfg(feature = "sqlite")]
    if let Some(row) = row.try_as_sqlite_row() {
        return row.try_get_raw(index).is_ok_and(|value| value.is_null());
    }
    let _ = (row, index);
    false
}

/// Reads the columns of one row in order.
pub(crate) struct Columns<'r> {
    row: &'r sea_orm::QueryResult,
    next: usize,
    /// A later row of a result whose first row passed [`check_declared`]:
    /// its values decode without a check each.
    trusted: Trusted<'r>,
}

/// The driver's row, when its values decode unchecked.
#[derive(Clone, Copy)]
enum Trusted<'r> {
    No,
    #[cfg(feature = "postgres")]
    Postgres(&'r sea_orm::sqlx::postgres::PgRow),
    #[cfg(feature = "mysql")]
    MySql(&'r sea_orm::sqlx::mysql::MySqlRow),
    #[allow(dead_code)]
    Never(std::marker::PhantomData<&'r ()>),
}

impl<'r> Columns<'r> {
    /// Every value checked against its column's type.
    fn checked(row: &'r sea_orm::QueryResult) -> Self {
        Self { row, next: 0, trusted: Trusted::No }
    }

    /// No value checked (PostgreSQL and MySQL; SQLite stores no column
    /// type a check could rely on): a later row of a result whose first
    /// row passed [`check_declared`].
    fn trusted(row: &'r sea_orm::QueryResult) -> Self {
        #[cfg(feature = "postgres")]
        if let Some(pg) = row.try_as_pg_row() {
            return Self { row, next: 0, trusted: Trusted::Postgres(pg) };
        }
        #[cfg(feature = "mysql")]
        if let Some(my) = row.try_as_mysql_row() {
            return Self { row, next: 0, trusted: Trusted::MySql(my) };
        }
        Self::checked(row)
    }

    fn get<T: sea_orm::TryGetable + Field>(&mut self) -> Result<T, DbErr> {
        self.next += 1;
        #[allow(unused_imports)]
        use sea_orm::sqlx::Row;
        match self.trusted {
            #[cfg(feature = "postgres")]
            Trusted::Postgres(row) => row.try_get_unchecked::<T::Pg, _>(self.next - 1).map(T::from_pg).map_err(driver),
            #[cfg(feature = "mysql")]
            Trusted::MySql(row) => row.try_get_unchecked::<T::My, _>(self.next - 1).map(T::from_my).map_err(driver),
            _ => Ok(T::try_get_by_index(self.row, self.next - 1)?),
        }
    }

    fn optional<T: sea_orm::TryGetable + Field>(&mut self) -> Result<Option<T>, DbErr> {
        self.next += 1;
        #[allow(unused_imports)]
        use sea_orm::sqlx::Row;
        match self.trusted {
            #[cfg(feature = "postgres")]
            Trusted::Postgres(row) => {
                let value = row.try_get_unchecked::<Option<T::Pg>, _>(self.next - 1).map_err(driver)?;
                return Ok(value.map(T::from_pg));
            }
            #[cfg(feature = "mysql")]
            Trusted::MySql(row) => {
                let value = row.try_get_unchecked::<Option<T::My>, _>(self.next - 1).map_err(driver)?;
                return Ok(value.map(T::from_my));
            }
            _ => {}
        }
        if is_null(self.row, self.next - 1) {
            return Ok(None);
        }
        match T::try_get_by_index(self.row, self.next - 1) {
            Ok(value) => Ok(Some(value)),
            Err(sea_orm::TryGetError::Null(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn driver(error: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Type(error.to_string())
}

/// A model field's type as each server's driver decodes it: the same
/// types SeaORM's own decoding asks the driver for.
pub(crate) trait Field: Sized {
    #[cfg(feature = "postgres")]
    type Pg: for<'r> sea_orm::sqlx::Decode<'r, sea_orm::sqlx::Postgres> + sea_orm::sqlx::Type<sea_orm::sqlx::Postgres>;
    #[cfg(feature = "postgres")]
    fn from_pg(value: Self::Pg) -> Self;
    #[cfg(feature = "mysql")]
    type My: for<'r> sea_orm::sqlx::Decode<'r, sea_orm::sqlx::MySql> + sea_orm::sqlx::Type<sea_orm::sqlx::MySql>;
    #[cfg(feature = "mysql")]
    fn from_my(value: Self::My) -> Self;
}

macro_rules! plain_fields {
    ($($t:ty),*) => {$(
        impl Field for $t {
            #[cfg(feature = "postgres")]
            type Pg = $t;
            #[cfg(feature = "postgres")]
            fn from_pg(value: Self) -> Self {
                value
            }
            #[cfg(feature = "mysql")]
            type My = $t;
            #[cfg(feature = "mysql")]
            fn from_my(value: Self) -> Self {
                value
            }
        }
    )*};
}

plain_fields!(String, i64, serde_json::Value);

impl Field for uuid::Uuid {
    #[cfg(feature = "postgres")]
    type Pg = uuid::Uuid;
    #[cfg(feature = "postgres")]
    fn from_pg(value: Self) -> Self {
        value
    }
    #[cfg(feature = "mysql")]
    type My = MyUuid;
    #[cfg(feature = "mysql")]
    fn from_my(value: MyUuid) -> Self {
        value.0
    }
}

/// A UUID as SeaORM decodes one from MySQL: 16 bytes (`BINARY(16)`, what
/// this crate's schema stores), or its hyphenated text (MariaDB's `UUID`
/// type, a `CHAR(36)`). The driver's own `Uuid` reads only the first, so
/// the rows decoded without SeaORM would fail where the first row did not.
#[cfg(feature = "mysql")]
pub(crate) struct MyUuid(uuid::Uuid);

#[cfg(feature = "mysql")]
impl sea_orm::sqlx::Type<sea_orm::sqlx::MySql> for MyUuid {
    fn type_info() -> sea_orm::sqlx::mysql::MySqlTypeInfo {
        <&[u8] as sea_orm::sqlx::Type<sea_orm::sqlx::MySql>>::type_info()
    }

    fn compatible(ty: &sea_orm::sqlx::mysql::MySqlTypeInfo) -> bool {
        <&[u8] as sea_orm::sqlx::Type<sea_orm::sqlx::MySql>>::compatible(ty)
    }
}

#[cfg(feature = "mysql")]
impl<'r> sea_orm::sqlx::Decode<'r, sea_orm::sqlx::MySql> for MyUuid {
    fn decode(value: sea_orm::sqlx::mysql::MySqlValueRef<'r>) -> Result<Self, sea_orm::sqlx::error::BoxDynError> {
        let bytes = <&[u8] as sea_orm::sqlx::Decode<sea_orm::sqlx::MySql>>::decode(value)?;
        let id = match bytes.len() {
            16 => uuid::Uuid::from_slice(bytes)?,
            _ => uuid::Uuid::try_parse_ascii(bytes)?,
        };
        Ok(MyUuid(id))
    }
}

impl Field for UtcTime {
    #[cfg(feature = "postgres")]
    type Pg = chrono::DateTime<chrono::Utc>;
    #[cfg(feature = "postgres")]
    fn from_pg(value: Self::Pg) -> Self {
        UtcTime(value)
    }
    #[cfg(feature = "mysql")]
    type My = chrono::NaiveDateTime;
    #[cfg(feature = "mysql")]
    fn from_my(value: Self::My) -> Self {
        UtcTime(value.and_utc())
    }
}

impl Field for TextList {
    #[cfg(feature = "postgres")]
    type Pg = Vec<String>;
    #[cfg(feature = "postgres")]
    fn from_pg(value: Self::Pg) -> Self {
        TextList(value)
    }
    // A JSON array, decoded straight into the list.
    #[cfg(feature = "mysql")]
    type My = sea_orm::sqlx::types::Json<Vec<String>>;
    #[cfg(feature = "mysql")]
    fn from_my(value: Self::My) -> Self {
        TextList(value.0)
    }
}

/// What a model column holds, for [`check_declared`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Text,
    Uuid,
    Int,
    Json,
    List,
    Time,
}

impl Kind {
    /// What `driver` says of the field type this kind decodes as: the one
    /// mapping from kinds to field types, for every driver.
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    fn decodes(self, driver: impl Declared) -> bool {
        match self {
            Kind::Text => driver.decodes::<String>(),
            Kind::Uuid => driver.decodes::<uuid::Uuid>(),
            Kind::Int => driver.decodes::<i64>(),
            Kind::Json => driver.decodes::<serde_json::Value>(),
            Kind::List => driver.decodes::<TextList>(),
            Kind::Time => driver.decodes::<UtcTime>(),
        }
    }
}

/// A column type a driver declares: whether a field type decodes from it.
#[cfg(any(feature = "postgres", feature = "mysql"))]
trait Declared {
    fn decodes<T: Field>(&self) -> bool;
}

#[cfg(feature = "postgres")]
impl Declared for &sea_orm::sqlx::postgres::PgTypeInfo {
    fn decodes<T: Field>(&self) -> bool {
        <T::Pg as sea_orm::sqlx::Type<sea_orm::sqlx::Postgres>>::compatible(self)
    }
}

#[cfg(feature = "mysql")]
impl Declared for &sea_orm::sqlx::mysql::MySqlTypeInfo {
    fn decodes<T: Field>(&self) -> bool {
        <T::My as sea_orm::sqlx::Type<sea_orm::sqlx::MySql>>::compatible(self)
    }
}

/// A model decoded by column position from the entity's own select.
pub(crate) trait Positional: Sized {
    /// What each column holds, in order.
    const KINDS: &'static [Kind];
    fn decode(columns: &mut Columns<'_>) -> Result<Self, DbErr>;
}

/// Checks every column the driver declares for a result (from its first
/// row) against the model's: the declared type holds for every row,
/// `NULL`s included, so the rows after the first decode without a check
/// per value, which was about a fifth of decoding a record. On SQLite,
/// whose columns hold any type, every value stays checked.
fn check_declared<M: Positional>(row: &sea_orm::QueryResult) -> Result<(), DbErr> {
    #[cfg(feature = "postgres")]
    if let Some(pg) = row.try_as_pg_row() {
        return check_columns(pg, M::KINDS);
    }
    #[cfg(feature = "mysql")]
    if let Some(my) = row.try_as_mysql_row() {
        return check_columns(my, M::KINDS);
    }
    let _ = (row, M::KINDS);
    Ok(())
}

/// Checks `row`'s declared columns against `kinds`, in order.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn check_columns<R: sea_orm::sqlx::Row>(row: &R, kinds: &[Kind]) -> Result<(), DbErr>
where
    for<'t> &'t <R::Database as sea_orm::sqlx::Database>::TypeInfo: Declared,
{
    use sea_orm::sqlx::{Column, TypeInfo};
    let columns = row.columns();
    if columns.len() != kinds.len() {
        return Err(DbErr::Type(format!("{} columns, expected {}", columns.len(), kinds.len())));
    }
    for ((n, column), kind) in columns.iter().enumerate().zip(kinds) {
        if !kind.decodes(column.type_info()) {
            let (name, ty) = (column.name(), column.type_info().name());
            return Err(DbErr::Type(format!("column {} ({name}) is {ty}, which the model does not decode", n + 1)));
        }
    }
    Ok(())
}

/// Every row of `statement` (an entity's own select) as its model, decoded
/// by position. On PostgreSQL and MySQL the first row's declared column
/// types are checked against the model's and the rest decode without a
/// check per value; on SQLite every value is checked.
pub(crate) async fn all_by_position<M: Positional, C: sea_orm::ConnectionTrait>(
    conn: &C,
    statement: sea_orm::Statement,
) -> Result<Vec<M>, DbErr> {
    let rows = conn.query_all_raw(statement).await?;
    let mut models = Vec::with_capacity(rows.len());
    for (n, row) in rows.iter().enumerate() {
        let mut columns = if n == 0 {
            check_declared::<M>(row)?;
            Columns::checked(row)
        } else {
            Columns::trusted(row)
        };
        models.push(M::decode(&mut columns)?);
    }
    Ok(models)
}

impl sea_orm::FromQueryResult for ByPosition<history::Model> {
    fn from_query_result(row: &sea_orm::QueryResult, pre: &str) -> Result<Self, DbErr> {
        if !pre.is_empty() {
            return history::Model::from_query_result(row, pre).map(Self);
        }
        history::Model::decode(&mut Columns::checked(row)).map(Self)
    }
}

impl Positional for history::Model {
    const KINDS: &'static [Kind] = &[
        Kind::Text,
        Kind::Uuid,
        Kind::Uuid,
        Kind::Int,
        Kind::Text,
        Kind::Text,
        Kind::Text,
        Kind::Text,
        Kind::Json,
        Kind::Text,
        Kind::Text,
        Kind::Text,
        Kind::Text,
        Kind::Text,
        Kind::List,
        Kind::Text,
        Kind::Text,
        Kind::Text,
        Kind::Text,
        Kind::Int,
        Kind::Json,
        Kind::Json,
        Kind::Text,
        Kind::Text,
        Kind::Time,
        Kind::Text,
    ];

    fn decode(c: &mut Columns<'_>) -> Result<Self, DbErr> {
        Ok(history::Model {
            workspace_id: c.get()?,
            id: c.get()?,
            request_id: c.optional()?,
            request_revision: c.optional()?,
            category: c.get()?,
            code: c.get()?,
            actor_kind: c.get()?,
            actor_id: c.get()?,
            actor: c.get()?,
            object_type: c.get()?,
            operation: c.get()?,
            decision: c.optional()?,
            outcome: c.optional()?,
            reason: c.optional()?,
            reason_codes: c.get()?,
            correlation_id: c.optional()?,
            trace_hash: c.optional()?,
            idempotency_key: c.optional()?,
            policy_version: c.optional()?,
            latency_us: c.optional()?,
            request_json: c.optional()?,
            response_json: c.optional()?,
            redaction_policy: c.optional()?,
            redaction_version: c.optional()?,
            created_at: c.get()?,
            content_hash: c.get()?,
        })
    }
}

impl sea_orm::FromQueryResult for ByPosition<request::Model> {
    fn from_query_result(row: &sea_orm::QueryResult, pre: &str) -> Result<Self, DbErr> {
        if !pre.is_empty() {
            return request::Model::from_query_result(row, pre).map(Self);
        }
        request::Model::decode(&mut Columns::checked(row)).map(Self)
    }
}

impl Positional for request::Model {
    const KINDS: &'static [Kind] = &[
        Kind::Text,
        Kind::Uuid,
        Kind::Text,
        Kind::Text,
        Kind::Text,
        Kind::Text,
        Kind::Text,
        Kind::Json,
        Kind::Text,
        Kind::Text,
        Kind::Text,
        Kind::Json,
        Kind::Int,
        Kind::Text,
        Kind::Time,
        Kind::Uuid,
        Kind::Text,
        Kind::Text,
        Kind::List,
        Kind::Json,
        Kind::Int,
        Kind::Time,
        Kind::Time,
        Kind::Text,
        Kind::Text,
    ];

    fn decode(c: &mut Columns<'_>) -> Result<Self, DbErr> {
        Ok(request::Model {
            workspace_id: c.get()?,
            id: c.get()?,
            state_type: c.get()?,
            state_id: c.get()?,
            operation: c.get()?,
            actor_kind: c.get()?,
            actor_id: c.get()?,
            requested_by: c.get()?,
            intent: c.get()?,
            status: c.get()?,
            pending_reason: c.optional()?,
            approvals: c.get()?,
            expected_state_version: c.optional()?,
            stale_strategy: c.get()?,
            expires_at: c.optional()?,
            superseded_by: c.optional()?,
            idempotency_key: c.optional()?,
            category: c.optional()?,
            tags: c.get()?,
            metadata: c.get()?,
            revision: c.get()?,
            created_at: c.get()?,
            updated_at: c.get()?,
            creation_digest: c.get()?,
            state_digest: c.optional()?,
        })
    }
}

mod values {
    use chrono::{DateTime, NaiveDateTime, Utc};
    use sea_orm::sea_query::{ArrayType, ColumnType, Nullable, ValueType, ValueTypeErr};
    use sea_orm::{ColIdx, DbErr, QueryResult, TryGetError, TryGetable, Value};

    /// A time column: an instant in UTC, with microseconds.
    ///
    /// Stored as `timestamptz` on PostgreSQL (zoned values are bound and
    /// decoded there, so no session time zone applies), as a naive UTC
    /// `DATETIME(6)` on MySQL and as naive UTC text on SQLite. Its
    /// [`Value`] is the naive form.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct UtcTime(pub DateTime<Utc>);

    impl UtcTime {
        /// `value` (this type's [`Value`]) as PostgreSQL's `timestamptz`
        /// takes it: zoned, so the server does not read it in the
        /// session's time zone. Other values are returned as they are.
        pub fn on_postgres(value: Value) -> Value {
            match value {
                Value::ChronoDateTime(naive) => Value::ChronoDateTimeUtc(naive.map(|at| at.and_utc())),
                other => other,
            }
        }
    }

    impl From<UtcTime> for Value {
        fn from(time: UtcTime) -> Self {
            Value::ChronoDateTime(Some(time.0.naive_utc()))
        }
    }

    impl Nullable for UtcTime {
        fn null() -> Value {
            Value::ChronoDateTime(None)
        }
    }

    impl ValueType for UtcTime {
        fn try_from(value: Value) -> Result<Self, ValueTypeErr> {
            match value {
                Value::ChronoDateTime(Some(naive)) => Ok(Self(naive.and_utc())),
                Value::ChronoDateTimeUtc(Some(at)) => Ok(Self(at)),
                _ => Err(ValueTypeErr),
            }
        }

        fn type_name() -> String {
            "UtcTime".to_owned()
        }

        fn array_type() -> ArrayType {
            ArrayType::ChronoDateTimeUtc
        }

        /// The shared PostgreSQL schema's type, by which
        /// [`bind_value`](super::bind_value) binds these columns there (the migrations
        /// write each backend's DDL themselves).
        fn column_type() -> ColumnType {
            ColumnType::TimestampWithTimeZone
        }
    }

    impl TryGetable for UtcTime {
        fn try_get_by<I: ColIdx>(row: &QueryResult, index: I) -> Result<Self, TryGetError> {
            // The PostgreSQL driver decodes `timestamptz` into zoned values
            // only; the others store naive UTC.
            #[cfg(feature = "postgres")]
            if row.try_as_pg_row().is_some() {
                return DateTime::<Utc>::try_get_by(row, index).map(Self);
            }
            // SQLite holds the text this type's value binds, `%F %T%.f`:
            // parse that one form first. The driver's own decoding tries
            // two zoned forms before it, and every record read pays for
            // them; anything else (NULL, another form) goes to it as before.
            #[cfg(feature = "sqlite")]
            if let Some(sqlite) = row.try_as_sqlite_row()
                && let Ok(Some(text)) =
                    sea_orm::sqlx::Row::try_get::<Option<&str>, _>(sqlite, index.as_sqlx_sqlite_index())
                && let Ok(naive) = NaiveDateTime::parse_from_str(text, STORED_FORM)
            {
                return Ok(Self(naive.and_utc()));
            }
            NaiveDateTime::try_get_by(row, index).map(|naive| Self(naive.and_utc()))
        }
    }

    /// The text form of a time on SQLite, as the driver binds a naive
    /// date-time.
    #[cfg(feature = "sqlite")]
    const STORED_FORM: &str = "%F %T%.f";

    /// A list of text (a request's tags, a record's reason codes), in order.
    ///
    /// Stored as `text[]` on PostgreSQL and as a JSON array on MySQL and
    /// SQLite. Its [`Value`] is the JSON array.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
    pub struct TextList(pub Vec<String>);

    impl TextList {
        /// `value` (this type's [`Value`]) as PostgreSQL's `text[]` takes
        /// it. Other values are returned as they are.
        #[cfg(feature = "postgres")]
        pub fn on_postgres(value: Value) -> Value {
            let Value::Json(json) = value else { return value };
            let items = json.map(|json| match *json {
                serde_json::Value::Array(items) => items.into_iter().map(text).collect(),
                // This type's value is always an array; anything else is
                // one element, never a panic in the driver.
                other => vec![text(other)],
            });
            Value::Array(ArrayType::String, items.map(Box::new))
        }
    }

    /// One element of a `text[]`: the driver expects a string value for
    /// each, and panics on anything else.
    #[cfg(feature = "postgres")]
    fn text(item: serde_json::Value) -> Value {
        match item {
            serde_json::Value::String(text) => Value::String(Some(text)),
            other => Value::String(Some(other.to_string())),
        }
    }

    impl From<TextList> for Value {
        fn from(list: TextList) -> Self {
            let items = list.0.into_iter().map(serde_json::Value::String).collect();
            Value::Json(Some(Box::new(serde_json::Value::Array(items))))
        }
    }

    impl Nullable for TextList {
        fn null() -> Value {
            Value::Json(None)
        }
    }

    impl ValueType for TextList {
        fn try_from(value: Value) -> Result<Self, ValueTypeErr> {
            match value {
                Value::Json(Some(json)) => serde_json::from_value(*json).map(Self).map_err(|_| ValueTypeErr),
                #[cfg(feature = "postgres")]
                Value::Array(ArrayType::String, Some(items)) => items
                    .into_iter()
                    .map(|item| match item {
                        Value::String(Some(text)) => Ok(text),
                        _ => Err(ValueTypeErr),
                    })
                    .collect::<Result<_, _>>()
                    .map(Self),
                _ => Err(ValueTypeErr),
            }
        }

        fn type_name() -> String {
            "TextList".to_owned()
        }

        fn array_type() -> ArrayType {
            ArrayType::String
        }

        /// The shared PostgreSQL schema's type, `text[]`, by which
        /// [`bind_value`](super::bind_value) binds these columns there.
        fn column_type() -> ColumnType {
            ColumnType::Array(sea_orm::sea_query::RcOrArc::new(ColumnType::Text))
        }
    }

    impl TryGetable for TextList {
        fn try_get_by<I: ColIdx>(row: &QueryResult, index: I) -> Result<Self, TryGetError> {
            #[cfg(feature = "postgres")]
            if row.try_as_pg_row().is_some() {
                return Vec::<String>::try_get_by(row, index).map(Self);
            }
            // SQLite's JSON is text: read the list from it directly rather
            // than through a JSON tree first. Anything but text goes the
            // general way.
            #[cfg(feature = "sqlite")]
            if let Some(sqlite) = row.try_as_sqlite_row()
                && let Ok(Some(text)) =
                    sea_orm::sqlx::Row::try_get::<Option<&str>, _>(sqlite, index.as_sqlx_sqlite_index())
            {
                return serde_json::from_str(text)
                    .map(Self)
                    .map_err(|e| TryGetError::DbErr(DbErr::Type(format!("a list of text as JSON: {e}"))));
            }
            let json = serde_json::Value::try_get_by(row, index)?;
            serde_json::from_value(json)
                .map(Self)
                .map_err(|e| TryGetError::DbErr(DbErr::Type(format!("a list of text as JSON: {e}"))))
        }
    }
}

/// `governance_requests`: one row per request, its current state.
pub mod request {
    use sea_orm::entity::prelude::*;

    /// A stored request.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "governance_requests")]
    pub struct Model {
        /// Tenant; leads the primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        /// Request id (UUIDv7).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Governed state kind.
        pub state_type: String,
        /// Governed state id.
        pub state_id: String,
        /// Mutation wanted.
        pub operation: String,
        /// Requesting actor's kind (filterable; what the request is decoded from).
        pub actor_kind: String,
        /// Requesting actor's id (filterable; what the request is decoded from).
        pub actor_id: String,
        /// The requesting principal's delegation chain, `{"delegation": […]}`
        /// (rows written before hold the whole principal; see
        /// `governance_abstractions::provider::StoredPrincipal`).
        pub requested_by: Json,
        /// Why.
        pub intent: String,
        /// Lifecycle status.
        pub status: String,
        /// What a pending request waits for.
        pub pending_reason: Option<String>,
        /// Approval requirements and decisions.
        pub approvals: Json,
        /// Expected state version.
        pub expected_state_version: Option<i64>,
        /// Strategy when that version is stale.
        pub stale_strategy: String,
        /// Expiry.
        pub expires_at: Option<super::UtcTime>,
        /// The newer request that superseded this one.
        pub superseded_by: Option<Uuid>,
        /// Unique per workspace when set.
        pub idempotency_key: Option<String>,
        /// Free category.
        pub category: Option<String>,
        /// Free tags.
        pub tags: super::TextList,
        /// Free JSON.
        pub metadata: Json,
        /// Optimistic-concurrency revision.
        pub revision: i64,
        /// Creation time.
        pub created_at: super::UtcTime,
        /// Last write time.
        pub updated_at: super::UtcTime,
        /// Digest of the creation input, for idempotent retries.
        pub creation_digest: String,
        /// Digest of the whole request at this revision; none on rows
        /// written before this column existed.
        pub state_digest: Option<String>,
    }

    /// No relations are navigated through SeaORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `governance_history`: append-only records.
pub mod history {
    use sea_orm::entity::prelude::*;

    /// A stored history record.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "governance_history")]
    pub struct Model {
        /// Tenant; leads the primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        /// Record id (UUIDv7).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The request this belongs to.
        pub request_id: Option<Uuid>,
        /// The request revision it belongs to.
        pub request_revision: Option<i64>,
        /// Where the record comes from.
        pub category: String,
        /// What happened.
        pub code: String,
        /// Acting actor's kind (filterable; what the record is decoded from).
        pub actor_kind: String,
        /// Acting actor's id (filterable; what the record is decoded from).
        pub actor_id: String,
        /// The acting principal's delegation chain, `{"delegation": […]}`
        /// (rows written before hold the whole principal; see
        /// `governance_abstractions::provider::StoredPrincipal`).
        pub actor: Json,
        /// Governed object type.
        pub object_type: String,
        /// Governed operation.
        pub operation: String,
        /// Policy decision.
        pub decision: Option<String>,
        /// Application outcome.
        pub outcome: Option<String>,
        /// Human-readable reason.
        pub reason: Option<String>,
        /// Machine-readable reasons.
        pub reason_codes: super::TextList,
        /// Correlation id.
        pub correlation_id: Option<String>,
        /// Trace hash.
        pub trace_hash: Option<String>,
        /// Unique per workspace when set.
        pub idempotency_key: Option<String>,
        /// Policy version.
        pub policy_version: Option<String>,
        /// Evaluation latency (µs).
        pub latency_us: Option<i64>,
        /// Redacted request payload.
        pub request_json: Option<Json>,
        /// Redacted response payload.
        pub response_json: Option<Json>,
        /// Redaction policy name.
        pub redaction_policy: Option<String>,
        /// Redaction policy version.
        pub redaction_version: Option<String>,
        /// Record time.
        pub created_at: super::UtcTime,
        /// SHA-256 over the canonical record.
        pub content_hash: String,
    }

    /// No relations are navigated through SeaORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `governance_checkpoints`: insert-only seals over runs of a workspace's log.
pub mod checkpoint {
    use sea_orm::entity::prelude::*;

    /// A stored checkpoint.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "governance_checkpoints")]
    pub struct Model {
        /// Tenant; leads the primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        /// 1, 2, 3, … per workspace.
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i64,
        /// Leaf index of the first sealed record.
        pub first_index: i64,
        /// How many records it seals.
        pub record_count: i64,
        /// Merkle root of the sealed leaves.
        pub root: String,
        /// Digest of the checkpoint before (none for the first).
        pub previous: Option<String>,
        /// Seal time.
        pub created_at: super::UtcTime,
        /// Digest of the checkpoint's fields.
        pub digest: String,
    }

    /// No relations are navigated through SeaORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `governance_seals`: insert-only seal entries, one per sealed record.
pub mod seal {
    use sea_orm::entity::prelude::*;

    /// A stored seal entry.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "governance_seals")]
    pub struct Model {
        /// Tenant; leads the primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        /// The record's place in the workspace's log.
        #[sea_orm(primary_key, auto_increment = false)]
        pub leaf_index: i64,
        /// The sealed record (unique per workspace).
        pub record_id: Uuid,
        /// The record's content hash when sealed.
        pub content_hash: String,
        /// The checkpoint that sealed it.
        pub checkpoint_seq: i64,
    }

    /// No relations are navigated through SeaORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[cfg(test)]
mod tests {
    use governance_abstractions::provider::postgres_schema::POSTGRES_COLUMNS;
    use sea_orm::IdenStatic;
    use sea_orm::sea_query::ValueType;

    use super::*;

    /// The entity's column types for PostgreSQL's time and list columns
    /// are what [`bind_value`] converts by: exactly the shared schema's
    /// `timestamptz` and `text[]` columns, and every shared column but the
    /// server-stamped `tx_id` and the derived counts is an entity column.
    #[test]
    fn entities_declare_the_shared_postgres_types() {
        fn declared<E: EntityTrait>(entity: E) -> Vec<(String, String)> {
            let table = entity.table_name().to_owned();
            E::Column::iter()
                .map(|column| {
                    let expected = POSTGRES_COLUMNS
                        .iter()
                        .find(|c| c.table == table && c.column == column.as_str())
                        .unwrap_or_else(|| panic!("{table}.{} is not in the shared schema", column.as_str()));
                    let is_time = matches!(column.def().get_column_type(), ColumnType::TimestampWithTimeZone);
                    let is_list = matches!(column.def().get_column_type(), ColumnType::Array(_));
                    assert_eq!(is_time, expected.udt_name == "timestamptz", "{table}.{}", column.as_str());
                    assert_eq!(is_list, expected.udt_name == "_text", "{table}.{}", column.as_str());
                    (table.clone(), column.as_str().to_owned())
                })
                .collect()
        }
        let mut columns = declared(request::Entity);
        columns.extend(declared(history::Entity));
        columns.extend(declared(checkpoint::Entity));
        columns.extend(declared(seal::Entity));
        // Not entity columns: the server-stamped `tx_id`, and the derived
        // count tables, which only raw statements read.
        let derived = governance_abstractions::provider::postgres_schema::DERIVED_TABLES;
        let shared: Vec<(String, String)> = POSTGRES_COLUMNS
            .iter()
            .filter(|c| c.column != "tx_id" && !derived.contains(&c.table))
            .map(|c| (c.table.to_owned(), c.column.to_owned()))
            .collect();
        assert_eq!(columns, shared);
    }

    #[test]
    fn values_are_bound_in_each_backend_s_form() {
        let at = chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("in range");
        let time: Value = UtcTime(at).into();
        assert_eq!(time, Value::ChronoDateTime(Some(at.naive_utc())));
        let list: Value = TextList(vec!["a".into(), "b, \"c\"".into()]).into();
        assert_eq!(list, Value::Json(Some(Box::new(serde_json::json!(["a", "b, \"c\""])))));
        for backend in [DbBackend::MySql, DbBackend::Sqlite] {
            assert_eq!(bind_value(backend, history::Column::CreatedAt, time.clone()), time);
            assert_eq!(bind_value(backend, history::Column::ReasonCodes, list.clone()), list);
        }
        let postgres = DbBackend::Postgres;
        assert_eq!(bind_value(postgres, history::Column::CreatedAt, time.clone()), Value::ChronoDateTimeUtc(Some(at)));
        let texts = vec![Value::String(Some("a".into())), Value::String(Some("b, \"c\"".into()))];
        let array = Value::Array(sea_orm::sea_query::ArrayType::String, Some(Box::new(texts)));
        assert_eq!(bind_value(postgres, request::Column::Tags, list.clone()), array);
        // Other JSON stays JSON, NULL stays NULL.
        assert_eq!(bind_value(postgres, request::Column::Metadata, list.clone()), list);
        let none: Value = Option::<UtcTime>::None.into();
        assert_eq!(bind_value(postgres, request::Column::ExpiresAt, none), Value::ChronoDateTimeUtc(None));
        // Decoded back from either form.
        assert_eq!(<UtcTime as ValueType>::try_from(Value::ChronoDateTimeUtc(Some(at))).ok(), Some(UtcTime(at)));
        let decoded = <TextList as ValueType>::try_from(array).ok();
        assert_eq!(decoded, Some(TextList(vec!["a".into(), "b, \"c\"".into()])));
    }

    /// Three history rows of literal values on `backend`, `request_revision`
    /// as `revision` (`NULL` in every row).
    fn literal_rows(backend: DbBackend, revision: &str) -> sea_orm::Statement {
        let sql = match backend {
            DbBackend::MySql => format!(
                "SELECT 'ws', UNHEX(REPLACE(UUID(), '-', '')), CAST(NULL AS BINARY(16)), {revision}, 'decision', \
                 'decision.approved', 'user', 'u', JSON_OBJECT(), 'o', 'op', 'approved', CAST(NULL AS CHAR), \
                 CAST(NULL AS CHAR), JSON_ARRAY('a', 'b'), CAST(NULL AS CHAR), CAST(NULL AS CHAR), \
                 CAST(NULL AS CHAR), CAST(NULL AS CHAR), CAST(7 AS SIGNED), CAST(NULL AS CHAR), JSON_OBJECT('ok', true), \
                 CAST(NULL AS CHAR), CAST(NULL AS CHAR), CAST(NOW(6) + INTERVAL n SECOND AS DATETIME(6)), 'hash' \
                 FROM (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3) AS t ORDER BY n"
            ),
            _ => format!(
                "SELECT 'ws'::text, gen_random_uuid(), NULL::uuid, {revision}, 'decision'::text, \
                 'decision.approved'::text, 'user'::text, 'u'::text, '{{}}'::jsonb, 'o'::text, 'op'::text, \
                 'approved'::text, NULL::text, NULL::text, ARRAY['a', 'b']::text[], NULL::text, NULL::text, \
                 NULL::text, NULL::text, 7::int8, NULL::jsonb, '{{\"ok\": true}}'::jsonb, NULL::text, NULL::text, \
                 now() + n * interval '1 second', 'hash'::text FROM generate_series(1, 3) AS n"
            ),
        };
        sea_orm::Statement::from_string(backend, sql)
    }

    /// On PostgreSQL and MySQL only a result's first row is checked value
    /// by value, but it checks every column's declared type, a column that
    /// is `NULL` in every row too: the later rows decode the same values
    /// unchecked, and a result whose columns are not the model's fails
    /// whichever rows hold values.
    #[tokio::test]
    async fn a_result_is_type_checked_once_for_every_row() {
        use governance_test_support::{Server, fresh_database_or_skip};
        let cases = [
            (Server::Postgres, DbBackend::Postgres, "NULL::int8", ["NULL::text", "NULL::int4", "NULL::numeric"]),
            (
                Server::MySql,
                DbBackend::MySql,
                "CAST(NULL AS SIGNED)",
                ["CAST(NULL AS CHAR)", "CAST(NULL AS DATETIME)", "CAST(NULL AS DECIMAL(20, 0))"],
            ),
        ];
        for (server, backend, revision, wrong_types) in cases {
            let Some(url) = fresh_database_or_skip(server).await else { continue };
            let db = sea_orm::Database::connect(url.as_str()).await.expect("connects");
            let rows = all_by_position::<history::Model, _>(&db, literal_rows(backend, revision)).await;
            let rows = rows.unwrap_or_else(|e| panic!("{backend:?}: {e}"));
            assert_eq!(rows.len(), 3);
            for row in &rows {
                assert_eq!(
                    (row.request_id, row.request_revision, row.latency_us),
                    (None, None, Some(7)),
                    "{backend:?}"
                );
                assert_eq!(row.reason_codes, TextList(vec!["a".into(), "b".into()]), "{backend:?}");
                assert_eq!(row.response_json, Some(serde_json::json!({"ok": true})), "{backend:?}");
                assert_eq!((row.decision.as_deref(), row.outcome.as_deref()), (Some("approved"), None));
            }
            assert!(rows[0].created_at < rows[2].created_at, "{backend:?}");
            assert_ne!(rows[0].id, rows[1].id, "{backend:?}");
            for wrong in wrong_types {
                let error = all_by_position::<history::Model, _>(&db, literal_rows(backend, wrong)).await;
                let error = error.expect_err(wrong).to_string();
                assert!(error.contains("column 4 "), "{backend:?} {wrong}: {error}");
            }
            let short = sea_orm::Statement::from_string(backend, "SELECT 'ws'");
            all_by_position::<history::Model, _>(&db, short).await.expect_err("one column of 26");
        }
    }

    /// A MySQL schema that keeps UUIDs as text (MariaDB's `UUID` type, a
    /// `CHAR(36)`) decodes in every row of a result, as SeaORM decodes the
    /// first: the rows after it are not held to the binary form only.
    #[cfg(feature = "mysql")]
    #[tokio::test]
    async fn a_mysql_uuid_kept_as_text_decodes_in_every_row() {
        use governance_test_support::{Server, fresh_database_or_skip};
        let Some(url) = fresh_database_or_skip(Server::MySql).await else { return };
        let db = sea_orm::Database::connect(url.as_str()).await.expect("connects");
        let mut statement = literal_rows(DbBackend::MySql, "CAST(NULL AS SIGNED)");
        let binary = "UNHEX(REPLACE(UUID(), '-', ''))";
        assert!(statement.sql.contains(binary));
        let ids = ["0190f3a1-7c2e-7d4b-9a6f-3e1b2c4d5e6f", "0190f3a1-7c2e-7d4b-9a6f-3e1b2c4d5e70"];
        statement.sql = statement.sql.replace(binary, &format!("IF(n = 1, '{}', '{}')", ids[0], ids[1]));
        let rows = all_by_position::<history::Model, _>(&db, statement).await.expect("text UUIDs decode");
        let read: Vec<String> = rows.iter().map(|row| row.id.to_string()).collect();
        assert_eq!(read, [ids[0], ids[1], ids[1]]);
        let mut statement = literal_rows(DbBackend::MySql, "CAST(NULL AS SIGNED)");
        statement.sql = statement.sql.replace(binary, "IF(n = 1, UNHEX(REPLACE(UUID(), '-', '')), 'not a uuid')");
        let error = all_by_position::<history::Model, _>(&db, statement).await.expect_err("a later row is no UUID");
        assert!(error.to_string().contains("uuid") || error.to_string().contains("UUID"), "{error}");
    }
}
