//! The contract enforced by construction: state digests, forged copies, hash
//! once, notes on transitions, hostile JSON and time bounds.

use std::sync::Arc;

use governance_abstractions::lifecycle::{self, apply_command};
use governance_abstractions::{
    Action, Actor, Command, Decision, Evidence, GovernanceError, GovernanceRequest, GovernanceService, HistoryFilter,
    HistoryReader, HistoryRecord, NewRequest, PageRequest, PendingReason, Principal, RequestFilter, RequestId,
    RequestReader, RequestStatus, RequestWriter, TargetRef, TimeRange, Timestamp, ValidationProblem, Verdict,
    WorkspaceId, codes, limits,
};
use governance_memory::MemoryStore;
use serde_json::{Value, json};

fn ws() -> WorkspaceId {
    WorkspaceId::new("contract").unwrap()
}

fn spec() -> NewRequest {
    NewRequest::new(ws(), TargetRef::new("flag", "f1"), "enable", Actor::user("dev"))
        .intent("why")
        .approval(Actor::user("a"), 1)
        .approval(Actor::user("b"), 2)
}

fn created() -> GovernanceRequest {
    lifecycle::create(spec(), RequestId::new(), Timestamp::now()).unwrap().into_parts().0
}

/// A copy of `request` with `edit` applied to its JSON, and (when `redigest`)
/// a state digest recomputed over the edited content, as an attacker would.
fn forged(request: &GovernanceRequest, redigest: bool, edit: impl FnOnce(&mut Value)) -> GovernanceRequest {
    let mut value = serde_json::to_value(request).unwrap();
    edit(&mut value);
    let copy: GovernanceRequest = serde_json::from_value(value.clone()).unwrap();
    if !redigest {
        return copy;
    }
    value["state_digest"] = json!(copy.compute_state_digest().unwrap());
    serde_json::from_value(value).unwrap()
}

#[test]
fn the_lifecycle_digests_every_revision_and_a_copy_round_trips() {
    let request = created();
    assert_eq!(request.state_digest(), request.compute_state_digest().unwrap());
    let copy: GovernanceRequest = serde_json::from_value(serde_json::to_value(&request).unwrap()).unwrap();
    assert_eq!(copy, request);
    copy.check().unwrap();
    // Serialized before digests were stored: the digest of its content.
    let mut old = serde_json::to_value(&request).unwrap();
    old.as_object_mut().unwrap().remove("state_digest");
    let old: GovernanceRequest = serde_json::from_value(old).unwrap();
    assert_eq!(old.state_digest(), request.state_digest());
    let submitted = lifecycle::apply(
        &copy,
        &Actor::user("dev").into(),
        &Action::Submit { reason: PendingReason::Approval },
        Timestamp::now(),
    )
    .unwrap();
    assert_eq!(submitted.expected_digest(), request.state_digest());
    assert_ne!(submitted.request().state_digest(), request.state_digest());
    assert_eq!(submitted.request().state_digest(), submitted.request().compute_state_digest().unwrap());
}

#[test]
fn an_edited_copy_is_refused_by_the_lifecycle() {
    let request = created();
    let edited = forged(&request, false, |v| v["approvals"] = json!([]));
    let error = lifecycle::apply(&edited, &Actor::user("dev").into(), &Action::Approve, Timestamp::now()).unwrap_err();
    assert!(matches!(error, GovernanceError::Validation { ref field, .. } if field == "state_digest"), "{error:?}");
}

#[tokio::test]
async fn a_forged_base_state_is_refused_by_the_store_and_changes_nothing() {
    let store = Arc::new(MemoryStore::new());
    let service = GovernanceService::new(store.clone());
    let stored = service.create(spec()).await.unwrap().into_inner();
    type Edit = Box<dyn Fn(&mut Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        ("approvals removed", Box::new(|v| v["approvals"] = json!([]))),
        ("target", Box::new(|v| v["target"]["state_id"] = json!("other"))),
        ("intent", Box::new(|v| v["intent"] = json!("forged"))),
        ("idempotency key", Box::new(|v| v["idempotency_key"] = json!("k"))),
        ("metadata", Box::new(|v| v["metadata"] = json!({"x": 1}))),
        ("created_at", Box::new(|v| v["created_at"] = json!("2020-01-01T00:00:00.000000Z"))),
    ];
    for (what, edit) in edits {
        let copy = forged(&stored, true, edit);
        copy.check().unwrap();
        let transition = lifecycle::apply(
            &copy,
            &Actor::user("dev").into(),
            &Action::Annotate { metadata: json!(1) },
            Timestamp::now(),
        )
        .unwrap();
        let error = store.commit_transition(&transition).await.unwrap_err();
        assert!(matches!(error, GovernanceError::Validation { .. }), "{what}: {error:?}");
        assert_eq!(store.get_request(&ws(), stored.id()).await.unwrap(), stored, "{what}");
    }
}

