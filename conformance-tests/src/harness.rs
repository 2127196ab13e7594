//! What a backend supplies to run the suite, and what a case receives.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use governance_abstractions::{GovernanceService, GovernanceStore, RecordId, RequestId, WorkspaceId};
use uuid::Uuid;

/// A contract feature a backend may lack. A case that needs one is skipped,
/// by name and with the backend's reason, where it is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// The database itself refuses UPDATE and DELETE of history rows
    /// (needs [`TestStore::raw_history`]).
    DatabaseEnforcedAppendOnly,
    /// A privileged path that rewrites stored history and checkpoints past
    /// every guard, as an attacker with database access could (needs
    /// [`TestStore::tamper`]): the tamper-evidence cases use it.
    Tamper,
    /// Stored rows can hold values the library never writes (a column set to
    /// an impossible value through [`TamperAccess::corrupt_record`]).
    CorruptRows,
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Capability::DatabaseEnforcedAppendOnly => "database-enforced-append-only",
            Capability::Tamper => "tamper",
            Capability::CorruptRows => "corrupt-rows",
        })
    }
}

/// The capabilities a backend explicitly lacks, each with its reason.
#[derive(Clone, Debug, Default)]
pub struct Capabilities {
    missing: Vec<(Capability, &'static str)>,
}

impl Capabilities {
    /// Every capability present.
    pub fn all() -> Self {
        Self::default()
    }

    /// Declares `capability` missing, with the reason printed on every skip.
    pub fn without(mut self, capability: Capability, reason: &'static str) -> Self {
        self.missing.push((capability, reason));
        self
    }

    /// Why `capability` is missing, or `None` when present.
    pub fn missing_reason(&self, capability: Capability) -> Option<&'static str> {
        self.missing.iter().find(|(c, _)| *c == capability).map(|(_, why)| *why)
    }
}

/// Direct access to a backend's history storage that bypasses the traits,
/// used to check that the database itself refuses rewrites.
#[async_trait]
pub trait RawHistoryAccess: Send + Sync {
    /// Tries to change a stored record's reason with a plain UPDATE.
    async fn try_update(&self, workspace: &WorkspaceId, id: RecordId) -> Result<(), String>;
    /// Tries to remove a stored record with a plain DELETE.
    async fn try_delete(&self, workspace: &WorkspaceId, id: RecordId) -> Result<(), String>;
    /// Tries to empty the history table (TRUNCATE where the backend has it).
    async fn try_truncate(&self) -> Result<(), String>;
}

/// A privileged path past the append-only guards (triggers lifted inside
/// one transaction, or direct mutation in memory), for the tamper-evidence
/// cases. Each call commits its change.
#[async_trait]
pub trait TamperAccess: Send + Sync {
    /// Changes a stored record's reason to `tampered`, and its content hash
    /// to `content_hash` when given (an attacker who recomputes it).
    async fn alter_record(
        &self,
        workspace: &WorkspaceId,
        id: RecordId,
        content_hash: Option<String>,
    ) -> Result<(), String>;
    /// Deletes a stored record.
    async fn delete_record(&self, workspace: &WorkspaceId, id: RecordId) -> Result<(), String>;
    /// Copies a stored record, unchanged but for its workspace, into `to`.
    async fn copy_record(&self, from: &WorkspaceId, id: RecordId, to: &WorkspaceId) -> Result<(), String>;
    /// Overwrites the given fields of a stored checkpoint.
    async fn alter_checkpoint(&self, workspace: &WorkspaceId, seq: u64, change: CheckpointChange)
    -> Result<(), String>;
    /// Deletes a checkpoint and its seal entries.
    async fn delete_checkpoint(&self, workspace: &WorkspaceId, seq: u64) -> Result<(), String>;
    /// Changes a stored request's intent behind the store, leaving its state
    /// digest as it was.
    async fn alter_request(&self, workspace: &WorkspaceId, id: RequestId) -> Result<(), String>;
    /// Clears a stored request's state digest, as a row written before
    /// digests were stored has none.
    async fn clear_state_digest(&self, workspace: &WorkspaceId, id: RequestId) -> Result<(), String>;
    /// Overwrites the content hash a seal entry kept.
    async fn alter_seal(&self, workspace: &WorkspaceId, index: u64, content_hash: String) -> Result<(), String>;
    /// Sets a column of a stored record to a value that does not decode
    /// (for [`Capability::CorruptRows`]).
    async fn corrupt_record(&self, workspace: &WorkspaceId, id: RecordId) -> Result<(), String>;
    /// Changes who a stored record says acted, to the user `actor_id`, where
    /// filters and counts by principal read it (on SQL backends the
    /// `actor_kind` and `actor_id` columns), leaving everything else as
    /// stored. The default refuses: a store that implements the rest of
    /// this trait should implement this too.
    async fn reassign_actor(&self, workspace: &WorkspaceId, id: RecordId, actor_id: &str) -> Result<(), String> {
        let _ = (workspace, id, actor_id);
        Err("reassign_actor is not implemented by this store's tamper access".into())
    }
}

