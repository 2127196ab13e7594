//! Lifecycle moves, version resolution, approvals, expiry and supersession.

use std::sync::Arc;

use governance_abstractions::{
    Action, ActionKind, Actor, GovernanceError, GovernanceRequest, GovernanceService, HistoryCategory, PendingReason,
    RequestId, RequestStatus, StaleStrategy, TargetRef, Timestamp, Transition, TransitionRule, Verdict, codes,
    lifecycle,
};
use tokio::task::JoinSet;

use crate::fixtures::*;
use crate::harness::{CaseContext, CaseFailure, CaseResult};

use RequestStatus::*;

/// One step the matrix tries: an action, or supersession by a fresh request
/// for the same target.
enum Op {
    Act(Action),
    Supersede,
}

impl Op {
    fn kind(&self) -> ActionKind {
        match self {
            Op::Act(action) => action.kind(),
            Op::Supersede => ActionKind::Supersede,
        }
    }

    async fn run(
        self,
        ctx: &CaseContext,
        request: &GovernanceRequest,
    ) -> Result<Result<Transition, GovernanceError>, CaseFailure> {
        Ok(match self {
            Op::Act(action) => act(ctx, request.id(), &requester(), action).await,
            Op::Supersede => {
                let mut newer = spec(ctx);
                newer.target = request.spec().target.clone();
                let newer = create(ctx, newer).await?;
                ctx.service.supersede(&ctx.workspace, request.id(), newer.id(), &requester()).await
            }
        })
    }
}

/// Every step the matrix tries.
fn matrix_ops() -> Vec<Op> {
    vec![
        Op::Act(Action::Submit { reason: PendingReason::ManualReview }),
        Op::Act(Action::Approve),
        Op::Act(decide(Verdict::Approved)),
        Op::Act(Action::Reject { reason: "no".into() }),
        Op::Act(Action::Cancel { reason: "withdrawn".into() }),
        Op::Act(Action::Expire),
        Op::Supersede,
        Op::Act(Action::Execute { current_version: None }),
        Op::Act(Action::Annotate { metadata: serde_json::json!({"note": 1}) }),
    ]
}

/// The expected result of each action from `from` (independent of the
/// library's table): the status it leads to, or the rule that refuses it.
fn expected(from: RequestStatus, action: ActionKind) -> Result<RequestStatus, TransitionRule> {
    use ActionKind as A;
    if from.is_terminal() {
        return Err(TransitionRule::Terminal);
    }
    match (from, action) {
        (_, A::Reject) => Ok(Rejected),
        (_, A::Cancel) => Ok(Canceled),
        (_, A::Expire) => Ok(Expired),
        (_, A::Supersede) => Ok(Superseded),
        (_, A::Annotate) => Ok(from),
        (_, A::Decide) => Err(TransitionRule::NotAwaitingApproval),
        (Created | Pending, A::Submit) => Ok(Pending),
        (Created | Pending, A::Approve) => Ok(Approved),
        (Created | Pending, A::Execute) => Err(TransitionRule::NotApproved),
        (Approved, A::Submit | A::Approve) => Err(TransitionRule::MoveNotAllowed),
        (Approved, A::Execute) => Ok(Executed),
        _ => Err(TransitionRule::MoveNotAllowed),
    }
}

/// Tries every action on a fresh request in `from` (already due to expire):
/// allowed ones move to the expected status with revision + 1 and new
/// history; refused ones are InvalidTransition and change nothing.
async fn check_moves_from(ctx: &CaseContext, from: RequestStatus) -> CaseResult {
    for op in matrix_ops() {
        let kind = op.kind();
        let spec = spec(ctx).expires_at(past());
        let request = drive(ctx, spec, from).await?;
        let before = revision_and_history(ctx, request.id()).await?;
        let result = op.run(ctx, &request).await?;
        match (expected(from, kind), result) {
            (Ok(to), Ok(transition)) => {
                ensure_eq!(transition.request().status(), to, "{kind} from {from}");
                let (revision, history) = revision_and_history(ctx, request.id()).await?;
                ensure_eq!(revision, before.0 + 1, "{kind} from {from} adds one revision");
                ensure!(history > before.1, "{kind} from {from} adds history ({} → {history})", before.1);
                let stored = ctx.store.get_request(&ctx.workspace, request.id()).await?;
                ensure_eq!(stored.status(), to, "{kind} from {from} is stored");
                ensure_eq!(stored.pending_reason().is_some(), to == Pending, "pending reason set only while pending");
            }
            (Err(rule), Err(error)) => {
                ensure!(
                    matches!(&error, GovernanceError::InvalidTransition { from: f, action: a, rule: r, .. }
                        if *f == from && *a == kind && *r == rule),
                    "{kind} from {from}: expected InvalidTransition({rule}), got {error:?}"
                );
                ensure_eq!(
                    revision_and_history(ctx, request.id()).await?,
                    before,
                    "refused {kind} from {from} changed nothing"
                );
            }
            (Ok(to), Err(error)) => {
                return Err(CaseFailure(format!("{kind} from {from} should reach {to}, got {error:?}")));
            }
            (Err(rule), Ok(t)) => {
                return Err(CaseFailure(format!(
                    "{kind} from {from} should be refused ({rule}), reached {}",
                    t.request().status()
                )));
            }
        }
    }
    Ok(())
}