#[tokio::test]
async fn supersession_is_refused_when_the_successor_finished_in_between() {
    let store = Arc::new(MemoryStore::new());
    let service = GovernanceService::new(store.clone());
    let older = service.create(spec()).await.unwrap().into_inner();
    let newer = service
        .create(NewRequest::new(ws(), TargetRef::new("flag", "f1"), "enable", Actor::user("dev")))
        .await
        .unwrap()
        .into_inner();
    let by: Principal = Actor::user("dev").into();
    // Computed while the newer request is unfinished …
    let transition = lifecycle::supersede(&older, &newer, &by, Timestamp::now()).unwrap();
    assert_eq!(transition.successor().map(|s| s.id), Some(newer.id()));
    // … and the newer one is canceled before the commit.
    service.apply(&ws(), newer.id(), &by, Action::Cancel { reason: "no".into() }).await.unwrap();
    let error = store.commit_transition(&transition).await.unwrap_err();
    assert!(matches!(error, GovernanceError::Conflict { id, .. } if id == newer.id()), "{error:?}");
    assert_eq!(store.get_request(&ws(), older.id()).await.unwrap(), older);
    // The service re-reads the successor and reports the rule.
    let error = service.supersede(&ws(), older.id(), newer.id(), &by).await.unwrap_err();
    assert!(matches!(error, GovernanceError::InvalidTransition { .. }), "{error:?}");
}

#[tokio::test]
async fn transitions_record_why_and_what_a_request_waits_for() {
    let service = GovernanceService::new(Arc::new(MemoryStore::new()));
    let request = service.create(spec()).await.unwrap().into_inner();
    let by: Principal = Actor::user("dev").into();
    let submit = Command::from(Action::Submit { reason: PendingReason::ManualReview })
        .reason("needs a look")
        .metadata(json!({"ticket": 7}));
    let first = service.apply(&ws(), request.id(), &by, submit).await.unwrap();
    let record = &first.records()[0];
    assert_eq!(record.evidence().code, codes::REQUEST_SUBMITTED);
    assert_eq!(record.evidence().reason.as_deref(), Some("needs a look"));
    assert_eq!(record.evidence().request_json, Some(json!({"ticket": 7})));
    assert_eq!(record.evidence().response_json.as_ref().unwrap()["pending_reason"], json!("manual_review"));
    let rerouted =
        service.apply(&ws(), request.id(), &by, Action::Submit { reason: PendingReason::Approval }).await.unwrap();
    let detail = rerouted.records()[0].evidence().response_json.clone().unwrap();
    assert_eq!(
        (detail["pending_reason"].clone(), detail["from_pending_reason"].clone()),
        (json!("approval"), json!("manual_review"))
    );
    // The note is validated like any text.
    let bad = Command::from(Action::Approve).reason("a\0b");
    assert!(matches!(
        apply_command(rerouted.request(), &by, &bad, Timestamp::now()),
        Err(GovernanceError::Validation { problem: ValidationProblem::ContainsNul, .. })
    ));
    let long = Command::from(Action::Reject { reason: "x".repeat(limits::MAX_TEXT_BYTES + 1) });
    assert!(matches!(
        apply_command(rerouted.request(), &by, &long, Timestamp::now()),
        Err(GovernanceError::Validation { problem: ValidationProblem::TooLong { .. }, .. })
    ));
    let decide = Action::Decide { verdict: Verdict::Approved, comment: Some("\0".into()) };
    assert!(lifecycle::apply(rerouted.request(), &Actor::user("a").into(), &decide, Timestamp::now()).is_err());
}

