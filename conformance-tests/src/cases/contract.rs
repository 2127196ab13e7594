//! The contract enforced by construction: a transition commits only over the
//! exact stored state it was computed from, fields fixed at creation never
//! change, supersession commits against both requests, hostile JSON is a
//! typed error, and time bounds mean the same everywhere.

use audit_history::{AuditError, Recorder};
use governance_abstractions::{
    Action, Command, CountBy, CountQuery, Decision, Evidence, GovernanceError, GovernanceRequest, HistoryFilter,
    HistoryRecord, PageRequest, PendingReason, RequestFilter, RequestStatus, StaleStrategy, TimeRange, Timestamp,
    ValidationProblem, Verdict, codes, lifecycle, limits,
};
use serde_json::{Value, json};

use crate::fixtures::*;
use crate::harness::{CaseContext, CaseFailure, CaseResult};

/// A copy of `request` as an attacker edits it: its JSON changed by `edit`
/// and, when `redigest`, its state digest recomputed over the edited content
/// so the copy is consistent in itself.
fn forge(request: &GovernanceRequest, redigest: bool, edit: &dyn Fn(&mut Value)) -> Outcome<GovernanceRequest> {
    let decode = |value: Value| {
        serde_json::from_value::<GovernanceRequest>(value).map_err(|e| CaseFailure(format!("forging: {e}")))
    };
    let mut value = serde_json::to_value(request).map_err(|e| CaseFailure(format!("encoding: {e}")))?;
    edit(&mut value);
    let copy = decode(value.clone())?;
    if !redigest {
        return Ok(copy);
    }
    value["state_digest"] = json!(copy.compute_state_digest()?);
    decode(value)
}

/// A request awaiting two approvers in order.
async fn awaiting_approval(ctx: &CaseContext) -> Outcome<GovernanceRequest> {
    let spec = spec(ctx)
        .intent("the real intent")
        .idempotency_key(unique("key"))
        .metadata(json!({ "real": true }))
        .approval(governance_abstractions::Actor::user("first"), 1)
        .approval(governance_abstractions::Actor::user("second"), 2);
    let request = create(ctx, spec).await?;
    Ok(act(ctx, request.id(), &requester(), Action::Submit { reason: PendingReason::Approval }).await?.into_parts().0)
}

/// The fields fixed at creation, for comparison.
fn frozen(request: &GovernanceRequest) -> Value {
    json!({
        "id": request.id(),
        "workspace": request.workspace_id(),
        "target": request.target(),
        "operation": request.operation(),
        "requested_by": request.requested_by(),
        "intent": request.intent(),
        "stale_strategy": request.stale_strategy(),
        "expires_at": request.expires_at(),
        "idempotency_key": request.idempotency_key(),
        "category": request.category(),
        "tags": request.tags(),
        "created_at": request.created_at(),
        "creation_digest": request.creation_digest(),
    })
}

