//! The storage traits every provider implements: write side and read side
//! kept apart, all object-safe (`Arc<dyn GovernanceStore>` works).

use async_trait::async_trait;

use crate::integrity::IntegrityStore;
use crate::lifecycle::{Creation, Transition};
use crate::query::{Count, CountQuery, HistoryFilter, Page, PageRequest, RequestFilter};
use crate::{
    GovernanceRequest, HistoryRecord, PendingReason, RecordId, RequestId, RequestStatus, Result, TargetRef, Timestamp,
    WorkspaceId,
};

/// The result of a write that may be an idempotent replay.
#[derive(Clone, Debug, PartialEq)]
pub enum Stored<T> {
    /// Written now.
    New(T),
    /// The idempotency key was already used with the same content: this is
    /// the original, and nothing new was written.
    Replayed(T),
}

impl<T> Stored<T> {
    /// The stored value either way.
    pub fn into_inner(self) -> T {
        match self {
            Stored::New(value) | Stored::Replayed(value) => value,
        }
    }

    /// The stored value either way.
    pub fn value(&self) -> &T {
        match self {
            Stored::New(value) | Stored::Replayed(value) => value,
        }
    }

    /// True for [`Stored::Replayed`].
    pub fn is_replay(&self) -> bool {
        matches!(self, Stored::Replayed(_))
    }
}

/// Writes governance requests.
#[async_trait]
pub trait RequestWriter: Send + Sync {
    /// Stores a new request (revision 1) and its creation record atomically.
    ///
    /// - same id already stored → [`AlreadyExists`](crate::GovernanceError::AlreadyExists);
    /// - idempotency key already used in the workspace with the same
    ///   [`creation_digest`](GovernanceRequest::creation_digest) → the original,
    ///   as [`Stored::Replayed`]; with a different one →
    ///   [`IdempotencyConflict`](crate::GovernanceError::IdempotencyConflict).
    async fn create_request(&self, creation: &Creation) -> Result<Stored<GovernanceRequest>>;

    /// Commits a transition: writes the new request state only if the stored
    /// revision equals [`Transition::expected_revision`], together with its
    /// records, atomically.
    ///
    /// Stale revision → [`Conflict`](crate::GovernanceError::Conflict) with the
    /// actual revision; missing → [`NotFound`](crate::GovernanceError::NotFound).
    /// Either way nothing is written.
    async fn commit_transition(&self, transition: &Transition) -> Result<()>;
}

/// Reads governance requests. Every read is scoped to one workspace.
#[async_trait]
pub trait RequestReader: Send + Sync {
    /// One request; [`NotFound`](crate::GovernanceError::NotFound) when missing.
    async fn get_request(&self, workspace: &WorkspaceId, id: RequestId) -> Result<GovernanceRequest>;

    /// Requests matching `filter`, one page in `(created_at, id)` order.
    async fn query_requests(
        &self,
        workspace: &WorkspaceId,
        filter: &RequestFilter,
        page: &PageRequest,
    ) -> Result<Page<GovernanceRequest>>;

    /// Every request for `target`, oldest first.
    async fn requests_for_target(&self, workspace: &WorkspaceId, target: &TargetRef) -> Result<Vec<GovernanceRequest>> {
        let filter = RequestFilter { target: Some(target.clone()), ..RequestFilter::default() };
        Ok(self.query_requests(workspace, &filter, &PageRequest::all()).await?.items)
    }

    /// Pending requests, optionally only those waiting for `reason`.
    async fn pending_requests(
        &self,
        workspace: &WorkspaceId,
        reason: Option<PendingReason>,
        page: &PageRequest,
    ) -> Result<Page<GovernanceRequest>> {
        let filter = RequestFilter {
            statuses: vec![RequestStatus::Pending],
            pending_reason: reason,
            ..RequestFilter::default()
        };
        self.query_requests(workspace, &filter, page).await
    }

