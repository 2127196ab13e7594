//! Requests: equality part by part, and what their Debug output shows.

use governance_abstractions::{
    Action, Actor, GovernanceRequest, NewRequest, PendingReason, RequestId, TargetRef, Timestamp, WorkspaceId,
    lifecycle,
};
use serde_json::Value;

fn pending() -> GovernanceRequest {
    let spec =
        NewRequest::new(WorkspaceId::new("ws").unwrap(), TargetRef::new("flag", "1"), "update", Actor::user("u"))
            .intent("turn it on");
    let created = lifecycle::create(spec, RequestId::new(), Timestamp::now()).unwrap().request().clone();
    let by = Actor::user("u").into();
    let submit = Action::Submit { reason: PendingReason::ManualReview };
    lifecycle::apply(&created, &by, &submit, Timestamp::now()).unwrap().request().clone()
}

/// `request` with one field of its JSON changed (its digests as they were).
fn edited(request: &GovernanceRequest, edit: impl FnOnce(&mut Value)) -> GovernanceRequest {
    let mut json = serde_json::to_value(request).unwrap();
    edit(&mut json);
    serde_json::from_value(json).unwrap_or_else(|e| panic!("decoding the edited request: {e}"))
}

/// A change to a request's JSON.
type Edit = Box<dyn FnOnce(&mut Value)>;

#[test]
fn requests_are_equal_only_when_every_part_is() {
    let request = pending();
    assert_eq!(edited(&request, |_| {}), request);
    let set = |field: &'static str, value: Value| -> Edit { Box::new(move |json| json[field] = value) };
    let changes: Vec<(&str, Edit)> = vec![
        ("state_digest", set("state_digest", "0".repeat(64).into())),
        ("id", set("id", RequestId::new().to_string().into())),
        ("revision", set("revision", 3.into())),
        ("status", set("status", "created".into())),
        ("pending_reason", set("pending_reason", "approval".into())),
        ("superseded_by", set("superseded_by", RequestId::new().to_string().into())),
        ("created_at", set("created_at", "2001-02-03T04:05:06.000007Z".into())),
        ("updated_at", set("updated_at", "2001-02-03T04:05:06.000007Z".into())),
        ("creation_digest", set("creation_digest", "0".repeat(64).into())),
        ("the spec", set("intent", "turn it off".into())),
    ];
    for (part, change) in changes {
        assert_ne!(edited(&request, change), request, "requests differing only in {part}");
    }
}

#[test]
fn a_request_debugs_as_its_parts() {
    let request = pending();
    let shown = format!("{request:?}");
    for part in ["GovernanceRequest", &request.id().to_string(), "turn it on", request.state_digest(), "revision: 2"] {
        assert!(shown.contains(part), "{shown} lacks {part}");
    }
}

#[test]
fn each_accessor_reads_its_own_field() {
    use governance_abstractions::{RequestStatus, StaleStrategy};
    let ws = WorkspaceId::new("ws").unwrap();
    let expires = Timestamp::from_unix_micros(4_000_000_000_000_000).unwrap();
    let spec = NewRequest::new(ws.clone(), TargetRef::new("flag", "7"), "update", Actor::user("u"))
        .intent("turn it on")
        .approval(Actor::user("lead"), 1)
        .expected_version(3, StaleStrategy::RequireRenewedApproval)
        .expires_at(expires)
        .idempotency_key("key-1")
        .category("release")
        .tag("web")
        .metadata(serde_json::json!({ "ticket": 9 }));
    let now = Timestamp::now();
    let creation = lifecycle::create(spec.clone(), RequestId::new(), now).unwrap();
    let request = creation.request();
    assert_eq!(request.workspace_id(), &ws);
    assert_eq!(request.spec(), &spec);
    assert_eq!(request.target(), &TargetRef::new("flag", "7"));
    assert_eq!(request.operation(), "update");
    assert_eq!(request.requested_by(), &Actor::user("u").into());
    assert_eq!(request.intent(), "turn it on");
    assert_eq!(request.approvals(), spec.approvals.as_slice());
    assert_eq!(request.expected_state_version(), Some(3));
    assert_eq!(request.stale_strategy(), StaleStrategy::RequireRenewedApproval);
    assert_eq!(request.expires_at(), Some(expires));
    assert_eq!(request.idempotency_key(), Some("key-1"));
    assert_eq!(request.category(), Some("release"));
    assert_eq!(request.tags(), ["web".to_owned()]);
    assert_eq!(request.metadata(), &serde_json::json!({ "ticket": 9 }));
    assert_eq!(
        (request.status(), request.pending_reason(), request.superseded_by()),
        (RequestStatus::Created, None, None)
    );
    assert_eq!((request.revision(), request.created_at(), request.updated_at()), (1, now, now));
    assert_eq!(request.creation_digest(), spec.creation_digest().unwrap());
    assert_eq!(request.state_digest(), request.compute_state_digest().unwrap());
}

#[test]
fn a_revision_is_bounded_at_its_value() {
    use governance_abstractions::{GovernanceError, ValidationProblem, limits::MAX_SAFE_INTEGER};
    let request = pending();
    let at = |revision: u64| edited(&request, |json| json["revision"] = revision.into());
    assert!(at(MAX_SAFE_INTEGER as u64).validate().is_ok(), "the largest safe revision");
    for revision in [0, MAX_SAFE_INTEGER as u64 + 1] {
        match at(revision).validate() {
            Err(GovernanceError::Validation { field, problem: ValidationProblem::OutOfRange }) => {
                assert_eq!(field, "revision")
            }
            other => panic!("revision {revision}: {other:?}"),
        }
    }
}
