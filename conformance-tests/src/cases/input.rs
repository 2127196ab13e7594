//! Bad input, large payloads, unicode and timestamps.

use governance_abstractions::{
    Action, Actor, Decision, Evidence, GovernanceError, GovernanceRequest, HistoryFilter, HistoryRecord, NewRequest,
    PageRequest, RequestFilter, RequestId, RequestStatus, TargetRef, Timestamp, ValidationProblem, Verdict,
    WorkspaceId, lifecycle, limits,
};
use serde_json::{Value, json};

use crate::fixtures::*;
use crate::harness::{CaseContext, CaseFailure, CaseResult};

fn is_validation(error: &GovernanceError, want: fn(&ValidationProblem) -> bool) -> bool {
    matches!(error, GovernanceError::Validation { problem, .. } if want(problem))
}

/// Nothing exists in the case's workspace.
async fn ensure_empty(ctx: &CaseContext) -> CaseResult {
    let requests = ctx.store.query_requests(&ctx.workspace, &RequestFilter::default(), &PageRequest::all()).await?;
    ensure!(requests.items.is_empty(), "refused input stored requests: {:?}", requests.items);
    let history = ctx.store.query_history(&ctx.workspace, &HistoryFilter::default(), &PageRequest::all()).await?;
    ensure!(history.items.is_empty(), "refused input stored history: {:?}", history.items);
    Ok(())
}

/// Refuses `spec` both through `lifecycle::create` (which validates before
/// any store sees it) and through the service, with a validation error
/// matching `want`.
async fn refused_request(
    ctx: &CaseContext,
    what: &str,
    spec: NewRequest,
    want: fn(&ValidationProblem) -> bool,
) -> CaseResult {
    let creation = lifecycle::create(spec.clone(), RequestId::new(), Timestamp::now());
    let error = match creation {
        Err(error) => error,
        Ok(creation) => expect_err(ctx.store.create_request(&creation).await, what)?,
    };
    ensure!(is_validation(&error, want), "{what}: expected a validation error, got {error:?}");
    let via_service = expect_err(ctx.service.create(spec).await, what)?;
    ensure!(is_validation(&via_service, want), "{what} via the service: got {via_service:?}");
    Ok(())
}

/// Builds a record without validation (as a buggy or hostile caller could)
/// and expects the store to refuse it.
/// Bad evidence is refused when it is sealed into a record, and a record
/// carrying it that reaches the store from outside (deserialized, its hash
/// matching) is refused there with the same problem.
async fn refused_record(
    ctx: &CaseContext,
    what: &str,
    evidence: Evidence,
    want: fn(&ValidationProblem) -> bool,
) -> CaseResult {
    let error = expect_err(HistoryRecord::new(evidence.clone(), Timestamp::now()), what)?;
    ensure!(is_validation(&error, want), "{what}: expected a validation error when sealing, got {error:?}");
    let valid = HistoryRecord::new(crate::fixtures::evidence(ctx, Decision::Denied), Timestamp::now())?;
    let encoded = serde_json::to_value(&evidence).map_err(|e| CaseFailure(format!("encoding: {e}")))?;
    let outside = untrusted(&valid, true, |value| value["evidence"] = encoded)?;
    let error = expect_err(ctx.store.append_history(&[outside]).await, what)?;
    ensure!(is_validation(&error, want), "{what}: expected a validation error from the store, got {error:?}");
    Ok(())
}

/// Which validation problem a refusal must report.
type Want = fn(&ValidationProblem) -> bool;

fn nul(p: &ValidationProblem) -> bool {
    *p == ValidationProblem::ContainsNul
}

fn out_of_range(p: &ValidationProblem) -> bool {
    *p == ValidationProblem::OutOfRange
}

fn too_long(p: &ValidationProblem) -> bool {
    matches!(p, ValidationProblem::TooLong { .. } | ValidationProblem::TooMany { .. })
}

fn empty(p: &ValidationProblem) -> bool {
    *p == ValidationProblem::Empty
}

