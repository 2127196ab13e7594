//! The event-sourced alternative: governance requests as an aggregate whose
//! events are its only storage, in the shape cqrs-es with postgres-es (or
//! its MySQL and SQLite siblings) gives a team that writes it instead of
//! using this library.
//!
//! - One `events` table, the DDL of postgres-es: `(aggregate_type,
//!   aggregate_id, sequence)` is the primary key, and each row holds the
//!   event's type and version, its JSON payload and JSON metadata (the
//!   actor and the time, as cqrs-es metadata carries them). No secondary
//!   index: nothing queries events except by aggregate.
//! - A command loads every event of its aggregate in sequence order,
//!   decodes each (payload and metadata, through serde), applies them to
//!   rebuild the state, checks the command against it and inserts the new
//!   event at `sequence = last + 1` in a transaction. A writer that raced
//!   and lost is refused by the primary key; it reloads, replays and tries
//!   again. So every command costs a `SELECT`, `BEGIN`, one `INSERT` per
//!   event and `COMMIT`, as with cqrs-es (which loads on every command).
//! - No snapshots: a request's state is the replay of all its events.
//!
//! Like the other baselines it validates nothing beyond the lifecycle move,
//! hashes nothing and redacts nothing.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use governance_abstractions::{NewRequest, PendingReason, Principal, RequestId, RequestStatus, Timestamp};
use governance_postgres::sqlx::{self, PgPool, types::Json};
use governance_seaorm::sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, SqlErr, TransactionTrait, Value as SeaValue,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::baseline::Outcome;
use crate::measure::Done;

/// `aggregate_type` of every row (cqrs-es: `Aggregate::aggregate_type`).
const AGGREGATE_TYPE: &str = "GovernanceRequest";

/// `event_version` of every row (cqrs-es: `DomainEvent::event_version`).
const EVENT_VERSION: &str = "1.0";

/// The table, as postgres-es, mysql-es and sqlite-es create it.
fn create_table(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::MySql => {
            "CREATE TABLE IF NOT EXISTS events (
                aggregate_type varchar(255) NOT NULL,
                aggregate_id varchar(255) NOT NULL,
                sequence bigint NOT NULL CHECK (sequence >= 0),
                event_type varchar(255) NOT NULL,
                event_version varchar(255) NOT NULL,
                payload json NOT NULL,
                metadata json NOT NULL,
                PRIMARY KEY (aggregate_type, aggregate_id, sequence)
            )"
        }
        _ => {
            "CREATE TABLE IF NOT EXISTS events (
                aggregate_type text NOT NULL,
                aggregate_id text NOT NULL,
                sequence bigint NOT NULL CHECK (sequence >= 0),
                event_type text NOT NULL,
                event_version text NOT NULL,
                payload json NOT NULL,
                metadata json NOT NULL,
                PRIMARY KEY (aggregate_type, aggregate_id, sequence)
            )"
        }
    }
}

const SELECT: &str = "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata \
    FROM events WHERE aggregate_type = ? AND aggregate_id = ? ORDER BY sequence";

const INSERT: &str = "INSERT INTO events \
    (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
    VALUES (?, ?, ?, ?, ?, ?, ?)";

/// The domain events, as a cqrs-es user declares them: each carries the
/// fields of its action, serialized by serde into the payload.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum RequestEvent {
    Created { id: RequestId, spec: Box<NewRequest>, created_at: Timestamp },
    Submitted { reason: PendingReason, at: Timestamp },
    Annotated { metadata: Value, at: Timestamp },
}

impl RequestEvent {
    /// `event_type` (cqrs-es: `DomainEvent::event_type`).
    fn event_type(&self) -> &'static str {
        match self {
            RequestEvent::Created { .. } => "RequestCreated",
            RequestEvent::Submitted { .. } => "RequestSubmitted",
            RequestEvent::Annotated { .. } => "RequestAnnotated",
        }
    }
}

