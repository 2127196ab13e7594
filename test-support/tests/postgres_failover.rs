//! The sqlx PostgreSQL provider through a failover: a primary with a
//! synchronous hot standby (`.ci/clusters/postgres-failover.sh start` prints
//! `GOVERNANCE_PG_FAILOVER=primary,standby` and the script's path), writers
//! under load, `kill -9` of the primary, promotion of the standby, writers
//! going on against it; then every acknowledged write is there, and every
//! request's history matches its revision.
//!
//! The test uses the pair up: it kills the primary. Start a new pair to run
//! it again. Without the variable it prints SKIPPED, unless
//! `GOVERNANCE_REQUIRE_CLUSTERS` is set, which fails it.

mod clusters;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clusters::{cluster_urls, history_matches};
use governance_abstractions::{
    Action, Actor, Checkpoint, ConnectionSettings, Count, CountQuery, Creation, GovernanceError, GovernanceRequest,
    GovernanceService, GovernanceStore, HistoryFilter, HistoryReader, HistoryRecord, HistoryWriter, IntegrityStore,
    NewRequest, Page, PageRequest, Position, Principal, ReadRecord, RecordId, RequestFilter, RequestId, RequestReader,
    RequestWriter, Result, RetryPolicy, SealEntry, SealedRecord, Stored, TargetRef, Transition, WorkspaceId,
};
use governance_postgres::PostgresStore;
use serde_json::json;

const URLS: &str = "GOVERNANCE_PG_FAILOVER";
const SCRIPT_ENV: &str = "GOVERNANCE_PG_FAILOVER_SCRIPT";
const SCRIPT: &str = ".ci/clusters/postgres-failover.sh";

/// The stores of every node, in order; calls go to the current one, and an
/// `Unavailable` answer (refused, lost, or read-only: 25006) moves on to the
/// next, which the service's retry then reaches. What an application does
/// with a list of URLs when its driver cannot follow the primary itself.
struct Failover {
    nodes: Vec<PostgresStore>,
    current: AtomicUsize,
    switches: AtomicUsize,
}

impl Failover {
    /// The node to call, and the turn it was chosen at.
    fn store(&self) -> (usize, &PostgresStore) {
        let at = self.current.load(Ordering::SeqCst);
        (at, &self.nodes[at % self.nodes.len()])
    }