/// A transition computed from a forged copy of the stored request (approvals
/// removed, a decision forged, frozen fields, metadata or timestamps changed)
/// is a typed error and leaves the stored request and its history unchanged.
pub async fn contract_forged_base_refused(ctx: CaseContext) -> CaseResult {
    let stored = awaiting_approval(&ctx).await?;
    let before = revision_and_history(&ctx, stored.id()).await?;
    let decided =
        json!({ "verdict": "approved", "decided_by": user("first"), "decided_at": Timestamp::now(), "comment": null });
    let approve = Action::Approve;
    let decide = decide(Verdict::Approved);
    let annotate = Action::Annotate { metadata: json!({ "x": 1 }) };
    type Edit = Box<dyn Fn(&mut Value) + Send + Sync>;
    let forgeries: Vec<(&str, Edit, &Action, &str)> = vec![
        ("approvals removed", Box::new(|v| v["approvals"] = json!([])), &approve, "requester"),
        (
            "an approval decision forged",
            Box::new(move |v| v["approvals"][0]["decision"] = decided.clone()),
            &decide,
            "second",
        ),
        ("target", Box::new(|v| v["target"]["state_id"] = json!("another-target")), &annotate, "requester"),
        ("requester", Box::new(|v| v["requested_by"]["actor"]["id"] = json!("mallory")), &annotate, "requester"),
        ("intent", Box::new(|v| v["intent"] = json!("a forged intent")), &annotate, "requester"),
        ("idempotency key", Box::new(|v| v["idempotency_key"] = json!("forged-key")), &annotate, "requester"),
        ("metadata", Box::new(|v| v["metadata"] = json!({ "forged": true })), &annotate, "requester"),
        ("created_at", Box::new(|v| v["created_at"] = json!("2001-01-01T00:00:00.000000Z")), &annotate, "requester"),
        ("updated_at", Box::new(|v| v["updated_at"] = json!("2001-01-01T00:00:00.000000Z")), &annotate, "requester"),
    ];
    for (what, edit, action, actor) in &forgeries {
        // Edited without a matching digest: the lifecycle refuses to start from it.
        let edited = forge(&stored, false, edit.as_ref())?;
        let refused = expect_err(lifecycle::apply(&edited, &user(actor), action, Timestamp::now()), what)?;
        ensure!(matches!(refused, GovernanceError::Validation { .. }), "{what}, digest left stale: {refused:?}");
        // Edited consistently: the store refuses to write over another state.
        let forged = forge(&stored, true, edit.as_ref())?;
        let transition = lifecycle::apply(&forged, &user(actor), action, Timestamp::now())?;
        let error = expect_err(ctx.store.commit_transition(&transition).await, what)?;
        ensure!(
            matches!(error, GovernanceError::Validation { .. }) && !error.is_retryable(),
            "{what}: expected a validation error, got {error:?}"
        );
        ensure_eq!(
            ctx.store.get_request(&ctx.workspace, stored.id()).await?,
            stored,
            "{what}: stored request unchanged"
        );
        ensure_eq!(revision_and_history(&ctx, stored.id()).await?, before, "{what}: no revision, no history");
    }
    // Without forgery the approvals still hold: the first approver is required first.
    let error = expect_err(act(&ctx, stored.id(), &user("second"), decide.clone()).await, "second approver first")?;
    ensure!(matches!(error, GovernanceError::InvalidTransition { .. }), "step order still enforced: {error:?}");
    Ok(())
}

/// Every kind of transition leaves the fields fixed at creation exactly as
/// they were, and stores the state digest the lifecycle computed.
pub async fn contract_frozen_fields_never_change(ctx: CaseContext) -> CaseResult {
    let by = requester();
    let base = || {
        spec(&ctx)
            .intent("frozen intent")
            .idempotency_key(unique("frozen"))
            .category("cat")
            .tag("t1")
            .expires_at(Timestamp::now().add_micros(3_600_000_000).unwrap_or_else(Timestamp::now))
    };
    let approvals = || {
        base()
            .approval(governance_abstractions::Actor::user("a"), 1)
            .expected_version(1, StaleStrategy::RequireRenewedApproval)
    };
    let plans: Vec<(&str, Vec<(Action, &str)>)> = vec![
        (
            "submit, annotate, approve, execute",
            vec![
                (Action::Submit { reason: PendingReason::ExternalCheck }, "requester"),
                (Action::Annotate { metadata: json!({ "n": 1 }) }, "requester"),
                (Action::Approve, "requester"),
                (Action::Execute { current_version: None }, "requester"),
            ],
        ),
        ("reject", vec![(Action::Reject { reason: "no".into() }, "requester")]),
        ("cancel", vec![(Action::Cancel { reason: "withdrawn".into() }, "requester")]),
    ];
    for (what, steps) in plans {
        let request = create(&ctx, base()).await?;
        let fixed = frozen(&request);
        for (action, actor) in steps {
            let done = act(&ctx, request.id(), &user(actor), action).await?;
            let read = ctx.store.get_request(&ctx.workspace, request.id()).await?;
            ensure_eq!(frozen(&read), fixed, "{what}: frozen fields after {}", done.records()[0].evidence().code);
            ensure_eq!(read.state_digest(), done.request().state_digest(), "{what}: the lifecycle's digest is stored");
            ensure_eq!(read.state_digest(), read.compute_state_digest()?, "{what}: the digest covers the stored state");
        }
    }
    // Decisions, a stale-version renewal, expiry and supersession.
    let request = create(&ctx, approvals()).await?;
    let fixed = frozen(&request);
    act(&ctx, request.id(), &by, Action::Submit { reason: PendingReason::Approval }).await?;
    act(&ctx, request.id(), &user("a"), decide(Verdict::Approved)).await?;
    let renewed = act(&ctx, request.id(), &by, Action::Execute { current_version: Some(2) }).await?;
    ensure_eq!(renewed.request().status(), RequestStatus::Pending, "stale version renews approval");
    ensure_eq!(frozen(&ctx.store.get_request(&ctx.workspace, request.id()).await?), fixed, "after renewal");
    let newer = create(&ctx, {
        let mut s = spec(&ctx);
        s.target = request.target().clone();
        s
    })
    .await?;
    ctx.service.supersede(&ctx.workspace, request.id(), newer.id(), &by).await?;
    ensure_eq!(frozen(&ctx.store.get_request(&ctx.workspace, request.id()).await?), fixed, "after supersession");
    let due = create(&ctx, spec(&ctx).expires_at(past())).await?;
    let fixed = frozen(&due);
    ctx.service.expire_due(&ctx.workspace, Timestamp::now()).await?;
    let expired = ctx.store.get_request(&ctx.workspace, due.id()).await?;
    ensure_eq!(expired.status(), RequestStatus::Expired, "expired");
    ensure_eq!(frozen(&expired), fixed, "after expiry");
    Ok(())
}