/// What each event's metadata records: who acted, and when.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct EventMetadata {
    actor: Principal,
    recorded_at: Timestamp,
}

/// The commands of the benchmark's domain work.
#[derive(Clone, Debug)]
pub(crate) enum Command {
    Create { id: RequestId, spec: Box<NewRequest> },
    Submit { reason: PendingReason },
    Annotate { metadata: Value },
}

/// A request's state rebuilt from its events.
#[derive(Clone, Debug, Default)]
pub(crate) struct RequestAggregate {
    /// The last event's sequence (0: no events).
    pub(crate) sequence: i64,
    pub(crate) spec: Option<Box<NewRequest>>,
    pub(crate) status: Option<RequestStatus>,
    pub(crate) pending_reason: Option<PendingReason>,
    pub(crate) metadata: Value,
    pub(crate) updated_at: Option<Timestamp>,
}

impl RequestAggregate {
    fn apply(&mut self, sequence: i64, event: RequestEvent) {
        self.sequence = sequence;
        match event {
            RequestEvent::Created { spec, created_at, .. } => {
                self.metadata = spec.metadata.clone();
                (self.spec, self.status, self.updated_at) =
                    (Some(spec), Some(RequestStatus::Created), Some(created_at));
            }
            RequestEvent::Submitted { reason, at } => {
                (self.status, self.pending_reason, self.updated_at) =
                    (Some(RequestStatus::Pending), Some(reason), Some(at));
            }
            RequestEvent::Annotated { metadata, at } => (self.metadata, self.updated_at) = (metadata, Some(at)),
        }
    }

    /// The event `command` produces from this state, or why it is refused.
    fn handle(&self, command: Command, at: Timestamp) -> Outcome<RequestEvent> {
        match (command, self.status) {
            (Command::Create { id, spec }, None) => Ok(RequestEvent::Created { id, spec, created_at: at }),
            (Command::Submit { reason }, Some(RequestStatus::Created | RequestStatus::Pending)) => {
                Ok(RequestEvent::Submitted { reason, at })
            }
            (Command::Annotate { metadata }, Some(status)) if !status.is_terminal() => {
                Ok(RequestEvent::Annotated { metadata, at })
            }
            (command, status) => Err(format!("event-sourced: {command:?} refused in state {status:?}")),
        }
    }
}

/// One stored event, read into owned values as the event store reads it.
#[derive(Clone, Debug)]
pub(crate) struct EventRow {
    pub(crate) aggregate_type: String,
    pub(crate) aggregate_id: String,
    pub(crate) sequence: i64,
    pub(crate) event_type: String,
    pub(crate) event_version: String,
    pub(crate) payload: Value,
    pub(crate) metadata: Value,
}

impl EventRow {
    fn new(aggregate_id: &str, sequence: i64, event: &RequestEvent, by: &Principal, at: Timestamp) -> Outcome<Self> {
        let metadata = EventMetadata { actor: by.clone(), recorded_at: at };
        Ok(Self {
            aggregate_type: AGGREGATE_TYPE.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            sequence,
            event_type: event.event_type().to_owned(),
            event_version: EVENT_VERSION.to_owned(),
            payload: serde_json::to_value(event).map_err(|e| e.to_string())?,
            metadata: serde_json::to_value(metadata).map_err(|e| e.to_string())?,
        })
    }

    /// The typed event and metadata (cqrs-es: `EventEnvelope` from a
    /// `SerializedEvent`).
    pub(crate) fn decode(&self) -> Outcome<(RequestEvent, EventMetadata)> {
        let event = RequestEvent::deserialize(&self.payload).map_err(|e| format!("event payload: {e}"))?;
        let metadata = EventMetadata::deserialize(&self.metadata).map_err(|e| format!("event metadata: {e}"))?;
        Ok((event, metadata))
    }
}