/// A NUL character anywhere is the same validation error, and nothing is stored.
pub async fn bad_input_nul_rejected(ctx: CaseContext) -> CaseResult {
    ensure!(WorkspaceId::new("a\0b").is_err(), "a workspace id with NUL is refused");
    refused_request(&ctx, "intent", spec(&ctx).intent("a\0b"), nul).await?;
    refused_request(&ctx, "tag", spec(&ctx).tag("x\0"), nul).await?;
    refused_request(&ctx, "metadata string", spec(&ctx).metadata(json!({"k": ["ok", "\0"]})), nul).await?;
    refused_request(&ctx, "metadata key", spec(&ctx).metadata(json!({"k\0": 1})), nul).await?;
    let mut actor = spec(&ctx);
    actor.requested_by = Actor::user("bo\0b").into();
    refused_request(&ctx, "actor id", actor, nul).await?;
    let mut e = evidence(&ctx, Decision::Denied);
    e.reason = Some("\0".into());
    refused_record(&ctx, "evidence reason", e, nul).await?;
    let mut e = evidence(&ctx, Decision::Denied);
    e.response_json = Some(json!({"deep": {"deeper": "\u{0}"}}));
    refused_record(&ctx, "evidence payload", e, nul).await?;
    ensure_empty(&ctx).await
}

/// An action's own input (a reject or cancel reason, a decision comment, an
/// execution's current version, annotation metadata) is a validation error
/// naming that field, checked before the request's state: the same answer
/// on a live request and on a finished one, and nothing changes.
pub async fn bad_input_actions_refused_first(ctx: CaseContext) -> CaseResult {
    let too_long_text = "r".repeat(limits::MAX_TEXT_BYTES + 1);
    let cases: Vec<(&str, Action, Want)> = vec![
        ("reason", Action::Reject { reason: "no\0".into() }, nul),
        ("reason", Action::Cancel { reason: too_long_text.clone() }, too_long),
        ("comment", Action::Decide { verdict: Verdict::Approved, comment: Some("\0".into()) }, nul),
        ("comment", Action::Decide { verdict: Verdict::Rejected, comment: Some(too_long_text) }, too_long),
        ("current_version", Action::Execute { current_version: Some(limits::MAX_SAFE_INTEGER + 1) }, out_of_range),
        ("current_version", Action::Execute { current_version: Some(-limits::MAX_SAFE_INTEGER - 1) }, out_of_range),
        ("metadata", Action::Annotate { metadata: json!({ "k": "\0" }) }, nul),
    ];
    let live = request_in(&ctx, RequestStatus::Pending).await?;
    let finished = request_in(&ctx, RequestStatus::Canceled).await?;
    for (field, action, want) in cases {
        for request in [&live, &finished] {
            let what = format!("{} on a {} request", action.kind(), request.status());
            let refused = |error: &GovernanceError| matches!(error, GovernanceError::Validation { field: f, problem } if f == field && want(problem));
            let direct = expect_err(lifecycle::apply(request, &requester(), &action, Timestamp::now()), &what)?;
            ensure!(refused(&direct), "{what}: expected a validation error on {field}, got {direct:?}");
            let served = expect_err(act(&ctx, request.id(), &requester(), action.clone()).await, &what)?;
            ensure!(refused(&served), "{what} via the service: expected one on {field}, got {served:?}");
        }
    }
    for request in [&live, &finished] {
        let stored = ctx.store.get_request(&ctx.workspace, request.id()).await?;
        ensure_eq!(stored.revision(), request.revision(), "refused actions change nothing");
    }
    Ok(())
}