/// A supersession computed while the newer request was unfinished is refused
/// when the newer one finished before the commit, and changes nothing.
pub async fn contract_supersession_race_refused(ctx: CaseContext) -> CaseResult {
    let by = requester();
    let older = create(&ctx, spec(&ctx)).await?;
    let newer = create(&ctx, {
        let mut s = spec(&ctx);
        s.target = older.target().clone();
        s
    })
    .await?;
    let transition = lifecycle::supersede(&older, &newer, &by, Timestamp::now())?;
    act(&ctx, newer.id(), &by, Action::Cancel { reason: "finished first".into() }).await?;
    let error = expect_err(ctx.store.commit_transition(&transition).await, "supersede by a finished request")?;
    ensure!(
        matches!(error, GovernanceError::Conflict { id, expected: 1, actual: 2 } if id == newer.id()),
        "expected a Conflict on the successor, got {error:?}"
    );
    ensure_eq!(ctx.store.get_request(&ctx.workspace, older.id()).await?, older, "the older request is unchanged");
    ensure_eq!(revision_and_history(&ctx, older.id()).await?, (1, 1), "no revision, no history");
    let error = expect_err(ctx.service.supersede(&ctx.workspace, older.id(), newer.id(), &by).await, "service")?;
    ensure!(matches!(error, GovernanceError::InvalidTransition { .. }), "the service re-reads and refuses: {error:?}");
    // A successor that moved on while staying unfinished is a conflict too, and the service retries past it.
    let other = create(&ctx, {
        let mut s = spec(&ctx);
        s.target = older.target().clone();
        s
    })
    .await?;
    let transition = lifecycle::supersede(&older, &other, &by, Timestamp::now())?;
    act(&ctx, other.id(), &by, Action::Annotate { metadata: json!(1) }).await?;
    let error = expect_err(ctx.store.commit_transition(&transition).await, "successor moved on")?;
    ensure!(matches!(error, GovernanceError::Conflict { id, .. } if id == other.id()), "{error:?}");
    let done = ctx.service.supersede(&ctx.workspace, older.id(), other.id(), &by).await?;
    ensure_eq!(done.request().superseded_by(), Some(other.id()), "superseded by the unfinished request");
    Ok(())
}