    /// Up to `limit` non-terminal requests whose `expires_at` ≤ `now`, oldest first.
    async fn due_for_expiry(
        &self,
        workspace: &WorkspaceId,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<GovernanceRequest>> {
        let filter = RequestFilter {
            statuses: RequestStatus::ALL.iter().copied().filter(|s| !s.is_terminal()).collect(),
            expires_by: Some(now),
            ..RequestFilter::default()
        };
        Ok(self.query_requests(workspace, &filter, &PageRequest::first(limit)).await?.items)
    }
}

/// Appends history records. There is no update and no delete.
#[async_trait]
pub trait HistoryWriter: Send + Sync {
    /// Appends records of one workspace atomically, in order.
    ///
    /// Only [`HistoryCategory::Decision`](crate::HistoryCategory::Decision)
    /// records are appended here; lifecycle records are written by
    /// transitions. Re-sending a stored record unchanged (same id and hash) is
    /// a replay. A record whose idempotency key is already used in the workspace with
    /// the same [`Evidence`](crate::Evidence) (by
    /// [`Evidence::same_content`](crate::Evidence::same_content)) is a replay: the original comes
    /// back as [`Stored::Replayed`] and no row is added. Different evidence →
    /// [`IdempotencyConflict`](crate::GovernanceError::IdempotencyConflict)
    /// and nothing of the batch is written. A reused record id →
    /// [`AlreadyExists`](crate::GovernanceError::AlreadyExists).
    async fn append_history(&self, records: &[HistoryRecord]) -> Result<Vec<Stored<HistoryRecord>>>;
}

/// Reads history records. Every read is scoped to one workspace.
#[async_trait]
pub trait HistoryReader: Send + Sync {
    /// One record; [`NotFound`](crate::GovernanceError::NotFound) when missing.
    async fn get_history_record(&self, workspace: &WorkspaceId, id: RecordId) -> Result<HistoryRecord>;

    /// Every record of a request in `(revision, created_at, id)` order (empty
    /// when there are none).
    async fn history_for_request(&self, workspace: &WorkspaceId, request: RequestId) -> Result<Vec<HistoryRecord>>;

    /// Records matching `filter`, one page in `(created_at, id)` order.
    async fn query_history(
        &self,
        workspace: &WorkspaceId,
        filter: &HistoryFilter,
        page: &PageRequest,
    ) -> Result<Page<HistoryRecord>>;