macro_rules! moves_from {
    ($($name:ident => $status:ident),* $(,)?) => {$(
        #[doc = concat!("Every action from ", stringify!($status), ": allowed moves commit, forbidden ones change nothing.")]
        pub async fn $name(ctx: CaseContext) -> CaseResult {
            check_moves_from(&ctx, $status).await
        }
    )*};
}

moves_from! {
    lifecycle_moves_from_created => Created,
    lifecycle_moves_from_pending => Pending,
    lifecycle_moves_from_approved => Approved,
    lifecycle_moves_from_rejected => Rejected,
    lifecycle_moves_from_canceled => Canceled,
    lifecycle_moves_from_expired => Expired,
    lifecycle_moves_from_superseded => Superseded,
    lifecycle_moves_from_executed => Executed,
}

/// Each transition records its code, category and the new revision.
pub async fn lifecycle_history_records(ctx: CaseContext) -> CaseResult {
    let request = create(&ctx, spec(&ctx)).await?;
    act(&ctx, request.id(), &requester(), Action::Submit { reason: PendingReason::ExternalCheck }).await?;
    act(&ctx, request.id(), &user("checker"), Action::Approve).await?;
    act(&ctx, request.id(), &requester(), Action::Execute { current_version: None }).await?;
    let history = ctx.store.history_for_request(&ctx.workspace, request.id()).await?;
    let seen: Vec<(Option<u64>, HistoryCategory, &str, &str)> = history
        .iter()
        .map(|r| {
            (
                r.evidence().request.map(|q| q.revision),
                r.evidence().category,
                r.evidence().code.as_str(),
                r.evidence().actor.actor.id.as_str(),
            )
        })
        .collect();
    let want = vec![
        (Some(1), HistoryCategory::Lifecycle, codes::REQUEST_CREATED, "requester"),
        (Some(2), HistoryCategory::Lifecycle, codes::REQUEST_SUBMITTED, "requester"),
        (Some(3), HistoryCategory::Lifecycle, codes::REQUEST_APPROVED, "checker"),
        (Some(4), HistoryCategory::VersionResolution, codes::VERSION_VALIDATED, "requester"),
        (Some(4), HistoryCategory::Lifecycle, codes::REQUEST_EXECUTED, "requester"),
    ];
    ensure_eq!(seen, want, "history of submit → approve → execute");
    // Each lifecycle record says which move it made, and why it waited.
    let moves: Vec<Option<&serde_json::Value>> = history.iter().map(|r| r.evidence().response_json.as_ref()).collect();
    let want = [
        serde_json::json!({ "to": "created" }),
        serde_json::json!({ "from": "created", "to": "pending", "pending_reason": "external_check" }),
        serde_json::json!({ "from": "pending", "to": "approved", "from_pending_reason": "external_check" }),
    ];
    ensure_eq!(moves[..3], want.each_ref().map(Some), "the moves the records describe");
    ensure!(
        history.iter().all(|r| r.evidence().object_type == "flag" && r.evidence().operation == "update"),
        "records carry the request's object type and operation"
    );
    Ok(())
}

async fn approved_with_version(ctx: &CaseContext, strategy: StaleStrategy) -> Result<RequestId, CaseFailure> {
    let spec = spec(ctx).approval(Actor::user("lead"), 1).expected_version(5, strategy);
    let request = create(ctx, spec).await?;
    act(ctx, request.id(), &requester(), Action::Submit { reason: PendingReason::Approval }).await?;
    act(ctx, request.id(), &user("lead"), decide(Verdict::Approved)).await?;
    Ok(request.id())
}

