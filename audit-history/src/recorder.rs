//! The write path: evaluate → persist evidence → mutate only if approved.

use std::sync::Arc;
use std::time::Duration;

use governance_abstractions::{
    Decision, Evidence, GovernanceError, HistoryRecord, HistoryWriter, Outcome, Stored, Timestamp,
};

use crate::breaker::{Admit, Breaker, BreakerOptions, BreakerState};
use crate::deadline::within;
use crate::error::{AuditError, BreakerOpen, DeadlineExceeded, is_outage, is_rejection, unavailable};
use crate::metrics::{REFUSED, SHORT_CIRCUITED, SPOOLED, STORE_TIMEOUTS, STORED, WRITE_FAILURES, count};
use crate::redaction::{self, KeyRedaction, RedactionPolicy};
use crate::spool::Spool;

/// What happens when the store does not take the evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePolicy {
    /// No evidence known to be stored, no mutation (the default).
    ///
    /// A write abandoned at the deadline may still commit: the refusal
    /// ([`AuditError::NotStored`]) says the evidence is not *known* to be
    /// stored. Give fail-closed evidence an idempotency key, so that a
    /// retry finds a late commit (as [`Durability::Replayed`]) rather than
    /// storing a second record.
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
/// told otherwise. Cheap to clone (clones share the breaker).
///
/// No write waits for the store longer than the [deadline](Self::deadline)
/// (default 500 ms): past it, fail-open spools and fail-closed refuses.
/// After [`BreakerOptions::failures`] writes in a row without an answer the
/// breaker opens: writes stop trying the store at all (fail-open spools at
/// once, fail-closed refuses at once) until, after the cool-down, one trial
/// write gets through. An outage so costs each write at most the deadline.
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
    deadline: Duration,
    breaker: Arc<Breaker>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("name", &self.name)
            .field("policy", &self.policy())
            .field("redaction", &self.redaction)
            .field("deadline", &self.deadline)
            .field("breaker", &self.breaker.options())
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A fail-closed recorder over `store`, redacting with [`KeyRedaction::standard`].
    pub fn new(store: Arc<dyn HistoryWriter>) -> Self {
        Self {
            store,
            spool: None,
            redaction: Some(Arc::new(KeyRedaction::standard())),
            name: Arc::from("default"),
            deadline: Self::DEFAULT_DEADLINE,
            breaker: Breaker::new(BreakerOptions::default()),
        }
    }

    /// The store deadline unless set otherwise: well under a second, well
    /// over a healthy store's write.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(500);

    /// How long a write may wait for the store (default
    /// [`DEFAULT_DEADLINE`](Self::DEFAULT_DEADLINE)) before the store
    /// counts as down for it: fail-open spools it, fail-closed refuses with
    /// [`AuditError::NotStored`] ([`AuditError::is_deadline_exceeded`]).
    ///
    /// Set it above the store's slowest healthy write (a busy pool's wait
    /// included): a write abandoned at the deadline may still commit, which
    /// is safe (the relay's resend of a spooled copy is a replay) but, under
    /// fail-closed, refuses a mutation whose evidence was in fact stored
    /// (the error says "not known to be stored"; an idempotency key lets a
    /// retry reconcile with it). Applies to [`guard_in`](Self::guard_in) as
    /// well.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// When the breaker opens and how long it stays open (default
    /// [`BreakerOptions::default`]). Gives this recorder (and its later
    /// clones) a breaker of its own.
    pub fn breaker(mut self, options: BreakerOptions) -> Self {
        self.breaker = Breaker::new(options);
        self
    }

    /// Where the breaker stands: for health checks.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
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
    /// means no mutation (the transaction is usually broken anyway). The
    /// deadline applies: after it passed, roll the transaction back, and put
    /// a timeout of your own on that rollback (or drop the connection): the
    /// abandoned statement is still running on the server, and the
    /// connection waits for its reply before the rollback gets through. The
    /// breaker does not apply: the caller's transaction holds a connection
    /// already.
    pub async fn guard_in<Tx: ?Sized, T>(
        &self,
        tx: &mut Tx,
        evidence: Evidence,
        append: impl AsyncFnOnce(&mut Tx, &[HistoryRecord]) -> governance_abstractions::Result<Vec<Stored<HistoryRecord>>>,
        mutate: impl AsyncFnOnce(&mut Tx, &HistoryRecord) -> T,
    ) -> Result<Guarded<T>, AuditError> {
        let record = self.prepare(evidence)?;
        let appended = within(self.deadline, append(tx, std::slice::from_ref(&record))).await;
        let receipt = match appended {
            Ok(Ok(stored)) => self.stored(record, stored),
            Ok(Err(error)) => return Err(self.store_failed_closed(&record, error)),
            Err(elapsed) => return Err(self.store_failed_closed(&record, self.timed_out(elapsed))),
        };
        let output = if approves(&receipt.record) { Some(mutate(tx, &receipt.record).await) } else { None };
        Ok(Guarded { receipt, output })
    }

    async fn persist(&self, record: HistoryRecord) -> Result<Receipt, AuditError> {
        let permit = match self.breaker.admit() {
            Admit::Try(permit) => permit,
            Admit::Skip(open) => return self.short_circuit(record, open).await,
        };
        let error = match within(self.deadline, self.store.append_history(std::slice::from_ref(&record))).await {
            Ok(Ok(stored)) => {
                permit.answered(&self.name);
                return Ok(self.stored(record, stored));
            }
            Ok(Err(error)) => {
                if is_outage(&error) {
                    permit.no_answer(&self.name);
                } else {
                    permit.answered(&self.name);
                }
                error
            }
            Err(elapsed) => {
                permit.no_answer(&self.name);
                self.timed_out(elapsed)
            }
        };
        let Some(spool) = &self.spool else { return Err(self.store_failed_closed(&record, error)) };
        if is_rejection(&error) {
            return Err(self.store_failed_closed(&record, error));
        }
        count(WRITE_FAILURES, &self.name, 1);
        tracing::warn!(
            recorder = %self.name, workspace = %record.workspace_id(), record = %record.id(), error = %describe(&error),
            "evidence store failed; spooling (fail-open)"
        );
        self.spool(spool, record).await
    }

    /// The breaker is open: the store is not tried. Each such write is
    /// counted; it is logged at debug level only, since the breaker's
    /// opening was logged (at error) and an outage would otherwise log
    /// every write.
    async fn short_circuit(&self, record: HistoryRecord, open: BreakerOpen) -> Result<Receipt, AuditError> {
        count(SHORT_CIRCUITED, &self.name, 1);
        let Some(spool) = &self.spool else {
            count(REFUSED, &self.name, 1);
            tracing::debug!(
                recorder = %self.name, workspace = %record.workspace_id(), record = %record.id(), error = %open,
                "evidence store down; the mutation does not run (fail-closed)"
            );
            return Err(AuditError::NotStored(unavailable(open)));
        };
        tracing::debug!(
            recorder = %self.name, workspace = %record.workspace_id(), record = %record.id(), error = %open,
            "evidence store down; spooling (fail-open)"
        );
        self.spool(spool, record).await
    }

    async fn spool(&self, spool: &Arc<Spool>, record: HistoryRecord) -> Result<Receipt, AuditError> {
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

    fn timed_out(&self, elapsed: DeadlineExceeded) -> GovernanceError {
        count(STORE_TIMEOUTS, &self.name, 1);
        unavailable(elapsed)
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
            recorder = %self.name, workspace = %record.workspace_id(), record = %record.id(), error = %describe(&error),
            "evidence not known to be stored; the mutation does not run (fail-closed)"
        );
        AuditError::NotStored(error)
    }

    fn refuse_input(&self, error: GovernanceError) -> AuditError {
        count(REFUSED, &self.name, 1);
        tracing::warn!(recorder = %self.name, error = %error, "evidence refused as input; the mutation does not run");
        AuditError::Refused(error)
    }
}

/// The error for a log line: its own text, and ours under it (a deadline,
/// an open breaker). A driver's message is left out: it may quote values.
fn describe(error: &GovernanceError) -> String {
    match error {
        GovernanceError::Unavailable { source } if source.is::<DeadlineExceeded>() || source.is::<BreakerOpen>() => {
            format!("{error}: {source}")
        }
        _ => error.to_string(),
    }
}

fn approves(record: &HistoryRecord) -> bool {
    let evidence = record.evidence();
    evidence.decision == Some(Decision::Approved) && evidence.outcome == Some(Outcome::Approved)
}