    /// Moves to the next node when the one chosen at `at` was unavailable,
    /// unless another call already moved on from it: calls that fail
    /// together against one dead node move once, where counting each
    /// failure could bring an even number of them back to that node.
    fn note<T>(&self, at: usize, result: Result<T>) -> Result<T> {
        if matches!(result, Err(GovernanceError::Unavailable { .. }))
            && self.current.compare_exchange(at, at + 1, Ordering::SeqCst, Ordering::SeqCst).is_ok()
        {
            self.switches.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

#[async_trait]
impl RequestWriter for Failover {
    async fn create_request(&self, creation: &Creation) -> Result<Stored<GovernanceRequest>> {
        let (at, node) = self.store();
        self.note(at, node.create_request(creation).await)
    }

    async fn commit_transition(&self, transition: &Transition) -> Result<()> {
        let (at, node) = self.store();
        self.note(at, node.commit_transition(transition).await)
    }
}

#[async_trait]
impl RequestReader for Failover {
    async fn get_request(&self, workspace: &WorkspaceId, id: RequestId) -> Result<GovernanceRequest> {
        let (at, node) = self.store();
        self.note(at, node.get_request(workspace, id).await)
    }

    async fn query_requests(
        &self,
        workspace: &WorkspaceId,
        filter: &RequestFilter,
        page: &PageRequest,
    ) -> Result<Page<GovernanceRequest>> {
        let (at, node) = self.store();
        self.note(at, node.query_requests(workspace, filter, page).await)
    }
}

#[async_trait]
impl HistoryWriter for Failover {
    async fn append_history(&self, records: &[HistoryRecord]) -> Result<Vec<Stored<HistoryRecord>>> {
        let (at, node) = self.store();
        self.note(at, node.append_history(records).await)
    }
}

#[async_trait]
impl HistoryReader for Failover {
    async fn get_history_record(&self, workspace: &WorkspaceId, id: RecordId) -> Result<HistoryRecord> {
        let (at, node) = self.store();
        self.note(at, node.get_history_record(workspace, id).await)
    }

    async fn history_for_request(&self, workspace: &WorkspaceId, request: RequestId) -> Result<Vec<HistoryRecord>> {
        let (at, node) = self.store();
        self.note(at, node.history_for_request(workspace, request).await)
    }

    async fn query_history(
        &self,
        workspace: &WorkspaceId,
        filter: &HistoryFilter,
        page: &PageRequest,
    ) -> Result<Page<HistoryRecord>> {
        let (at, node) = self.store();
        self.note(at, node.query_history(workspace, filter, page).await)
    }

    async fn count_history(&self, workspace: &WorkspaceId, query: &CountQuery) -> Result<Vec<Count>> {
        let (at, node) = self.store();
        self.note(at, node.count_history(workspace, query).await)
    }
}

#[async_trait]
impl IntegrityStore for Failover {
    async fn unsealed_history(
        &self,
        workspace: &WorkspaceId,
        after: Option<Position>,
        limit: u32,
    ) -> Result<Vec<ReadRecord>> {
        let (at, node) = self.store();
        self.note(at, node.unsealed_history(workspace, after, limit).await)
    }

    async fn append_checkpoint(&self, checkpoint: &Checkpoint, entries: &[SealEntry]) -> Result<()> {
        let (at, node) = self.store();
        self.note(at, node.append_checkpoint(checkpoint, entries).await)
    }

    async fn checkpoints(&self, workspace: &WorkspaceId, after: u64, limit: u32) -> Result<Vec<Checkpoint>> {
        let (at, node) = self.store();
        self.note(at, node.checkpoints(workspace, after, limit).await)
    }

    async fn latest_checkpoint(&self, workspace: &WorkspaceId) -> Result<Option<Checkpoint>> {
        let (at, node) = self.store();
        self.note(at, node.latest_checkpoint(workspace).await)
    }

    async fn sealed_records(&self, workspace: &WorkspaceId, from: u64, limit: u32) -> Result<Vec<SealedRecord>> {
        let (at, node) = self.store();
        self.note(at, node.sealed_records(workspace, from, limit).await)
    }
}

/// Short timeouts, as the docs advise for failover: a dead primary costs
/// seconds, not the pool's default 30 s per attempt.
fn settings() -> ConnectionSettings {
    ConnectionSettings::default()
        .with_max_connections(8)
        .with_connect_timeout(Duration::from_secs(2))
        .with_acquire_timeout(Duration::from_secs(3))
        .with_application_name("governance-failover-test")
}

/// Retries that outlast a failover (kill, notice, promote: a few seconds).
fn policy() -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(200)
        .with_delays(Duration::from_millis(10), Duration::from_millis(250))
        .with_deadline(Some(Duration::from_secs(45)))
}

fn script() -> String {
    std::env::var(SCRIPT_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| format!("{}/../{SCRIPT}", env!("CARGO_MANIFEST_DIR")))
}

fn run_script(command: &str) {
    let status = std::process::Command::new(script()).arg(command).status().expect("runs the failover script");
    assert!(status.success(), "{SCRIPT} {command} failed: {status}");
}

/// What one writer had acknowledged: per request, the creation and the
/// revisions of its acknowledged transitions, and how many it tried.
#[derive(Default)]
struct Acked {
    requests: BTreeMap<RequestId, (u64, u64)>, // id → (last acknowledged revision, transitions tried)
    acknowledged: u64,
    errors: Vec<String>,
    after_promotion: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_write_survives_kill_9_of_the_primary_and_promotion() {
    const WRITERS: usize = 8;
    const TRANSITIONS_PER_REQUEST: u64 = 3;
    let Some(urls) = cluster_urls(URLS, 2, SCRIPT) else { return };
    let owner = PostgresStore::connect_with(&urls[0], &settings())
        .await
        .expect("the primary answers: start a new pair, this test kills its primary");
    owner.migrate().await.expect("migrates on the primary");
    let mut nodes = Vec::new();
    for url in &urls {
        nodes.push(PostgresStore::connect_with(url, &settings()).await.expect("every node answers"));
    }
    let failover = Arc::new(Failover { nodes, current: AtomicUsize::new(0), switches: AtomicUsize::new(0) });
    let store: Arc<dyn GovernanceStore> = failover.clone();
    let service = Arc::new(GovernanceService::new(store).with_retry_policy(policy()));
    let ws = WorkspaceId::new(format!("failover-{}", uuid::Uuid::now_v7().simple())).expect("valid id");
    let stop = Arc::new(AtomicBool::new(false));
    let promoted = Arc::new(AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let (service, ws, stop, promoted) = (service.clone(), ws.clone(), stop.clone(), promoted.clone());
        writers.spawn(async move {
            let mut acked = Acked::default();
            let by: Principal = Actor::user(format!("writer-{writer}")).into();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                // The key makes a creation whose answer was lost safe to retry.
                let spec = NewRequest::new(
                    ws.clone(),
                    TargetRef::new("flag", format!("w{writer}")),
                    "enable",
                    Actor::user("dana"),
                )
                .idempotency_key(format!("w{writer}-{n}"));
                let request = match service.create(spec).await {
                    Ok(stored) => stored.into_inner(),
                    Err(error) => {
                        acked.errors.push(format!("create w{writer}-{n}: {error}"));
                        continue;
                    }
                };
                acked.acknowledged += 1;
                acked.after_promotion += u64::from(promoted.load(Ordering::SeqCst));
                let entry = acked.requests.entry(request.id()).or_insert((1, 0));
                for step in 0..TRANSITIONS_PER_REQUEST {
                    entry.1 += 1;
                    let action = Action::Annotate { metadata: json!({"writer": writer, "n": n, "step": step}) };
                    match service.apply(&ws, request.id(), &by, action).await {
                        Ok(done) => {
                            entry.0 = entry.0.max(done.request().revision());
                            acked.acknowledged += 1;
                            acked.after_promotion += u64::from(promoted.load(Ordering::SeqCst));
                        }
                        Err(error) => acked.errors.push(format!("transition of w{writer}-{n}: {error}")),
                    }
                }
            }
            acked
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed_at = Instant::now();
    run_script("kill-primary");
    // Writers meet a dead primary and a standby that refuses writes for a moment.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    run_script("promote");
    promoted.store(true, Ordering::SeqCst);
    let outage = killed_at.elapsed();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Ordering::SeqCst);
    let mut all = Vec::new();
    while let Some(joined) = writers.join_next().await {
        all.push(joined.expect("a writer task"));
    }
    let acknowledged: u64 = all.iter().map(|a| a.acknowledged).sum();
    let after: u64 = all.iter().map(|a| a.after_promotion).sum();
    let errors: Vec<&String> = all.iter().flat_map(|a| &a.errors).collect();
    eprintln!(
        "failover: {acknowledged} writes acknowledged ({after} after the promotion), {} errors reached callers, \
         {} switches between nodes; killed to promoted in {outage:?}",
        errors.len(),
        failover.switches.load(Ordering::Relaxed),
    );
    assert!(errors.is_empty(), "errors reached the writers: {errors:?}");
    assert!(after > 0, "the writers went on against the promoted standby");

    // Everything checked on the promoted standby, the only node left.
    let promoted_node = PostgresStore::connect_with(&urls[1], &settings()).await.expect("the new primary answers");
    let mut requests = 0;
    for acked in &all {
        for (id, (revision, tried)) in &acked.requests {
            requests += 1;
            let stored = promoted_node.get_request(&ws, *id).await.expect("an acknowledged request is there");
            assert!(
                stored.revision() >= *revision,
                "request {id}: acknowledged revision {revision}, stored {}",
                stored.revision()
            );
            // No transition applied twice: at most one revision per try.
            assert!(stored.revision() <= 1 + tried, "request {id}: revision {} after {tried} tries", stored.revision());
            let history = promoted_node.history_for_request(&ws, *id).await.expect("history");
            history_matches(stored.revision(), &history).unwrap_or_else(|e| panic!("request {id}: {e}"));
        }
    }
    // Nothing beyond what the writers asked for, each key once.
    let stored =
        promoted_node.query_requests(&ws, &RequestFilter::default(), &PageRequest::all()).await.expect("query");
    assert!(stored.items.len() >= requests, "{} stored, {requests} acknowledged", stored.items.len());
    let mut keys: Vec<&str> = stored.items.iter().filter_map(|r| r.idempotency_key()).collect();
    let total = keys.len();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), total, "each idempotency key once");
    // Triggers fire on the promoted node too: history stays append-only.
    let refused =
        governance_postgres::sqlx::query("UPDATE governance_history SET reason = 'x' WHERE workspace_id = $1")
            .bind(ws.as_str())
            .execute(promoted_node.pool())
            .await;
    assert!(refused.is_err(), "the append-only trigger fires on the promoted node");
    eprintln!("failover: {requests} acknowledged requests checked on the promoted standby, histories intact");
}