/// Sizes over the documented limits are validation errors; at the limit they are accepted.
pub async fn bad_input_over_limits(ctx: CaseContext) -> CaseResult {
    let long_id = "x".repeat(limits::MAX_IDENTIFIER_BYTES + 1);
    refused_request(&ctx, "operation", NewRequest { operation: long_id.clone(), ..spec(&ctx) }, too_long).await?;
    refused_request(&ctx, "idempotency key", spec(&ctx).idempotency_key(long_id.clone()), too_long).await?;
    refused_request(&ctx, "intent", spec(&ctx).intent("y".repeat(limits::MAX_TEXT_BYTES + 1)), too_long).await?;
    let mut many = spec(&ctx);
    many.tags = (0..=limits::MAX_LIST_ITEMS).map(|n| format!("t{n}")).collect();
    refused_request(&ctx, "tags", many, too_long).await?;
    let big = Value::String("z".repeat(limits::MAX_JSON_BYTES));
    refused_request(&ctx, "metadata", spec(&ctx).metadata(big.clone()), too_long).await?;
    let mut e = evidence(&ctx, Decision::Denied);
    e.request_json = Some(big);
    refused_record(&ctx, "request_json", e, too_long).await?;
    ensure_empty(&ctx).await?;
    let at_limit = NewRequest { operation: "o".repeat(limits::MAX_IDENTIFIER_BYTES), ..spec(&ctx) };
    let stored = create(&ctx, at_limit).await?;
    ensure_eq!(stored.spec().operation.len(), limits::MAX_IDENTIFIER_BYTES, "an id at the limit is stored");
    Ok(())
}

/// Empty identifiers are validation errors.
pub async fn bad_input_empty_ids(ctx: CaseContext) -> CaseResult {
    ensure!(WorkspaceId::new("").is_err(), "an empty workspace id is refused");
    refused_request(&ctx, "state id", NewRequest { target: TargetRef::new("flag", ""), ..spec(&ctx) }, empty).await?;
    refused_request(&ctx, "operation", NewRequest { operation: String::new(), ..spec(&ctx) }, empty).await?;
    let mut actor = spec(&ctx);
    actor.requested_by = Actor::user("").into();
    refused_request(&ctx, "actor", actor, empty).await?;
    let mut e = evidence(&ctx, Decision::Denied);
    e.code = String::new();
    refused_record(&ctx, "code", e, empty).await?;
    let e = expect_err(ctx.store.append_history(&[]).await, "empty batch")?;
    ensure!(is_validation(&e, empty), "an empty batch is a validation error: {e:?}");
    ensure_empty(&ctx).await
}

/// Malformed records and batches are refused whole: a hash that does not
/// match the content, a batch spanning workspaces, a bad transition input.
pub async fn bad_input_inconsistent(ctx: CaseContext) -> CaseResult {
    let valid = HistoryRecord::new(evidence(&ctx, Decision::Denied), Timestamp::now())?;
    let forged = untrusted(&valid, false, |value| value["evidence"]["decision"] = json!("approved"))?;
    let e = expect_err(ctx.store.append_history(&[forged]).await, "hash mismatch")?;
    ensure!(is_validation(&e, |p| matches!(p, ValidationProblem::Inconsistent(_))), "hash mismatch: {e:?}");
    let here = HistoryRecord::new(evidence(&ctx, Decision::Denied), Timestamp::now())?;
    let mut there = evidence(&ctx, Decision::Denied);
    there.workspace_id = ctx.other_workspace();
    let there = HistoryRecord::new(there, Timestamp::now())?;
    let e = expect_err(ctx.store.append_history(&[here, there]).await, "two workspaces in one batch")?;
    ensure!(is_validation(&e, |p| matches!(p, ValidationProblem::Inconsistent(_))), "got {e:?}");
    ensure_empty(&ctx).await?;
    let request = create(&ctx, spec(&ctx)).await?;
    let e = expect_err(
        act(&ctx, request.id(), &requester(), Action::Annotate { metadata: json!({"bad": "\0"}) }).await,
        "annotate with NUL",
    )?;
    ensure!(is_validation(&e, nul), "got {e:?}");
    ensure_eq!(revision_and_history(&ctx, request.id()).await?, (1, 1), "the refused transition changed nothing");

    // A tampered copy, even one whose digest matches it, is refused by the
    // lifecycle before anything reaches the store: the state it would produce
    // is invalid.
    let tampered: GovernanceRequest = {
        let mut value = serde_json::to_value(&request).map_err(|e| CaseFailure(e.to_string()))?;
        value["intent"] = json!("sneaky\0");
        let copy: GovernanceRequest = serde_json::from_value(value.clone()).map_err(|e| CaseFailure(e.to_string()))?;
        value["state_digest"] = json!(copy.compute_state_digest()?);
        serde_json::from_value(value).map_err(|e| CaseFailure(e.to_string()))?
    };
    let e = expect_err(
        lifecycle::apply(&tampered, &requester(), &Action::Annotate { metadata: json!(1) }, Timestamp::now()),
        "transition from an invalid state",
    )?;
    ensure!(is_validation(&e, nul), "invalid state: got {e:?}");
    let approved: GovernanceRequest = {
        let mut value = serde_json::to_value(&request).map_err(|e| CaseFailure(e.to_string()))?;
        value["status"] = json!("approved");
        let copy: GovernanceRequest = serde_json::from_value(value.clone()).map_err(|e| CaseFailure(e.to_string()))?;
        value["state_digest"] = json!(copy.compute_state_digest()?);
        serde_json::from_value(value).map_err(|e| CaseFailure(e.to_string()))?
    };
    let forged =
        lifecycle::apply(&approved, &requester(), &Action::Execute { current_version: None }, Timestamp::now())?;
    let e = expect_err(ctx.store.commit_transition(&forged).await, "transition from a forged status")?;
    ensure!(is_validation(&e, |p| matches!(p, ValidationProblem::Inconsistent(_))), "forged status: got {e:?}");
    ensure_eq!(revision_and_history(&ctx, request.id()).await?, (1, 1), "forged transitions changed nothing");
    Ok(())
}