/// Two requests for one target, each superseding the other at the same
/// moment, straight through the store: one commit wins, the other is a
/// `Conflict` (its successor moved on), never a backend error. On a store
/// with row locks each commit holds one row and waits for the other's, in
/// opposite orders: whatever the server does about that (a deadlock
/// victim, say) is the store's to settle, not the caller's.
pub async fn contract_crossed_supersessions_settle(ctx: CaseContext) -> CaseResult {
    let by = requester();
    for round in 0..12 {
        let first = create(&ctx, spec(&ctx)).await?;
        let second = create(&ctx, {
            let mut s = spec(&ctx);
            s.target = first.target().clone();
            s
        })
        .await?;
        let one = lifecycle::supersede(&first, &second, &by, Timestamp::now())?;
        let other = lifecycle::supersede(&second, &first, &by, Timestamp::now())?;
        let (a, b) = tokio::join!(ctx.store.commit_transition(&one), ctx.store.commit_transition(&other));
        let settled = |result: &Result<(), GovernanceError>| match result {
            Ok(()) => Ok(true),
            Err(GovernanceError::Conflict { .. }) => Ok(false),
            Err(error) => Err(CaseFailure(format!("round {round}: a crossed supersession failed: {error:?}"))),
        };
        let (a, b) = (settled(&a)?, settled(&b)?);
        ensure!(a != b, "round {round}: exactly one of the two commits wins (first {a}, second {b})");
        let (winner, loser) = if a { (&first, &second) } else { (&second, &first) };
        let superseded = ctx.store.get_request(&ctx.workspace, winner.id()).await?;
        ensure_eq!(
            (superseded.status(), superseded.superseded_by()),
            (RequestStatus::Superseded, Some(loser.id())),
            "round {round}: the winner's request is superseded by the other"
        );
        ensure_eq!(
            ctx.store.get_request(&ctx.workspace, loser.id()).await?,
            *loser,
            "round {round}: the losing commit changed nothing"
        );
    }
    Ok(())
}

fn nested(depth: usize) -> Value {
    let mut value = json!("leaf");
    for _ in 0..depth {
        value = Value::Array(vec![value]);
    }
    value
}

fn too_deep<T: std::fmt::Debug>(result: Result<T, GovernanceError>, what: &str) -> CaseResult {
    ensure!(
        matches!(result, Err(GovernanceError::Validation { problem: ValidationProblem::TooDeep { .. }, .. })),
        "{what}: expected TooDeep, got {result:?}"
    );
    Ok(())
}

/// JSON nested 100,000 deep through every entry point is a typed validation
/// error on an ordinary tokio worker (no stack overflow), and stores nothing.
pub async fn contract_hostile_nesting_refused(ctx: CaseContext) -> CaseResult {
    const DEEP: usize = 100_000;
    too_deep(ctx.service.create(spec(&ctx).metadata(nested(DEEP))).await, "create")?;
    let request = create(&ctx, spec(&ctx)).await?;
    let by = requester();
    too_deep(act(&ctx, request.id(), &by, Action::Annotate { metadata: nested(DEEP) }).await, "annotate")?;
    let noted = Command::from(Action::Submit { reason: PendingReason::Quota }).metadata(nested(DEEP));
    too_deep(ctx.service.apply(&ctx.workspace, request.id(), &by, noted).await, "command metadata")?;
    ensure_eq!(revision_and_history(&ctx, request.id()).await?, (1, 1), "nothing was written");
    too_deep(
        HistoryRecord::new(evidence(&ctx, Decision::Denied).request_json(nested(DEEP)), Timestamp::now()),
        "record",
    )?;
    let deep = || evidence(&ctx, Decision::Denied).response_json(nested(DEEP));
    ensure!(!deep().same_content(&deep()), "deep evidence is never the same content");
    let recorder = Recorder::new(ctx.store.clone());
    for (what, result) in [
        ("Recorder::prepare", recorder.prepare(deep()).map(drop)),
        ("Recorder::record", recorder.record(deep()).await.map(drop)),
        ("Recorder::guard", recorder.guard(deep(), async |_| ()).await.map(drop)),
    ] {
        ensure!(
            matches!(
                &result,
                Err(AuditError::Refused(GovernanceError::Validation {
                    problem: ValidationProblem::TooDeep { .. },
                    ..
                }))
            ),
            "{what}: expected a refusal, got {result:?}"
        );
    }
    let stored = ctx.store.query_history(&ctx.workspace, &HistoryFilter::default(), &PageRequest::all()).await?;
    ensure_eq!(stored.items.len(), 1, "only the creation record is stored");
    Ok(())
}

