//! Compare-and-set, conflicts, the service's bounded retry, and concurrent writers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use governance_abstractions::{
    Action, GovernanceError, GovernanceService, GovernanceStore, PageRequest, PendingReason, RequestFilter, RequestId,
    RequestStatus, Result, Timestamp, TransitionRule, codes, lifecycle,
};
use serde_json::json;
use tokio::task::JoinSet;

use crate::faults::{Call, Hook, Hooked};
use crate::fixtures::*;
use crate::harness::{CaseContext, CaseResult};

fn annotate(n: u64) -> Action {
    Action::Annotate { metadata: json!({ "counter": n }) }
}

/// A commit at the read revision succeeds and adds exactly 1.
pub async fn cas_commit_increments_revision(ctx: CaseContext) -> CaseResult {
    let request = create(&ctx, spec(&ctx)).await?;
    let transition = lifecycle::apply(&request, &requester(), &annotate(1), Timestamp::now())?;
    ctx.store.commit_transition(&transition).await?;
    let read = ctx.store.get_request(&ctx.workspace, request.id()).await?;
    ensure_eq!(read.revision(), 2, "one write adds exactly 1");
    ensure_eq!(&read, transition.request(), "the committed state is stored");
    Ok(())
}

/// A commit at a stale revision is a Conflict with both revisions, and writes nothing.
pub async fn cas_stale_revision_conflicts(ctx: CaseContext) -> CaseResult {
    let request = create(&ctx, spec(&ctx)).await?;
    let first = lifecycle::apply(&request, &requester(), &annotate(1), Timestamp::now())?;
    let stale = lifecycle::apply(&request, &requester(), &annotate(2), Timestamp::now())?;
    ctx.store.commit_transition(&first).await?;
    let error = expect_err(ctx.store.commit_transition(&stale).await, "commit at a stale revision")?;
    ensure!(
        matches!(error, GovernanceError::Conflict { id, expected: 1, actual: 2 } if id == request.id()),
        "expected Conflict {{ expected: 1, actual: 2 }}, got {error:?}"
    );
    ensure!(error.is_retryable(), "a conflict is retryable");
    let read = ctx.store.get_request(&ctx.workspace, request.id()).await?;
    ensure_eq!(&read, first.request(), "the stale write changed nothing");
    ensure_eq!(revision_and_history(&ctx, request.id()).await?, (2, 2), "no history from the stale write");
    Ok(())
}

/// A commit for a request that was never stored is NotFound, not Conflict.
pub async fn cas_missing_request_not_found(ctx: CaseContext) -> CaseResult {
    let creation = lifecycle::create(spec(&ctx), RequestId::new(), Timestamp::now())?;
    let transition = lifecycle::apply(creation.request(), &requester(), &annotate(1), Timestamp::now())?;
    let error = expect_err(ctx.store.commit_transition(&transition).await, "commit of a missing request")?;
    ensure!(error.is_not_found(), "expected NotFound, got {error:?}");
    let error = expect_err(ctx.store.get_request(&ctx.workspace, creation.request().id()).await, "get")?;
    ensure!(error.is_not_found(), "nothing was created: {error:?}");
    let history = ctx.store.history_for_request(&ctx.workspace, creation.request().id()).await?;
    ensure!(history.is_empty(), "no history for the missing request: {history:?}");
    Ok(())
}

/// Lets another writer commit `interference` just before each of the next
/// `injections` commits, forcing them to conflict.
struct Interfering {
    injections: AtomicU32,
    interference: Action,
}

#[async_trait]
impl Hook for Interfering {
    async fn before(&self, store: &dyn GovernanceStore, call: Call<'_>) -> Result<()> {
        let Call::CommitTransition(transition) = call else { return Ok(()) };
        if self.injections.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            let current = store.get_request(transition.request().workspace_id(), transition.request().id()).await?;
            let other = lifecycle::apply(&current, &user("intruder"), &self.interference, Timestamp::now())?;
            store.commit_transition(&other).await?;
        }
        Ok(())
    }
}