/// Filters and JSON payloads that no backend could store or match are
/// validation errors, the same on every provider.
pub async fn bad_input_filters_and_json(ctx: CaseContext) -> CaseResult {
    let nul_actor = RequestFilter { actor: Some(Actor::user("a\0")), ..RequestFilter::default() };
    let e = expect_err(ctx.store.query_requests(&ctx.workspace, &nul_actor, &PageRequest::all()).await, "filter")?;
    ensure!(is_validation(&e, nul), "request filter with NUL: {e:?}");
    let nul_code = HistoryFilter { code: Some("\0".into()), ..HistoryFilter::default() };
    let e = expect_err(ctx.store.query_history(&ctx.workspace, &nul_code, &PageRequest::all()).await, "filter")?;
    ensure!(is_validation(&e, nul), "history filter with NUL: {e:?}");
    let mut deep = json!(0);
    for _ in 0..=limits::MAX_JSON_DEPTH {
        deep = json!({ "d": deep });
    }
    let too_deep = |p: &ValidationProblem| matches!(p, ValidationProblem::TooDeep { .. });
    refused_request(&ctx, "deep metadata", spec(&ctx).metadata(deep), too_deep).await?;
    let big = json!({ "n": 9_007_199_254_740_993u64 });
    refused_request(&ctx, "unsafe integer", spec(&ctx).metadata(big.clone()), out_of_range).await?;
    let mut e = evidence(&ctx, Decision::Denied);
    e.request_json = Some(big);
    refused_record(&ctx, "unsafe integer", e, out_of_range).await?;
    ensure_empty(&ctx).await
}

fn payload(bytes: usize) -> Value {
    let chunk = "0123456789abcdef".repeat(64);
    let items: Vec<Value> = (0..bytes / 1024).map(|n| json!({ "n": n, "chunk": chunk })).collect();
    json!({ "items": items })
}

/// A 1 MiB metadata document round-trips unchanged.
pub async fn large_metadata(ctx: CaseContext) -> CaseResult {
    let metadata = payload(1024 * 1024);
    let size = serde_json::to_vec(&metadata).map_err(|e| CaseFailure(e.to_string()))?.len();
    ensure!(size >= 1024 * 1024, "payload is {size} bytes");
    let created = create(&ctx, spec(&ctx).metadata(metadata.clone())).await?;
    let read = ctx.store.get_request(&ctx.workspace, created.id()).await?;
    ensure!(read.spec().metadata == metadata, "1 MiB metadata round-trips");
    let t = act(&ctx, created.id(), &requester(), Action::Annotate { metadata: payload(1024 * 1024 + 4096) }).await?;
    ensure!(
        ctx.store.get_request(&ctx.workspace, created.id()).await?.spec().metadata == t.request().spec().metadata,
        "update"
    );
    Ok(())
}