async fn codes_since(ctx: &CaseContext, id: RequestId, revision: u64) -> Result<Vec<String>, CaseFailure> {
    let history = ctx.store.history_for_request(&ctx.workspace, id).await?;
    Ok(history
        .into_iter()
        .filter(|r| r.evidence().request.is_some_and(|q| q.revision >= revision))
        .map(|r| r.evidence().code.clone())
        .collect())
}

/// A matching version executes and records "version validated".
pub async fn version_matching_executes(ctx: CaseContext) -> CaseResult {
    let id = approved_with_version(&ctx, StaleStrategy::RejectStale).await?;
    let done = act(&ctx, id, &requester(), Action::Execute { current_version: Some(5) }).await?;
    ensure_eq!(done.request().status(), Executed, "status");
    ensure_eq!(codes_since(&ctx, id, 4).await?, vec![codes::VERSION_VALIDATED, codes::REQUEST_EXECUTED], "records");
    Ok(())
}

/// Without an expected version any current version executes.
pub async fn version_unset_executes(ctx: CaseContext) -> CaseResult {
    let request = request_in(&ctx, Approved).await?;
    let done = act(&ctx, request.id(), &requester(), Action::Execute { current_version: Some(99) }).await?;
    ensure_eq!(done.request().status(), Executed, "status");
    ensure_eq!(done.records()[0].evidence().code, codes::VERSION_VALIDATED, "records version validated");
    Ok(())
}

/// Stale with RejectStale: Rejected, "rejected as stale".
pub async fn version_stale_rejects(ctx: CaseContext) -> CaseResult {
    let id = approved_with_version(&ctx, StaleStrategy::RejectStale).await?;
    let done = act(&ctx, id, &requester(), Action::Execute { current_version: Some(6) }).await?;
    ensure_eq!(done.request().status(), Rejected, "status");
    ensure_eq!(codes_since(&ctx, id, 4).await?, vec![codes::VERSION_REJECTED_STALE], "records");
    Ok(())
}

/// Stale with RequireRenewedApproval: back to Pending(Approval), version
/// updated, approvals reset; approving again lets it execute on the new version.
pub async fn version_stale_renews_approval(ctx: CaseContext) -> CaseResult {
    let id = approved_with_version(&ctx, StaleStrategy::RequireRenewedApproval).await?;
    let renewed = act(&ctx, id, &requester(), Action::Execute { current_version: Some(6) }).await?;
    let stored = ctx.store.get_request(&ctx.workspace, id).await?;
    ensure_eq!(&stored, renewed.request(), "renewal stored");
    ensure_eq!(
        (stored.status(), stored.pending_reason()),
        (Pending, Some(PendingReason::Approval)),
        "back to approval"
    );
    ensure_eq!(stored.spec().expected_state_version, Some(6), "expected version updated");
    ensure!(
        stored.spec().approvals.iter().all(|a| a.decision.is_none()),
        "approvals reset: {:?}",
        stored.spec().approvals
    );
    ensure_eq!(codes_since(&ctx, id, 4).await?, vec![codes::VERSION_RENEWED_APPROVAL_REQUIRED], "records");
    act(&ctx, id, &user("lead"), decide(Verdict::Approved)).await?;
    let done = act(&ctx, id, &requester(), Action::Execute { current_version: Some(6) }).await?;
    ensure_eq!(done.request().status(), Executed, "executes after renewed approval");
    Ok(())
}

/// Stale with RevalidateOnLatestState: stays Approved with the version updated.
pub async fn version_stale_revalidates(ctx: CaseContext) -> CaseResult {
    let id = approved_with_version(&ctx, StaleStrategy::RevalidateOnLatestState).await?;
    let revalidate = act(&ctx, id, &requester(), Action::Execute { current_version: Some(8) }).await?;
    ensure_eq!(revalidate.request().status(), Approved, "stays approved");
    ensure_eq!(revalidate.request().spec().expected_state_version, Some(8), "expected version updated");
    ensure_eq!(codes_since(&ctx, id, 4).await?, vec![codes::VERSION_REVALIDATION_REQUIRED], "records");
    let done = act(&ctx, id, &requester(), Action::Execute { current_version: Some(8) }).await?;
    ensure_eq!(done.request().status(), Executed, "executes on the revalidated version");
    Ok(())
}

