//! The `testing` feature's tamper handle does exactly what it says, so the
//! suite's integrity cases test `verify`, not a broken tamper.

use governance_abstractions::{
    Action, Actor, Decision, Evidence, GovernanceService, HistoryReader, HistoryRecord, HistoryWriter, NewRequest,
    RecordId, TargetRef, Timestamp, WorkspaceId,
};
use governance_memory::MemoryStore;

fn evidence(ws: &WorkspaceId, key: &str) -> Evidence {
    Evidence::decision(ws.clone(), Actor::user("u"), "invoice", "create", Decision::Denied).idempotency_key(key)
}

#[tokio::test]
async fn editing_changes_only_the_record_named_and_says_whether_it_was_there() {
    let store = MemoryStore::new();
    let ws = WorkspaceId::new("ws").unwrap();
    let record = HistoryRecord::new(evidence(&ws, "k"), Timestamp::now()).unwrap();
    store.append_history(std::slice::from_ref(&record)).await.unwrap();
    let edited = store.tamper(&ws, |t| t.edit_record(record.id(), |e| e.reason = Some("tampered".into())));
    assert!(edited);
    let read = store.get_history_record(&ws, record.id()).await.unwrap();
    assert_eq!(read.evidence().reason.as_deref(), Some("tampered"));
    assert_eq!(read.content_hash(), record.content_hash(), "the hash is left as it was");
    assert!(!store.tamper(&ws, |t| t.edit_record(RecordId::new(), |e| e.reason = None)), "no such record");
}

#[tokio::test]
async fn deleting_a_record_removes_it_and_nothing_else() {
    let store = std::sync::Arc::new(MemoryStore::new());
    let ws = WorkspaceId::new("ws").unwrap();
    let service = GovernanceService::new(store.clone());
    let spec = NewRequest::new(ws.clone(), TargetRef::new("flag", "1"), "update", Actor::user("u"));
    let request = service.create(spec).await.unwrap().into_inner();
    service.apply(&ws, request.id(), &Actor::user("u").into(), Action::Approve).await.unwrap();
    let history = store.history_for_request(&ws, request.id()).await.unwrap();
    assert_eq!(history.len(), 2);
    let decisions: Vec<HistoryRecord> =
        ["k1", "k2"].iter().map(|key| HistoryRecord::new(evidence(&ws, key), Timestamp::now()).unwrap()).collect();
    store.append_history(&decisions).await.unwrap();

    assert!(store.tamper(&ws, |t| t.delete_record(history[0].id())));
    assert!(store.tamper(&ws, |t| t.delete_record(decisions[0].id())));
    assert!(!store.tamper(&ws, |t| t.delete_record(decisions[0].id())), "already gone");

    let left = store.history_for_request(&ws, request.id()).await.unwrap();
    assert_eq!(left, vec![history[1].clone()], "the request keeps its other record");
    let again = HistoryRecord::new(evidence(&ws, "k2"), Timestamp::now()).unwrap();
    let replayed = store.append_history(&[again]).await.unwrap();
    assert!(replayed[0].is_replay(), "the other record's idempotency key still finds it");
    assert_eq!(replayed[0].value().id(), decisions[1].id());
}
