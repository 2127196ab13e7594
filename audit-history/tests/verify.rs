//! What `verify`, the sealer and the exporter say about rows that were
//! changed behind the store: a changed seal entry is named as such (never
//! blamed on its intact record), and a row that no longer decodes is named
//! and never sealed or exported.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use audit_history::{AuditError, Exporter, Problem, Sealer, verify};
use governance_abstractions::{
    Actor, Checkpoint, Decision, Evidence, HistoryReader, HistoryRecord, HistoryWriter, IntegrityStore, Position,
    ReadRecord, RecordId, Result, SealEntry, SealedRecord, Timestamp, Unreadable, WorkspaceId,
};
use governance_memory::MemoryStore;

fn workspace() -> WorkspaceId {
    WorkspaceId::new("verify").unwrap()
}

async fn append(store: &MemoryStore, n: usize) -> Vec<RecordId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let evidence = Evidence::decision(workspace(), Actor::user("a"), "doc", format!("op{i}"), Decision::Approved);
        let record = HistoryRecord::new(evidence, Timestamp::now()).unwrap();
        ids.push(record.id());
        store.append_history(&[record]).await.unwrap();
    }
    ids
}

/// Five records sealed two per checkpoint (checkpoints 1, 2, 3 over leaves
/// 0–1, 2–3, 4); their ids in leaf order, and the latest checkpoint.
async fn sealed(store: &MemoryStore) -> (Vec<RecordId>, Checkpoint) {
    append(store, 5).await;
    let report = Sealer::new(Arc::new(store.clone())).checkpoint_size(2).seal(&workspace()).await.unwrap();
    assert_eq!(report.checkpoints.len(), 3);
    let entries = store.sealed_records(&workspace(), 0, 100).await.unwrap();
    let ids = entries.iter().map(|(entry, _)| entry.record_id).collect();
    (ids, report.checkpoints.last().cloned().unwrap())
}

async fn problem(store: &dyn IntegrityStore, anchor: &Checkpoint) -> Option<Problem> {
    verify(store, &workspace(), Some(&anchor.anchor())).await.unwrap().problem
}

#[tokio::test]
async fn a_changed_seal_entry_is_named_not_its_intact_record() {
    let store = MemoryStore::new();
    let (ids, latest) = sealed(&store).await;
    assert_eq!(problem(&store, &latest).await, None);
    assert!(store.tamper(&workspace(), |t| t.edit_seal(3, |entry| entry.content_hash = "0".repeat(64))));
    let found = problem(&store, &latest).await;
    assert_eq!(found, Some(Problem::SealEntryAltered { index: 3, record: ids[3], checkpoint: 2 }));
    assert_eq!(found.unwrap().to_string(), format!("seal entry 3 of checkpoint 2 (record {}) was altered", ids[3]));
    let dir = tempfile::tempdir().unwrap();
    let exported = Exporter::new(Arc::new(store.clone()), dir.path()).export(&workspace()).await;
    assert!(matches!(exported, Err(AuditError::Tampered { record }) if record == ids[3]), "{exported:?}");
}

#[tokio::test]
async fn a_changed_record_under_intact_entries_is_the_altered_one() {
    let store = MemoryStore::new();
    let (ids, latest) = sealed(&store).await;
    assert!(store.tamper(&workspace(), |t| t.edit_record(ids[1], |evidence| evidence.reason = Some("forged".into()))));
    assert_eq!(problem(&store, &latest).await, Some(Problem::RecordAltered { record: ids[1], index: Some(1) }));
}