    /// Analytics counts over decision evidence, largest first (ties by key).
    async fn count_history(&self, workspace: &WorkspaceId, query: &CountQuery) -> Result<Vec<Count>>;
}

/// Everything a provider offers, as one object-safe trait.
pub trait GovernanceStore: RequestWriter + RequestReader + HistoryWriter + HistoryReader + IntegrityStore {}

impl<T: RequestWriter + RequestReader + HistoryWriter + HistoryReader + IntegrityStore + ?Sized> GovernanceStore for T {}

/// Checks a history batch the same way on every provider: non-empty, within
/// the batch limits (records and bytes), one workspace, decision evidence only (lifecycle records
/// are written by transitions, with their revision), each record valid.
/// Returns the workspace.
pub fn validate_history_batch(records: &[HistoryRecord]) -> Result<&WorkspaceId> {
    use crate::{GovernanceError, HistoryCategory, ValidationProblem, validate};
    let first = records.first().ok_or_else(|| GovernanceError::validation("records", ValidationProblem::Empty))?;
    validate::list_len("records", records.len(), crate::limits::MAX_BATCH_RECORDS)?;
    let workspace = first.workspace_id();
    let mut bytes = 0usize;
    for record in records {
        if record.workspace_id() != workspace {
            return Err(GovernanceError::validation(
                "records.workspace_id",
                ValidationProblem::Inconsistent("one append writes one workspace"),
            ));
        }
        if record.evidence().category != HistoryCategory::Decision {
            return Err(GovernanceError::validation(
                "records.category",
                ValidationProblem::Inconsistent("only decision evidence is appended; transitions write the rest"),
            ));
        }
        bytes += record.checked_len()?;
    }
    if bytes > crate::limits::MAX_BATCH_BYTES {
        return Err(GovernanceError::validation(
            "records",
            ValidationProblem::TooLong { max: crate::limits::MAX_BATCH_BYTES, actual: bytes },
        ));
    }
    Ok(workspace)
}

/// Decides each record of a history append, the same way on every provider:
/// a new row, an idempotent replay of a stored (or earlier-in-batch) record,
/// or an error for the whole batch.
///
/// `stored` holds the already-stored records of the workspace whose id or
/// idempotency key appears in `records` (others are ignored).
pub fn plan_history_append(records: &[HistoryRecord], stored: &[HistoryRecord]) -> Result<Vec<Stored<HistoryRecord>>> {
    use crate::{EntityKind, GovernanceError};
    let mut planned: Vec<Stored<HistoryRecord>> = Vec::with_capacity(records.len());
    for record in records {
        let new_in_batch = || planned.iter().filter_map(|p| if let Stored::New(r) = p { Some(r) } else { None });
        if let Some(key) = &record.evidence().idempotency_key {
            let same_key = |r: &&HistoryRecord| r.evidence().idempotency_key.as_ref() == Some(key);
            let original = stored.iter().find(same_key).or_else(|| new_in_batch().find(same_key));
            if let Some(original) = original {
                if !original.evidence().same_content(record.evidence()) {
                    return Err(GovernanceError::IdempotencyConflict {
                        kind: EntityKind::HistoryRecord,
                        workspace: record.workspace_id().clone(),
                        key: key.clone(),
                        existing: original.id().to_string(),
                    });
                }
                planned.push(Stored::Replayed(original.clone()));
                continue;
            }
        }
        if let Some(same_id) = stored.iter().chain(new_in_batch()).find(|r| r.id() == record.id()) {
            // Re-sending a stored record unchanged (a relay's retry) is a replay.
            if same_id.content_hash() == record.content_hash() && same_id.evidence().same_content(record.evidence()) {
                planned.push(Stored::Replayed(same_id.clone()));
                continue;
            }
            return Err(GovernanceError::AlreadyExists {
                kind: EntityKind::HistoryRecord,
                workspace: record.workspace_id().clone(),
                id: record.id().to_string(),
            });
        }
        planned.push(Stored::New(record.clone()));
    }
    Ok(planned)
}

/// What one insert attempt of a history batch reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertAttempt {
    /// Every row was inserted.
    Inserted,
    /// A unique key (id or idempotency key) collided; nothing was inserted.
    UniqueViolation,
}

/// A provider's storage, as the shared append loop ([`append_history_with`]) needs it.
#[async_trait]
pub trait AppendStorage: Send {
    /// Inserts `records` atomically (one statement, or a savepoint inside a
    /// caller's transaction): all of them, or none and a unique violation.
    async fn insert(&mut self, records: &[&HistoryRecord]) -> Result<InsertAttempt>;

    /// The stored records of `workspace` sharing an id or idempotency key with `records`.
    async fn related(&mut self, workspace: &WorkspaceId, records: &[HistoryRecord]) -> Result<Vec<HistoryRecord>>;
}

/// How often an append re-plans after losing a race on a unique key.
const APPEND_ATTEMPTS: usize = 5;

/// The append every SQL provider runs: validate; insert the whole batch (the
/// fast path: one statement); on a unique violation fetch the related rows,
/// let [`plan_history_append`] decide replay, conflict or duplicate, and
/// insert what is new — a bounded number of times against concurrent writers.
///
/// A collision that the related rows cannot explain means the colliding row is
/// invisible to the caller's transaction snapshot: a retryable error (retry
/// the whole transaction), never a guess.
pub async fn append_history_with<S: AppendStorage + ?Sized>(
    storage: &mut S,
    records: &[HistoryRecord],
) -> Result<Vec<Stored<HistoryRecord>>> {
    use crate::GovernanceError;
    let workspace = validate_history_batch(records)?;
    let mut planned: Vec<Stored<HistoryRecord>> = records.iter().cloned().map(Stored::New).collect();
    let mut new: Vec<usize> = (0..records.len()).collect();
    for _ in 0..APPEND_ATTEMPTS {
        let batch: Vec<&HistoryRecord> = new.iter().map(|&i| &records[i]).collect();
        if storage.insert(&batch).await? == InsertAttempt::Inserted {
            return Ok(planned);
        }
        planned = plan_history_append(records, &storage.related(workspace, records).await?)?;
        let next: Vec<usize> = (0..records.len()).filter(|&i| matches!(planned[i], Stored::New(_))).collect();
        if next.is_empty() {
            return Ok(planned);
        }
        if next.len() == new.len() {
            return Err(GovernanceError::backend(
                true,
                "a concurrent write is not visible to this transaction's snapshot; retry the whole transaction",
            ));
        }
        new = next;
    }
    Err(GovernanceError::backend(true, "history append kept colliding with concurrent writers"))
}

