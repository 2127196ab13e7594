//! Builders and assertions shared by the cases.

use std::fmt::Debug;

use governance_abstractions::{
    Action, Actor, Decision, Evidence, GovernanceError, GovernanceRequest, HistoryRecord, NewRequest, PendingReason,
    Principal, RequestId, RequestStatus, TargetRef, Timestamp, Transition, Verdict, WorkspaceId, lifecycle,
};
use uuid::Uuid;

use crate::harness::{CaseContext, CaseFailure};

/// Fails the case with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err($crate::harness::CaseFailure(format!($($message)+)));
        }
    };
}

/// Fails the case unless both sides are equal, showing both.
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($message:tt)+) => {
        match (&$left, &$right) {
            (left, right) => {
                if left != right {
                    return Err($crate::harness::CaseFailure(format!(
                        "{}: left {:?} != right {:?}", format!($($message)+), left, right
                    )));
                }
            }
        }
    };
}

pub(crate) use {ensure, ensure_eq};

pub(crate) type Outcome<T = ()> = Result<T, CaseFailure>;

/// The error a call must have returned.
pub(crate) fn expect_err<T: Debug>(result: Result<T, GovernanceError>, what: &str) -> Outcome<GovernanceError> {
    match result {
        Ok(value) => Err(CaseFailure(format!("{what}: expected an error, got {value:?}"))),
        Err(error) => Ok(error),
    }
}

/// A unique short name (targets, keys) so cases never collide.
pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::now_v7().simple())
}

pub(crate) fn user(id: &str) -> Principal {
    Actor::user(id).into()
}

pub(crate) fn requester() -> Principal {
    user("requester")
}

/// A minimal request spec in `workspace` for a fresh target.
pub(crate) fn spec_in(workspace: &WorkspaceId) -> NewRequest {
    NewRequest::new(workspace.clone(), TargetRef::new("flag", unique("target")), "update", requester())
}

/// A minimal request spec in the case's workspace.
pub(crate) fn spec(ctx: &CaseContext) -> NewRequest {
    spec_in(&ctx.workspace)
}

/// Stores a request built from `spec`, created at `at`.
pub(crate) async fn create_at(ctx: &CaseContext, spec: NewRequest, at: Timestamp) -> Outcome<GovernanceRequest> {
    let creation = lifecycle::create(spec, RequestId::new(), at)?;
    Ok(ctx.store.create_request(&creation).await?.into_inner())
}

/// Stores a request built from `spec`, created now.
pub(crate) async fn create(ctx: &CaseContext, spec: NewRequest) -> Outcome<GovernanceRequest> {
    create_at(ctx, spec, Timestamp::now()).await
}

/// Applies `action` (or a [`Command`](governance_abstractions::Command)) through the service.
pub(crate) async fn act(
    ctx: &CaseContext,
    id: RequestId,
    by: &Principal,
    action: impl Into<governance_abstractions::Command>,
) -> Result<Transition, GovernanceError> {
    ctx.service.apply(&ctx.workspace, id, by, action).await
}

pub(crate) fn decide(verdict: Verdict) -> Action {
    Action::Decide { verdict, comment: None }
}

/// An instant already past.
pub(crate) fn past() -> Timestamp {
    Timestamp::now().add_micros(-1_000_000).unwrap_or_else(Timestamp::now)
}

/// A request with no approval requirements driven into `status`.
pub(crate) async fn request_in(ctx: &CaseContext, status: RequestStatus) -> Outcome<GovernanceRequest> {
    let mut spec = spec(ctx);
    if status == RequestStatus::Expired {
        spec = spec.expires_at(past());
    }
    drive(ctx, spec, status).await
}

/// A request from `spec` (without approval requirements) driven into `status`.
pub(crate) async fn drive(ctx: &CaseContext, spec: NewRequest, status: RequestStatus) -> Outcome<GovernanceRequest> {
    let request = create(ctx, spec).await?;
    let by = requester();
    let steps: Vec<Action> = match status {
        RequestStatus::Created => vec![],
        RequestStatus::Pending => vec![Action::Submit { reason: PendingReason::ManualReview }],
        RequestStatus::Approved => vec![Action::Approve],
        RequestStatus::Rejected => vec![Action::Reject { reason: "no".into() }],
        RequestStatus::Canceled => vec![Action::Cancel { reason: "withdrawn".into() }],
        RequestStatus::Expired => vec![Action::Expire],
        RequestStatus::Superseded => {
            let mut newer = spec_in(&ctx.workspace);
            newer.target = request.spec().target.clone();
            let newer = create(ctx, newer).await?;
            ctx.service.supersede(&ctx.workspace, request.id(), newer.id(), &by).await?;
            vec![]
        }
        RequestStatus::Executed => vec![Action::Approve, Action::Execute { current_version: None }],
    };
    for step in steps {
        act(ctx, request.id(), &by, step).await?;
    }
    let stored = ctx.store.get_request(&ctx.workspace, request.id()).await?;
    ensure_eq!(stored.status(), status, "setting up a request in {status}");
    Ok(stored)
}

/// Decision evidence in the case's workspace.
pub(crate) fn evidence(ctx: &CaseContext, decision: Decision) -> Evidence {
    Evidence::decision(ctx.workspace.clone(), user("caller"), "invoice", "create", decision)
}

/// Appends one record and returns what was stored.
pub(crate) async fn append(ctx: &CaseContext, evidence: Evidence) -> Outcome<HistoryRecord> {
    append_at(ctx, evidence, Timestamp::now()).await
}

/// Appends one record created at `at`.
pub(crate) async fn append_at(ctx: &CaseContext, evidence: Evidence, at: Timestamp) -> Outcome<HistoryRecord> {
    let record = HistoryRecord::new(evidence, at)?;
    let stored = ctx.store.append_history(std::slice::from_ref(&record)).await?;
    ensure_eq!(stored.len(), 1, "append of one record returns one result");
    Ok(stored.into_iter().next().map(|s| s.into_inner()).unwrap_or(record))
}

/// A record as a client that serialized `record`, changed its JSON with
/// `edit` and sent it back would hand it over: not built (nor trusted) by
/// this process. With `rehash`, its content hash is recomputed over the
/// edited content, so only the edit itself is wrong.
pub(crate) fn untrusted(
    record: &HistoryRecord,
    rehash: bool,
    edit: impl FnOnce(&mut serde_json::Value),
) -> Outcome<HistoryRecord> {
    let failure = |e: serde_json::Error| crate::harness::CaseFailure(format!("re-encoding a record: {e}"));
    let mut value = serde_json::to_value(record).map_err(failure)?;
    edit(&mut value);
    let copy: HistoryRecord = serde_json::from_value(value.clone()).map_err(failure)?;
    if !rehash {
        return Ok(copy);
    }
    value["content_hash"] = serde_json::Value::String(copy.compute_hash()?);
    serde_json::from_value(value).map_err(failure)
}

/// The stored revision and history length of a request.
pub(crate) async fn revision_and_history(ctx: &CaseContext, id: RequestId) -> Outcome<(u64, usize)> {
    let request = ctx.store.get_request(&ctx.workspace, id).await?;
    let history = ctx.store.history_for_request(&ctx.workspace, id).await?;
    Ok((request.revision(), history.len()))
}

/// A fixed instant with microseconds, `offset` seconds after a base.
pub(crate) fn instant(offset_secs: i64) -> Timestamp {
    Timestamp::from_unix_micros(1_700_000_000_123_456 + offset_secs * 1_000_000).unwrap_or_else(Timestamp::now)
}
