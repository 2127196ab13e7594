//! An approval flow through `GovernanceService`, on the in-memory store.
//!
//! Two requests to change a feature flag, each needing two approvers in
//! order (the team lead at step 1, security at step 2):
//!
//! 1. created (a retry with the same idempotency key returns the original),
//!    submitted for approval, approved by both approvers in step order, and
//!    executed against the flag's current version;
//! 2. created, submitted, and rejected by the first approver; nothing can move
//!    it afterwards.
//!
//! Moves the lifecycle refuses (an approver deciding before their step is
//! open, executing a rejected request) come back as typed
//! `InvalidTransition` errors naming the rule, and change nothing. Every write
//! adds one revision and leaves its history in the same commit; the example
//! prints the history of each request.
//!
//! Only the public API of `governance-abstractions` is used: swap
//! `MemoryStore` for any other provider and the flow is the same.
//!
//! ```text
//! cargo run -p governance-memory --example approval_flow
//! ```

use std::error::Error;
use std::sync::Arc;

use governance_abstractions::{
    Action, Actor, Command, GovernanceError, GovernanceRequest, GovernanceService, HistoryRecord, NewRequest,
    PageRequest, PendingReason, Principal, RequestStatus, StaleStrategy, TargetRef, Transition, TransitionRule,
    Verdict, WorkspaceId,
};
use governance_memory::MemoryStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let service = GovernanceService::new(Arc::new(MemoryStore::new()));
    let ws = WorkspaceId::new("acme")?;
    let dana: Principal = Actor::user("dana").into();
    let lead: Principal = Actor::user("team-lead").into();
    let security: Principal = Actor::user("security").into();
    let decide = |verdict, comment: &str| Action::Decide { verdict, comment: Some(comment.to_owned()) };

    // --- 1. Approved by both approvers, then executed. -----------------------
    let spec = NewRequest::new(ws.clone(), TargetRef::new("feature_flag", "checkout-v2"), "enable", dana.clone())
        .intent("enable the new checkout for EU customers")
        .approval(Actor::user("team-lead"), 1)
        .approval(Actor::user("security"), 2)
        // The flag is at version 7 now; if it moves before execution, reject.
        .expected_version(7, StaleStrategy::RejectStale)
        .idempotency_key("change-4711")
        .category("release")
        .tag("eu");
    let request = service.create(spec.clone()).await?.into_inner();
    println!("created request {} (revision {}, {})", request.id(), request.revision(), request.status());

    // A retry of the same creation (a client that timed out, say) is a replay.
    let retry = service.create(spec).await?;
    let same = retry.value().id() == request.id();
    println!("  retried with the same idempotency key: replay = {}, same request = {same}", retry.is_replay());

    let submitted = service.apply(&ws, request.id(), &dana, Action::Submit { reason: PendingReason::Approval }).await?;
    show("submitted", submitted.request());

    // Security holds step 2: it cannot decide while step 1 is open.
    let early = service.apply(&ws, request.id(), &security, decide(Verdict::Approved, "looks fine")).await;
    println!("  security before the team lead: refused ({})", refusal(early)?);

    let step1 = service.apply(&ws, request.id(), &lead, decide(Verdict::Approved, "tested on staging")).await?;
    show("team lead approved", step1.request());
    let step2 = service.apply(&ws, request.id(), &security, decide(Verdict::Approved, "no PII impact")).await?;
    show("security approved", step2.request());

    // Execute against the flag's current version (still 7: the version holds).
    let command = Command::from(Action::Execute { current_version: Some(7) }).reason("deploy window 14:00 UTC");
    let executed = service.apply(&ws, request.id(), &dana, command).await?;
    show("executed", executed.request());
    if executed.request().status() != RequestStatus::Executed {
        return Err("the first request should be executed".into());
    }
    print_history(&service.store().history_for_request(&ws, request.id()).await?);

    // --- 2. Rejected by the first approver. -----------------------------------
    let spec = NewRequest::new(ws.clone(), TargetRef::new("feature_flag", "legacy-cart"), "disable", dana.clone())
        .intent("switch off the legacy cart")
        .approval(Actor::user("team-lead"), 1)
        .approval(Actor::user("security"), 2);
    let request = service.create(spec).await?.into_inner();
    println!("\ncreated request {} (revision {}, {})", request.id(), request.revision(), request.status());
    service.apply(&ws, request.id(), &dana, Action::Submit { reason: PendingReason::Approval }).await?;
    let rejected = service.apply(&ws, request.id(), &lead, decide(Verdict::Rejected, "still 4% of traffic")).await?;
    show("team lead rejected", rejected.request());

    // Rejected is terminal: executing (or anything else) is refused.
    let late = service.apply(&ws, request.id(), &dana, Action::Execute { current_version: None }).await;
    println!("  executing a rejected request: refused ({})", refusal(late)?);
    let stored = service.store().get_request(&ws, request.id()).await?;
    println!("  still {} at revision {}", stored.status(), stored.revision());
    if stored.status() != RequestStatus::Rejected {
        return Err("the second request should stay rejected".into());
    }
    print_history(&service.store().history_for_request(&ws, request.id()).await?);

    // The approval queue is empty again: both requests are finished.
    let page = PageRequest::first(10);
    let pending = service.store().pending_requests(&ws, Some(PendingReason::Approval), &page).await?;
    println!("\nrequests waiting for approval: {}", pending.items.len());
    Ok(())
}

/// One line per state change.
fn show(what: &str, request: &GovernanceRequest) {
    let waiting = request.pending_reason().map(|reason| format!(" ({reason})")).unwrap_or_default();
    println!("  {what}: {}{waiting}, revision {}", request.status(), request.revision());
    if request.status() == RequestStatus::Pending {
        let open = request.approvals().iter().filter(|a| a.decision.is_none()).count();
        println!("    {open} of {} approvals still open", request.approvals().len());
    }
}

/// The rule that refused a change the example expects to be refused.
fn refusal(outcome: Result<Transition, GovernanceError>) -> Result<TransitionRule, Box<dyn Error>> {
    match outcome {
        Err(GovernanceError::InvalidTransition { rule, .. }) => Ok(rule),
        Err(other) => Err(other.into()),
        Ok(transition) => Err(format!("unexpectedly allowed: {:?}", transition.request().status()).into()),
    }
}

/// The request's history, in revision order.
fn print_history(records: &[HistoryRecord]) {
    println!("  history ({} records):", records.len());
    for record in records {
        let evidence = record.evidence();
        let revision = evidence.request.map_or(0, |r| r.revision);
        let decision = evidence.decision.map(|d| format!(" [{d}]")).unwrap_or_default();
        let reason = evidence.reason.as_deref().map(|r| format!(" \"{r}\"")).unwrap_or_default();
        let line = format!(
            "    rev {revision}  {:<20} {:<18} by {:<15}{decision}{reason}",
            evidence.code,
            evidence.category.as_str(),
            evidence.actor.actor.key(),
        );
        println!("{}", line.trim_end());
    }
}
