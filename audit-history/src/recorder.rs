//! The write path: evaluate → persist evidence → mutate only if approved.

use std::sync::Arc;

use governance_abstractions::{
    Decision, Evidence, GovernanceError, HistoryRecord, HistoryWriter, Outcome, Stored, Timestamp,
};

use crate::error::{AuditError, is_rejection};
use crate::metrics::{REFUSED, SPOOLED, STORED, WRITE_FAILURES, count};
use crate::redaction::{self, KeyRedaction, RedactionPolicy};
use crate::spool::Spool;

/// What happens when the store does not take the evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePolicy {
    /// No durable evidence, no mutation (the default).
    FailClosed,
    /// The evidence goes to the local spool and the mutation runs; a
    /// [`Relay`](crate::Relay) stores it once the store answers again.
    FailOpen,
}

/// Where the evidence of a guarded write is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Stored now.
    Stored,
    /// Its idempotency key was already stored with the same content: the
    /// receipt holds the original.
    Replayed,
    /// In the durable local spool, waiting for the relay.
    Spooled,
}

/// The evidence of one evaluation and where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Receipt {
    /// The record as stored (redacted, hashed).
    pub record: HistoryRecord,
    /// Where it is.
    pub durability: Durability,
}

/// The result of [`Recorder::guard`].
#[derive(Clone, Debug, PartialEq)]
pub struct Guarded<T> {
    /// The evidence.
    pub receipt: Receipt,
    /// The mutation's result: `Some` exactly when the decision approved it.
    pub output: Option<T>,
}

impl<T> Guarded<T> {
    /// True when the mutation ran.
    pub fn approved(&self) -> bool {
        self.output.is_some()
    }
}

/// Records governance evidence around an application's writes.
///
/// Fail-closed by default; redacts with [`KeyRedaction::standard`] unless
/// told otherwise. Cheap to clone.
///
/// ```
/// # async fn demo() -> Result<(), audit_history::AuditError> {
/// use std::sync::Arc;
/// use audit_history::Recorder;
/// use governance_abstractions::{Actor, ActorKind, Decision, Evidence, WorkspaceId};
/// use governance_memory::MemoryStore;
///
/// let recorder = Recorder::new(Arc::new(MemoryStore::new()));
/// let evidence = Evidence::decision(
///     WorkspaceId::new("acme").unwrap(),
///     Actor::new(ActorKind::User, "alice"),
///     "invoice",
///     "update",
///     Decision::Approved,
/// );
/// let guarded = recorder.guard(evidence, async |_evidence| "updated").await?;
/// assert_eq!(guarded.output, Some("updated"));
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone)]
pub struct Recorder {
    store: Arc<dyn HistoryWriter>,
    spool: Option<Arc<Spool>>,
    redaction: Option<Arc<dyn RedactionPolicy>>,
    name: Arc<str>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("name", &self.name)
            .field("policy", &self.policy())
            .field("redaction", &self.redaction)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A fail-closed recorder over `store`, redacting with [`KeyRedaction::standard`].
    pub fn new(store: Arc<dyn HistoryWriter>) -> Self {
        Self { store, spool: None, redaction: Some(Arc::new(KeyRedaction::standard())), name: Arc::from("default") }
    }

    /// Fail-open: evidence the store does not take goes to `spool`.
    pub fn fail_open(mut self, spool: Arc<Spool>) -> Self {
        self.spool = Some(spool);
        self
    }

    /// Redacts with `policy` instead.
    pub fn redaction(mut self, policy: Arc<dyn RedactionPolicy>) -> Self {
        self.redaction = Some(policy);
        self
    }

    /// Stores payloads as given (the application redacted them already).
    pub fn without_redaction(mut self) -> Self {
        self.redaction = None;
        self
    }

