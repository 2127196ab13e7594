//! Round-trips of every field, and duplicate ids.

use governance_abstractions::{
    Action, Actor, ActorKind, Decision, EntityKind, GovernanceError, HistoryFilter, HistoryRecord, NewRequest, Outcome,
    PageRequest, PendingReason, Principal, RedactionRef, RequestFilter, RequestId, StaleStrategy, TargetRef, Verdict,
    lifecycle,
};
use serde_json::json;

use crate::fixtures::*;
use crate::harness::{CaseContext, CaseFailure, CaseResult};

fn full_spec(ctx: &CaseContext) -> NewRequest {
    let requested_by = Principal::delegated(
        Actor::new(ActorKind::Agent, "agent-7"),
        vec![Actor::user("alice"), Actor::new(ActorKind::Service, "deploy-bot")],
    );
    NewRequest::new(ctx.workspace.clone(), TargetRef::new("feature_flag", unique("flag")), "enable", requested_by)
        .intent("roll out to 10% of traffic")
        .approval(Actor::user("lead"), 1)
        .approval(Actor::user("security"), 2)
        .expected_version(42, StaleStrategy::RequireRenewedApproval)
        .expires_at(instant(86_400))
        .idempotency_key(unique("key"))
        .category("release")
        .tag("prod")
        .tag("eu-west")
        .metadata(json!({"ticket": "OPS-1", "nested": {"list": [1, 2.5, true, null, "x"]}, "count": 3}))
}

/// A request with every field set reads back equal to what was stored.
pub async fn round_trip_request_all_fields(ctx: CaseContext) -> CaseResult {
    let created = create_at(&ctx, full_spec(&ctx), instant(0)).await?;
    ensure_eq!(created.revision(), 1, "a created request has revision 1");
    let read = ctx.store.get_request(&ctx.workspace, created.id()).await?;
    ensure_eq!(read, created, "get_request returns every field as created");
    let queried = ctx.store.query_requests(&ctx.workspace, &RequestFilter::default(), &PageRequest::all()).await?;
    ensure_eq!(queried.items, vec![created], "query_requests returns every field as created");
    Ok(())
}

/// Floats of any magnitude read back as floats (PostgreSQL's jsonb returns
/// 1.5e16 as an integer), and the request read back can still move.
pub async fn round_trip_large_floats(ctx: CaseContext) -> CaseResult {
    let metadata = json!({"price": 1.5e16, "tiny": -2.5e-300, "big": 1e300, "nested": [9.007199254740993e15]});
    let created = create(&ctx, spec(&ctx).metadata(metadata.clone())).await?;
    let read = ctx.store.get_request(&ctx.workspace, created.id()).await?;
    ensure_eq!(read.spec().metadata, metadata, "floats round-trip");
    act(&ctx, created.id(), &requester(), Action::Cancel { reason: "moved".into() }).await?;
    let mut e = evidence(&ctx, Decision::Denied);
    e.response_json = Some(metadata.clone());
    let stored = append(&ctx, e).await?;
    let read = ctx.store.get_history_record(&ctx.workspace, stored.id()).await?;
    ensure_eq!(read.evidence().response_json, Some(metadata), "floats round-trip in payloads");
    read.validate()?;
    Ok(())
}

/// A request with only the required fields reads back equal.
pub async fn round_trip_request_minimal(ctx: CaseContext) -> CaseResult {
    let created = create(&ctx, spec(&ctx)).await?;
    let read = ctx.store.get_request(&ctx.workspace, created.id()).await?;
    ensure_eq!(read, created, "a minimal request round-trips");
    ensure!(read.spec().metadata.is_null() && read.spec().tags.is_empty(), "empty fields stay empty: {read:?}");
    Ok(())
}

