//! The evidence runtime (`audit-history`) over every provider: the recorder
//! and its failure policies, spool and relay, redaction, sealing and tamper
//! detection, export.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use audit_history::metrics::{REFUSED, REPLAYED, SPOOLED, STORED, WRITE_FAILURES};
use audit_history::{
    AuditError, Durability, ExportCursor, ExportLine, Exporter, Problem, Recorder, Relay, Sealer, Spool, SpoolOptions,
    verify,
};
use governance_abstractions::{
    Action, Checkpoint, Decision, HistoryRecord, HistoryWriter, IntegrityStore, Outcome as Decided, PageRequest,
    RecordId, RedactionRef, WorkspaceId,
};
use serde_json::json;

use crate::faults::Unplugged;
use crate::fixtures::*;
use crate::harness::{CaseContext, CaseFailure, CaseResult, CheckpointChange, TamperAccess};

fn writer(ctx: &CaseContext) -> Arc<dyn HistoryWriter> {
    ctx.store.clone()
}

fn integrity(ctx: &CaseContext) -> Arc<dyn IntegrityStore> {
    ctx.store.clone()
}

/// Every record of `workspace`, oldest first.
async fn all_history(ctx: &CaseContext, workspace: &WorkspaceId) -> Outcome<Vec<HistoryRecord>> {
    let filter = governance_abstractions::HistoryFilter::default();
    Ok(ctx.store.query_history(workspace, &filter, &PageRequest::all()).await?.items)
}

fn spool_dir() -> Outcome<tempfile::TempDir> {
    tempfile::tempdir().map_err(|e| CaseFailure(format!("temporary directory: {e}")))
}

fn open_spool(dir: &Path) -> Outcome<Arc<Spool>> {
    Ok(Arc::new(Spool::open(dir, SpoolOptions::default())?))
}

/// Counter totals by `(metric, recorder label)`. The debugging recorder
/// drains on every snapshot, so snapshots from parallel cases accumulate here.
fn metric(name: &str, recorder: &str) -> u64 {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    type Totals = Mutex<HashMap<(String, String), u64>>;
    static STATE: OnceLock<Option<(Snapshotter, Totals)>> = OnceLock::new();
    let Some((snapshotter, totals)) = STATE.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().ok().map(|()| (snapshotter, Mutex::new(HashMap::new())))
    }) else {
        return u64::MAX; // another recorder is installed: every count check fails loudly
    };
    let mut totals = totals.lock().unwrap_or_else(PoisonError::into_inner);
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        if let DebugValue::Counter(n) = value {
            let label = key.key().labels().find(|l| l.key() == "recorder").map(|l| l.value().to_owned());
            *totals.entry((key.key().name().to_owned(), label.unwrap_or_default())).or_default() += n;
        }
    }
    totals.get(&(name.to_owned(), recorder.to_owned())).copied().unwrap_or(0)
}

/// Installs the metrics recorder before the first count (counts made
/// before installation would be lost).
fn counting() -> String {
    metric("", "");
    unique("recorder")
}

/// An approved evaluation stores its evidence, then runs the mutation; the
/// same idempotency key again is a replay of the original.
pub async fn audit_approved_stores_and_mutates(ctx: CaseContext) -> CaseResult {
    let name = counting();
    let recorder = Recorder::new(writer(&ctx)).named(&name);
    let mut approved = evidence(&ctx, Decision::Approved);
    approved.idempotency_key = Some(unique("key"));
    let ran = AtomicBool::new(false);
    let guarded = recorder
        .guard(approved.clone(), async |record| {
            ran.store(true, Ordering::SeqCst);
            record.id()
        })
        .await?;
    ensure!(ran.load(Ordering::SeqCst) && guarded.approved(), "an approved write must run");
    ensure_eq!(guarded.output, Some(guarded.receipt.record.id()), "the mutation saw the stored evidence");
    ensure_eq!(guarded.receipt.durability, Durability::Stored, "stored now");
    let stored = ctx.store.get_history_record(&ctx.workspace, guarded.receipt.record.id()).await?;
    ensure_eq!(stored, guarded.receipt.record, "the receipt is what was stored");
    ensure_eq!(stored.evidence().outcome, Some(Decided::Approved), "outcome follows the decision");
    let again = recorder.guard(approved, async |record| record.id()).await?;
    ensure_eq!(again.receipt.durability, Durability::Replayed, "same key, same content");
    ensure_eq!(again.receipt.record.id(), stored.id(), "the replay returns the original");
    ensure_eq!(all_history(&ctx, &ctx.workspace).await?.len(), 1, "one record for one key");
    ensure_eq!(metric(STORED, &name), 2, "stored counter");
    Ok(())
}