/// A 1 MiB evidence payload and a batch of 1,000 records are stored whole.
pub async fn large_history(ctx: CaseContext) -> CaseResult {
    let mut e = evidence(&ctx, Decision::Denied);
    e.response_json = Some(payload(1024 * 1024));
    let stored = append(&ctx, e).await?;
    ensure_eq!(ctx.store.get_history_record(&ctx.workspace, stored.id()).await?, stored, "1 MiB payload round-trips");
    let batch: Vec<HistoryRecord> = (0..limits::MAX_BATCH_RECORDS)
        .map(|n| {
            let mut e = evidence(&ctx, Decision::Approved);
            e.reason_codes = vec![format!("r{n}")];
            HistoryRecord::new(e, instant(n as i64))
        })
        .collect::<Result<_, _>>()?;
    let stored = ctx.store.append_history(&batch).await?;
    ensure!(stored.len() == batch.len() && stored.iter().all(|s| !s.is_replay()), "every record is new");
    let all = ctx.store.query_history(&ctx.workspace, &HistoryFilter::default(), &PageRequest::all()).await?;
    ensure_eq!(all.items.len(), batch.len() + 1, "every record stored");
    let too_many = vec![batch[0].clone(); limits::MAX_BATCH_RECORDS + 1];
    let e = expect_err(ctx.store.append_history(&too_many).await, "batch over the limit")?;
    ensure!(is_validation(&e, too_long), "got {e:?}");
    // Each record within its limits, the batch over the byte limit.
    let heavy: Vec<HistoryRecord> = (0..5)
        .map(|_| {
            let mut e = evidence(&ctx, Decision::Denied);
            e.request_json = Some(payload(2 * 1024 * 1024 - 64 * 1024));
            HistoryRecord::new(e, Timestamp::now())
        })
        .collect::<Result<_, _>>()?;
    let e = expect_err(ctx.store.append_history(&heavy).await, "batch over the byte limit")?;
    ensure!(is_validation(&e, too_long), "got {e:?}");
    ensure_eq!(ctx.store.append_history(&heavy[..2]).await?.len(), 2, "two of them fit");
    Ok(())
}

/// Non-ASCII text round-trips everywhere and filters match it exactly.
pub async fn unicode_round_trip(ctx: CaseContext) -> CaseResult {
    let text = "Zürich · 東京 · مرحبا · 🚀👩‍👩‍👧 · e\u{301}";
    let workspace = WorkspaceId::new(format!("{}-ñ-工作区", ctx.workspace))?;
    let spec =
        NewRequest::new(workspace.clone(), TargetRef::new("état", "clé-🔑"), "mise_à_jour", Actor::user("józef"))
            .intent(text)
            .category("catégorie")
            .tag("標籤")
            .idempotency_key("clé-ü")
            .metadata(json!({ "ключ": text, "emoji": "🎉" }));
    let creation = lifecycle::create(spec, RequestId::new(), Timestamp::now())?;
    let created = ctx.store.create_request(&creation).await?.into_inner();
    ensure_eq!(ctx.store.get_request(&workspace, created.id()).await?, created, "unicode request round-trips");
    let filter = RequestFilter {
        tags: vec!["標籤".into()],
        category: Some("catégorie".into()),
        actor: Some(Actor::user("józef")),
        ..RequestFilter::default()
    };
    let found = ctx.store.query_requests(&workspace, &filter, &PageRequest::all()).await?;
    ensure_eq!(found.items.len(), 1, "unicode filters match");
    let mut e = governance_abstractions::Evidence::decision(
        workspace.clone(),
        Actor::user("józef"),
        "объект",
        "操作",
        Decision::Denied,
    );
    e.reason = Some(text.into());
    e.reason_codes = vec!["rè-ason".into()];
    let record = HistoryRecord::new(e, Timestamp::now())?;
    ctx.store.append_history(std::slice::from_ref(&record)).await?;
    ensure_eq!(ctx.store.get_history_record(&workspace, record.id()).await?, record, "unicode record round-trips");
    Ok(())
}

