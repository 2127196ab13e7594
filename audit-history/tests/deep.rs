//! Evidence nested far deeper than any store accepts is refused as input on
//! every write path, before anything recursive touches it, on a worker
//! thread with an ordinary 2 MiB stack.

use std::sync::Arc;

use std::sync::atomic::{AtomicBool, Ordering};

use audit_history::{AuditError, Recorder, RedactionPolicy, Spool, SpoolOptions};
use governance_abstractions::{
    Actor, Decision, Evidence, GovernanceError, HistoryFilter, HistoryReader, HistoryRecord, HistoryWriter,
    PageRequest, ValidationProblem, WorkspaceId,
};
use governance_memory::MemoryStore;
use serde_json::{Value, json};

const DEPTH: usize = 100_000;

/// A payload nested `DEPTH` arrays deep, built without recursion. (Not with
/// `json!([value])`: the macro serializes an interpolated value, recursively.)
fn deep() -> Value {
    let mut value = json!(1);
    for _ in 0..DEPTH {
        value = Value::Array(vec![value]);
    }
    value
}

/// Approved evidence with no payload yet.
fn evidence() -> Evidence {
    let workspace = WorkspaceId::new("deep").unwrap();
    Evidence::decision(workspace, Actor::user("mallory"), "invoice", "update", Decision::Approved)
}

/// Approved evidence carrying a deep request payload. Handed over by value:
/// `Evidence` takes deep payloads apart safely when it drops (a bare `Value`
/// would not).
fn deep_evidence() -> Evidence {
    evidence().request_json(deep())
}

fn assert_too_deep<T: std::fmt::Debug>(path: &str, result: Result<T, AuditError>) {
    match result {
        Err(AuditError::Refused(GovernanceError::Validation { field, problem: ValidationProblem::TooDeep { .. } })) => {
            assert_eq!(field, "request_json", "{path}");
        }
        other => panic!("{path}: expected a TooDeep refusal, got {other:?}"),
    }
}

/// A redaction policy that only notes it ran: a policy may be any code, and
/// recursive code must never see a payload of unknown depth.
#[derive(Debug, Default)]
struct Spy(AtomicBool);

impl RedactionPolicy for Spy {
    fn name(&self) -> &str {
        "spy"
    }

    fn version(&self) -> &str {
        "1"
    }

    fn redact(&self, _: &mut Evidence) {
        self.0.store(true, Ordering::SeqCst);
    }
}

async fn every_write_path_refuses(store: Arc<MemoryStore>, spool_dir: std::path::PathBuf) {
    let recorder = Recorder::new(store.clone());
    assert_too_deep("prepare", recorder.prepare(deep_evidence()));
    assert_too_deep("record", recorder.record(deep_evidence()).await);
    let guarded = recorder.guard(deep_evidence(), async |_: &HistoryRecord| panic!("the mutation must not run")).await;
    assert_too_deep("guard", guarded);
    let mut tx = ();
    let guarded = recorder
        .guard_in(
            &mut tx,
            deep_evidence(),
            async |_: &mut (), records: &[HistoryRecord]| store.append_history(records).await,
            async |_: &mut (), _: &HistoryRecord| panic!("the mutation must not run"),
        )
        .await;
    assert_too_deep("guard_in", guarded);

    // Refused input is never spooled, even fail-open.
    let spool = Arc::new(Spool::open(spool_dir, SpoolOptions::default()).unwrap());
    let open = Recorder::new(store.clone()).fail_open(spool.clone());
    assert_too_deep("record (fail-open)", open.record(deep_evidence()).await);
    // Without redaction nothing else walks the payload first either, and the
    // response payload is checked like the request's.
    let evidence = evidence().request_json(json!({ "amount": 1 })).response_json(deep());
    match Recorder::new(store.clone()).without_redaction().prepare(evidence) {
        Err(AuditError::Refused(GovernanceError::Validation { field, .. })) => assert_eq!(field, "response_json"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    let spy = Arc::new(Spy::default());
    assert_too_deep(
        "record (custom policy)",
        Recorder::new(store.clone()).redaction(spy.clone()).record(deep_evidence()).await,
    );
    assert!(!spy.0.load(Ordering::SeqCst), "the depth is checked before redaction");

    assert_eq!(spool.pending().unwrap(), 0, "nothing spooled");
    let workspace = WorkspaceId::new("deep").unwrap();
    let stored = store.query_history(&workspace, &HistoryFilter::default(), &PageRequest::all()).await.unwrap();
    assert!(stored.items.is_empty(), "nothing stored");
}

#[test]
fn deeply_nested_evidence_is_refused_on_a_small_stack() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_stack_size(2 << 20)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    // Spawned, so it runs on a 2 MiB worker thread rather than this one.
    let task = runtime.spawn(every_write_path_refuses(store, dir.path().join("spool")));
    runtime.block_on(task).unwrap();
}