/// The event store of one backend.
#[async_trait]
pub(crate) trait EventStore: Send + Sync {
    /// Creates the `events` table if it is missing.
    async fn create_table(&self) -> Outcome<()>;
    /// Every event of one aggregate, in sequence order.
    async fn load(&self, aggregate_id: &str) -> Outcome<Vec<EventRow>>;
    /// Inserts `events` in one transaction; `false` (rolled back) when the
    /// primary key refused one: another writer took that sequence first.
    async fn append(&self, events: &[EventRow]) -> Outcome<bool>;
}

/// The aggregate of `aggregate_id`, replayed from all its events.
pub(crate) async fn replay(store: &dyn EventStore, aggregate_id: &str) -> Outcome<RequestAggregate> {
    let mut aggregate = RequestAggregate::default();
    for row in store.load(aggregate_id).await? {
        let (event, _) = row.decode()?;
        aggregate.apply(row.sequence, event);
    }
    Ok(aggregate)
}

/// One command end to end: replay, decide, insert at the next sequence.
/// [`Done::Conflict`] when another writer took that sequence first.
pub(crate) async fn execute(
    store: &dyn EventStore,
    aggregate_id: &str,
    by: &Principal,
    command: Command,
) -> Outcome<Done> {
    let aggregate = replay(store, aggregate_id).await?;
    let at = Timestamp::now();
    let event = aggregate.handle(command, at)?;
    let row = EventRow::new(aggregate_id, aggregate.sequence + 1, &event, by, at)?;
    Ok(if store.append(std::slice::from_ref(&row)).await? { Done::Ok } else { Done::Conflict })
}

/// Stores `commands` as consecutive events of a new aggregate in one
/// transaction (seeding, not timed).
pub(crate) async fn seed(
    store: &dyn EventStore,
    aggregate_id: &str,
    by: &Principal,
    commands: impl IntoIterator<Item = Command>,
) -> Outcome<()> {
    let mut aggregate = RequestAggregate::default();
    let mut rows = Vec::new();
    for command in commands {
        let at = Timestamp::now();
        let event = aggregate.handle(command, at)?;
        rows.push(EventRow::new(aggregate_id, aggregate.sequence + 1, &event, by, at)?);
        aggregate.apply(aggregate.sequence + 1, event);
    }
    if store.append(&rows).await? { Ok(()) } else { Err(format!("event-sourced: {aggregate_id} exists")) }
}

fn text<E: std::fmt::Display>(error: E) -> String {
    error.to_string()
}

// ---------------------------------------------------------------- sqlx, PostgreSQL (postgres-es)

/// postgres-es's event store: sqlx on the provider's pool.
#[derive(Debug, Clone)]
pub(crate) struct PgEvents(pub(crate) PgPool);

/// The statements with PostgreSQL's numbered placeholders.
static PG_SELECT: LazyLock<String> = LazyLock::new(|| numbered(SELECT));
static PG_INSERT: LazyLock<String> = LazyLock::new(|| numbered(INSERT));

fn numbered(sql: &str) -> String {
    governance_seaorm::testing::statement(DbBackend::Postgres, sql, []).sql
}

#[async_trait]
impl EventStore for PgEvents {
    async fn create_table(&self) -> Outcome<()> {
        sqlx::query(create_table(DbBackend::Postgres)).execute(&self.0).await.map(drop).map_err(text)
    }

    async fn load(&self, aggregate_id: &str) -> Outcome<Vec<EventRow>> {
        use sqlx::Row;
        let rows = sqlx::query(PG_SELECT.as_str())
            .bind(AGGREGATE_TYPE)
            .bind(aggregate_id)
            .fetch_all(&self.0)
            .await
            .map_err(text)?;
        let row = |r: &sqlx::postgres::PgRow| -> Result<EventRow, sqlx::Error> {
            Ok(EventRow {
                aggregate_type: r.try_get(0)?,
                aggregate_id: r.try_get(1)?,
                sequence: r.try_get(2)?,
                event_type: r.try_get(3)?,
                event_version: r.try_get(4)?,
                payload: r.try_get(5)?,
                metadata: r.try_get(6)?,
            })
        };
        rows.iter().map(row).collect::<Result<_, _>>().map_err(text)
    }