/// JSON at the depth limit stores and reads back on every backend; one level
/// more is refused the same way everywhere.
pub async fn contract_json_at_depth_limit(ctx: CaseContext) -> CaseResult {
    let at_limit = nested(limits::MAX_JSON_DEPTH);
    let mut empty_at_limit = json!([]);
    for _ in 1..limits::MAX_JSON_DEPTH {
        empty_at_limit = json!({ "k": empty_at_limit });
    }
    let request = create(&ctx, spec(&ctx).metadata(at_limit.clone())).await?;
    ensure_eq!(
        ctx.store.get_request(&ctx.workspace, request.id()).await?.metadata(),
        &at_limit,
        "metadata at the limit"
    );
    let done = act(&ctx, request.id(), &requester(), Action::Annotate { metadata: empty_at_limit.clone() }).await?;
    ensure_eq!(done.request().metadata(), &empty_at_limit, "annotation at the limit");
    let stored = append(
        &ctx,
        evidence(&ctx, Decision::Denied).request_json(at_limit.clone()).response_json(empty_at_limit.clone()),
    )
    .await?;
    let read = ctx.store.get_history_record(&ctx.workspace, stored.id()).await?;
    ensure_eq!(read.evidence().request_json.as_ref(), Some(&at_limit), "request_json at the limit");
    ensure_eq!(read.evidence().response_json.as_ref(), Some(&empty_at_limit), "response_json at the limit");
    read.check()?;
    let over = nested(limits::MAX_JSON_DEPTH + 1);
    too_deep(ctx.service.create(spec(&ctx).metadata(over.clone())).await, "create one past")?;
    too_deep(
        act(&ctx, request.id(), &requester(), Action::Annotate { metadata: json!([empty_at_limit]) }).await,
        "annotate one past",
    )?;
    too_deep(
        HistoryRecord::new(evidence(&ctx, Decision::Denied).request_json(over), Timestamp::now()),
        "record one past",
    )?;
    Ok(())
}

/// Time bounds outside what every backend stores (year 10000, before 1970)
/// are the same validation error on every provider; the last storable
/// instant works as a bound.
pub async fn contract_time_bounds_outside_storable_range(ctx: CaseContext) -> CaseResult {
    let request = create(&ctx, spec(&ctx).expires_at(past())).await?;
    let year_10000 = Timestamp::from_unix_micros(Timestamp::MAX_MICROS + 1).ok_or(CaseFailure("year 10000".into()))?;
    let before_1970 = Timestamp::from_unix_micros(-1).ok_or(CaseFailure("1969".into()))?;
    let last = Timestamp::from_unix_micros(Timestamp::MAX_MICROS).ok_or(CaseFailure("9999".into()))?;
    let out_of_range = |result: Result<Vec<String>, GovernanceError>, what: &str| -> CaseResult {
        ensure!(
            matches!(result, Err(GovernanceError::Validation { problem: ValidationProblem::OutOfRange, .. })),
            "{what}: expected OutOfRange, got {result:?}"
        );
        Ok(())
    };
    let ids = |page: Vec<GovernanceRequest>| page.iter().map(|r| r.id().to_string()).collect::<Vec<_>>();
    for (what, range) in [
        ("until year 10000", TimeRange { from: None, until: Some(year_10000) }),
        ("from year 10000", TimeRange { from: Some(year_10000), until: None }),
        ("from before 1970", TimeRange { from: Some(before_1970), until: None }),
    ] {
        let filter = RequestFilter { created: range, ..RequestFilter::default() };
        out_of_range(
            ctx.store.query_requests(&ctx.workspace, &filter, &PageRequest::all()).await.map(|p| ids(p.items)),
            what,
        )?;
        let filter = HistoryFilter { created: range, ..HistoryFilter::default() };
        let history = ctx.store.query_history(&ctx.workspace, &filter, &PageRequest::all()).await;
        out_of_range(history.map(|p| p.items.iter().map(|r| r.id().to_string()).collect()), what)?;
        let counts = ctx.store.count_history(&ctx.workspace, &CountQuery::new(CountBy::Decision, range)).await;
        out_of_range(counts.map(|c| c.iter().map(|c| c.key.clone()).collect()), what)?;
    }
    out_of_range(ctx.store.due_for_expiry(&ctx.workspace, year_10000, 10).await.map(ids), "due by year 10000")?;
    // A feed position past the storable range is refused the same way.
    let beyond = governance_abstractions::Position { created_at: year_10000, id: uuid::Uuid::nil() };
    let feed = ctx.store.unsealed_history(&ctx.workspace, Some(beyond), 10).await;
    out_of_range(feed.map(|records| records.iter().map(|r| format!("{r:?}")).collect()), "feed after year 10000")?;
    let filter = RequestFilter { created: TimeRange { from: None, until: Some(last) }, ..RequestFilter::default() };
    let found = ctx.store.query_requests(&ctx.workspace, &filter, &PageRequest::all()).await?;
    ensure_eq!(ids(found.items), vec![request.id().to_string()], "until the last storable instant");
    let due = ctx.store.due_for_expiry(&ctx.workspace, last, 10).await?;
    ensure_eq!(ids(due), vec![request.id().to_string()], "due by the last storable instant");
    Ok(())
}