/// A request that expects a version cannot execute without the current one.
pub async fn version_current_required(ctx: CaseContext) -> CaseResult {
    let id = approved_with_version(&ctx, StaleStrategy::RejectStale).await?;
    let before = revision_and_history(&ctx, id).await?;
    let error = expect_err(act(&ctx, id, &requester(), Action::Execute { current_version: None }).await, "execute")?;
    ensure!(
        matches!(error, GovernanceError::InvalidTransition { rule: TransitionRule::CurrentVersionRequired, .. }),
        "expected CurrentVersionRequired, got {error:?}"
    );
    ensure_eq!(revision_and_history(&ctx, id).await?, before, "nothing changed");
    Ok(())
}

async fn awaiting_approval(ctx: &CaseContext, approvers: &[(&str, u32)]) -> Result<RequestId, CaseFailure> {
    let mut spec = spec(ctx);
    for (approver, step) in approvers {
        spec = spec.approval(Actor::user(*approver), *step);
    }
    let request = create(ctx, spec).await?;
    act(ctx, request.id(), &requester(), Action::Submit { reason: PendingReason::Approval }).await?;
    Ok(request.id())
}

fn refused_by(error: &GovernanceError, want: TransitionRule) -> bool {
    matches!(error, GovernanceError::InvalidTransition { rule, .. } if *rule == want)
}

/// Steps are decided in order; all approved → Approved.
pub async fn approval_steps_in_order(ctx: CaseContext) -> CaseResult {
    let id = awaiting_approval(&ctx, &[("lead", 1), ("cto", 2)]).await?;
    let error = expect_err(act(&ctx, id, &user("cto"), decide(Verdict::Approved)).await, "step 2 before step 1")?;
    ensure!(refused_by(&error, TransitionRule::StepNotOpen), "expected StepNotOpen, got {error:?}");
    let first = act(&ctx, id, &user("lead"), decide(Verdict::Approved)).await?;
    ensure_eq!(first.request().status(), Pending, "still pending after step 1");
    let second = act(&ctx, id, &user("cto"), decide(Verdict::Approved)).await?;
    ensure_eq!(second.request().status(), Approved, "approved after step 2");
    let codes: Vec<&str> = second.records().iter().map(|r| r.evidence().code.as_str()).collect();
    ensure_eq!(codes, vec![codes::APPROVAL_DECIDED, codes::REQUEST_APPROVED], "final decision records");
    Ok(())
}

/// Several approvers of one step decide in any order.
pub async fn approval_same_step_any_order(ctx: CaseContext) -> CaseResult {
    let id = awaiting_approval(&ctx, &[("a", 1), ("b", 1), ("c", 1)]).await?;
    for (approver, status) in [("c", Pending), ("a", Pending), ("b", Approved)] {
        let t = act(&ctx, id, &user(approver), decide(Verdict::Approved)).await?;
        ensure_eq!(t.request().status(), status, "after {approver}");
    }
    let stored = ctx.store.get_request(&ctx.workspace, id).await?;
    ensure!(
        stored.spec().approvals.iter().all(|a| a.decision.as_ref().is_some_and(|d| d.decided_by.actor == a.approver)),
        "each requirement records its approver: {:?}",
        stored.spec().approvals
    );
    Ok(())
}

/// Any rejection rejects the request.
pub async fn approval_rejection_rejects(ctx: CaseContext) -> CaseResult {
    let id = awaiting_approval(&ctx, &[("a", 1), ("b", 1), ("c", 2)]).await?;
    act(&ctx, id, &user("a"), decide(Verdict::Approved)).await?;
    let t =
        act(&ctx, id, &user("b"), Action::Decide { verdict: Verdict::Rejected, comment: Some("risky".into()) }).await?;
    ensure_eq!(t.request().status(), Rejected, "one rejection rejects");
    let codes: Vec<&str> = t.records().iter().map(|r| r.evidence().code.as_str()).collect();
    ensure_eq!(codes, vec![codes::APPROVAL_DECIDED, codes::REQUEST_REJECTED], "records");
    ensure_eq!(
        t.records()[0].evidence().decision,
        Some(governance_abstractions::Decision::Denied),
        "decision recorded"
    );
    Ok(())
}