/// Identifiers compare byte-exact and case-sensitive: `Alice` is not `alice`,
/// `é` precomposed is not `e` + combining accent.
pub async fn unicode_identifiers_exact(ctx: CaseContext) -> CaseResult {
    let upper = WorkspaceId::new(format!("{}-Case", ctx.workspace))?;
    let lower = WorkspaceId::new(format!("{}-case", ctx.workspace))?;
    let a = ctx.service.create(spec_in(&upper).idempotency_key("Key")).await?.into_inner();
    ensure!(ctx.store.get_request(&lower, a.id()).await.is_err_and(|e| e.is_not_found()), "workspaces differ by case");
    let b = ctx.service.create(spec_in(&upper).idempotency_key("key").intent("other")).await?;
    ensure!(!b.is_replay(), "keys differing in case are different keys");
    let composed = ctx.service.create(spec_in(&upper).idempotency_key("caf\u{e9}")).await?;
    let decomposed = ctx.service.create(spec_in(&upper).idempotency_key("cafe\u{301}").intent("x")).await?;
    ensure!(!composed.is_replay() && !decomposed.is_replay(), "no unicode normalization of keys");
    let mut alice = spec_in(&upper);
    alice.requested_by = Actor::user("Alice").into();
    let alice = ctx.service.create(alice).await?.into_inner();
    let filter = |actor: &str| RequestFilter { actor: Some(Actor::user(actor)), ..RequestFilter::default() };
    let found = ctx.store.query_requests(&upper, &filter("Alice"), &PageRequest::all()).await?;
    ensure_eq!(found.items.iter().map(|r| r.id()).collect::<Vec<_>>(), vec![alice.id()], "exact actor");
    ensure!(
        ctx.store.query_requests(&upper, &filter("alice"), &PageRequest::all()).await?.items.is_empty(),
        "case-sensitive actor"
    );
    // Trailing spaces are significant too (MySQL's PAD SPACE collations would
    // let "acme " read "acme").
    let padded = WorkspaceId::new(format!("{} ", upper.as_str()))?;
    ensure!(
        ctx.store.get_request(&padded, a.id()).await.is_err_and(|e| e.is_not_found()),
        "trailing space in workspace"
    );
    let spaced = ctx.service.create(spec_in(&upper).idempotency_key("Key ").intent("spaced")).await?;
    ensure!(!spaced.is_replay(), "a key with a trailing space is another key");
    let all_padded = ctx.store.query_requests(&padded, &RequestFilter::default(), &PageRequest::all()).await?;
    ensure!(all_padded.items.is_empty(), "the padded workspace is empty: {:?}", all_padded.items);
    ensure!(
        ctx.store.query_requests(&upper, &filter("Alice "), &PageRequest::all()).await?.items.is_empty(),
        "trailing space in an actor filter"
    );
    let mut tag_spec = spec_in(&upper).tag("Prod");
    tag_spec.target = TargetRef::new("Flag", "ID");
    let tagged = ctx.service.create(tag_spec).await?.into_inner();
    let lower_target = TargetRef::new("flag", "id");
    ensure!(ctx.store.requests_for_target(&upper, &lower_target).await?.is_empty(), "case-sensitive target");
    let tags = |t: &str| RequestFilter { tags: vec![t.into()], ..RequestFilter::default() };
    ensure!(
        ctx.store.query_requests(&upper, &tags("prod"), &PageRequest::all()).await?.items.is_empty(),
        "case-sensitive tag"
    );
    ensure_eq!(
        ctx.store.query_requests(&upper, &tags("Prod"), &PageRequest::all()).await?.items.len(),
        1,
        "exact tag {}",
        tagged.id()
    );
    Ok(())
}