#[test]
fn a_record_built_here_is_trusted_and_a_deserialized_one_is_checked() {
    let evidence = Evidence::decision(ws(), Actor::user("u"), "invoice", "create", Decision::Denied).reason("r");
    let record = HistoryRecord::new(evidence, Timestamp::now()).unwrap();
    assert!(record.is_checked());
    let mut value = serde_json::to_value(&record).unwrap();
    let copy: HistoryRecord = serde_json::from_value(value.clone()).unwrap();
    assert!(!copy.is_checked());
    copy.check().unwrap();
    assert!(copy.is_checked(), "a check is remembered");
    value["evidence"]["reason"] = json!("altered");
    let altered: HistoryRecord = serde_json::from_value(value).unwrap();
    assert!(matches!(altered.check(), Err(GovernanceError::Validation { ref field, .. }) if field == "content_hash"));
}

/// JSON nested 100,000 deep through every entry point: a typed error on a
/// 2 MiB stack, never an abort.
#[test]
fn hostile_nesting_is_refused_on_a_small_stack() {
    fn deep() -> Value {
        let mut value = json!(1);
        for _ in 0..100_000 {
            value = Value::Array(vec![value]);
        }
        value
    }
    let worker = std::thread::Builder::new().stack_size(2 << 20).spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let too_deep = |result: Result<(), GovernanceError>| {
                assert!(
                    matches!(
                        result,
                        Err(GovernanceError::Validation { problem: ValidationProblem::TooDeep { .. }, .. })
                    ),
                    "{result:?}"
                );
            };
            let evidence = Evidence::decision(ws(), Actor::user("u"), "o", "p", Decision::Denied).request_json(deep());
            too_deep(evidence.validate());
            let other = Evidence::decision(ws(), Actor::user("u"), "o", "p", Decision::Denied).response_json(deep());
            assert!(!evidence.same_content(&other));
            too_deep(HistoryRecord::new(evidence, Timestamp::now()).map(drop));
            too_deep(lifecycle::create(spec().metadata(deep()), RequestId::new(), Timestamp::now()).map(drop));
            let service = GovernanceService::new(Arc::new(MemoryStore::new()));
            too_deep(service.create(spec().metadata(deep())).await.map(drop));
            let request = service.create(spec()).await.unwrap().into_inner();
            let by: Principal = Actor::user("dev").into();
            too_deep(service.apply(&ws(), request.id(), &by, Action::Annotate { metadata: deep() }).await.map(drop));
            let noted = Command::from(Action::Annotate { metadata: json!(1) }).metadata(deep());
            too_deep(service.apply(&ws(), request.id(), &by, noted).await.map(drop));
            assert_eq!(service.store().get_request(&ws(), request.id()).await.unwrap().revision(), 1);
        });
    });
    worker.unwrap().join().expect("no stack overflow");
}

#[tokio::test]
async fn time_bounds_outside_the_storable_range_are_refused() {
    let store = MemoryStore::new();
    let year_10000 = Timestamp::from_unix_micros(Timestamp::MAX_MICROS + 1).unwrap();
    let before_1970 = Timestamp::from_unix_micros(-1).unwrap();
    for range in [TimeRange { from: None, until: Some(year_10000) }, TimeRange { from: Some(before_1970), until: None }]
    {
        let filter = RequestFilter { created: range, ..RequestFilter::default() };
        let error = store.query_requests(&ws(), &filter, &PageRequest::all()).await.unwrap_err();
        assert!(matches!(error, GovernanceError::Validation { problem: ValidationProblem::OutOfRange, .. }));
        let filter = HistoryFilter { created: range, ..HistoryFilter::default() };
        assert!(store.query_history(&ws(), &filter, &PageRequest::all()).await.is_err());
    }
    assert!(store.due_for_expiry(&ws(), year_10000, 10).await.is_err());
    let at_max = Timestamp::from_unix_micros(Timestamp::MAX_MICROS).unwrap();
    assert!(store.due_for_expiry(&ws(), at_max, 10).await.unwrap().is_empty());
}

#[test]
fn statuses_move_only_as_the_table_allows() {
    let request = created();
    let by: Principal = Actor::user("dev").into();
    let submitted =
        lifecycle::apply(&request, &by, &Action::Submit { reason: PendingReason::Approval }, Timestamp::now()).unwrap();
    assert_eq!(submitted.request().status(), RequestStatus::Pending);
    assert!(
        lifecycle::apply(submitted.request(), &by, &Action::Execute { current_version: None }, Timestamp::now())
            .is_err()
    );
}