/// Fields a tampering overwrites in a checkpoint (`None`: left as stored).
#[derive(Clone, Debug, Default)]
pub struct CheckpointChange {
    /// A new Merkle root.
    pub root: Option<String>,
    /// A new link to the previous checkpoint.
    pub previous: Option<String>,
    /// A new digest.
    pub digest: Option<String>,
}

/// Keeps a store's derived decision counts: the hourly counts of the shared
/// PostgreSQL schema, say, which `count_history` reads for the records
/// folded into them. The suite rolls up between its checks, so that the
/// counts are checked on the path that reads them too, not only on the one
/// that reads the records.
#[async_trait]
pub trait CountRollUp: Send + Sync {
    /// Folds `workspace`'s records written since the last roll-up into the
    /// counts; returns how many it folded (possibly fewer than were
    /// written: the suite rolls up again until all are).
    async fn roll_up(&self, workspace: &WorkspaceId) -> Result<u64, String>;
}

/// Something a store needs alive while a case runs (a temporary directory,
/// a container): dropped when the case ends.
pub type KeepAlive = Arc<dyn std::any::Any + Send + Sync>;

/// A store opened for one case.
#[derive(Clone)]
pub struct TestStore {
    /// The store under test.
    pub store: Arc<dyn GovernanceStore>,
    /// Raw access for [`Capability::DatabaseEnforcedAppendOnly`].
    pub raw_history: Option<Arc<dyn RawHistoryAccess>>,
    /// Privileged access for [`Capability::Tamper`].
    pub tamper: Option<Arc<dyn TamperAccess>>,
    /// The roll-up of derived counts, for a store that keeps them.
    pub roll_up: Option<Arc<dyn CountRollUp>>,
    /// Resources the store lives on, released after the case.
    pub keep_alive: Option<KeepAlive>,
}

impl TestStore {
    /// A store without raw access.
    pub fn new(store: Arc<dyn GovernanceStore>) -> Self {
        Self { store, raw_history: None, tamper: None, roll_up: None, keep_alive: None }
    }

    /// Adds privileged tamper access.
    pub fn with_tamper(mut self, tamper: Arc<dyn TamperAccess>) -> Self {
        self.tamper = Some(tamper);
        self
    }

    /// Adds the roll-up of the store's derived counts.
    pub fn with_roll_up(mut self, roll_up: Arc<dyn CountRollUp>) -> Self {
        self.roll_up = Some(roll_up);
        self
    }

    /// Adds raw history access.
    pub fn with_raw_history(mut self, raw: Arc<dyn RawHistoryAccess>) -> Self {
        self.raw_history = Some(raw);
        self
    }

    /// Keeps `resource` alive until the case ends.
    pub fn keeping(mut self, resource: KeepAlive) -> Self {
        self.keep_alive = Some(resource);
        self
    }
}

/// Why a factory could not open a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetupError {
    /// The backend is not configured here (e.g. its URL variable is unset).
    NotConfigured(String),
    /// The backend is configured but did not answer.
    Unavailable(String),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::NotConfigured(why) => write!(f, "not configured: {why}"),
            SetupError::Unavailable(why) => write!(f, "unavailable: {why}"),
        }
    }
}

/// Makes stores for the suite: one backend, fresh state per case (a new store,
/// or a shared database where every case uses its own random workspace).
#[async_trait]
pub trait StoreFactory: Send + Sync {
    /// The provider's name in reports and test output.
    fn name(&self) -> &str;

    /// What this backend lacks; everything by default.
    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    /// Opens a store for one case.
    async fn open(&self) -> Result<TestStore, SetupError>;
}