/// An approver decides a requirement once; others cannot decide at all.
pub async fn approval_decides_once(ctx: CaseContext) -> CaseResult {
    let id = awaiting_approval(&ctx, &[("a", 1), ("b", 1)]).await?;
    act(&ctx, id, &user("a"), decide(Verdict::Approved)).await?;
    let before = revision_and_history(&ctx, id).await?;
    let again = expect_err(act(&ctx, id, &user("a"), decide(Verdict::Approved)).await, "second decision")?;
    ensure!(refused_by(&again, TransitionRule::AlreadyDecided), "expected AlreadyDecided, got {again:?}");
    let stranger = expect_err(act(&ctx, id, &user("mallory"), decide(Verdict::Approved)).await, "non-approver")?;
    ensure!(refused_by(&stranger, TransitionRule::NotAnApprover), "expected NotAnApprover, got {stranger:?}");
    ensure_eq!(revision_and_history(&ctx, id).await?, before, "refused decisions changed nothing");
    Ok(())
}

/// One approver may hold requirements in several steps, decided one per step.
pub async fn approval_one_approver_many_steps(ctx: CaseContext) -> CaseResult {
    let id = awaiting_approval(&ctx, &[("lead", 1), ("sec", 2), ("lead", 3)]).await?;
    ensure_eq!(act(&ctx, id, &user("lead"), decide(Verdict::Approved)).await?.request().status(), Pending, "step 1");
    let early = expect_err(act(&ctx, id, &user("lead"), decide(Verdict::Approved)).await, "lead before step 2")?;
    ensure!(refused_by(&early, TransitionRule::StepNotOpen), "expected StepNotOpen, got {early:?}");
    ensure_eq!(act(&ctx, id, &user("sec"), decide(Verdict::Approved)).await?.request().status(), Pending, "step 2");
    ensure_eq!(act(&ctx, id, &user("lead"), decide(Verdict::Approved)).await?.request().status(), Approved, "step 3");
    Ok(())
}

/// An approver is an actor: the same id of another kind, or someone acting
/// on the approver's behalf, does not decide.
pub async fn approval_matches_actor_kind(ctx: CaseContext) -> CaseResult {
    let id = awaiting_approval(&ctx, &[("security", 1)]).await?;
    let service_account: governance_abstractions::Principal = Actor::service("security").into();
    let e = expect_err(act(&ctx, id, &service_account, decide(Verdict::Approved)).await, "service with the same id")?;
    ensure!(refused_by(&e, TransitionRule::NotAnApprover), "expected NotAnApprover, got {e:?}");
    let delegate =
        governance_abstractions::Principal::delegated(Actor::user("assistant"), vec![Actor::user("security")]);
    let e = expect_err(act(&ctx, id, &delegate, decide(Verdict::Approved)).await, "delegate")?;
    ensure!(refused_by(&e, TransitionRule::NotAnApprover), "expected NotAnApprover, got {e:?}");
    let on_behalf = governance_abstractions::Principal::delegated(Actor::user("security"), vec![Actor::user("cto")]);
    let t = act(&ctx, id, &on_behalf, decide(Verdict::Approved)).await?;
    ensure_eq!(t.request().status(), Approved, "the approver decides, whoever they act for");
    Ok(())
}

/// Approval rules: deciding needs Pending(Approval); direct approval is refused
/// while requirements exist; waiting for approval needs requirements; one
/// approver holds one requirement per step; renewal needs approvers.
pub async fn approval_preconditions(ctx: CaseContext) -> CaseResult {
    let twice = spec(&ctx).approval(Actor::user("a"), 1).approval(Actor::user("a"), 1);
    let e = expect_err(ctx.service.create(twice).await, "an approver twice in one step")?;
    ensure!(matches!(e, GovernanceError::Validation { .. }), "expected a validation error, got {e:?}");
    let renew = spec(&ctx).expected_version(1, StaleStrategy::RequireRenewedApproval);
    let e = expect_err(ctx.service.create(renew).await, "renewal without approvers")?;
    ensure!(matches!(e, GovernanceError::Validation { .. }), "expected a validation error, got {e:?}");
    let with = create(&ctx, spec(&ctx).approval(Actor::user("lead"), 1)).await?;
    let e = expect_err(act(&ctx, with.id(), &user("lead"), decide(Verdict::Approved)).await, "decide on created")?;
    ensure!(refused_by(&e, TransitionRule::NotAwaitingApproval), "expected NotAwaitingApproval, got {e:?}");
    let e = expect_err(act(&ctx, with.id(), &user("lead"), Action::Approve).await, "direct approve")?;
    ensure!(refused_by(&e, TransitionRule::ApprovalsRequired), "expected ApprovalsRequired, got {e:?}");
    let without = create(&ctx, spec(&ctx)).await?;
    let e = expect_err(
        act(&ctx, without.id(), &requester(), Action::Submit { reason: PendingReason::Approval }).await,
        "submit for approval without approvers",
    )?;
    ensure!(refused_by(&e, TransitionRule::NoApprovalRequirements), "expected NoApprovalRequirements, got {e:?}");
    ensure_eq!(revision_and_history(&ctx, with.id()).await?, (1, 1), "nothing changed");
    Ok(())
}

