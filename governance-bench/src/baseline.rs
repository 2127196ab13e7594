//! What a team would write instead of this library: plain statements that
//! store the same columns in the same tables, without validation, hashing,
//! idempotency handling or redaction. Each provider is measured against the
//! baseline on its own tables, pool and server.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use governance_abstractions::{Evidence, GovernanceRequest, RequestId, Timestamp, WorkspaceId};
use uuid::Uuid;

/// A row about to be written by the baseline: the evidence and the id and
/// time a hand-written writer would give it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fresh<'a> {
    pub(crate) id: Uuid,
    pub(crate) at: Timestamp,
    pub(crate) evidence: &'a Evidence,
}

/// A request's next state, as a hand-written conditional update writes it:
/// the same columns and the same predicate (revision, status and state
/// digest) as the providers' updates.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Move<'a> {
    pub(crate) workspace: &'a WorkspaceId,
    pub(crate) id: RequestId,
    pub(crate) from_revision: u64,
    pub(crate) from_status: &'a str,
    /// The stored digest the move was computed from (compared as the
    /// providers compare it: equal, or no digest stored).
    pub(crate) from_digest: Option<&'a str>,
    /// The request's state after the move (its `state_digest` is written
    /// as is: the baseline computes none).
    pub(crate) next: &'a GovernanceRequest,
}

pub(crate) type Outcome<T> = Result<T, String>;

/// The hand-written counterpart of each benchmarked call.
#[async_trait]
pub(crate) trait Baseline: Send + Sync {
    /// One multi-row `INSERT` of evidence rows.
    async fn insert_evidence(&self, rows: &[Fresh<'_>]) -> Outcome<()>;
    /// `INSERT` the request and its creation record in one transaction.
    async fn create(&self, request: &GovernanceRequest, record: Fresh<'_>) -> Outcome<()>;
    /// `UPDATE … WHERE revision = from AND status = … AND state_digest = …`
    /// and one history `INSERT`, in one transaction; `false` (rolled back)
    /// when the row moved.
    async fn transition(&self, change: Move<'_>, record: Fresh<'_>) -> Outcome<bool>;
    /// The stored revision and state digest: what a hand-written
    /// compare-and-set reads before it writes.
    async fn current(&self, workspace: &WorkspaceId, id: RequestId) -> Outcome<(u64, Option<String>)>;
    /// Pending requests, first page.
    async fn pending_page(&self, workspace: &WorkspaceId, limit: u32) -> Outcome<usize>;
    /// Every record of one request, in revision order.
    async fn request_history(&self, workspace: &WorkspaceId, id: RequestId) -> Outcome<usize>;
    /// Denied records of one operation, first page.
    async fn denied_page(&self, workspace: &WorkspaceId, operation: &str, limit: u32) -> Outcome<usize>;
    /// The most frequent reason codes of denied records since `since`.
    async fn top_deny_reasons(&self, workspace: &WorkspaceId, since: Timestamp, limit: u32) -> Outcome<usize>;
    /// Bulk insert of requests as they are (seeding, not timed).
    async fn seed_requests(&self, requests: &[GovernanceRequest]) -> Outcome<()>;
    /// Refreshes the planner's statistics after seeding, as autovacuum
    /// would soon after a bulk load.
    async fn analyze(&self) -> Outcome<()> {
        Ok(())
    }
}

/// The in-process baseline: a mutex over maps, as one would write by hand.
#[derive(Debug, Default)]
pub(crate) struct MemoryBaseline {
    state: Mutex<HashMap<String, Tenant>>,
}

#[derive(Debug, Default)]
struct Tenant {
    records: Vec<(Uuid, Timestamp, Evidence)>,
    /// Revision, status and state digest of each request.
    requests: HashMap<RequestId, (u64, String, String)>,
}

impl MemoryBaseline {
    fn with<T>(&self, workspace: &WorkspaceId, f: impl FnOnce(&mut Tenant) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(state.entry(workspace.as_str().to_owned()).or_default())
    }
}

fn unsupported<T>() -> Outcome<T> {
    Err("the in-process baseline has no query workload".into())
}

#[async_trait]
impl Baseline for MemoryBaseline {
    async fn insert_evidence(&self, rows: &[Fresh<'_>]) -> Outcome<()> {
        let Some(first) = rows.first() else { return Ok(()) };
        self.with(&first.evidence.workspace_id, |t| {
            t.records.extend(rows.iter().map(|r| (r.id, r.at, r.evidence.clone())));
        });
        Ok(())
    }

    async fn create(&self, request: &GovernanceRequest, record: Fresh<'_>) -> Outcome<()> {
        self.with(request.workspace_id(), |t| {
            let row = (request.revision(), request.status().as_str().to_owned(), request.state_digest().to_owned());
            t.requests.insert(request.id(), row);
            t.records.push((record.id, record.at, record.evidence.clone()));
        });
        Ok(())
    }

    async fn transition(&self, change: Move<'_>, record: Fresh<'_>) -> Outcome<bool> {
        self.with(change.workspace, |t| match t.requests.get_mut(&change.id) {
            Some((revision, status, digest))
                if *revision == change.from_revision
                    && status == change.from_status
                    && change.from_digest == Some(digest.as_str()) =>
            {
                *revision += 1;
                *status = change.next.status().as_str().to_owned();
                change.next.state_digest().clone_into(digest);
                t.records.push((record.id, record.at, record.evidence.clone()));
                Ok(true)
            }
            Some(_) => Ok(false),
            None => Err(format!("no request {}", change.id)),
        })
    }

    async fn current(&self, workspace: &WorkspaceId, id: RequestId) -> Outcome<(u64, Option<String>)> {
        self.with(workspace, |t| {
            t.requests.get(&id).map(|(r, _, d)| (*r, Some(d.clone()))).ok_or_else(|| format!("no request {id}"))
        })
    }

    async fn pending_page(&self, _: &WorkspaceId, _: u32) -> Outcome<usize> {
        unsupported()
    }

    async fn request_history(&self, _: &WorkspaceId, _: RequestId) -> Outcome<usize> {
        unsupported()
    }

    async fn denied_page(&self, _: &WorkspaceId, _: &str, _: u32) -> Outcome<usize> {
        unsupported()
    }

    async fn top_deny_reasons(&self, _: &WorkspaceId, _: Timestamp, _: u32) -> Outcome<usize> {
        unsupported()
    }

    async fn seed_requests(&self, _: &[GovernanceRequest]) -> Outcome<()> {
        unsupported()
    }
}