/// Decides whether `transition` may be written over the stored row at
/// `revision` with `status` and `state_digest` — for a row stored without a
/// digest, the digest of its stored content, which
/// [`decode_request`](crate::provider::decode_request) computes: a different revision is a
/// [`Conflict`](crate::GovernanceError::Conflict); the same revision with
/// another status or digest means the transition was computed from a state
/// that was never stored (a validation error). SQL providers call this on the
/// slow path, after their conditional update matched no row.
pub fn check_commit_target(
    transition: &Transition,
    revision: u64,
    status: RequestStatus,
    state_digest: &str,
) -> Result<()> {
    use crate::GovernanceError;
    if revision != transition.expected_revision() {
        return Err(GovernanceError::Conflict {
            id: transition.request().id(),
            expected: transition.expected_revision(),
            actual: revision,
        });
    }
    if status != transition.expected_status() || state_digest != transition.expected_digest() {
        return Err(forged());
    }
    Ok(())
}

/// Decides whether a supersession may be written while its successor is
/// stored at `stored` (revision and state digest — for a row stored without
/// one, the digest of its stored content; `None` when missing):
/// missing is [`NotFound`](crate::GovernanceError::NotFound), moved on is a
/// [`Conflict`](crate::GovernanceError::Conflict) on the successor, the same
/// revision with another digest a validation error.
pub fn check_successor(transition: &Transition, stored: Option<(u64, &str)>) -> Result<()> {
    use crate::{EntityKind, GovernanceError};
    let Some(successor) = transition.successor() else { return Ok(()) };
    let Some((revision, digest)) = stored else {
        return Err(GovernanceError::NotFound {
            kind: EntityKind::Request,
            workspace: transition.request().workspace_id().clone(),
            id: successor.id.to_string(),
        });
    };
    if revision != successor.revision {
        return Err(GovernanceError::Conflict { id: successor.id, expected: successor.revision, actual: revision });
    }
    if digest != successor.state_digest {
        return Err(forged());
    }
    Ok(())
}

fn forged() -> crate::GovernanceError {
    crate::GovernanceError::validation(
        "transition",
        crate::ValidationProblem::Inconsistent("computed from a request state that is not the stored one"),
    )
}

/// Checks a transition the same way on every provider before it is written.
/// A transition only comes from the lifecycle, which validated and hashed
/// it: this costs nothing per record.
pub fn validate_transition(transition: &Transition) -> Result<()> {
    transition.request().check()?;
    transition.records().iter().try_for_each(HistoryRecord::check)
}