/// A command's reason and metadata are recorded with its change; a submit
/// or re-route names the pending reason it moved to and the one it left.
pub async fn contract_transitions_say_why(ctx: CaseContext) -> CaseResult {
    let request = create(&ctx, spec(&ctx).approval(governance_abstractions::Actor::user("a"), 1)).await?;
    let by = requester();
    let submit = Command::from(Action::Submit { reason: PendingReason::ManualReview })
        .reason("a person must look")
        .metadata(json!({ "ticket": "OPS-7" }));
    act(&ctx, request.id(), &by, submit).await?;
    let reroute = Command::from(Action::Submit { reason: PendingReason::Approval }).reason("reviewed");
    act(&ctx, request.id(), &by, reroute).await?;
    let history = ctx.store.history_for_request(&ctx.workspace, request.id()).await?;
    let submitted: Vec<&Evidence> =
        history.iter().map(HistoryRecord::evidence).filter(|e| e.code == codes::REQUEST_SUBMITTED).collect();
    ensure_eq!(submitted.len(), 2, "two submit records");
    let detail = |e: &Evidence, key: &str| e.response_json.as_ref().and_then(|d| d.get(key)).cloned();
    ensure_eq!(submitted[0].reason.as_deref(), Some("a person must look"), "the reason is recorded");
    ensure_eq!(submitted[0].request_json, Some(json!({ "ticket": "OPS-7" })), "the metadata is recorded");
    ensure_eq!(detail(submitted[0], "pending_reason"), Some(json!("manual_review")), "what it waits for");
    ensure_eq!(detail(submitted[1], "pending_reason"), Some(json!("approval")), "what it waits for now");
    ensure_eq!(detail(submitted[1], "from_pending_reason"), Some(json!("manual_review")), "what it waited for");
    let request = ctx.store.get_request(&ctx.workspace, request.id()).await?;
    ensure_eq!(request.metadata(), &Value::Null, "a command's metadata does not change the request");
    let bad = Command::from(Action::Approve).reason("x".repeat(limits::MAX_TEXT_BYTES + 1));
    let error = expect_err(act(&ctx, request.id(), &by, bad).await, "over-long reason")?;
    ensure!(
        matches!(error, GovernanceError::Validation { problem: ValidationProblem::TooLong { .. }, .. }),
        "{error:?}"
    );
    Ok(())
}

fn tamper(ctx: &CaseContext) -> Outcome<std::sync::Arc<dyn crate::harness::TamperAccess>> {
    ctx.tamper.clone().ok_or_else(|| CaseFailure("the factory declared tamper access but gave none".into()))
}

fn tampering(result: Result<(), String>) -> CaseResult {
    result.map_err(|e| CaseFailure(format!("tampering failed: {e}")))
}