/// Timestamps keep microseconds and round-trip equal, including expiry.
pub async fn timestamp_microseconds(ctx: CaseContext) -> CaseResult {
    let at = Timestamp::from_unix_micros(1_767_225_599_999_999).ok_or_else(|| CaseFailure("instant".into()))?;
    let expires = Timestamp::from_unix_micros(1_767_225_600_000_001).ok_or_else(|| CaseFailure("instant".into()))?;
    let created = create_at(&ctx, spec(&ctx).expires_at(expires), at).await?;
    let read = ctx.store.get_request(&ctx.workspace, created.id()).await?;
    ensure_eq!(read.created_at().unix_micros(), at.unix_micros(), "created_at keeps microseconds");
    ensure_eq!(
        read.spec().expires_at.map(|t| t.unix_micros()),
        Some(expires.unix_micros()),
        "expires_at keeps microseconds"
    );
    let record = append_at(&ctx, evidence(&ctx, Decision::Approved), at).await?;
    let read = ctx.store.get_history_record(&ctx.workspace, record.id()).await?;
    ensure_eq!(read.created_at(), at, "record time keeps microseconds");
    let window = governance_abstractions::TimeRange::between(at, at.add_micros(1).unwrap_or(at));
    let filter = RequestFilter { created: window, ..RequestFilter::default() };
    let found = ctx.store.query_requests(&ctx.workspace, &filter, &PageRequest::all()).await?;
    ensure_eq!(found.items.len(), 1, "a one-microsecond window finds the row");
    let before = RequestFilter {
        created: governance_abstractions::TimeRange { from: None, until: Some(at) },
        ..RequestFilter::default()
    };
    ensure!(
        ctx.store.query_requests(&ctx.workspace, &before, &PageRequest::all()).await?.items.is_empty(),
        "until is exclusive"
    );
    Ok(())
}

/// The ends of the supported range round-trip; instants outside it are refused.
pub async fn timestamp_range(ctx: CaseContext) -> CaseResult {
    for micros in [Timestamp::MIN_MICROS, Timestamp::MAX_MICROS] {
        let at = Timestamp::from_unix_micros(micros).ok_or_else(|| CaseFailure("instant".into()))?;
        let created = create_at(&ctx, spec(&ctx).expires_at(at), at).await?;
        ensure_eq!(ctx.store.get_request(&ctx.workspace, created.id()).await?, created, "round-trip at {at}");
    }
    let before_epoch = Timestamp::from_unix_micros(-1).ok_or_else(|| CaseFailure("instant".into()))?;
    let e = expect_err(lifecycle::create(spec(&ctx), RequestId::new(), before_epoch), "created before 1970")?;
    ensure!(is_validation(&e, |p| *p == ValidationProblem::OutOfRange), "got {e:?}");
    let beyond = Timestamp::from_unix_micros(Timestamp::MAX_MICROS + 1).ok_or_else(|| CaseFailure("instant".into()))?;
    refused_request(&ctx, "expires_at beyond 9999", spec(&ctx).expires_at(beyond), |p| {
        *p == ValidationProblem::OutOfRange
    })
    .await
}