/// State written by transitions (decisions with delegation and comments,
/// pending reason, superseded-by) reads back equal.
pub async fn round_trip_transition_state(ctx: CaseContext) -> CaseResult {
    let request = create(&ctx, spec(&ctx).approval(Actor::user("lead"), 1).approval(Actor::user("cto"), 2)).await?;
    act(&ctx, request.id(), &requester(), Action::Submit { reason: PendingReason::Approval }).await?;
    let lead = Principal::delegated(Actor::user("lead"), vec![Actor::user("vp")]);
    let decided =
        act(&ctx, request.id(), &lead, Action::Decide { verdict: Verdict::Approved, comment: Some("ok ✓".into()) })
            .await?;
    let read = ctx.store.get_request(&ctx.workspace, request.id()).await?;
    ensure_eq!(&read, decided.request(), "a request after a decision round-trips");
    let mut newer = spec(&ctx);
    newer.target = request.spec().target.clone();
    let newer = create(&ctx, newer).await?;
    let superseded = ctx.service.supersede(&ctx.workspace, request.id(), newer.id(), &requester()).await?;
    let read = ctx.store.get_request(&ctx.workspace, request.id()).await?;
    ensure_eq!(&read, superseded.request(), "superseded_by round-trips");
    Ok(())
}

/// A history record with every field set reads back equal, hash included.
pub async fn round_trip_history_all_fields(ctx: CaseContext) -> CaseResult {
    let request = create(&ctx, spec(&ctx)).await?;
    let mut evidence = evidence(&ctx, Decision::Denied);
    evidence.request = Some(governance_abstractions::RequestRef { id: request.id(), revision: 1 });
    evidence.actor = Principal::delegated(Actor::new(ActorKind::Agent, "a-1"), vec![Actor::user("owner")]);
    evidence.outcome = Some(Outcome::Denied);
    evidence.reason = Some("amount over limit".into());
    evidence.reason_codes = vec!["limit.exceeded".into(), "currency.unsupported".into()];
    evidence.correlation_id = Some(unique("ctx"));
    evidence.trace_hash = Some("sha256:abc".into());
    evidence.idempotency_key = Some(unique("idem"));
    evidence.policy_version = Some("2026-11-01".into());
    evidence.latency_us = Some(1234);
    evidence.request_json = Some(json!({"amount": 5000, "currency": "XTS"}));
    evidence.response_json = Some(json!({"decision": "denied", "reasons": ["limit.exceeded"]}));
    evidence.redaction = Some(RedactionRef { policy: "default".into(), version: "1".into() });
    let stored = append_at(&ctx, evidence, instant(5)).await?;
    let read = ctx.store.get_history_record(&ctx.workspace, stored.id()).await?;
    ensure_eq!(read, stored, "get_history_record returns every field");
    ensure_eq!(read.compute_hash()?, read.content_hash(), "the stored hash matches the stored content");
    let filter = HistoryFilter {
        category: Some(governance_abstractions::HistoryCategory::Decision),
        ..HistoryFilter::default()
    };
    let page = ctx.store.query_history(&ctx.workspace, &filter, &PageRequest::all()).await?;
    ensure_eq!(page.items, vec![stored], "query_history returns every field");
    Ok(())
}