/// A request changed behind the store no longer matches its digest: every
/// transition on it is refused, it is reported (not fatal) by an expiry
/// sweep that still expires the rest, and an operator who accepts the edit
/// clears its digest, after which it moves again.
pub async fn contract_row_edited_behind_the_store(ctx: CaseContext) -> CaseResult {
    let tamper = tamper(&ctx)?;
    let edited = create(&ctx, spec(&ctx).expires_at(past())).await?;
    let intact = create(&ctx, spec(&ctx).expires_at(past())).await?;
    tampering(tamper.alter_request(&ctx.workspace, edited.id()).await)?;
    let error =
        expect_err(act(&ctx, edited.id(), &requester(), Action::Cancel { reason: "x".into() }).await, "edited")?;
    ensure!(matches!(error, GovernanceError::Validation { .. }), "a transition on an edited row: {error:?}");
    let report = ctx.service.expire_due(&ctx.workspace, Timestamp::now()).await?;
    ensure_eq!(report.expired, vec![intact.id()], "the intact request expires");
    ensure!(
        matches!(report.refused.as_slice(), [(id, GovernanceError::Validation { .. })] if *id == edited.id()),
        "the edited one is reported: {:?}",
        report.refused
    );
    ensure_eq!(revision_and_history(&ctx, edited.id()).await?, (1, 1), "nothing written to the edited row");
    tampering(tamper.clear_state_digest(&ctx.workspace, edited.id()).await)?;
    let report = ctx.service.expire_due(&ctx.workspace, Timestamp::now()).await?;
    ensure_eq!(report.expired, vec![edited.id()], "once its digest is cleared, the edited request moves again");
    let stored = ctx.store.get_request(&ctx.workspace, edited.id()).await?;
    ensure_eq!(stored.state_digest(), stored.compute_state_digest()?, "and carries a digest again");
    Ok(())
}

/// A row without a state digest (written before digests were stored) is
/// held to the digest of what it stores: a transition from a forged copy is
/// refused, an honest one commits and stores the digest; the same for the
/// successor of a supersession.
pub async fn contract_rows_without_a_digest(ctx: CaseContext) -> CaseResult {
    let tamper = tamper(&ctx)?;
    let stored = awaiting_approval(&ctx).await?;
    tampering(tamper.clear_state_digest(&ctx.workspace, stored.id()).await)?;
    let read = ctx.store.get_request(&ctx.workspace, stored.id()).await?;
    ensure_eq!(
        read.state_digest(),
        stored.state_digest(),
        "a row without a digest reads with the digest of its content"
    );
    let forged = forge(&read, true, &|v| v["approvals"] = json!([]))?;
    let transition = lifecycle::apply(&forged, &requester(), &Action::Approve, Timestamp::now())?;
    let error = expect_err(ctx.store.commit_transition(&transition).await, "forged copy of a row without a digest")?;
    ensure!(matches!(error, GovernanceError::Validation { .. }), "expected a validation error, got {error:?}");
    ensure_eq!(revision_and_history(&ctx, stored.id()).await?, (2, 2), "the forged transition wrote nothing");
    let done = act(&ctx, stored.id(), &user("first"), decide(Verdict::Approved)).await?;
    let after = ctx.store.get_request(&ctx.workspace, stored.id()).await?;
    ensure_eq!(after.revision(), 3, "an honest transition commits");
    ensure_eq!(after.state_digest(), done.request().state_digest(), "and stores its digest");

    // A successor without a digest: a forged copy of it does not pass the guard.
    let older = create(&ctx, spec(&ctx)).await?;
    let finished = create(&ctx, {
        let mut s = spec(&ctx);
        s.target = older.target().clone();
        s
    })
    .await?;
    act(&ctx, finished.id(), &requester(), Action::Cancel { reason: "done".into() }).await?;
    tampering(tamper.clear_state_digest(&ctx.workspace, finished.id()).await)?;
    let read = ctx.store.get_request(&ctx.workspace, finished.id()).await?;
    let unfinished = forge(&read, true, &|v| v["status"] = json!("created"))?;
    let transition = lifecycle::supersede(&older, &unfinished, &requester(), Timestamp::now())?;
    let error = expect_err(ctx.store.commit_transition(&transition).await, "supersede by a forged successor")?;
    ensure!(matches!(error, GovernanceError::Validation { .. }), "expected a validation error, got {error:?}");
    ensure_eq!(ctx.store.get_request(&ctx.workspace, older.id()).await?, older, "the older request is unchanged");
    let successor = create(&ctx, {
        let mut s = spec(&ctx);
        s.target = older.target().clone();
        s
    })
    .await?;
    tampering(tamper.clear_state_digest(&ctx.workspace, successor.id()).await)?;
    let done = ctx.service.supersede(&ctx.workspace, older.id(), successor.id(), &requester()).await?;
    ensure_eq!(done.request().superseded_by(), Some(successor.id()), "an honest successor without a digest passes");
    Ok(())
}