    /// The `recorder` label of this recorder's metrics and logs.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Arc::from(name);
        self
    }

    /// The failure policy in force.
    pub fn policy(&self) -> FailurePolicy {
        if self.spool.is_some() { FailurePolicy::FailOpen } else { FailurePolicy::FailClosed }
    }

    /// Completes `evidence` into the record that will be stored: outcome set
    /// from the decision when missing, redacted, hashed, validated. No I/O.
    ///
    /// Payloads nested deeper than
    /// [`limits::MAX_JSON_DEPTH`](governance_abstractions::limits::MAX_JSON_DEPTH)
    /// are refused ([`AuditError::Refused`]) before anything else looks at
    /// them, so hostile input cannot exhaust the stack.
    pub fn prepare(&self, mut evidence: Evidence) -> Result<HistoryRecord, AuditError> {
        // First, without recursion: redaction (a policy may be any code) and
        // hashing walk the payloads, and neither may meet unbounded nesting.
        evidence.check_depth().map_err(|error| self.refuse_input(error))?;
        evidence.outcome = evidence.outcome.or(Some(match evidence.decision {
            Some(Decision::Approved) => Outcome::Approved,
            Some(Decision::Denied) => Outcome::Denied,
            None => Outcome::Error,
        }));
        if let Some(policy) = &self.redaction {
            redaction::apply(policy.as_ref(), &mut evidence);
        }
        // Validates the redacted evidence (depth first again: a policy may
        // have added nesting) and hashes it once.
        HistoryRecord::new(evidence, Timestamp::now()).map_err(|error| self.refuse_input(error))
    }

    /// Prepares and persists `evidence` under the failure policy.
    pub async fn record(&self, evidence: Evidence) -> Result<Receipt, AuditError> {
        let record = self.prepare(evidence)?;
        self.persist(record).await
    }

    /// The write path: persists the evidence, then runs `mutate` only if the
    /// decision approved it (and the outcome is not an error).
    ///
    /// An idempotent replay of the same evidence runs `mutate` again: making
    /// the mutation itself idempotent is the application's part.
    pub async fn guard<T>(
        &self,
        evidence: Evidence,
        mutate: impl AsyncFnOnce(&HistoryRecord) -> T,
    ) -> Result<Guarded<T>, AuditError> {
        let receipt = self.record(evidence).await?;
        let output = if approves(&receipt.record) { Some(mutate(&receipt.record).await) } else { None };
        Ok(Guarded { receipt, output })
    }

    /// The write path inside the caller's transaction `tx`: `append` writes
    /// the evidence with the provider's transaction API (e.g.
    /// `PostgresStore::append_history_in`), then `mutate` runs in the same
    /// transaction if approved; the caller commits both or neither.
    ///
    /// Always fail-closed: evidence that cannot be written in the transaction
    /// means no mutation (the transaction is usually broken anyway).
    pub async fn guard_in<Tx: ?Sized, T>(
        &self,
        tx: &mut Tx,
        evidence: Evidence,
        append: impl AsyncFnOnce(&mut Tx, &[HistoryRecord]) -> governance_abstractions::Result<Vec<Stored<HistoryRecord>>>,
        mutate: impl AsyncFnOnce(&mut Tx, &HistoryRecord) -> T,
    ) -> Result<Guarded<T>, AuditError> {
        let record = self.prepare(evidence)?;
        let receipt = match append(tx, std::slice::from_ref(&record)).await {
            Ok(stored) => self.stored(record, stored),
            Err(error) => return Err(self.store_failed_closed(&record, error)),
        };
        let output = if approves(&receipt.record) { Some(mutate(tx, &receipt.record).await) } else { None };
        Ok(Guarded { receipt, output })
    }

    async fn persist(&self, record: HistoryRecord) -> Result<Receipt, AuditError> {
        let error = match self.store.append_history(std::slice::from_ref(&record)).await {
            Ok(stored) => return Ok(self.stored(record, stored)),
            Err(error) => error,
        };
        let Some(spool) = &self.spool else { return Err(self.store_failed_closed(&record, error)) };
        if is_rejection(&error) {
            return Err(self.store_failed_closed(&record, error));
        }
        count(WRITE_FAILURES, &self.name, 1);
        tracing::warn!(
            recorder = %self.name, workspace = %record.workspace_id(), record = %record.id(), error = %error,
            "evidence store failed; spooling (fail-open)"
        );
        let spool = Arc::clone(spool);
        let spooled = record.clone();
        match crate::relay::blocking(move || spool.append(&spooled)).await {
            Ok(()) => {
                count(SPOOLED, &self.name, 1);
                Ok(Receipt { record, durability: Durability::Spooled })
            }
            Err(spool_error) => {
                count(REFUSED, &self.name, 1);
                tracing::error!(
                    recorder = %self.name, workspace = %record.workspace_id(), record = %record.id(),
                    error = %spool_error, "evidence neither stored nor spooled; the mutation does not run"
                );
                Err(spool_error)
            }
        }
    }

    fn stored(&self, record: HistoryRecord, stored: Vec<Stored<HistoryRecord>>) -> Receipt {
        count(STORED, &self.name, 1);
        match stored.into_iter().next() {
            Some(Stored::Replayed(original)) => Receipt { record: original, durability: Durability::Replayed },
            Some(Stored::New(stored)) => Receipt { record: stored, durability: Durability::Stored },
            None => Receipt { record, durability: Durability::Stored },
        }
    }

    fn store_failed_closed(&self, record: &HistoryRecord, error: GovernanceError) -> AuditError {
        if is_rejection(&error) {
            return self.refuse_input(error);
        }
        count(WRITE_FAILURES, &self.name, 1);
        count(REFUSED, &self.name, 1);
        tracing::error!(
            recorder = %self.name, workspace = %record.workspace_id(), record = %record.id(), error = %error,
            "evidence not stored; the mutation does not run (fail-closed)"
        );
        AuditError::NotStored(error)
    }

    fn refuse_input(&self, error: GovernanceError) -> AuditError {
        count(REFUSED, &self.name, 1);
        tracing::warn!(recorder = %self.name, error = %error, "evidence refused as input; the mutation does not run");
        AuditError::Refused(error)
    }
}

fn approves(record: &HistoryRecord) -> bool {
    let evidence = record.evidence();
    evidence.decision == Some(Decision::Approved) && evidence.outcome == Some(Outcome::Approved)
}
