//! An in-process governance store with every semantic of the contract.
//!
//! For tests, examples and local development: nothing survives the process.
//! Each workspace has its own read-write lock, so writers in different
//! workspaces never wait for each other and readers never wait for readers;
//! within a workspace a write (request state plus its history) happens under
//! one write lock, which is what makes it atomic. Reads of a workspace that was
//! never written create nothing.
//!
//! ```
//! use std::sync::Arc;
//! use governance_abstractions::{GovernanceService, GovernanceStore};
//! use governance_memory::MemoryStore;
//!
//! let store: Arc<dyn GovernanceStore> = Arc::new(MemoryStore::new());
//! let service = GovernanceService::new(store);
//! # let _ = service;
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use governance_abstractions::provider::{
    check_commit_target, check_successor, plan_history_append, rank_counts, validate_checkpoint, validate_creation,
    validate_history_batch, validate_transition,
};
use governance_abstractions::{
    Checkpoint, Count, CountQuery, Creation, Direction, EntityKind, GovernanceError, GovernanceRequest, HistoryFilter,
    HistoryReader, HistoryRecord, HistoryWriter, IntegrityStore, Page, PageRequest, Position, ReadRecord, RecordId,
    RequestFilter, RequestId, RequestReader, RequestWriter, Result, SealEntry, SealedRecord, Stored, Transition,
    WorkspaceId,
};

#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "testing")]
pub use testing::Tampering;

/// The in-memory provider. Cloning shares the same data.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    workspaces: Arc<RwLock<HashMap<WorkspaceId, Arc<RwLock<Workspace>>>>>,
}

/// One tenant's data. Rows are keyed by their `(created_at, id)` position,
/// which is also the paging order.
#[derive(Debug, Default)]
struct Workspace {
    requests: BTreeMap<Position, GovernanceRequest>,
    request_positions: HashMap<RequestId, Position>,
    request_keys: HashMap<String, RequestId>,
    records: BTreeMap<Position, HistoryRecord>,
    record_positions: HashMap<RecordId, Position>,
    record_keys: HashMap<String, RecordId>,
    records_by_request: HashMap<RequestId, Vec<Position>>,
    checkpoints: Vec<Checkpoint>,
    /// Seal entries; an entry's leaf index is its place here.
    seals: Vec<SealEntry>,
    sealed: HashSet<RecordId>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn existing(&self, id: &WorkspaceId) -> Option<Arc<RwLock<Workspace>>> {
        self.workspaces.read().unwrap_or_else(PoisonError::into_inner).get(id).cloned()
    }

    /// Writes under the workspace's lock, creating the workspace on first
    /// write. Only this lookup touches the shared map.
    fn write<T>(&self, id: &WorkspaceId, f: impl FnOnce(&mut Workspace) -> T) -> T {
        let workspace = self.existing(id).unwrap_or_else(|| {
            let mut all = self.workspaces.write().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(all.entry(id.clone()).or_default())
        });
        let mut guard = workspace.write().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// Reads under the workspace's shared lock; an unknown workspace reads as empty.
    fn read<T>(&self, id: &WorkspaceId, f: impl FnOnce(&Workspace) -> T) -> T {
        match self.existing(id) {
            Some(workspace) => f(&workspace.read().unwrap_or_else(PoisonError::into_inner)),
            None => f(&Workspace::default()),
        }
    }
}

impl Workspace {
    fn request(&self, id: RequestId) -> Option<&GovernanceRequest> {
        self.request_positions.get(&id).and_then(|p| self.requests.get(p))
    }

    fn record(&self, id: RecordId) -> Option<&HistoryRecord> {
        self.record_positions.get(&id).and_then(|p| self.records.get(p))
    }

    fn insert_record(&mut self, record: HistoryRecord) {
        let position = Position::of_record(&record);
        if let Some(key) = &record.evidence().idempotency_key {
            self.record_keys.insert(key.clone(), record.id());
        }
        if let Some(request) = record.evidence().request {
            self.records_by_request.entry(request.id).or_default().push(position);
        }
        self.record_positions.insert(record.id(), position);
        self.records.insert(position, record);
    }