    async fn append(&self, events: &[EventRow]) -> Outcome<bool> {
        let mut tx = self.0.begin().await.map_err(text)?;
        for e in events {
            let inserted = sqlx::query(PG_INSERT.as_str())
                .bind(&e.aggregate_type)
                .bind(&e.aggregate_id)
                .bind(e.sequence)
                .bind(&e.event_type)
                .bind(&e.event_version)
                .bind(Json(&e.payload))
                .bind(Json(&e.metadata))
                .execute(&mut *tx)
                .await;
            match inserted {
                Ok(_) => {}
                Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                    tx.rollback().await.map_err(text)?;
                    return Ok(false);
                }
                Err(error) => return Err(text(error)),
            }
        }
        tx.commit().await.map_err(text)?;
        Ok(true)
    }
}

// ---------------------------------------------------------------- SeaORM raw statements, any backend

/// The same event store through SeaORM's raw-statement path, on the
/// provider's own pool.
#[derive(Debug, Clone)]
pub(crate) struct SeaEvents(pub(crate) DatabaseConnection);

impl SeaEvents {
    fn statement(&self, sql: &str, values: Vec<SeaValue>) -> governance_seaorm::sea_orm::Statement {
        governance_seaorm::testing::statement(self.0.get_database_backend(), sql, values)
    }
}

#[async_trait]
impl EventStore for SeaEvents {
    async fn create_table(&self) -> Outcome<()> {
        self.0.execute_unprepared(create_table(self.0.get_database_backend())).await.map(drop).map_err(text)
    }

    async fn load(&self, aggregate_id: &str) -> Outcome<Vec<EventRow>> {
        let statement = self.statement(SELECT, vec![SeaValue::from(AGGREGATE_TYPE), SeaValue::from(aggregate_id)]);
        let rows = self.0.query_all_raw(statement).await.map_err(text)?;
        let row = |r: &governance_seaorm::sea_orm::QueryResult| -> Result<EventRow, DbErr> {
            Ok(EventRow {
                aggregate_type: r.try_get("", "aggregate_type")?,
                aggregate_id: r.try_get("", "aggregate_id")?,
                sequence: r.try_get("", "sequence")?,
                event_type: r.try_get("", "event_type")?,
                event_version: r.try_get("", "event_version")?,
                payload: r.try_get("", "payload")?,
                metadata: r.try_get("", "metadata")?,
            })
        };
        rows.iter().map(row).collect::<Result<_, _>>().map_err(text)
    }

    async fn append(&self, events: &[EventRow]) -> Outcome<bool> {
        let txn = self.0.begin().await.map_err(text)?;
        for e in events {
            let values = vec![
                SeaValue::from(e.aggregate_type.as_str()),
                SeaValue::from(e.aggregate_id.as_str()),
                SeaValue::from(e.sequence),
                SeaValue::from(e.event_type.as_str()),
                SeaValue::from(e.event_version.as_str()),
                SeaValue::from(e.payload.clone()),
                SeaValue::from(e.metadata.clone()),
            ];
            match txn.execute_raw(self.statement(INSERT, values)).await {
                Ok(_) => {}
                Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                    txn.rollback().await.map_err(text)?;
                    return Ok(false);
                }
                Err(error) => return Err(text(error)),
            }
        }
        txn.commit().await.map_err(text)?;
        Ok(true)
    }
}

/// The event store on `connection`'s backend, its table created.
pub(crate) async fn sea_events(connection: DatabaseConnection) -> Outcome<Arc<dyn EventStore>> {
    let store = SeaEvents(connection);
    store.create_table().await?;
    Ok(Arc::new(store))
}

/// postgres-es's event store on `pool`, its table created.
pub(crate) async fn pg_events(pool: PgPool) -> Outcome<Arc<dyn EventStore>> {
    let store = PgEvents(pool);
    store.create_table().await?;
    Ok(Arc::new(store))
}