/// A sweep expires exactly the due, non-terminal requests.
pub async fn expiry_sweep_expires_due_only(ctx: CaseContext) -> CaseResult {
    let now = Timestamp::now();
    let future = now.add_micros(3_600_000_000).unwrap_or(now);
    let due_created = create(&ctx, spec(&ctx).expires_at(past())).await?;
    let due_pending = drive(&ctx, spec(&ctx).expires_at(past()), Pending).await?;
    let due_approved = drive(&ctx, spec(&ctx).expires_at(now), Approved).await?;
    let not_due = create(&ctx, spec(&ctx).expires_at(future)).await?;
    let no_expiry = create(&ctx, spec(&ctx)).await?;
    let finished = drive(&ctx, spec(&ctx).expires_at(past()), Canceled).await?;
    let mut due: Vec<_> = ctx.store.due_for_expiry(&ctx.workspace, now, 100).await?.iter().map(|r| r.id()).collect();
    due.sort();
    let mut want_due = vec![due_created.id(), due_pending.id(), due_approved.id()];
    want_due.sort();
    ensure_eq!(due, want_due, "due: unfinished requests whose expiry passed, never finished ones");
    let mut expired = ctx.service.expire_due(&ctx.workspace, now).await?.expired;
    expired.sort();
    let mut want = vec![due_created.id(), due_pending.id(), due_approved.id()];
    want.sort();
    ensure_eq!(expired, want, "expired ids");
    for (id, status) in
        [(not_due.id(), Created), (no_expiry.id(), Created), (finished.id(), Canceled), (due_pending.id(), Expired)]
    {
        ensure_eq!(ctx.store.get_request(&ctx.workspace, id).await?.status(), status, "status of {id}");
    }
    ensure!(ctx.service.expire_due(&ctx.workspace, now).await?.expired.is_empty(), "a second sweep finds nothing");
    Ok(())
}

/// Four sweepers at once: every due request expires exactly once.
pub async fn expiry_concurrent_sweepers(ctx: CaseContext) -> CaseResult {
    const DUE: usize = 40;
    let mut ids = Vec::new();
    for _ in 0..DUE {
        ids.push(create(&ctx, spec(&ctx).expires_at(past())).await?.id());
    }
    let now = Timestamp::now();
    let mut sweepers = JoinSet::new();
    for _ in 0..4 {
        let (service, workspace) = (GovernanceService::new(Arc::clone(&ctx.store)), ctx.workspace.clone());
        sweepers.spawn(async move { service.expire_due(&workspace, now).await });
    }
    let mut expired = Vec::new();
    while let Some(joined) = sweepers.join_next().await {
        let report = joined.map_err(|e| CaseFailure(format!("sweeper failed: {e}")))??;
        ensure!(report.refused.is_empty(), "no request refused: {:?}", report.refused);
        expired.extend(report.expired);
    }
    expired.sort();
    ids.sort();
    ensure_eq!(expired, ids, "every due request expired by exactly one sweeper");
    for id in ids {
        let history = ctx.store.history_for_request(&ctx.workspace, id).await?;
        let expiries = history.iter().filter(|r| r.evidence().code == codes::REQUEST_EXPIRED).count();
        ensure_eq!(expiries, 1, "one expiry record for {id}");
        ensure_eq!(ctx.store.get_request(&ctx.workspace, id).await?.revision(), 2, "one expiry write for {id}");
    }
    Ok(())
}