    /// The stored records sharing an id or idempotency key with `records`.
    fn related(&self, records: &[HistoryRecord]) -> Vec<HistoryRecord> {
        let by_id = records.iter().filter_map(|r| self.record(r.id()));
        let by_key = records
            .iter()
            .filter_map(|r| r.evidence().idempotency_key.as_ref())
            .filter_map(|key| self.record_keys.get(key).and_then(|id| self.record(*id)));
        by_id.chain(by_key).cloned().collect()
    }
}

fn already_exists(kind: EntityKind, workspace: &WorkspaceId, id: impl ToString) -> GovernanceError {
    GovernanceError::AlreadyExists { kind, workspace: workspace.clone(), id: id.to_string() }
}

fn not_found(kind: EntityKind, workspace: &WorkspaceId, id: impl ToString) -> GovernanceError {
    GovernanceError::NotFound { kind, workspace: workspace.clone(), id: id.to_string() }
}

/// One page of `rows` in `page` order, keeping rows that pass `keep`.
fn page_of<T: Clone>(rows: &BTreeMap<Position, T>, page: &PageRequest, keep: impl Fn(&T) -> bool) -> Result<Page<T>> {
    use std::ops::Bound::{Excluded, Unbounded};
    let after = page.position()?;
    let range = match (page.direction, after) {
        (_, None) => (Unbounded, Unbounded),
        (Direction::Forward, Some(after)) => (Excluded(after), Unbounded),
        (Direction::Backward, Some(after)) => (Unbounded, Excluded(after)),
    };
    let matching = rows.range(range);
    let take = page.fetch_limit().map_or(usize::MAX, |n| n as usize);
    let fetched: Vec<(Position, T)> = match page.direction {
        Direction::Forward => matching.filter(|(_, row)| keep(row)).take(take).map(|(p, r)| (*p, r.clone())).collect(),
        Direction::Backward => {
            matching.rev().filter(|(_, row)| keep(row)).take(take).map(|(p, r)| (*p, r.clone())).collect()
        }
    };
    let page = Page::from_fetched(fetched, page, |(position, _)| *position);
    Ok(Page { items: page.items.into_iter().map(|(_, row)| row).collect(), next: page.next, has_more: page.has_more })
}

#[async_trait]
impl RequestWriter for MemoryStore {
    async fn create_request(&self, creation: &Creation) -> Result<Stored<GovernanceRequest>> {
        validate_creation(creation)?;
        let request = creation.request();
        self.write(request.workspace_id(), |ws| {
            if let Some(key) = request.idempotency_key()
                && let Some(original) = ws.request_keys.get(key).and_then(|id| ws.request(*id))
            {
                if original.creation_digest() != request.creation_digest() {
                    return Err(GovernanceError::IdempotencyConflict {
                        kind: EntityKind::Request,
                        workspace: request.workspace_id().clone(),
                        key: key.to_owned(),
                        existing: original.id().to_string(),
                    });
                }
                return Ok(Stored::Replayed(original.clone()));
            }
            if ws.request_positions.contains_key(&request.id()) {
                return Err(already_exists(EntityKind::Request, request.workspace_id(), request.id()));
            }
            if ws.record_positions.contains_key(&creation.record().id()) {
                return Err(already_exists(EntityKind::HistoryRecord, request.workspace_id(), creation.record().id()));
            }
            let position = Position::of_request(request);
            if let Some(key) = request.idempotency_key() {
                ws.request_keys.insert(key.to_owned(), request.id());
            }
            ws.request_positions.insert(request.id(), position);
            ws.requests.insert(position, request.clone());
            ws.insert_record(creation.record().clone());
            Ok(Stored::New(request.clone()))
        })
    }

    async fn commit_transition(&self, transition: &Transition) -> Result<()> {
        validate_transition(transition)?;
        let next = transition.request();
        let workspace = next.workspace_id();
        self.write(workspace, |ws| {
            let position = *ws
                .request_positions
                .get(&next.id())
                .ok_or_else(|| not_found(EntityKind::Request, workspace, next.id()))?;
            let stored = &ws.requests[&position];
            check_commit_target(transition, stored.revision(), stored.status(), stored.state_digest())?;
            if let Some(successor) = transition.successor() {
                let current = ws.request(successor.id).map(|s| (s.revision(), s.state_digest()));
                check_successor(transition, current)?;
            }
            if let Some(record) = transition.records().iter().find(|r| ws.record_positions.contains_key(&r.id())) {
                return Err(already_exists(EntityKind::HistoryRecord, workspace, record.id()));
            }
            if let Some(stored) = ws.requests.get_mut(&position) {
                transition.write().apply_to(stored);
            }
            transition.records().iter().cloned().for_each(|record| ws.insert_record(record));
            Ok(())
        })
    }
}

#[async_trait]
impl RequestReader for MemoryStore {
    async fn get_request(&self, workspace: &WorkspaceId, id: RequestId) -> Result<GovernanceRequest> {
        self.read(workspace, |ws| ws.request(id).cloned().ok_or_else(|| not_found(EntityKind::Request, workspace, id)))
    }