fn interfering(ctx: &CaseContext, injections: u32, interference: Action, attempts: u32) -> GovernanceService {
    let hook = Interfering { injections: AtomicU32::new(injections), interference };
    GovernanceService::new(Arc::new(Hooked::new(Arc::clone(&ctx.store), hook))).with_max_attempts(attempts)
}

/// The service re-reads after a conflict and re-applies: both writes survive.
pub async fn cas_service_retries_on_conflict(ctx: CaseContext) -> CaseResult {
    let request = create(&ctx, spec(&ctx)).await?;
    let service = interfering(&ctx, 1, annotate(7), 3);
    let submitted = service
        .apply(&ctx.workspace, request.id(), &requester(), Action::Submit { reason: PendingReason::Quota })
        .await?;
    ensure_eq!(submitted.request().revision(), 3, "the retry applied on top of the interfering write");
    let read = ctx.store.get_request(&ctx.workspace, request.id()).await?;
    ensure_eq!(read.status(), RequestStatus::Pending, "the retried action took effect");
    ensure_eq!(read.spec().metadata, json!({"counter": 7}), "the interfering write was not overwritten");
    let codes: Vec<String> = ctx
        .store
        .history_for_request(&ctx.workspace, request.id())
        .await?
        .into_iter()
        .map(|r| r.evidence().code.clone())
        .collect();
    ensure_eq!(
        codes,
        vec![codes::REQUEST_CREATED, codes::REQUEST_ANNOTATED, codes::REQUEST_SUBMITTED],
        "history of both writes, in order"
    );
    Ok(())
}

/// A retry re-validates: if the concurrent write made the action invalid,
/// the caller gets InvalidTransition and the concurrent state stands.
pub async fn cas_retry_revalidates(ctx: CaseContext) -> CaseResult {
    let request = create(&ctx, spec(&ctx)).await?;
    let service = interfering(&ctx, 1, Action::Cancel { reason: "changed my mind".into() }, 3);
    let error = expect_err(
        service.apply(&ctx.workspace, request.id(), &requester(), Action::Approve).await,
        "approve after a concurrent cancel",
    )?;
    ensure!(
        matches!(
            error,
            GovernanceError::InvalidTransition { from: RequestStatus::Canceled, rule: TransitionRule::Terminal, .. }
        ),
        "expected InvalidTransition from canceled, got {error:?}"
    );
    let read = ctx.store.get_request(&ctx.workspace, request.id()).await?;
    ensure_eq!(
        (read.status(), read.revision()),
        (RequestStatus::Canceled, 2),
        "the cancel stands, nothing overwrote it"
    );
    Ok(())
}

/// Retries are bounded: a request that always conflicts returns the Conflict
/// after the configured attempts.
pub async fn cas_retry_is_bounded(ctx: CaseContext) -> CaseResult {
    let request = create(&ctx, spec(&ctx)).await?;
    let service = interfering(&ctx, u32::MAX, annotate(0), 3);
    let error =
        expect_err(service.apply(&ctx.workspace, request.id(), &requester(), Action::Approve).await, "approve")?;
    ensure!(error.is_conflict(), "expected Conflict after the last attempt, got {error:?}");
    ensure_eq!(error.attempts(), Some(3), "the error says how many attempts were made");
    let read = ctx.store.get_request(&ctx.workspace, request.id()).await?;
    ensure_eq!((read.status(), read.revision()), (RequestStatus::Created, 4), "three interfering writes, no approval");
    Ok(())
}