/// A denied evaluation stores its evidence and never runs the mutation;
/// an evaluation error is stored as an error outcome and runs nothing.
pub async fn audit_denied_stores_and_skips(ctx: CaseContext) -> CaseResult {
    let recorder = Recorder::new(writer(&ctx)).named(&counting());
    let ran = AtomicBool::new(false);
    let denied = recorder.guard(evidence(&ctx, Decision::Denied), async |_| ran.store(true, Ordering::SeqCst)).await?;
    ensure!(!ran.load(Ordering::SeqCst) && !denied.approved(), "a denied write must not run");
    let stored = ctx.store.get_history_record(&ctx.workspace, denied.receipt.record.id()).await?;
    ensure_eq!(stored.evidence().decision, Some(Decision::Denied), "denied evidence stored");
    ensure_eq!(stored.evidence().outcome, Some(Decided::Denied), "denied outcome");

    let mut failed = evidence(&ctx, Decision::Approved);
    failed.decision = None;
    failed.outcome = Some(Decided::Error);
    failed.code = "decision.error".into();
    let errored = recorder.guard(failed, async |_| ran.store(true, Ordering::SeqCst)).await?;
    ensure!(!ran.load(Ordering::SeqCst) && !errored.approved(), "an error outcome must not run");
    let stored = ctx.store.get_history_record(&ctx.workspace, errored.receipt.record.id()).await?;
    ensure_eq!(stored.evidence().outcome, Some(Decided::Error), "error outcome stored");
    Ok(())
}

/// Fail-closed with the store unreachable: the mutation does not run,
/// nothing is stored, and the failure is counted.
pub async fn audit_fail_closed_refuses_when_unreachable(ctx: CaseContext) -> CaseResult {
    let name = counting();
    let plug = Arc::new(Unplugged::new(writer(&ctx)));
    plug.set_down(true);
    let recorder = Recorder::new(plug.clone()).named(&name);
    let ran = AtomicBool::new(false);
    let result = recorder.guard(evidence(&ctx, Decision::Approved), async |_| ran.store(true, Ordering::SeqCst)).await;
    ensure!(matches!(result, Err(AuditError::NotStored(_))), "fail-closed must refuse: {result:?}");
    ensure!(!ran.load(Ordering::SeqCst), "no evidence, no mutation");
    plug.set_down(false);
    ensure!(all_history(&ctx, &ctx.workspace).await?.is_empty(), "nothing stored");
    ensure_eq!(metric(WRITE_FAILURES, &name), 1, "write failure counted");
    ensure_eq!(metric(REFUSED, &name), 1, "refusal counted");
    Ok(())
}

/// Fail-open with the store unreachable: the evidence is spooled (and
/// survives reopening the spool, as after a crash), the approved mutation
/// runs, and the relay stores each record exactly once when the store returns.
pub async fn audit_fail_open_spools_then_relays(ctx: CaseContext) -> CaseResult {
    let name = counting();
    let dir = spool_dir()?;
    let plug = Arc::new(Unplugged::new(writer(&ctx)));
    plug.set_down(true);
    let recorder = Recorder::new(plug.clone()).fail_open(open_spool(dir.path())?).named(&name);
    let ran = AtomicBool::new(false);
    let approved =
        recorder.guard(evidence(&ctx, Decision::Approved), async |_| ran.store(true, Ordering::SeqCst)).await?;
    ensure!(ran.load(Ordering::SeqCst), "fail-open runs the approved mutation");
    ensure_eq!(approved.receipt.durability, Durability::Spooled, "spooled");
    let denied = recorder.guard(evidence(&ctx, Decision::Denied), async |_| ()).await?;
    ensure!(!denied.approved(), "denied stays denied when spooled");
    drop(recorder);

    // A new process finds the same spool.
    let spool = open_spool(dir.path())?;
    ensure_eq!(spool.pending()?, 2, "both records spooled durably");
    let relay = Relay::new(spool.clone(), plug.clone()).named(&name);
    ensure!(matches!(relay.drain().await, Err(AuditError::Store(_))), "the relay waits for the store");
    ensure_eq!(spool.pending()?, 2, "a failed drain keeps everything");

    plug.set_down(false);
    let report = relay.drain().await?;
    ensure_eq!((report.stored, report.already_stored, report.rejected), (2, 0, 0), "drained");
    let stored = all_history(&ctx, &ctx.workspace).await?;
    let mut want = vec![approved.receipt.record, denied.receipt.record];
    want.sort_by_key(|r| (r.created_at(), r.id()));
    ensure_eq!(stored, want, "each spooled record stored once, unchanged");
    ensure_eq!(relay.drain().await?, audit_history::DrainReport::default(), "nothing left");
    ensure_eq!((spool.pending()?, spool.len_bytes()), (0, 0), "the spool empties");
    ensure_eq!((metric(SPOOLED, &name), metric(REPLAYED, &name)), (2, 2), "spooled and replayed counters");
    ensure_eq!(metric(WRITE_FAILURES, &name), 2, "write failures counted");
    Ok(())
}