    async fn query_requests(
        &self,
        workspace: &WorkspaceId,
        filter: &RequestFilter,
        page: &PageRequest,
    ) -> Result<Page<GovernanceRequest>> {
        filter.validate()?;
        self.read(workspace, |ws| page_of(&ws.requests, page, |r| filter.matches(r)))
    }
}

#[async_trait]
impl HistoryWriter for MemoryStore {
    async fn append_history(&self, records: &[HistoryRecord]) -> Result<Vec<Stored<HistoryRecord>>> {
        let workspace = validate_history_batch(records)?;
        self.write(workspace, |ws| {
            let planned = plan_history_append(records, &ws.related(records))?;
            for stored in &planned {
                if let Stored::New(record) = stored {
                    ws.insert_record(record.clone());
                }
            }
            Ok(planned)
        })
    }
}

#[async_trait]
impl HistoryReader for MemoryStore {
    async fn get_history_record(&self, workspace: &WorkspaceId, id: RecordId) -> Result<HistoryRecord> {
        self.read(workspace, |ws| {
            ws.record(id).cloned().ok_or_else(|| not_found(EntityKind::HistoryRecord, workspace, id))
        })
    }

    async fn history_for_request(&self, workspace: &WorkspaceId, request: RequestId) -> Result<Vec<HistoryRecord>> {
        self.read(workspace, |ws| {
            let mut records: Vec<HistoryRecord> = ws
                .records_by_request
                .get(&request)
                .map(|positions| positions.iter().map(|p| ws.records[p].clone()).collect())
                .unwrap_or_default();
            records.sort_by_key(|r| (r.evidence().request.map(|q| q.revision), Position::of_record(r)));
            Ok(records)
        })
    }

    async fn query_history(
        &self,
        workspace: &WorkspaceId,
        filter: &HistoryFilter,
        page: &PageRequest,
    ) -> Result<Page<HistoryRecord>> {
        filter.validate()?;
        self.read(workspace, |ws| page_of(&ws.records, page, |r| filter.matches(r)))
    }

    async fn count_history(&self, workspace: &WorkspaceId, query: &CountQuery) -> Result<Vec<Count>> {
        query.validate()?;
        self.read(workspace, |ws| {
            let mut counts: HashMap<String, u64> = HashMap::new();
            for record in ws.records.values().filter(|r| query.counts(r)) {
                for key in query.keys(record) {
                    *counts.entry(key).or_default() += 1;
                }
            }
            let counts = counts.into_iter().map(|(key, count)| Count { key, count }).collect();
            Ok(rank_counts(counts, query.limit))
        })
    }
}

#[async_trait]
impl IntegrityStore for MemoryStore {
    async fn unsealed_history(
        &self,
        workspace: &WorkspaceId,
        after: Option<Position>,
        limit: u32,
    ) -> Result<Vec<ReadRecord>> {
        use std::ops::Bound::{Excluded, Unbounded};
        after.as_ref().map(Position::validate).transpose()?;
        let from = after.map_or(Unbounded, Excluded);
        self.read(workspace, |ws| {
            Ok(ws
                .records
                .range((from, Unbounded))
                .map(|(_, record)| record)
                .filter(|record| !ws.sealed.contains(&record.id()))
                .take(limit as usize)
                .map(|record| Ok(record.clone()))
                .collect())
        })
    }

    async fn append_checkpoint(&self, checkpoint: &Checkpoint, entries: &[SealEntry]) -> Result<()> {
        let workspace = checkpoint.workspace_id();
        self.write(workspace, |ws| {
            validate_checkpoint(checkpoint, entries, ws.checkpoints.last())?;
            let mut batch = HashSet::with_capacity(entries.len());
            if let Some(entry) = entries.iter().find(|e| ws.sealed.contains(&e.record_id) || !batch.insert(e.record_id))
            {
                return Err(already_exists(EntityKind::HistoryRecord, workspace, entry.record_id));
            }
            ws.sealed.extend(batch);
            ws.seals.extend_from_slice(entries);
            ws.checkpoints.push(checkpoint.clone());
            Ok(())
        })
    }

    async fn checkpoints(&self, workspace: &WorkspaceId, after: u64, limit: u32) -> Result<Vec<Checkpoint>> {
        self.read(workspace, |ws| {
            Ok(ws.checkpoints.iter().filter(|c| c.seq() > after).take(limit as usize).cloned().collect())
        })
    }

    async fn latest_checkpoint(&self, workspace: &WorkspaceId) -> Result<Option<Checkpoint>> {
        self.read(workspace, |ws| Ok(ws.checkpoints.last().cloned()))
    }

    async fn sealed_records(&self, workspace: &WorkspaceId, from: u64, limit: u32) -> Result<Vec<SealedRecord>> {
        self.read(workspace, |ws| {
            // Entries are stored in index order.
            let start = ws.seals.partition_point(|entry| entry.index < from);
            Ok(ws.seals[start..]
                .iter()
                .take(limit as usize)
                .map(|entry| (entry.clone(), ws.record(entry.record_id).cloned().map(Ok)))
                .collect())
        })
    }
}

/// The crate's README, compiled and run as documentation tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