/// Every limit holds at its exact value and refuses one past it: text
/// (16 KiB), integers (±(2^53 − 1)), and a history append (8 MiB).
pub async fn bad_input_limits_at_their_value(ctx: CaseContext) -> CaseResult {
    let text = "t".repeat(limits::MAX_TEXT_BYTES);
    let safe = limits::MAX_SAFE_INTEGER;
    let request = create(&ctx, spec(&ctx).intent(text.clone()).expected_version(-safe, Default::default())).await?;
    let read = ctx.store.get_request(&ctx.workspace, request.id()).await?;
    ensure_eq!(read.intent().len(), limits::MAX_TEXT_BYTES, "an intent of exactly the limit round-trips");
    ensure_eq!(read.expected_state_version(), Some(-safe), "the smallest safe integer round-trips");
    let over = spec(&ctx).intent(format!("{text}t"));
    refused_request(&ctx, "intent one byte over", over, too_long).await?;
    for version in [safe + 1, -safe - 1, i64::MAX, i64::MIN] {
        refused_request(
            &ctx,
            "unsafe expected version",
            spec(&ctx).expected_version(version, Default::default()),
            out_of_range,
        )
        .await?;
    }
    let by = requester();
    let refuse = |action: Action, want: fn(&ValidationProblem) -> bool, what: &str| -> CaseResult {
        let error = expect_err(lifecycle::apply(&read, &by, &action, Timestamp::now()), what)?;
        ensure!(is_validation(&error, want), "{what}: expected a validation error from the lifecycle, got {error:?}");
        Ok(())
    };
    refuse(Action::Reject { reason: format!("{text}r") }, too_long, "reject reason one byte over")?;
    refuse(Action::Cancel { reason: format!("{text}r") }, too_long, "cancel reason one byte over")?;
    refuse(Action::Reject { reason: "a\0b".into() }, nul, "reject reason with NUL")?;
    refuse(Action::Cancel { reason: "\0".into() }, nul, "cancel reason with NUL")?;
    refuse(Action::Execute { current_version: Some(safe + 1) }, out_of_range, "unsafe current version")?;
    refuse(Action::Execute { current_version: Some(-safe - 1) }, out_of_range, "unsafe current version")?;
    refuse(Action::Annotate { metadata: json!({ "n": safe + 1 }) }, out_of_range, "unsafe integer in metadata")?;
    let approvals = create(&ctx, spec(&ctx).approval(Actor::user("a"), 1)).await?;
    let pending =
        act(&ctx, approvals.id(), &by, Action::Submit { reason: governance_abstractions::PendingReason::Approval })
            .await?;
    for (comment, want, what) in [
        (format!("{text}c"), too_long as fn(&ValidationProblem) -> bool, "comment one byte over"),
        ("\0".into(), nul, "comment with NUL"),
    ] {
        let decide = Action::Decide { verdict: governance_abstractions::Verdict::Approved, comment: Some(comment) };
        let error = expect_err(lifecycle::apply(pending.request(), &user("a"), &decide, Timestamp::now()), what)?;
        ensure!(is_validation(&error, want), "{what}: {error:?}");
    }
    ensure_eq!(revision_and_history(&ctx, request.id()).await?, (1, 1), "nothing refused was written");
    let reject = act(&ctx, request.id(), &by, Action::Reject { reason: text.clone() }).await?;
    ensure_eq!(reject.records()[0].evidence().reason.as_deref(), Some(text.as_str()), "a reason of exactly the limit");

    // A batch of exactly MAX_BATCH_BYTES is one append; one byte more is refused whole.
    let sized = |extra: usize| -> Outcome<Vec<HistoryRecord>> {
        let build = |n: usize, pad: usize| {
            let payload = json!({ "pad": "x".repeat(pad) });
            HistoryRecord::new(
                evidence(&ctx, Decision::Denied).request_json(payload).idempotency_key(format!("limit-{n}")),
                instant(n as i64),
            )
        };
        let per = limits::MAX_BATCH_BYTES / 5;
        let mut records = (0..4).map(|n| build(n, per)).collect::<Result<Vec<_>, _>>()?;
        let used: usize = records.iter().map(|r| r.checked_len()).sum::<Result<usize, _>>()?;
        let probe = build(4, 0)?.checked_len()?;
        let rest = limits::MAX_BATCH_BYTES - used - probe + extra;
        records.push(build(4, rest)?);
        Ok(records)
    };
    let over = sized(1)?;
    let total: usize = over.iter().map(|r| r.checked_len()).sum::<Result<usize, _>>()?;
    ensure_eq!(total, limits::MAX_BATCH_BYTES + 1, "the batch is one byte over");
    let error = expect_err(ctx.store.append_history(&over).await, "a batch one byte over")?;
    ensure!(is_validation(&error, too_long), "expected TooLong, got {error:?}");
    let exact = sized(0)?;
    let stored = ctx.store.append_history(&exact).await?;
    ensure_eq!(stored.iter().filter(|s| !s.is_replay()).count(), 5, "a batch of exactly the limit is stored");
    Ok(())
}
