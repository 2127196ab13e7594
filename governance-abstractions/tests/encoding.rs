//! Cursors, timestamps, content hashes and validation limits.

use governance_abstractions::{
    Actor, Cursor, Decision, Direction, Evidence, GovernanceError, HistoryRecord, Position, Timestamp,
    ValidationProblem, WorkspaceId, limits,
};
use serde_json::json;
use uuid::Uuid;

#[test]
fn cursor_round_trips_a_position() {
    for micros in [Timestamp::MIN_MICROS, 1_700_000_000_123_456, Timestamp::MAX_MICROS] {
        let position = Position { created_at: Timestamp::from_unix_micros(micros).unwrap(), id: Uuid::now_v7() };
        for direction in [Direction::Forward, Direction::Backward] {
            let cursor = Cursor::after(position, direction);
            assert_eq!(cursor.position(direction).unwrap(), position);
        }
        let forward = Cursor::after(position, Direction::Forward);
        assert!(matches!(forward.position(Direction::Backward), Err(GovernanceError::InvalidCursor { .. })));
    }
}

#[test]
fn foreign_cursors_are_invalid() {
    for bad in ["", "g1", "g1f", "g2f000", "g1fxyz", &"g1f".repeat(20)] {
        let error = Cursor::from(bad).position(Direction::Forward).unwrap_err();
        assert!(matches!(error, GovernanceError::InvalidCursor { .. }), "{bad:?} gave {error:?}");
    }
}

#[test]
fn timestamps_keep_exactly_microseconds() {
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-23T05:17:37.123456789Z").unwrap().to_utc();
    let ts = Timestamp::from_datetime(at);
    assert_eq!(ts.unix_micros() % 1_000_000, 123_456);
    let text = serde_json::to_string(&ts).unwrap();
    assert_eq!(text, "\"2026-11-23T05:17:37.123456Z\"");
    assert_eq!(serde_json::from_str::<Timestamp>(&text).unwrap(), ts);
}

fn try_record(payload: serde_json::Value) -> Result<HistoryRecord, GovernanceError> {
    let evidence =
        Evidence::decision(WorkspaceId::new("ws").unwrap(), Actor::user("u"), "invoice", "create", Decision::Denied)
            .response_json(payload);
    HistoryRecord::with_id(
        governance_abstractions::RecordId::from_uuid(Uuid::nil()),
        evidence,
        Timestamp::from_unix_micros(0).unwrap(),
    )
}

fn record(payload: serde_json::Value) -> HistoryRecord {
    try_record(payload).unwrap()
}

#[test]
fn content_hash_is_canonical() {
    // RFC 8785: key order and number spelling do not change the hash.
    let a = record(serde_json::from_str(r#"{"b": 1, "a": [1.0, "x"]}"#).unwrap());
    let b = record(serde_json::from_str(r#"{"a": [1, "x"], "b": 1.0}"#).unwrap());
    assert_eq!(a.content_hash(), b.content_hash());
    assert_eq!(a.content_hash().len(), 64);
    assert_ne!(a.content_hash(), record(json!({"a": [1, "y"], "b": 1})).content_hash());
    assert!(a.validate().is_ok());
}

#[test]
fn json_limit_counts_serialized_bytes() {
    let at_limit = json!("x".repeat(limits::MAX_JSON_BYTES - 2));
    assert!(record(at_limit).validate().is_ok());
    match try_record(json!("x".repeat(limits::MAX_JSON_BYTES - 1))) {
        Err(GovernanceError::Validation { problem: ValidationProblem::TooLong { max, actual }, .. }) => {
            assert_eq!((max, actual), (limits::MAX_JSON_BYTES, limits::MAX_JSON_BYTES + 1));
        }
        other => panic!("expected TooLong, got {other:?}"),
    }
}

#[test]
fn json_depth_integers_and_nul_are_checked() {
    let mut deep = json!(1);
    for _ in 0..limits::MAX_JSON_DEPTH {
        deep = json!([deep]);
    }
    assert!(record(deep.clone()).validate().is_ok(), "the limit itself is accepted");
    assert!(matches!(
        try_record(json!([deep])),
        Err(GovernanceError::Validation { problem: ValidationProblem::TooDeep { max: 31 }, .. })
    ));
    // Empty containers are levels too: MariaDB counts them.
    let mut empty = json!([]);
    for _ in 1..limits::MAX_JSON_DEPTH {
        empty = json!([empty]);
    }
    assert!(try_record(empty.clone()).is_ok());
    assert!(matches!(
        try_record(json!({ "k": empty })),
        Err(GovernanceError::Validation { problem: ValidationProblem::TooDeep { .. }, .. })
    ));
    for bad in [json!(9_007_199_254_740_992u64), json!(-9_007_199_254_740_992i64), json!(u64::MAX)] {
        assert!(matches!(
            try_record(json!({ "n": bad })),
            Err(GovernanceError::Validation { problem: ValidationProblem::OutOfRange, .. })
        ));
    }
    assert!(record(json!({ "n": 9_007_199_254_740_991u64, "f": 1e300 })).validate().is_ok());
    assert!(matches!(
        try_record(json!({ "a\u{0}": 1 })),
        Err(GovernanceError::Validation { problem: ValidationProblem::ContainsNul, .. })
    ));
}

#[test]
fn workspace_ids_are_validated_when_deserialized() {
    assert!(serde_json::from_str::<WorkspaceId>("\"\"").is_err());
    assert!(serde_json::from_str::<WorkspaceId>("\"a\\u0000\"").is_err());
    assert_eq!(serde_json::from_str::<WorkspaceId>("\"acme\"").unwrap(), WorkspaceId::new("acme").unwrap());
}

/// The text enums honour width and alignment, as `str` does: a table of
/// statuses lines up.
#[test]
fn text_enums_pad_like_strings() {
    use governance_abstractions::{Decision, RequestStatus};
    assert_eq!(format!("[{:<9}]", RequestStatus::Pending), "[pending  ]");
    assert_eq!(format!("[{:>8}]", Decision::Denied), "[  denied]");
    assert_eq!(RequestStatus::Pending.to_string(), "pending");
}