/// Expiring a request before its time is refused.
pub async fn expiry_not_due_refused(ctx: CaseContext) -> CaseResult {
    let future = Timestamp::now().add_micros(3_600_000_000).unwrap_or_else(Timestamp::now);
    let request = create(&ctx, spec(&ctx).expires_at(future)).await?;
    let e = expect_err(act(&ctx, request.id(), &requester(), Action::Expire).await, "early expiry")?;
    ensure!(refused_by(&e, TransitionRule::NotDue), "expected NotDue, got {e:?}");
    let never = create(&ctx, spec(&ctx)).await?;
    let e = expect_err(act(&ctx, never.id(), &requester(), Action::Expire).await, "expiry without expires_at")?;
    ensure!(refused_by(&e, TransitionRule::NotDue), "expected NotDue, got {e:?}");
    Ok(())
}

/// A newer request for the same target supersedes the older one.
pub async fn supersede_marks_older(ctx: CaseContext) -> CaseResult {
    let target = TargetRef::new("flag", unique("t"));
    let mut older_spec = spec(&ctx);
    older_spec.target = target.clone();
    let older = drive(&ctx, older_spec.clone(), Pending).await?;
    let newer = create(&ctx, older_spec).await?;
    let t = ctx.service.supersede(&ctx.workspace, older.id(), newer.id(), &requester()).await?;
    ensure_eq!((t.request().status(), t.request().superseded_by()), (Superseded, Some(newer.id())), "older superseded");
    ensure_eq!(t.records()[0].evidence().code, codes::REQUEST_SUPERSEDED, "record");
    let history = ctx.store.history_for_request(&ctx.workspace, older.id()).await?;
    let detail = history.last().and_then(|r| r.evidence().response_json.clone()).unwrap_or_default();
    ensure_eq!(detail["superseded_by"], serde_json::json!(newer.id()), "the stored record names the successor");
    let for_target = ctx.store.requests_for_target(&ctx.workspace, &target).await?;
    let statuses: Vec<RequestStatus> = for_target.iter().map(|r| r.status()).collect();
    ensure_eq!(statuses, vec![Superseded, Created], "both requests for the target, oldest first");
    Ok(())
}

/// Supersession needs a distinct, existing, unfinished request for the same
/// target in the same workspace, and commits like any change.
pub async fn supersede_preconditions(ctx: CaseContext) -> CaseResult {
    let older = create(&ctx, spec(&ctx)).await?;
    let same_target = |ctx: &CaseContext| {
        let mut spec = spec(ctx);
        spec.target = older.spec().target.clone();
        spec
    };
    let elsewhere = create(&ctx, spec(&ctx)).await?;
    let finished = drive(&ctx, same_target(&ctx), Canceled).await?;
    let mut foreign = same_target(&ctx);
    foreign.workspace_id = ctx.other_workspace();
    let foreign = ctx.service.create(foreign).await?.into_inner();
    for (what, newer) in
        [("another target", elsewhere.id()), ("a finished request", finished.id()), ("itself", older.id())]
    {
        let e = expect_err(ctx.service.supersede(&ctx.workspace, older.id(), newer, &requester()).await, what)?;
        ensure!(refused_by(&e, TransitionRule::NotASuccessor), "{what}: expected NotASuccessor, got {e:?}");
    }
    let e = expect_err(ctx.service.supersede(&ctx.workspace, older.id(), foreign.id(), &requester()).await, "foreign")?;
    ensure!(e.is_not_found(), "a request of another workspace is not found: {e:?}");
    let e =
        expect_err(ctx.service.supersede(&ctx.workspace, older.id(), RequestId::new(), &requester()).await, "missing")?;
    ensure!(e.is_not_found(), "expected NotFound, got {e:?}");
    let e = expect_err(lifecycle::supersede(&older, &foreign, &requester(), Timestamp::now()), "across workspaces")?;
    ensure!(refused_by(&e, TransitionRule::NotASuccessor), "expected NotASuccessor, got {e:?}");
    let newer = create(&ctx, same_target(&ctx)).await?;
    let stale = lifecycle::supersede(&older, &newer, &requester(), Timestamp::now())?;
    act(&ctx, older.id(), &requester(), Action::Annotate { metadata: serde_json::json!(1) }).await?;
    let e = expect_err(ctx.store.commit_transition(&stale).await, "stale supersession")?;
    ensure!(e.is_conflict(), "expected Conflict, got {e:?}");
    ensure_eq!(revision_and_history(&ctx, older.id()).await?, (2, 2), "only the annotation changed it");
    Ok(())
}