#[tokio::test]
async fn a_record_and_its_entry_changed_together_break_the_seal() {
    let store = MemoryStore::new();
    let (ids, latest) = sealed(&store).await;
    let original = store.get_history_record(&workspace(), ids[2]).await.unwrap();
    let mut evidence = original.evidence().clone();
    evidence.reason = Some("forged".into());
    let forged = HistoryRecord::with_id(ids[2], evidence, original.created_at()).unwrap();
    let rewritten = store.tamper(&workspace(), |t| {
        t.rewrite_record(ids[2], |evidence, hash| {
            *evidence = forged.evidence().clone();
            *hash = forged.content_hash().to_owned();
        }) && t.edit_seal(2, |entry| entry.content_hash = forged.content_hash().to_owned())
    });
    assert!(rewritten);
    assert_eq!(problem(&store, &latest).await, Some(Problem::SealBroken { seq: 2 }));
    // Each record matches its entry now: only the checkpoint's root shows the
    // forgery, and the exporter checks it before writing anything.
    let dir = tempfile::tempdir().unwrap();
    let exported = Exporter::new(Arc::new(store.clone()), dir.path()).export(&workspace()).await;
    assert!(matches!(exported, Err(AuditError::Tampered { .. })), "{exported:?}");
    let written: Vec<_> =
        walk(dir.path()).into_iter().filter(|p| p.extension().is_some_and(|e| e == "jsonl")).collect();
    assert!(
        written.iter().all(|path| !std::fs::read_to_string(path).unwrap().contains("forged")),
        "the forged record was exported: {written:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// The memory store, with some rows reading back as unreadable, the way a
/// SQL provider returns a row whose columns no longer decode.
struct Undecodable {
    inner: MemoryStore,
    broken: HashSet<RecordId>,
}

impl Undecodable {
    fn read(&self, row: ReadRecord) -> ReadRecord {
        match row {
            Ok(record) if self.broken.contains(&record.id()) => Err(Unreadable {
                id: record.id(),
                created_at: record.created_at(),
                problem: "category: 'bogus' is not a known value".into(),
            }),
            row => row,
        }
    }
}

#[async_trait]
impl IntegrityStore for Undecodable {
    async fn unsealed_history(&self, ws: &WorkspaceId, after: Option<Position>, limit: u32) -> Result<Vec<ReadRecord>> {
        let rows = self.inner.unsealed_history(ws, after, limit).await?;
        Ok(rows.into_iter().map(|row| self.read(row)).collect())
    }

    async fn append_checkpoint(&self, checkpoint: &Checkpoint, entries: &[SealEntry]) -> Result<()> {
        self.inner.append_checkpoint(checkpoint, entries).await
    }

    async fn checkpoints(&self, ws: &WorkspaceId, after: u64, limit: u32) -> Result<Vec<Checkpoint>> {
        self.inner.checkpoints(ws, after, limit).await
    }

    async fn latest_checkpoint(&self, ws: &WorkspaceId) -> Result<Option<Checkpoint>> {
        self.inner.latest_checkpoint(ws).await
    }

    async fn sealed_records(&self, ws: &WorkspaceId, from: u64, limit: u32) -> Result<Vec<SealedRecord>> {
        let rows = self.inner.sealed_records(ws, from, limit).await?;
        Ok(rows.into_iter().map(|(entry, row)| (entry, row.map(|row| self.read(row)))).collect())
    }
}

#[tokio::test]
async fn an_undecodable_sealed_row_is_named_and_never_exported() {
    let inner = MemoryStore::new();
    let (ids, latest) = sealed(&inner).await;
    let store = Arc::new(Undecodable { inner, broken: HashSet::from([ids[2]]) });
    let found = problem(store.as_ref(), &latest).await;
    let problem = "category: 'bogus' is not a known value".to_owned();
    assert_eq!(found, Some(Problem::RecordUnreadable { record: ids[2], index: Some(2), problem: problem.clone() }));
    assert_eq!(found.unwrap().to_string(), format!("record {} (leaf 2) cannot be read: {problem}", ids[2]));
    let dir = tempfile::tempdir().unwrap();
    let exported = Exporter::new(store.clone(), dir.path()).export(&workspace()).await;
    assert!(matches!(exported, Err(AuditError::Tampered { record }) if record == ids[2]), "{exported:?}");
}

#[tokio::test]
async fn an_undecodable_unsealed_row_is_named_and_set_aside_by_the_sealer() {
    let inner = MemoryStore::new();
    let ids = append(&inner, 3).await;
    let store = Arc::new(Undecodable { inner: inner.clone(), broken: HashSet::from([ids[1]]) });
    let checked = verify(store.as_ref(), &workspace(), None).await.unwrap();
    let problem = "category: 'bogus' is not a known value".to_owned();
    assert_eq!(checked.problem, Some(Problem::RecordUnreadable { record: ids[1], index: None, problem }));
    let report = Sealer::new(store.clone()).seal(&workspace()).await.unwrap();
    assert_eq!((report.records, report.tampered), (2, vec![ids[1]]), "the rest is sealed");
    let again = Sealer::new(store.clone()).seal(&workspace()).await.unwrap();
    assert_eq!((again.records, again.tampered), (0, vec![ids[1]]), "and it stays unsealed");
    // Read by the plain store again, the row decodes and is sealed last.
    let late = Sealer::new(Arc::new(inner.clone())).seal(&workspace()).await.unwrap();
    assert_eq!(late.records, 1);
    assert!(verify(&inner, &workspace(), late.anchor().as_ref()).await.unwrap().is_clean());
}