/// A relay killed mid-drain (a record stored but not yet acknowledged) and
/// started again in a new process stores every record exactly once.
pub async fn audit_relay_killed_mid_drain(ctx: CaseContext) -> CaseResult {
    let dir = spool_dir()?;
    let plug = Arc::new(Unplugged::new(writer(&ctx)));
    plug.set_down(true);
    let recorder = Recorder::new(plug.clone()).fail_open(open_spool(dir.path())?).named(&counting());
    let mut spooled = HashSet::new();
    for _ in 0..5 {
        spooled.insert(recorder.record(evidence(&ctx, Decision::Approved)).await?.record.id());
    }
    drop(recorder);

    plug.set_down(false);
    plug.stall_after(2);
    let relay = Relay::new(open_spool(dir.path())?, plug.clone()).batch_size(1);
    let task = tokio::spawn(async move { relay.drain().await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while plug.appends() < 3 {
        ensure!(tokio::time::Instant::now() < deadline, "the relay made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    task.abort();
    let _ = task.await;

    plug.stall_after(usize::MAX);
    let spool = open_spool(dir.path())?;
    ensure_eq!(spool.pending()?, 3, "two acknowledged, three left (one of them already stored)");
    let report = Relay::new(spool, plug.clone()).drain().await?;
    ensure_eq!((report.stored, report.already_stored), (2, 1), "the unacknowledged record is a replay");
    let stored: Vec<RecordId> = all_history(&ctx, &ctx.workspace).await?.iter().map(|r| r.id()).collect();
    ensure_eq!(stored.len(), 5, "exactly once each");
    ensure_eq!(stored.into_iter().collect::<HashSet<_>>(), spooled, "the spooled records");
    Ok(())
}

/// A `MakeWriter` that keeps everything logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything `audit-history` logs in this process, at every level. A global
/// subscriber, installed once: scoped ones miss events whose callsite
/// interest another thread cached first.
fn captured_logs() -> Outcome<Captured> {
    use tracing_subscriber::layer::SubscriberExt;
    static LOGS: OnceLock<Option<Captured>> = OnceLock::new();
    let logs = LOGS.get_or_init(|| {
        let logs = Captured::default();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(move || sink.clone()))
            .with(tracing_subscriber::filter::Targets::new().with_target("audit_history", tracing::Level::TRACE));
        tracing::subscriber::set_global_default(subscriber).ok().map(|()| logs)
    });
    logs.clone().ok_or_else(|| CaseFailure("another global tracing subscriber is installed".into()))
}

/// Every file under `dir`, concatenated.
fn read_tree(dir: &Path) -> Outcome<String> {
    let mut text = String::new();
    let entries = std::fs::read_dir(dir).map_err(|e| CaseFailure(format!("{}: {e}", dir.display())))?;
    for entry in entries {
        let path = entry.map_err(|e| CaseFailure(e.to_string()))?.path();
        if path.is_dir() {
            text.push_str(&read_tree(&path)?);
        } else {
            let bytes = std::fs::read(&path).map_err(|e| CaseFailure(format!("{}: {e}", path.display())))?;
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    Ok(text)
}

/// A secret and an e-mail address planted in the payloads and the reason
/// never reach the store, the spool, the export or the logs.
pub async fn audit_redaction_keeps_secrets_out(ctx: CaseContext) -> CaseResult {
    let secret = unique("s3cret");
    let email = format!("{}@example.com", unique("person"));
    let logs = captured_logs()?;
    let (spool_dir, export_dir) = (spool_dir()?, spool_dir()?);
    let run = async {
        let plug = Arc::new(Unplugged::new(writer(&ctx)));
        plug.set_down(true);
        let mut planted = evidence(&ctx, Decision::Approved);
        planted.request_json = Some(json!({
            "password": secret, "nested": [{"apiKey": secret}], "note": format!("ask {email} first"),
        }));
        planted.response_json = Some(json!({"session": {"access_token": secret}}));
        planted.reason = Some(format!("requested by {email}"));
        let closed = Recorder::new(plug.clone()).named(&counting());
        let refused = closed.guard(planted.clone(), async |_| ()).await;
        ensure!(matches!(refused, Err(AuditError::NotStored(_))), "fail-closed refusal: {refused:?}");
        let spool = open_spool(spool_dir.path())?;
        let open = Recorder::new(plug.clone()).fail_open(spool.clone()).named(&counting());
        let receipt = open.record(planted).await?;
        ensure_eq!(receipt.durability, Durability::Spooled, "spooled while down");
        let spooled = read_tree(spool_dir.path())?;
        plug.set_down(false);
        Relay::new(spool, plug.clone()).drain().await?;
        Sealer::new(integrity(&ctx)).seal(&ctx.workspace).await?;
        Exporter::new(integrity(&ctx), export_dir.path()).export(&ctx.workspace).await?;
        Ok::<_, CaseFailure>((receipt.record.id(), spooled))
    };
    let (id, spooled) = run.await?;
    let stored = all_history(&ctx, &ctx.workspace).await?;
    ensure_eq!(stored.len(), 1, "the record was stored");
    ensure_eq!(
        stored[0].evidence().redaction,
        Some(RedactionRef { policy: "standard".into(), version: "1".into() }),
        "the record names its redaction policy"
    );
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned();
    ensure!(logged.contains(&id.to_string()), "the logs mention the record (so searching them means something)");
    let places = [
        ("store", serde_json::to_string(&stored).map_err(|e| CaseFailure(e.to_string()))?),
        ("spool", spooled),
        ("export", read_tree(export_dir.path())?),
        ("logs", logged),
    ];
    for (place, text) in places {
        ensure!(!text.is_empty(), "{place}: nothing to search");
        ensure!(!text.contains(&secret), "the secret reached the {place}");
        ensure!(!text.contains(&email), "the e-mail address reached the {place}");
    }
    Ok(())
}

/// Appends `n` decision records to `workspace`.
async fn append_many(ctx: &CaseContext, workspace: &WorkspaceId, n: usize) -> Outcome<Vec<HistoryRecord>> {
    let mut records = Vec::with_capacity(n);
    for i in 0..n {
        let mut evidence = evidence(ctx, if i % 3 == 0 { Decision::Denied } else { Decision::Approved });
        evidence.workspace_id = workspace.clone();
        evidence.request_json = Some(json!({ "n": i, "amount": 12.5 }));
        let record = HistoryRecord::new(evidence, governance_abstractions::Timestamp::now())?;
        records.push(ctx.store.append_history(std::slice::from_ref(&record)).await?.remove(0).into_inner());
    }
    Ok(records)
}

/// Sealing covers lifecycle and decision records in checkpoints that chain;
/// an untouched workspace verifies clean against its anchor, before and
/// after more records and more checkpoints; racing sealers seal each record once.
pub async fn integrity_seal_and_verify_clean(ctx: CaseContext) -> CaseResult {
    let store = integrity(&ctx);
    let request = create(&ctx, spec(&ctx)).await?;
    act(&ctx, request.id(), &requester(), Action::Approve).await?;
    append_many(&ctx, &ctx.workspace, 4).await?;
    let total = all_history(&ctx, &ctx.workspace).await?.len() as u64;
    let sealer = Sealer::new(store.clone()).checkpoint_size(2);
    let first = sealer.seal(&ctx.workspace).await?;
    ensure_eq!(first.records, total, "every record sealed");
    ensure_eq!(first.checkpoints.len() as u64, total.div_ceil(2), "checkpoints of two");
    let anchor = first.anchor().ok_or_else(|| CaseFailure("no checkpoint".into()))?;
    let clean = verify(store.as_ref(), &ctx.workspace, Some(&anchor)).await?;
    ensure!(clean.is_clean(), "untouched workspace: {:?}", clean.problem);
    ensure_eq!((clean.checkpoints, clean.sealed, clean.unsealed), (total.div_ceil(2), total, 0), "walked everything");
    ensure_eq!(clean.latest.as_ref(), Some(&anchor), "latest anchor");

    append_many(&ctx, &ctx.workspace, 3).await?;
    let pending = verify(store.as_ref(), &ctx.workspace, Some(&anchor)).await?;
    ensure!(pending.is_clean() && pending.unsealed == 3, "unsealed records verify by hash: {pending:?}");
    let second = sealer.seal(&ctx.workspace).await?;
    let chained = &second.checkpoints[0];
    ensure_eq!(chained.previous(), Some(anchor.digest.as_str()), "the chain continues");
    let next = second.anchor().ok_or_else(|| CaseFailure("no checkpoint".into()))?;
    for anchor in [&anchor, &next] {
        ensure!(verify(store.as_ref(), &ctx.workspace, Some(anchor)).await?.is_clean(), "clean at {}", anchor.seq);
    }

    // Two sealers racing over the same records.
    append_many(&ctx, &ctx.workspace, 12).await?;
    let rival = Sealer::new(store.clone()).checkpoint_size(3);
    let (a, b) = tokio::join!(sealer.seal(&ctx.workspace), rival.seal(&ctx.workspace));
    ensure_eq!(a?.records + b?.records, 12, "racing sealers seal each record once");
    let all = verify(store.as_ref(), &ctx.workspace, None).await?;
    ensure!(all.is_clean() && all.unsealed == 0, "after the race: {all:?}");
    ensure_eq!(all.sealed, total + 15, "every record sealed exactly once");
    Ok(())
}

/// The store takes a checkpoint only as the successor of its latest one:
/// a taken sequence number, a record sealed before or listed twice, and a
/// root that does not match the entries are refused with typed errors, and
/// nothing of a refused checkpoint is written.
pub async fn integrity_checkpoint_refusals(ctx: CaseContext) -> CaseResult {
    use governance_abstractions::{EntityKind, GovernanceError, Timestamp};
    let store = integrity(&ctx);
    let ws = &ctx.workspace;
    let records = append_many(&ctx, ws, 4).await?;
    let now = Timestamp::now();
    let (first, entries) = Checkpoint::seal(None, ws, &records[..2], now)?;
    store.append_checkpoint(&first, &entries).await?;

    let taken = |e: &GovernanceError, want: EntityKind| matches!(e, GovernanceError::AlreadyExists { kind, .. } if *kind == want);
    let again = expect_err(store.append_checkpoint(&first, &entries).await, "the same checkpoint again")?;
    ensure!(taken(&again, EntityKind::Checkpoint), "a taken seq: {again:?}");
    let (rival, rival_entries) = Checkpoint::seal(None, ws, &records[2..], now)?;
    let lost = expect_err(store.append_checkpoint(&rival, &rival_entries).await, "a rival first checkpoint")?;
    ensure!(taken(&lost, EntityKind::Checkpoint), "a rival seq 1: {lost:?}");
    let resealed = [records[0].clone(), records[2].clone()];
    let (second, second_entries) = Checkpoint::seal(Some(&first), ws, &resealed, now)?;
    let twice = expect_err(store.append_checkpoint(&second, &second_entries).await, "a record sealed before")?;
    ensure!(taken(&twice, EntityKind::HistoryRecord), "a sealed record: {twice:?}");
    let doubled = [records[2].clone(), records[2].clone()];
    let (second, second_entries) = Checkpoint::seal(Some(&first), ws, &doubled, now)?;
    let listed = expect_err(store.append_checkpoint(&second, &second_entries).await, "a record listed twice")?;
    ensure!(taken(&listed, EntityKind::HistoryRecord), "a record listed twice: {listed:?}");
    let (sealed, forged_entries) = Checkpoint::seal(Some(&first), ws, &records[2..], now)?;
    let forged = {
        let mut value = serde_json::to_value(&sealed).map_err(|e| CaseFailure(e.to_string()))?;
        value["root"] = json!("0".repeat(64));
        let copy: Checkpoint = serde_json::from_value(value.clone()).map_err(|e| CaseFailure(e.to_string()))?;
        value["digest"] = json!(copy.compute_digest()?);
        serde_json::from_value::<Checkpoint>(value).map_err(|e| CaseFailure(e.to_string()))?
    };
    let bad = expect_err(store.append_checkpoint(&forged, &forged_entries).await, "a root that does not match")?;
    ensure!(matches!(bad, GovernanceError::Validation { .. }), "a forged root: {bad:?}");

    ensure_eq!(store.latest_checkpoint(ws).await?, Some(first), "only the first checkpoint stored");
    ensure_eq!(store.sealed_records(ws, 0, 100).await?.len(), 2, "only its entries stored");
    ensure_eq!(store.unsealed_history(ws, None, 100).await?.len(), 2, "the rest still unsealed");
    Ok(())
}

/// Six sealed records in `workspace`, in three checkpoints of two; returns
/// the record ids in leaf order and the latest checkpoint.
async fn sealed_in(ctx: &CaseContext, workspace: &WorkspaceId) -> Outcome<(Vec<RecordId>, Checkpoint)> {
    append_many(ctx, workspace, 6).await?;
    let report = Sealer::new(integrity(ctx)).checkpoint_size(2).seal(workspace).await?;
    ensure_eq!(report.checkpoints.len(), 3, "three checkpoints");
    let sealed = integrity(ctx).sealed_records(workspace, 0, 100).await?;
    let ids = sealed.iter().map(|(entry, _)| entry.record_id).collect();
    let latest = report.checkpoints.last().cloned().ok_or_else(|| CaseFailure("no checkpoint".into()))?;
    Ok((ids, latest))
}

fn tamper_access(ctx: &CaseContext) -> Outcome<Arc<dyn TamperAccess>> {
    ctx.tamper.clone().ok_or_else(|| CaseFailure("the factory declared tamper access but gave none".into()))
}

/// The case's workspace, sealed (see [`sealed_in`]), and the tamper path.
async fn sealed_workspace(ctx: &CaseContext) -> Outcome<(Arc<dyn TamperAccess>, Vec<RecordId>, Checkpoint)> {
    let tamper = tamper_access(ctx)?;
    let (ids, latest) = sealed_in(ctx, &ctx.workspace).await?;
    Ok((tamper, ids, latest))
}

async fn problem(ctx: &CaseContext, workspace: &WorkspaceId, anchor: Option<&Checkpoint>) -> Outcome<Option<Problem>> {
    let anchor = anchor.map(Checkpoint::anchor);
    Ok(verify(integrity(ctx).as_ref(), workspace, anchor.as_ref()).await?.problem)
}

fn tampering(result: Result<(), String>) -> Outcome<()> {
    result.map_err(|e| CaseFailure(format!("tampering failed: {e}")))
}

/// A changed field of a sealed record is named, with its leaf index, and
/// the exporter refuses it; an altered unsealed record is named too, and the
/// sealer leaves it unsealed while sealing the rest.
pub async fn integrity_detects_altered_record(ctx: CaseContext) -> CaseResult {
    let (tamper, ids, latest) = sealed_workspace(&ctx).await?;
    tampering(tamper.alter_record(&ctx.workspace, ids[2], None).await)?;
    let found = problem(&ctx, &ctx.workspace, Some(&latest)).await?;
    ensure_eq!(found, Some(Problem::RecordAltered { record: ids[2], index: Some(2) }), "altered sealed record");
    let dir = spool_dir()?;
    let exported = Exporter::new(integrity(&ctx), dir.path()).export(&ctx.workspace).await;
    ensure!(
        matches!(exported, Err(AuditError::Tampered { record }) if record == ids[2]),
        "the exporter must refuse the altered record: {exported:?}"
    );

    let other = ctx.other_workspace();
    let unsealed = append_many(&ctx, &other, 2).await?;
    tampering(tamper.alter_record(&other, unsealed[0].id(), None).await)?;
    let found = problem(&ctx, &other, None).await?;
    ensure_eq!(
        found,
        Some(Problem::RecordAltered { record: unsealed[0].id(), index: None }),
        "altered unsealed record"
    );
    let report = Sealer::new(integrity(&ctx)).seal(&other).await?;
    ensure_eq!(report.tampered, vec![unsealed[0].id()], "the altered record is set aside");
    ensure_eq!(report.records, 1, "the intact one is sealed anyway");
    Ok(())
}

/// A sealed record changed together with its content hash still differs
/// from the hash its seal entry kept.
pub async fn integrity_detects_rehashed_record(ctx: CaseContext) -> CaseResult {
    let (tamper, ids, latest) = sealed_workspace(&ctx).await?;
    let stored = ctx.store.get_history_record(&ctx.workspace, ids[4]).await?;
    let forged = untrusted(&stored, true, |value| value["evidence"]["reason"] = json!("tampered"))?;
    tampering(tamper.alter_record(&ctx.workspace, ids[4], Some(forged.content_hash().to_owned())).await)?;
    let found = problem(&ctx, &ctx.workspace, Some(&latest)).await?;
    ensure_eq!(found, Some(Problem::RecordAltered { record: ids[4], index: Some(4) }), "rehashed sealed record");
    Ok(())
}

/// A record whose actor was changed where filters and counts read it (on
/// SQL backends its actor columns) is named as altered, sealed or not: the
/// actor that counts is the actor the content hash covers.
pub async fn integrity_detects_reassigned_actor(ctx: CaseContext) -> CaseResult {
    let (tamper, ids, latest) = sealed_workspace(&ctx).await?;
    tampering(tamper.reassign_actor(&ctx.workspace, ids[1], "mallory").await)?;
    let found = problem(&ctx, &ctx.workspace, Some(&latest)).await?;
    ensure_eq!(found, Some(Problem::RecordAltered { record: ids[1], index: Some(1) }), "reassigned sealed record");

    let other = ctx.other_workspace();
    let unsealed = append_many(&ctx, &other, 2).await?;
    tampering(tamper.reassign_actor(&other, unsealed[1].id(), "mallory").await)?;
    let found = problem(&ctx, &other, None).await?;
    ensure_eq!(found, Some(Problem::RecordAltered { record: unsealed[1].id(), index: None }), "reassigned unsealed");
    Ok(())
}

/// A deleted record in the middle of the log is named.
pub async fn integrity_detects_deleted_record(ctx: CaseContext) -> CaseResult {
    let (tamper, ids, latest) = sealed_workspace(&ctx).await?;
    tampering(tamper.delete_record(&ctx.workspace, ids[3]).await)?;
    let found = problem(&ctx, &ctx.workspace, Some(&latest)).await?;
    ensure_eq!(found, Some(Problem::RecordMissing { record: ids[3], index: 3, checkpoint: 2 }), "deleted record");
    Ok(())
}

/// Deleting the tail (the last checkpoint, its entries and its records)
/// leaves a consistent store, which only the exported anchor exposes — also
/// once new records were sealed in its place.
pub async fn integrity_detects_deleted_tail(ctx: CaseContext) -> CaseResult {
    let (tamper, ids, latest) = sealed_workspace(&ctx).await?;
    for id in &ids[4..] {
        tampering(tamper.delete_record(&ctx.workspace, *id).await)?;
    }
    tampering(tamper.delete_checkpoint(&ctx.workspace, latest.seq()).await)?;
    ensure_eq!(problem(&ctx, &ctx.workspace, None).await?, None, "without an anchor a clean cut is invisible");
    let found = problem(&ctx, &ctx.workspace, Some(&latest)).await?;
    ensure_eq!(found, Some(Problem::AnchorMismatch { seq: latest.seq() }), "the anchor exposes the cut");
    append_many(&ctx, &ctx.workspace, 2).await?;
    let resealed = Sealer::new(integrity(&ctx)).checkpoint_size(2).seal(&ctx.workspace).await?;
    ensure_eq!(resealed.checkpoints.first().map(|c| c.seq()), Some(latest.seq()), "a new checkpoint takes its place");
    let found = problem(&ctx, &ctx.workspace, Some(&latest)).await?;
    ensure_eq!(found, Some(Problem::AnchorMismatch { seq: latest.seq() }), "the anchor exposes the rewrite");
    Ok(())
}

/// A changed checkpoint is named: a field changed, the root changed with
/// the digest recomputed, the link to its predecessor changed with the
/// digest recomputed, or the checkpoint deleted from the middle.
pub async fn integrity_detects_altered_checkpoint(ctx: CaseContext) -> CaseResult {
    let (tamper, _, latest) = sealed_workspace(&ctx).await?;
    let zeros = "0".repeat(64);
    let change = CheckpointChange { root: Some(zeros.clone()), ..CheckpointChange::default() };
    tampering(tamper.alter_checkpoint(&ctx.workspace, 2, change).await)?;
    let found = problem(&ctx, &ctx.workspace, Some(&latest)).await?;
    ensure_eq!(found, Some(Problem::CheckpointAltered { seq: 2 }), "altered checkpoint");

    let forgeries: [(&str, Problem); 2] =
        [("root", Problem::SealBroken { seq: 2 }), ("previous", Problem::ChainBroken { seq: 2 })];
    for (field, want) in forgeries {
        let workspace = ctx.other_workspace();
        let (_, latest) = sealed_in(&ctx, &workspace).await?;
        let stored = integrity(&ctx).checkpoints(&workspace, 1, 1).await?.remove(0);
        // The attacker rewrites one field and recomputes the digest over it.
        let mut value = serde_json::to_value(&stored).map_err(|e| CaseFailure(e.to_string()))?;
        value[field] = json!(zeros);
        let edited: Checkpoint = serde_json::from_value(value.clone()).map_err(|e| CaseFailure(e.to_string()))?;
        value["digest"] = json!(edited.compute_digest()?);
        let forged: Checkpoint = serde_json::from_value(value).map_err(|e| CaseFailure(e.to_string()))?;
        let change = CheckpointChange {
            root: Some(forged.root().to_owned()),
            previous: forged.previous().map(str::to_owned),
            digest: Some(forged.digest().to_owned()),
        };
        tampering(tamper.alter_checkpoint(&workspace, 2, change).await)?;
        ensure_eq!(problem(&ctx, &workspace, Some(&latest)).await?, Some(want.clone()), "forged checkpoint: {want}");
    }

    let workspace = ctx.other_workspace();
    let (_, latest) = sealed_in(&ctx, &workspace).await?;
    tampering(tamper.delete_checkpoint(&workspace, 2).await)?;
    let found = problem(&ctx, &workspace, Some(&latest)).await?;
    ensure_eq!(found, Some(Problem::CheckpointMissing { seq: 2 }), "checkpoint deleted from the middle");
    Ok(())
}

/// A record copied into another workspace is named there and never sealed;
/// its own workspace stays clean.
pub async fn integrity_detects_copied_record(ctx: CaseContext) -> CaseResult {
    let (tamper, ids, latest) = sealed_workspace(&ctx).await?;
    let other = ctx.other_workspace();
    append_many(&ctx, &other, 2).await?;
    Sealer::new(integrity(&ctx)).seal(&other).await?;
    tampering(tamper.copy_record(&ctx.workspace, ids[1], &other).await)?;
    let found = problem(&ctx, &other, None).await?;
    ensure_eq!(found, Some(Problem::RecordAltered { record: ids[1], index: None }), "copied record");
    let report = Sealer::new(integrity(&ctx)).seal(&other).await?;
    ensure_eq!((report.records, report.tampered), (0, vec![ids[1]]), "the sealer sets the copy aside");
    ensure_eq!(problem(&ctx, &ctx.workspace, Some(&latest)).await?, None, "the source workspace is untouched");
    Ok(())
}

/// Every exported line, from every file under `dir`.
fn exported(dir: &Path) -> Outcome<Vec<ExportLine>> {
    let mut lines = Vec::new();
    for line in read_tree(dir)?.lines().filter(|l| l.starts_with("{\"index\"")) {
        lines.push(serde_json::from_str(line).map_err(|e| CaseFailure(format!("exported line: {e}")))?);
    }
    Ok(lines)
}

/// Export, add records, export again from the saved cursor — also after a
/// run that died before saving its last cursor, resumed with another page
/// size — and every record is in the date partition of its day exactly once.
pub async fn export_resumes_without_gaps(ctx: CaseContext) -> CaseResult {
    let dir = spool_dir()?;
    let store = integrity(&ctx);
    let sealer = Sealer::new(store.clone()).checkpoint_size(4);
    let exporter = Exporter::new(store.clone(), dir.path()).page_size(3);
    append_many(&ctx, &ctx.workspace, 7).await?;
    sealer.seal(&ctx.workspace).await?;
    ensure_eq!(exporter.export(&ctx.workspace).await?.records, 7, "first export");
    ensure_eq!(exporter.cursor(&ctx.workspace)?.next_index, 7, "cursor saved");
    ensure_eq!(exporter.export(&ctx.workspace).await?.records, 0, "nothing new, nothing written");

    // The last page's cursor was never saved (the run died after writing its files).
    let cursor = ExportCursor { workspace_id: ctx.workspace.clone(), next_index: 6, page_size: 3 };
    let cursor_path = exporter.workspace_dir(&ctx.workspace).join("_cursor.json");
    std::fs::write(&cursor_path, serde_json::to_vec(&cursor).map_err(|e| CaseFailure(e.to_string()))?)
        .map_err(|e| CaseFailure(e.to_string()))?;

    let request = create(&ctx, spec(&ctx)).await?;
    act(&ctx, request.id(), &requester(), Action::Approve).await?;
    append_many(&ctx, &ctx.workspace, 5).await?;
    sealer.seal(&ctx.workspace).await?;
    // Resumed with a smaller page: the first page still covers what the dead run wrote.
    Exporter::new(store.clone(), dir.path()).page_size(2).export(&ctx.workspace).await?;

    let lines = exported(dir.path())?;
    let history = all_history(&ctx, &ctx.workspace).await?;
    let ids: Vec<RecordId> = lines.iter().map(|l| l.record.id()).collect();
    ensure_eq!(ids.len(), history.len(), "every record exported once");
    ensure_eq!(
        ids.iter().collect::<HashSet<_>>(),
        history.iter().map(|r| r.id()).collect::<HashSet<_>>().iter().collect::<HashSet<_>>(),
        "exactly the stored records"
    );
    let mut indices: Vec<u64> = lines.iter().map(|l| l.index).collect();
    indices.sort_unstable();
    ensure_eq!(indices, (0..history.len() as u64).collect::<Vec<_>>(), "leaf indices without gap");
    for line in &lines {
        ensure_eq!(line.record.compute_hash()?, line.record.content_hash(), "exported records keep their hash");
    }
    let day = history[0].created_at().as_datetime().format("year=%Y/month=%m/day=%d").to_string();
    ensure!(
        exporter.workspace_dir(&ctx.workspace).join(&day).is_dir(),
        "date partition {day} under the workspace directory"
    );
    Ok(())
}

/// A seal entry whose kept hash was changed is named as that entry, not as
/// the intact record it seals.
pub async fn integrity_detects_altered_seal_entry(ctx: CaseContext) -> CaseResult {
    let (tamper, ids, latest) = sealed_workspace(&ctx).await?;
    tampering(tamper.alter_seal(&ctx.workspace, 1, "0".repeat(64)).await)?;
    let found = problem(&ctx, &ctx.workspace, Some(&latest)).await?;
    ensure!(
        matches!(found, Some(Problem::SealEntryAltered { index: 1, record, .. }) if record == ids[1]),
        "expected the seal entry at leaf 1 to be named, got {found:?}"
    );
    Ok(())
}

/// A stored record that no longer decodes (a column set to a value the
/// library never writes) is named by `verify`, sealed or not, and the sealer
/// sets it aside instead of failing.
pub async fn integrity_names_unreadable_record(ctx: CaseContext) -> CaseResult {
    let (tamper, ids, latest) = sealed_workspace(&ctx).await?;
    tampering(tamper.corrupt_record(&ctx.workspace, ids[2]).await)?;
    let found = problem(&ctx, &ctx.workspace, Some(&latest)).await?;
    ensure!(
        matches!(found, Some(Problem::RecordUnreadable { record, index: Some(2), .. }) if record == ids[2]),
        "expected the unreadable sealed record to be named, got {found:?}"
    );
    let other = ctx.other_workspace();
    let unsealed = append_many(&ctx, &other, 3).await?;
    tampering(tamper.corrupt_record(&other, unsealed[1].id()).await)?;
    let found = problem(&ctx, &other, None).await?;
    ensure!(
        matches!(found, Some(Problem::RecordUnreadable { record, index: None, .. }) if record == unsealed[1].id()),
        "expected the unreadable unsealed record to be named, got {found:?}"
    );
    let report = Sealer::new(integrity(&ctx)).seal(&other).await?;
    ensure_eq!(report.tampered, vec![unsealed[1].id()], "the unreadable record is set aside");
    ensure_eq!(report.records, 2, "the readable ones are sealed");
    Ok(())
}