/// A change applied to the state the caller holds commits in one write
/// while that state is current; once it is stale, the store refuses it and
/// the service re-applies on top of what is stored — nothing overwritten.
pub async fn cas_held_state_commits_or_conflicts(ctx: CaseContext) -> CaseResult {
    let service = GovernanceService::new(Arc::clone(&ctx.store));
    let created = create(&ctx, spec(&ctx)).await?;
    let first = service.apply_to(&created, &requester(), annotate(1)).await?;
    ensure_eq!(first.request().revision(), 2, "applied to the held state");
    let stale = lifecycle::apply(&created, &requester(), &annotate(2), Timestamp::now())?;
    let refused = expect_err(ctx.store.commit_transition(&stale).await, "a transition from a stale held state")?;
    ensure!(refused.is_conflict(), "expected Conflict, got {refused:?}");
    let late = service.apply_to(&created, &requester(), annotate(3)).await?;
    ensure_eq!(late.request().revision(), 3, "re-applied on top of the stored state");
    let read = ctx.store.get_request(&ctx.workspace, created.id()).await?;
    ensure_eq!((read.revision(), read.spec().metadata.clone()), (3, json!({"counter": 3})), "both changes kept");
    Ok(())
}

/// 16 writers × 50 compare-and-set increments on one request end at exactly
/// revision 801 with 800 update records and no lost increment.
pub async fn concurrency_cas_increments(ctx: CaseContext) -> CaseResult {
    const WRITERS: u64 = 16;
    const INCREMENTS: u64 = 50;
    let request = create(&ctx, spec(&ctx).metadata(json!({"counter": 0}))).await?;
    let mut writers = JoinSet::new();
    for writer in 0..WRITERS {
        let (store, workspace, id) = (Arc::clone(&ctx.store), ctx.workspace.clone(), request.id());
        writers.spawn(async move {
            let by = user(&format!("writer-{writer}"));
            let mut conflicts = 0u64;
            for _ in 0..INCREMENTS {
                loop {
                    let current = store.get_request(&workspace, id).await?;
                    let counter = current.spec().metadata["counter"].as_u64().unwrap_or(0);
                    let next = lifecycle::apply(&current, &by, &annotate(counter + 1), Timestamp::now())?;
                    match store.commit_transition(&next).await {
                        Ok(()) => break,
                        Err(GovernanceError::Conflict { .. }) => conflicts += 1,
                        Err(error) if error.is_retryable() => conflicts += 1,
                        Err(error) => return Err(error),
                    }
                }
            }
            Ok::<u64, GovernanceError>(conflicts)
        });
    }
    while let Some(joined) = writers.join_next().await {
        joined.map_err(|e| crate::harness::CaseFailure(format!("writer task failed: {e}")))??;
    }
    let read = ctx.store.get_request(&ctx.workspace, request.id()).await?;
    let total = WRITERS * INCREMENTS;
    ensure_eq!(read.revision(), total + 1, "final revision");
    ensure_eq!(read.spec().metadata["counter"].as_u64(), Some(total), "no increment was lost");
    let history = ctx.store.history_for_request(&ctx.workspace, request.id()).await?;
    let updates = history.iter().filter(|r| r.evidence().code == codes::REQUEST_ANNOTATED).count() as u64;
    ensure_eq!(updates, total, "one update record per increment");
    ensure_eq!(history.len() as u64, total + 1, "creation plus updates, nothing else");
    let revisions: Vec<u64> = history.iter().filter_map(|r| r.evidence().request.map(|q| q.revision)).collect();
    ensure_eq!(revisions, (1..=total + 1).collect::<Vec<_>>(), "one record per revision, in order");
    Ok(())
}

/// Writers in different workspaces run side by side without interfering.
pub async fn concurrency_many_workspaces(ctx: CaseContext) -> CaseResult {
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let store = Arc::clone(&ctx.store);
        let workspace = ctx.other_workspace();
        tasks.spawn(async move {
            let service = GovernanceService::new(Arc::clone(&store));
            let request = service.create(spec_in(&workspace)).await?.into_inner();
            for n in 0..20 {
                service.apply(&workspace, request.id(), &requester(), annotate(n)).await?;
            }
            let read = store.get_request(&workspace, request.id()).await?;
            let all = store.query_requests(&workspace, &RequestFilter::default(), &PageRequest::all()).await?;
            Ok::<_, GovernanceError>((read.revision(), all.items.len()))
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.map_err(|e| crate::harness::CaseFailure(format!("task failed: {e}")))??;
        ensure_eq!(outcome, (21, 1), "each workspace holds its own request at revision 21");
    }
    Ok(())
}