/// A batch whose records carry different numbers of reason codes (none,
/// several, repeated, non-ASCII) reads back record by record, each with its
/// own codes in order: a store that packs a batch's codes together must
/// not shift them between records.
pub async fn round_trip_history_batch(ctx: CaseContext) -> CaseResult {
    let batches: [&[&[&str]]; 2] = [
        &[&[], &["limit.exceeded", "risk.high"], &["région"], &[], &["a", "a", "b"], &["last"], &[]],
        // A batch without a single code.
        &[&[], &[]],
    ];
    for (n, codes) in batches.into_iter().enumerate() {
        let batch = codes
            .iter()
            .enumerate()
            .map(|(i, codes)| {
                let mut e = evidence(&ctx, if codes.is_empty() { Decision::Approved } else { Decision::Denied });
                e.reason_codes = codes.iter().map(|c| c.to_string()).collect();
                HistoryRecord::new(e, instant(10 * n as i64 + i as i64))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let stored = ctx.store.append_history(&batch).await?;
        ensure!(stored.iter().all(|s| !s.is_replay()), "every record of the batch is new");
        for record in &batch {
            let read = ctx.store.get_history_record(&ctx.workspace, record.id()).await?;
            ensure_eq!(&read, record, "each record of the batch reads back with its own reason codes");
            read.check()?;
        }
    }
    Ok(())
}

/// The same request id stored twice is AlreadyExists and changes nothing.
pub async fn duplicate_request_id(ctx: CaseContext) -> CaseResult {
    let id = RequestId::new();
    let first = lifecycle::create(spec(&ctx), id, instant(0))?;
    ctx.store.create_request(&first).await?;
    let second = lifecycle::create(spec(&ctx).intent("other"), id, instant(1))?;
    let error = expect_err(ctx.store.create_request(&second).await, "second create with the same id")?;
    ensure!(
        matches!(error, GovernanceError::AlreadyExists { kind: EntityKind::Request, .. }),
        "expected AlreadyExists, got {error:?}"
    );
    let read = ctx.store.get_request(&ctx.workspace, id).await?;
    ensure_eq!(&read, first.request(), "the first request is untouched");
    ensure_eq!(revision_and_history(&ctx, id).await?, (1, 1), "no second creation record");
    Ok(())
}

/// A history record id stored twice is AlreadyExists and changes nothing.
pub async fn duplicate_record_id(ctx: CaseContext) -> CaseResult {
    let first = append(&ctx, evidence(&ctx, Decision::Approved)).await?;
    let clash = HistoryRecord::with_id(first.id(), evidence(&ctx, Decision::Denied), instant(3))?;
    let error = expect_err(ctx.store.append_history(&[clash]).await, "append with a used id")?;
    ensure!(
        matches!(error, GovernanceError::AlreadyExists { kind: EntityKind::HistoryRecord, .. }),
        "expected AlreadyExists, got {error:?}"
    );
    ensure_eq!(ctx.store.get_history_record(&ctx.workspace, first.id()).await?, first, "the original is untouched");
    // The same id and evidence at another time is another content hash: not a replay.
    let later = first.created_at().add_micros(1).ok_or_else(|| CaseFailure("time".into()))?;
    let moved = HistoryRecord::with_id(first.id(), first.evidence().clone(), later)?;
    let error = expect_err(ctx.store.append_history(&[moved]).await, "the same id and evidence, another time")?;
    ensure!(matches!(error, GovernanceError::AlreadyExists { .. }), "expected AlreadyExists, got {error:?}");
    let resent = ctx.store.append_history(std::slice::from_ref(&first)).await?;
    ensure!(resent[0].is_replay(), "the very same record again is a replay");
    ensure_eq!(ctx.store.get_history_record(&ctx.workspace, first.id()).await?, first, "the original is untouched");
    Ok(())
}

/// Two records with one id in one batch: the batch fails as a whole.
pub async fn duplicate_record_id_in_batch(ctx: CaseContext) -> CaseResult {
    let a = HistoryRecord::new(evidence(&ctx, Decision::Approved), instant(0))?;
    let b = HistoryRecord::with_id(a.id(), evidence(&ctx, Decision::Denied), instant(0))?;
    let fresh = HistoryRecord::new(evidence(&ctx, Decision::Approved), instant(0))?;
    let error = expect_err(ctx.store.append_history(&[fresh.clone(), a, b]).await, "batch with a repeated id")?;
    ensure!(matches!(error, GovernanceError::AlreadyExists { .. }), "expected AlreadyExists, got {error:?}");
    let all = ctx.store.query_history(&ctx.workspace, &HistoryFilter::default(), &PageRequest::all()).await?;
    ensure!(all.items.is_empty(), "nothing of the failed batch was written: {:?}", all.items);
    Ok(())
}
