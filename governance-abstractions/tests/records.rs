//! History records: the bounds of their fields, equality, and what a record
//! that arrives from outside must pass.

use governance_abstractions::{
    Actor, Decision, Evidence, GovernanceError, HistoryRecord, RequestId, RequestRef, Timestamp, ValidationProblem,
    WorkspaceId, limits::MAX_SAFE_INTEGER,
};
use serde_json::Value;

fn evidence() -> Evidence {
    Evidence::decision(WorkspaceId::new("ws").unwrap(), Actor::user("u"), "invoice", "create", Decision::Denied)
}

fn out_of_range(result: Result<HistoryRecord, GovernanceError>, field: &str) {
    match result {
        Err(GovernanceError::Validation { field: f, problem: ValidationProblem::OutOfRange }) if f == field => {}
        other => panic!("{field}: expected OutOfRange, got {other:?}"),
    }
}

#[test]
fn revisions_and_latencies_are_bounded_at_their_value() {
    let at = |revision| evidence().request(RequestRef { id: RequestId::new(), revision });
    assert!(HistoryRecord::new(at(1), Timestamp::now()).is_ok());
    assert!(HistoryRecord::new(at(MAX_SAFE_INTEGER as u64), Timestamp::now()).is_ok(), "the largest safe revision");
    out_of_range(HistoryRecord::new(at(0), Timestamp::now()), "request.revision");
    out_of_range(HistoryRecord::new(at(MAX_SAFE_INTEGER as u64 + 1), Timestamp::now()), "request.revision");

    let max = MAX_SAFE_INTEGER as u64;
    assert!(HistoryRecord::new(evidence().latency_us(max), Timestamp::now()).is_ok(), "the largest safe latency");
    out_of_range(HistoryRecord::new(evidence().latency_us(max + 1), Timestamp::now()), "latency_us");
}

/// `record` as a client that serialised it, changed it with `edit` and sent
/// it back would hand it over.
fn edited(record: &HistoryRecord, edit: impl FnOnce(&mut Value)) -> HistoryRecord {
    let mut value = serde_json::to_value(record).unwrap();
    edit(&mut value);
    serde_json::from_value(value).unwrap()
}

/// A change to a record's JSON.
type Edit = Box<dyn FnOnce(&mut Value)>;

#[test]
fn records_are_equal_only_when_every_part_is() {
    let record = HistoryRecord::new(evidence().reason("over budget"), Timestamp::now()).unwrap();
    assert_eq!(edited(&record, |_| {}), record);
    let other_id = RequestId::new().to_string();
    let changes: [(&str, Edit); 4] = [
        ("id", Box::new(move |v| v["id"] = other_id.into())),
        ("created_at", Box::new(|v| v["created_at"] = "2001-02-03T04:05:06.000007Z".into())),
        ("content_hash", Box::new(|v| v["content_hash"] = "0".repeat(64).into())),
        ("evidence", Box::new(|v| v["evidence"]["reason"] = "within budget".into())),
    ];
    for (part, change) in changes {
        assert_ne!(edited(&record, change), record, "records differing only in {part}");
    }
}

#[test]
fn a_record_from_outside_is_validated_against_todays_rules() {
    let record = HistoryRecord::new(evidence(), Timestamp::now()).unwrap();
    assert!(record.validate().is_ok());
    // Bad evidence under a hash that matches it: only validation can refuse it.
    let mut value = serde_json::to_value(&record).unwrap();
    value["evidence"]["reason"] = "a\0b".into();
    let unhashed: HistoryRecord = serde_json::from_value(value.clone()).unwrap();
    value["content_hash"] = unhashed.compute_hash().unwrap().into();
    let outside: HistoryRecord = serde_json::from_value(value).unwrap();
    assert!(outside.check().is_ok(), "its hash matches its content");
    match outside.validate() {
        Err(GovernanceError::Validation { field, problem: ValidationProblem::ContainsNul }) => {
            assert_eq!(field, "reason")
        }
        other => panic!("expected the NUL to be refused, got {other:?}"),
    }
}

#[test]
fn a_record_debugs_as_its_parts() {
    let record = HistoryRecord::new(evidence().reason("over budget"), Timestamp::now()).unwrap();
    let shown = format!("{record:?}");
    for part in ["HistoryRecord", &record.id().to_string(), record.content_hash(), "over budget"] {
        assert!(shown.contains(part), "{shown} lacks {part}");
    }
}
