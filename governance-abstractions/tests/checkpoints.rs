//! What `validate_checkpoint` refuses, each part on its own: every store
//! calls it before it appends a checkpoint.

use governance_abstractions::provider::validate_checkpoint;
use governance_abstractions::{
    Actor, Checkpoint, Decision, Evidence, GovernanceError, HistoryRecord, SealEntry, Timestamp, ValidationProblem,
    WorkspaceId,
};
use serde_json::Value;

fn records(ws: &WorkspaceId, n: usize) -> Vec<HistoryRecord> {
    (0..n)
        .map(|_| {
            let evidence = Evidence::decision(ws.clone(), Actor::user("u"), "invoice", "create", Decision::Denied);
            HistoryRecord::new(evidence, Timestamp::now()).unwrap()
        })
        .collect()
}

/// `checkpoint` with one field of its JSON changed (its digest as it was).
fn edited(checkpoint: &Checkpoint, field: &str, value: Value) -> Checkpoint {
    let mut json = serde_json::to_value(checkpoint).unwrap();
    json[field] = value;
    serde_json::from_value(json).unwrap()
}

fn refused_on(result: governance_abstractions::Result<()>, want: &str) {
    match result {
        Err(GovernanceError::Validation { field, problem: ValidationProblem::Inconsistent(_) }) if field == want => {}
        other => panic!("expected a refusal on {want}, got {other:?}"),
    }
}

#[test]
fn a_checkpoint_must_extend_the_latest_in_every_part() {
    let ws = WorkspaceId::new("ws").unwrap();
    let (first, first_entries) = Checkpoint::seal(None, &ws, &records(&ws, 2), Timestamp::now()).unwrap();
    validate_checkpoint(&first, &first_entries, None).unwrap();
    let (second, entries) = Checkpoint::seal(Some(&first), &ws, &records(&ws, 2), Timestamp::now()).unwrap();
    validate_checkpoint(&second, &entries, Some(&first)).unwrap();

    let other_previous = edited(&second, "previous", Value::String("0".repeat(64)));
    refused_on(validate_checkpoint(&other_previous, &entries, Some(&first)), "checkpoint.previous");
    let other_start = edited(&second, "first_index", 5.into());
    refused_on(validate_checkpoint(&other_start, &entries, Some(&first)), "checkpoint.previous");
    let other_seq = edited(&second, "seq", 3.into());
    refused_on(validate_checkpoint(&other_seq, &entries, Some(&first)), "checkpoint.previous");
}

#[test]
fn the_entries_must_be_the_checkpoints_own() {
    let ws = WorkspaceId::new("ws").unwrap();
    let (checkpoint, entries) = Checkpoint::seal(None, &ws, &records(&ws, 2), Timestamp::now()).unwrap();
    refused_on(validate_checkpoint(&checkpoint, &entries[..1], None), "checkpoint.record_count");
    refused_on(validate_checkpoint(&checkpoint, &[], None), "checkpoint.record_count");
    // The right indices, claimed by another checkpoint.
    let mut claimed: Vec<SealEntry> = entries.clone();
    claimed[1].checkpoint = 2;
    refused_on(validate_checkpoint(&checkpoint, &claimed, None), "entries.index");
    let mut shifted = entries.clone();
    shifted[1].index = 5;
    refused_on(validate_checkpoint(&checkpoint, &shifted, None), "entries.index");
}