/// Checks a creation the same way on every provider before it is written.
pub fn validate_creation(creation: &Creation) -> Result<()> {
    creation.request().check()?;
    creation.record().check()
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::{Actor, Decision, Evidence, GovernanceError, Timestamp};

    fn record(key: Option<&str>) -> HistoryRecord {
        let mut evidence =
            Evidence::decision(WorkspaceId::new("ws").unwrap(), Actor::user("u"), "o", "op", Decision::Denied);
        evidence.idempotency_key = key.map(str::to_owned);
        HistoryRecord::new(evidence, Timestamp::now()).unwrap()
    }

    /// Storage that answers each insert from a script and returns fixed related rows.
    struct Scripted {
        inserts: VecDeque<InsertAttempt>,
        related: Vec<HistoryRecord>,
        batches: Vec<Vec<RecordId>>,
    }

    #[async_trait]
    impl AppendStorage for Scripted {
        async fn insert(&mut self, records: &[&HistoryRecord]) -> Result<InsertAttempt> {
            self.batches.push(records.iter().map(|r| r.id()).collect());
            Ok(self.inserts.pop_front().unwrap_or(InsertAttempt::UniqueViolation))
        }

        async fn related(&mut self, _: &WorkspaceId, _: &[HistoryRecord]) -> Result<Vec<HistoryRecord>> {
            Ok(self.related.clone())
        }
    }

    fn scripted(inserts: &[InsertAttempt], related: Vec<HistoryRecord>) -> Scripted {
        Scripted { inserts: inserts.iter().copied().collect(), related, batches: Vec::new() }
    }

    #[tokio::test]
    async fn the_fast_path_inserts_the_whole_batch_once() {
        let records = [record(None), record(Some("k"))];
        let mut storage = scripted(&[InsertAttempt::Inserted], vec![]);
        let planned = append_history_with(&mut storage, &records).await.unwrap();
        assert!(planned.iter().all(|p| !p.is_replay()));
        assert_eq!(storage.batches, vec![vec![records[0].id(), records[1].id()]]);
    }

    #[tokio::test]
    async fn a_collision_re_plans_and_inserts_only_what_is_new() {
        let original = record(Some("k"));
        let replay = HistoryRecord::new(original.evidence().clone(), Timestamp::now()).unwrap();
        let fresh = record(None);
        let records = [replay, fresh.clone()];
        let mut storage = scripted(&[InsertAttempt::UniqueViolation, InsertAttempt::Inserted], vec![original.clone()]);
        let planned = append_history_with(&mut storage, &records).await.unwrap();
        assert_eq!(planned, vec![Stored::Replayed(original), Stored::New(fresh.clone())]);
        assert_eq!(storage.batches[1], vec![fresh.id()], "the second insert carries only the new record");
    }

    #[tokio::test]
    async fn a_collision_nothing_explains_is_retryable_and_bounded() {
        let records = [record(None)];
        let mut storage = scripted(&[], vec![]);
        let error = append_history_with(&mut storage, &records).await.unwrap_err();
        assert!(matches!(error, GovernanceError::Backend { retryable: true, .. }), "{error:?}");
        assert_eq!(storage.batches.len(), 1, "an unexplained collision is not retried blindly");

        // Each round explains one more collision: the loop gives up after its bound.
        let records: Vec<HistoryRecord> = (0..10).map(|n| record(Some(&format!("k{n}")))).collect();
        struct Growing(Vec<HistoryRecord>, usize, usize);
        #[async_trait]
        impl AppendStorage for Growing {
            async fn insert(&mut self, _: &[&HistoryRecord]) -> Result<InsertAttempt> {
                self.2 += 1;
                Ok(InsertAttempt::UniqueViolation)
            }
            async fn related(&mut self, _: &WorkspaceId, _: &[HistoryRecord]) -> Result<Vec<HistoryRecord>> {
                self.1 += 1;
                Ok(self.0[..self.1].to_vec())
            }
        }
        let mut growing = Growing(records.clone(), 0, 0);
        let error = append_history_with(&mut growing, &records).await.unwrap_err();
        assert!(matches!(error, GovernanceError::Backend { retryable: true, .. }), "{error:?}");
        assert_eq!(growing.2, APPEND_ATTEMPTS, "at most {APPEND_ATTEMPTS} inserts");
    }

    #[tokio::test]
    async fn everything_replayed_needs_no_second_insert() {
        let original = record(Some("k"));
        let mut storage = scripted(&[InsertAttempt::UniqueViolation], vec![original.clone()]);
        let planned = append_history_with(&mut storage, std::slice::from_ref(&original)).await.unwrap();
        assert_eq!(planned, vec![Stored::Replayed(original)]);
        assert_eq!(storage.batches.len(), 1);
    }
}