/// What a case works with: the store, a service over it and a random
/// workspace of its own, so cases run in parallel on one database.
#[derive(Clone)]
pub struct CaseContext {
    /// The store under test.
    pub store: Arc<dyn GovernanceStore>,
    /// A service over the store.
    pub service: GovernanceService,
    /// This case's own workspace.
    pub workspace: WorkspaceId,
    /// Raw history access, when the backend offers it.
    pub raw_history: Option<Arc<dyn RawHistoryAccess>>,
    /// Tamper access, when the backend offers it.
    pub tamper: Option<Arc<dyn TamperAccess>>,
    /// The roll-up of derived counts, when the store keeps them.
    pub roll_up: Option<Arc<dyn CountRollUp>>,
    /// Keeps the store's resources alive for the case.
    pub keep_alive: Option<KeepAlive>,
}

impl CaseContext {
    /// A context over an opened store with a fresh workspace.
    pub fn new(opened: TestStore) -> Self {
        Self {
            service: GovernanceService::new(Arc::clone(&opened.store)),
            store: opened.store,
            workspace: random_workspace(),
            raw_history: opened.raw_history,
            tamper: opened.tamper,
            roll_up: opened.roll_up,
            keep_alive: opened.keep_alive,
        }
    }

    /// Another fresh workspace, for isolation checks.
    pub fn other_workspace(&self) -> WorkspaceId {
        random_workspace()
    }
}

/// A workspace id no other case uses.
pub fn random_workspace() -> WorkspaceId {
    WorkspaceId::new(format!("cf-{}", Uuid::now_v7().simple())).expect("a generated id is valid")
}

/// Why a case failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseFailure(pub String);

impl fmt::Display for CaseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for CaseFailure {
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        CaseFailure(format!("unexpected error: {message}"))
    }
}

/// A case's result.
pub type CaseResult = Result<(), CaseFailure>;

/// A boxed case future.
pub type CaseFuture = Pin<Box<dyn Future<Output = CaseResult> + Send>>;

/// The case groups of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// The contract enforced by construction: exact base states, frozen
    /// fields, supersession races, hostile JSON, time bounds, notes.
    Contract,
    /// Create/read round-trips of every field.
    RoundTrip,
    /// Duplicate ids.
    Duplicates,
    /// Compare-and-set and conflicts.
    Cas,
    /// Every allowed and forbidden lifecycle move.
    Lifecycle,
    /// Version-aware resolution.
    VersionResolution,
    /// The approval workflow.
    Approval,
    /// Expiry and supersession.
    ExpirySupersession,
    /// Tenant isolation.
    TenantIsolation,
    /// Query filters and analytics.
    QueryFilters,
    /// Keyset pagination.
    Pagination,
    /// History atomicity and order.
    History,
    /// Idempotency keys.
    Idempotency,
    /// Concurrent writers.
    Concurrency,
    /// Bad input.
    BadInput,
    /// Large payloads.
    LargePayloads,
    /// Unicode and byte-exact identifiers.
    Unicode,
    /// Timestamp precision and range.
    Timestamps,
    /// Append-only history.
    AppendOnly,
    /// The evidence recorder: failure policies, spool and relay, redaction.
    Audit,
    /// Sealing, verification and tamper detection.
    Integrity,
    /// JSONL export.
    Export,
}

impl Group {
    /// The group's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Group::Contract => "contract",
            Group::RoundTrip => "round-trip",
            Group::Duplicates => "duplicates",
            Group::Cas => "cas",
            Group::Lifecycle => "lifecycle",
            Group::VersionResolution => "version-resolution",
            Group::Approval => "approval",
            Group::ExpirySupersession => "expiry-supersession",
            Group::TenantIsolation => "tenant-isolation",
            Group::QueryFilters => "query-filters",
            Group::Pagination => "pagination",
            Group::History => "history",
            Group::Idempotency => "idempotency",
            Group::Concurrency => "concurrency",
            Group::BadInput => "bad-input",
            Group::LargePayloads => "large-payloads",
            Group::Unicode => "unicode",
            Group::Timestamps => "timestamps",
            Group::AppendOnly => "append-only",
            Group::Audit => "audit",
            Group::Integrity => "integrity",
            Group::Export => "export",
        }
    }
}

/// One case of the suite.
#[derive(Clone, Copy)]
pub struct Case {
    /// Its name (also its test function's name).
    pub name: &'static str,
    /// Its group.
    pub group: Group,
    /// Capabilities it needs.
    pub requires: &'static [Capability],
    /// Runs it.
    pub run: fn(CaseContext) -> CaseFuture,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case").field("name", &self.name).field("group", &self.group).finish_non_exhaustive()
    }
}
