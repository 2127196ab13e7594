//! The workloads, each as a provider operation and its hand-written
//! counterpart, measured in the same run on the same store.

use std::sync::Arc;

use audit_history::Recorder;
use governance_abstractions::provider::{StoredRequest, decode_request};
use governance_abstractions::{
    Action, Actor, CountBy, CountQuery, Decision, Evidence, GovernanceError, GovernanceRequest, GovernanceStore,
    HistoryFilter, HistoryRecord, NewRequest, PageRequest, PendingReason, Principal, RequestId, RequestRef,
    RequestStatus, TargetRef, TimeRange, Timestamp, WorkspaceId, lifecycle,
};
use serde_json::json;
use uuid::Uuid;

use crate::baseline::{Baseline, Fresh, Move};
use crate::event_sourced::EventStore;
use crate::footprint::{Footprint, Sizer};
use crate::measure::{Done, Op, Plan, Tally, alternating, interleaved, op};

/// One provider under test and its baseline on the same store.
pub(crate) struct Target {
    pub(crate) name: &'static str,
    pub(crate) store: Arc<dyn GovernanceStore>,
    pub(crate) baseline: Arc<dyn Baseline>,
    /// Writer counts to measure at.
    pub(crate) writers: Vec<usize>,
    /// Whether the query workload applies (SQL providers).
    pub(crate) queries: bool,
    /// The sqlx PostgreSQL provider, which keeps hourly decision counts
    /// (rolled up before the queries are timed) and whose query plans
    /// `--explain` prints.
    pub(crate) postgres: Option<governance_postgres::PostgresStore>,
    /// The SeaORM provider, whose query plans `--explain` prints.
    pub(crate) seaorm: Option<governance_seaorm::SeaOrmStore>,
    /// Whether to print the query plans.
    pub(crate) explain: bool,
    /// The event-sourced baseline on the same server and pool (SQL providers).
    pub(crate) events: Option<Arc<dyn EventStore>>,
    /// Reads the sizes of the tables of both (SQL providers).
    pub(crate) sizer: Option<Sizer>,
}

/// One line of the report.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Row {
    pub(crate) provider: String,
    pub(crate) workload: String,
    pub(crate) concurrency: usize,
    pub(crate) ops_per_s: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) baseline_ops_per_s: f64,
    pub(crate) ratio: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) baseline_p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) conflicts_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) baseline_conflicts_per_s: Option<f64>,
    /// What the figures mean where the columns do not say it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) notes: Option<String>,
}

pub(crate) fn row(target: &str, workload: &str, concurrency: usize, provider: &Tally, baseline: &Tally) -> Row {
    Row {
        provider: target.to_owned(),
        workload: workload.to_owned(),
        concurrency,
        ops_per_s: provider.ops_per_s(),
        p50_us: provider.quantile_us(0.5),
        p99_us: provider.quantile_us(0.99),
        baseline_ops_per_s: baseline.ops_per_s(),
        ratio: provider.ops_per_s() / baseline.ops_per_s().max(1e-9),
        baseline_p50_us: None,
        conflicts_per_s: None,
        baseline_conflicts_per_s: None,
        notes: None,
    }
}

pub(crate) fn failed(error: impl std::fmt::Display) -> String {
    error.to_string()
}

pub(crate) fn workspace(label: &str) -> WorkspaceId {
    WorkspaceId::new(format!("bench-{label}-{}", Uuid::now_v7().simple())).expect("generated ids are valid")
}

const OPERATIONS: [&str; 8] = ["create", "update", "delete", "export", "approve", "share", "archive", "restore"];
const REASONS: [&str; 12] = [
    "mfa_missing",
    "outside_hours",
    "quota_exceeded",
    "role_missing",
    "ip_blocked",
    "stale_session",
    "scope_missing",
    "pii_export",
    "rate_limited",
    "policy_locked",
    "owner_only",
    "region_blocked",
];

/// Decision evidence as a policy engine hands it over: indexable fields,
/// reason codes, a payload with a token the redaction removes, an
/// idempotency key.
fn evidence(workspace: &WorkspaceId, n: u64) -> Evidence {
    let decision = if n.is_multiple_of(3) { Decision::Denied } else { Decision::Approved };
    let mut evidence = Evidence::decision(
        workspace.clone(),
        Actor::user(format!("user-{}", n % 50)),
        "invoice",
        OPERATIONS[(n % 8) as usize],
        decision,
    );
    if decision == Decision::Denied {
        evidence.reason_codes = vec![REASONS[(n % 12) as usize].to_owned(), REASONS[(n % 5) as usize].to_owned()];
    }
    evidence.correlation_id = Some(format!("ctx-{n}"));
    evidence.trace_hash = Some(format!("{n:016x}"));
    evidence.idempotency_key = Some(format!("key-{n}"));
    evidence.policy_version = Some("policy-7".into());
    evidence.latency_us = Some(180 + n % 40);
    evidence.request_json = Some(json!({"invoice": {"id": n, "amount": 1250, "currency": "EUR"}, "api_token": "t0k"}));
    evidence
}

/// The recorder the write workloads record through. Its deadline is far
/// above the default (500 ms): these workloads measure throughput, and on
/// SQLite 32 writers queue for one write lock, so a write held up by a WAL
/// checkpoint could outlast the default and refuse (fail-closed), ending
/// the provider's run.
fn recorder_for(target: &Target) -> Recorder {
    Recorder::new(target.store.clone()).deadline(std::time::Duration::from_secs(30))
}

/// The evidence append workloads (one record per call, then batches of 100).
async fn evidence_append(target: &Target, plan: Plan, rows: &mut Vec<Row>) -> Result<(), String> {
    for &writers in &target.writers {
        let (ours, theirs) = (workspace("one"), workspace("one-base"));
        let recorder = recorder_for(target);
        let provider = op(move |n| {
            let (recorder, ws) = (recorder.clone(), ours.clone());
            async move { recorder.record(evidence(&ws, n)).await.map(|_| Done::Ok).map_err(failed) }
        });
        let base = Arc::clone(&target.baseline);
        let baseline = op(move |n| {
            let (base, ws) = (Arc::clone(&base), theirs.clone());
            async move {
                let e = evidence(&ws, n);
                base.insert_evidence(&[Fresh { id: Uuid::now_v7(), at: Timestamp::now(), evidence: &e }]).await?;
                Ok(Done::Ok)
            }
        });
        let (a, b) = interleaved(plan, writers, &provider, &baseline).await?;
        rows.push(row(target.name, "evidence-append", writers, &a, &b));

        let (ours, theirs) = (workspace("batch"), workspace("batch-base"));
        let (store, recorder) = (target.store.clone(), recorder_for(target));
        let provider = op(move |n| {
            let (store, recorder, ws) = (store.clone(), recorder.clone(), ours.clone());
            async move {
                let batch = (0..100)
                    .map(|i| recorder.prepare(evidence(&ws, n * 100 + i)))
                    .collect::<Result<Vec<HistoryRecord>, _>>()
                    .map_err(failed)?;
                store.append_history(&batch).await.map(|_| Done::Ok).map_err(failed)
            }
        });
        let base = Arc::clone(&target.baseline);
        let baseline = op(move |n| {
            let (base, ws) = (Arc::clone(&base), theirs.clone());
            async move {
                let batch: Vec<Evidence> = (0..100).map(|i| evidence(&ws, n * 100 + i)).collect();
                let at = Timestamp::now();
                let rows: Vec<Fresh<'_>> =
                    batch.iter().map(|e| Fresh { id: Uuid::now_v7(), at, evidence: e }).collect();
                base.insert_evidence(&rows).await?;
                Ok(Done::Ok)
            }
        });
        let (a, b) = interleaved(plan, writers, &provider, &baseline).await?;
        rows.push(row(target.name, "evidence-append-batch-100", writers, &a, &b));
    }
    Ok(())
}

/// `request` with `edit` applied to its fields, for the baseline's rows.
///
/// The hand-written code stands for a repository that computes no digest:
/// the copy keeps `request`'s state digest as it is (so the baseline writes
/// and compares a digest column of the same size as the provider's), and is
/// decoded the way a provider decodes a row that has one, which neither
/// validates nor hashes. The cost is the field copy the baseline made
/// before the fields were private (a clone).
fn reshaped(request: &GovernanceRequest, edit: impl FnOnce(&mut StoredRequest)) -> Result<GovernanceRequest, String> {
    let mut stored = StoredRequest::from(request);
    stored.state_digest = None;
    edit(&mut stored);
    // Set after the edit: without a digest, decoding would compute one.
    stored.state_digest = Some(request.state_digest().to_owned());
    decode_request(stored).map_err(failed)
}

pub(crate) fn spec(workspace: &WorkspaceId, n: u64) -> NewRequest {
    NewRequest::new(
        workspace.clone(),
        TargetRef::new("feature-flag", format!("flag-{n}")),
        "enable",
        Principal::from(Actor::user("dev")),
    )
    .intent("roll out")
    .approval(Actor::user("lead"), 1)
}

/// A request created and moved once (submitted for approval): provider
/// through the lifecycle and the store; baseline as two hand-written
/// transactions with the same rows.
async fn create_and_transition(target: &Target, plan: Plan, rows: &mut Vec<Row>) -> Result<(), String> {
    let submit = Action::Submit { reason: PendingReason::Approval };
    let template = lifecycle::create(spec(&workspace("t"), 0), RequestId::new(), Timestamp::now()).map_err(failed)?;
    let moved =
        lifecycle::apply(template.request(), &Actor::user("dev").into(), &submit, Timestamp::now()).map_err(failed)?;
    let created_evidence = template.record().evidence().clone();
    let moved_evidence = moved.records()[0].evidence().clone();
    let moved_state = Arc::new(moved.request().clone());
    for &writers in &target.writers {
        let (ours, theirs) = (workspace("flow"), workspace("flow-base"));
        let (store, submit) = (target.store.clone(), submit.clone());
        let provider = op(move |n| {
            let (store, ws, submit) = (store.clone(), ours.clone(), submit.clone());
            async move {
                let creation = lifecycle::create(spec(&ws, n), RequestId::new(), Timestamp::now()).map_err(failed)?;
                let request = store.create_request(&creation).await.map_err(failed)?.into_inner();
                let by = Actor::user("dev").into();
                let next = lifecycle::apply(&request, &by, &submit, Timestamp::now()).map_err(failed)?;
                store.commit_transition(&next).await.map(|()| Done::Ok).map_err(failed)
            }
        });
        let base = Arc::clone(&target.baseline);
        // Shared, not cloned per operation: `reshaped` makes the one copy.
        let (template, created_evidence, moved_evidence, moved_state) = (
            Arc::new(template.request().clone()),
            created_evidence.clone(),
            moved_evidence.clone(),
            Arc::clone(&moved_state),
        );
        let baseline = op(move |n| {
            let (base, ws) = (Arc::clone(&base), theirs.clone());
            let (template, mut created, mut moved, moved_state) =
                (Arc::clone(&template), created_evidence.clone(), moved_evidence.clone(), Arc::clone(&moved_state));
            async move {
                let (now, id) = (Timestamp::now(), RequestId::new());
                let request = reshaped(&template, |r| {
                    (r.id, r.spec.workspace_id) = (id, ws.clone());
                    r.spec.target.state_id = format!("flag-{n}");
                    (r.created_at, r.updated_at) = (now, now);
                })?;
                created.workspace_id = ws.clone();
                created.request = Some(RequestRef { id, revision: 1 });
                moved.workspace_id = ws.clone();
                moved.request = Some(RequestRef { id, revision: 2 });
                base.create(&request, Fresh { id: Uuid::now_v7(), at: now, evidence: &created }).await?;
                let next =
                    reshaped(&moved_state, |r| (r.id, r.spec.workspace_id, r.updated_at) = (id, ws.clone(), now))?;
                let change = Move {
                    workspace: &ws,
                    id,
                    from_revision: 1,
                    from_status: "created",
                    from_digest: Some(request.state_digest()),
                    next: &next,
                };
                let moved_now =
                    base.transition(change, Fresh { id: Uuid::now_v7(), at: now, evidence: &moved }).await?;
                if moved_now { Ok(Done::Ok) } else { Err("baseline transition missed".into()) }
            }
        });
        let (a, b) = interleaved(plan, writers, &provider, &baseline).await?;
        rows.push(row(target.name, "create+transition", writers, &a, &b));
    }
    Ok(())
}

/// Eight writers racing compare-and-set transitions on one request.
async fn hot_request(target: &Target, plan: Plan, rows: &mut Vec<Row>) -> Result<(), String> {
    let writers = 8.min(target.writers.iter().copied().max().unwrap_or(1).max(2));
    let (ours, theirs) = (workspace("hot"), workspace("hot-base"));
    let creation = lifecycle::create(spec(&ours, 0), RequestId::new(), Timestamp::now()).map_err(failed)?;
    target.store.create_request(&creation).await.map_err(failed)?;
    // The baseline's own request, made by the lifecycle (not timed).
    let base_creation = lifecycle::create(spec(&theirs, 0), RequestId::new(), Timestamp::now()).map_err(failed)?;
    let base_request = Arc::new(base_creation.request().clone());
    let created = base_creation.record().evidence().clone();
    target
        .baseline
        .create(&base_request, Fresh { id: Uuid::now_v7(), at: Timestamp::now(), evidence: &created })
        .await?;

    let (store, id) = (target.store.clone(), creation.request().id());
    let provider = op(move |n| {
        let (store, ws) = (store.clone(), ours.clone());
        async move {
            let current = store.get_request(&ws, id).await.map_err(failed)?;
            let by = Actor::user("writer").into();
            let next =
                lifecycle::apply(&current, &by, &Action::Annotate { metadata: json!({ "n": n }) }, Timestamp::now())
                    .map_err(failed)?;
            match store.commit_transition(&next).await {
                Ok(()) => Ok(Done::Ok),
                Err(GovernanceError::Conflict { .. }) => Ok(Done::Conflict),
                Err(error) => Err(failed(error)),
            }
        }
    });
    let (base, base_id) = (Arc::clone(&target.baseline), base_request.id());
    let baseline = op(move |n| {
        let (base, ws, mut record, base_request) =
            (Arc::clone(&base), theirs.clone(), created.clone(), Arc::clone(&base_request));
        async move {
            let (revision, digest) = base.current(&ws, base_id).await?;
            record.code = governance_abstractions::codes::REQUEST_ANNOTATED.into();
            record.request = Some(RequestRef { id: base_id, revision: revision + 1 });
            record.response_json = Some(json!({ "n": n }));
            let now = Timestamp::now();
            let next = reshaped(&base_request, |r| {
                (r.spec.metadata, r.revision, r.updated_at) = (json!({ "n": n }), revision + 1, now);
            })?;
            let change = Move {
                workspace: &ws,
                id: base_id,
                from_revision: revision,
                from_status: "created",
                from_digest: digest.as_deref(),
                next: &next,
            };
            let done = base.transition(change, Fresh { id: Uuid::now_v7(), at: now, evidence: &record }).await?;
            Ok(if done { Done::Ok } else { Done::Conflict })
        }
    });
    let (a, b) = interleaved(plan, writers, &provider, &baseline).await?;
    let mut line = row(target.name, "hot-request-cas", writers, &a, &b);
    line.conflicts_per_s = Some(a.conflicts_per_s());
    line.baseline_conflicts_per_s = Some(b.conflicts_per_s());
    rows.push(line);
    Ok(())
}

/// Writers spread over 64 workspaces against all in one (memory provider):
/// `ratio` is many ÷ one.
async fn workspace_scaling(target: &Target, plan: Plan, rows: &mut Vec<Row>) -> Result<(), String> {
    let writers = target.writers.iter().copied().max().unwrap_or(1);
    let spread: Arc<Vec<WorkspaceId>> = Arc::new((0..64).map(|_| workspace("spread")).collect());
    let one = workspace("single");
    let recorder = recorder_for(target);
    let many = {
        let recorder = recorder.clone();
        op(move |n| {
            let (recorder, ws) = (recorder.clone(), spread[(n % 64) as usize].clone());
            async move { recorder.record(evidence(&ws, n)).await.map(|_| Done::Ok).map_err(failed) }
        })
    };
    let single = op(move |n| {
        let (recorder, ws) = (recorder.clone(), one.clone());
        async move { recorder.record(evidence(&ws, n)).await.map(|_| Done::Ok).map_err(failed) }
    });
    let (a, b) = interleaved(plan, writers, &many, &single).await?;
    rows.push(row(target.name, "evidence-append-64-workspaces-vs-1", writers, &a, &b));
    Ok(())
}

/// Seeds `records` decision records (a third denied, over 30 days) and a
/// tenth as many requests (a tenth of them pending) into one workspace, plus
/// one request with a long history. Returns the workspace and that request.
async fn seed(target: &Target, records: u64) -> Result<(WorkspaceId, RequestId), String> {
    let ws = workspace("queries");
    let now = Timestamp::now();
    let day = 86_400_000_000i64;
    let chunk = 400u64;
    for start in (0..records).step_by(chunk as usize) {
        let batch: Vec<Evidence> = (start..(start + chunk).min(records)).map(|n| evidence(&ws, n)).collect();
        let rows: Vec<Fresh<'_>> = batch
            .iter()
            .zip(start..)
            .map(|(e, n)| {
                // Evenly over the last 30 days whatever the count, oldest
                // first, as an append-only history is written: ids (UUIDv7)
                // and times then rise together, so a window's records lie
                // together in id order, as they do in use. (Times scattered
                // against ids sent MariaDB's primary-key lookups all over a
                // 1M-record table, which no workload does.)
                let age = (records - n) as i64 * (30 * day / records as i64);
                let at = now.add_micros(-age).unwrap_or(now);
                Fresh { id: Uuid::now_v7(), at, evidence: e }
            })
            .collect();
        target.baseline.insert_evidence(&rows).await?;
    }
    // Made by the lifecycle (not timed), so every row carries its own state
    // digest and the provider's reads of them decode as they would in use.
    let by: Principal = Actor::user("dev").into();
    let submit = Action::Submit { reason: PendingReason::Approval };
    let requests: Vec<GovernanceRequest> = (0..(records / 10).max(600))
        .map(|n| {
            let created = lifecycle::create(spec(&ws, n), RequestId::new(), now).map_err(failed)?;
            if !n.is_multiple_of(10) {
                return Ok(created.request().clone());
            }
            let pending = lifecycle::apply(created.request(), &by, &submit, now).map_err(failed)?;
            Ok(pending.request().clone())
        })
        .collect::<Result<_, String>>()?;
    target.baseline.seed_requests(&requests).await?;
    // One request with 30 records.
    let creation = lifecycle::create(spec(&ws, u64::MAX), RequestId::new(), now).map_err(failed)?;
    target.store.create_request(&creation).await.map_err(failed)?;
    let id = creation.request().id();
    let mut about: Vec<Evidence> = (0..29).map(|n| evidence(&ws, records + n)).collect();
    for (n, e) in about.iter_mut().enumerate() {
        e.request = Some(RequestRef { id, revision: 1 + n as u64 / 3 });
        e.idempotency_key = None;
    }
    let rows: Vec<Fresh<'_>> = about.iter().map(|e| Fresh { id: Uuid::now_v7(), at: now, evidence: e }).collect();
    target.baseline.insert_evidence(&rows).await?;
    target.baseline.analyze().await?;
    Ok((ws, id))
}

/// The four queries over seeded data: p50/p99 of single calls, alternating
/// provider and baseline call by call.
async fn queries(target: &Target, records: u64, samples: usize, rows: &mut Vec<Row>) -> Result<(), String> {
    let (ws, request) = seed(target, records).await?;
    // The hourly counts of PostgreSQL (either provider) are rolled up as a
    // deployment would (periodically); the records written since stay a
    // live tail that every count reads, here one in a thousand of the
    // history, written now.
    let started = std::time::Instant::now();
    let folded = match (&target.postgres, &target.seaorm) {
        (Some(store), _) => Some(store.roll_up_counts(&ws).await.map_err(failed)?),
        (None, Some(store))
            if governance_seaorm::sea_orm::ConnectionTrait::get_database_backend(store.connection())
                == governance_seaorm::sea_orm::DbBackend::Postgres =>
        {
            Some(store.roll_up_counts(&ws).await.map_err(failed)?)
        }
        _ => None,
    };
    let counts_note =
        folded.map(|folded| format!("{folded} records rolled up in {} ms", started.elapsed().as_millis()));
    let tail = (records / 1000).max(20);
    let now = Timestamp::now();
    let recent: Vec<Evidence> = (records + 1000..records + 1000 + tail).map(|n| evidence(&ws, n)).collect();
    let fresh: Vec<Fresh<'_>> = recent.iter().map(|e| Fresh { id: Uuid::now_v7(), at: now, evidence: e }).collect();
    target.baseline.insert_evidence(&fresh).await?;
    let counts_note = counts_note.map(|note| format!("{note}, then {tail} records written (a live tail)"));
    let week = Timestamp::now().add_micros(-7 * 86_400_000_000).ok_or("time out of range")?;
    let store = target.store.clone();
    let base = Arc::clone(&target.baseline);
    type Pair = (&'static str, Op, Op);
    let pairs: Vec<Pair> = vec![
        (
            "query-pending-first-50",
            {
                let (store, ws) = (store.clone(), ws.clone());
                op(move |_| {
                    let (store, ws) = (store.clone(), ws.clone());
                    async move {
                        let page = store.pending_requests(&ws, None, &PageRequest::first(50)).await.map_err(failed)?;
                        if page.items.len() == 50 {
                            Ok(Done::Ok)
                        } else {
                            Err(format!("pending: {}", page.items.len()))
                        }
                    }
                })
            },
            {
                let (base, ws) = (Arc::clone(&base), ws.clone());
                op(move |_| {
                    let (base, ws) = (Arc::clone(&base), ws.clone());
                    async move { base.pending_page(&ws, 51).await.map(|_| Done::Ok) }
                })
            },
        ),
        (
            "query-request-history",
            {
                let (store, ws) = (store.clone(), ws.clone());
                op(move |_| {
                    let (store, ws) = (store.clone(), ws.clone());
                    async move {
                        let history = store.history_for_request(&ws, request).await.map_err(failed)?;
                        if history.len() == 30 { Ok(Done::Ok) } else { Err(format!("history: {}", history.len())) }
                    }
                })
            },
            {
                let (base, ws) = (Arc::clone(&base), ws.clone());
                op(move |_| {
                    let (base, ws) = (Arc::clone(&base), ws.clone());
                    async move { base.request_history(&ws, request).await.map(|_| Done::Ok) }
                })
            },
        ),
        (
            "query-denied-page-50",
            {
                let (store, ws) = (store.clone(), ws.clone());
                op(move |n| {
                    let (store, ws) = (store.clone(), ws.clone());
                    async move {
                        let filter = HistoryFilter {
                            decision: Some(Decision::Denied),
                            operation: Some(OPERATIONS[(n % 8) as usize].into()),
                            ..HistoryFilter::default()
                        };
                        store
                            .query_history(&ws, &filter, &PageRequest::first(50))
                            .await
                            .map(|_| Done::Ok)
                            .map_err(failed)
                    }
                })
            },
            {
                let (base, ws) = (Arc::clone(&base), ws.clone());
                op(move |n| {
                    let (base, ws) = (Arc::clone(&base), ws.clone());
                    async move { base.denied_page(&ws, OPERATIONS[(n % 8) as usize], 51).await.map(|_| Done::Ok) }
                })
            },
        ),
        (
            "query-top-deny-reasons-7d",
            {
                let (store, ws) = (store.clone(), ws.clone());
                op(move |_| {
                    let (store, ws) = (store.clone(), ws.clone());
                    async move {
                        let query = CountQuery::new(CountBy::ReasonCode, TimeRange { from: Some(week), until: None })
                            .decision(Decision::Denied)
                            .limit(10);
                        let counts = store.count_history(&ws, &query).await.map_err(failed)?;
                        if counts.is_empty() { Err("no deny reasons".into()) } else { Ok(Done::Ok) }
                    }
                })
            },
            {
                let (base, ws) = (Arc::clone(&base), ws.clone());
                op(move |_| {
                    let (base, ws) = (Arc::clone(&base), ws.clone());
                    async move { base.top_deny_reasons(&ws, week, 10).await.map(|_| Done::Ok) }
                })
            },
        ),
    ];
    if target.explain {
        explain(target, &ws, request, week).await?;
    }
    for (name, provider, baseline) in pairs {
        let (a, b) = alternating(samples, &provider, &baseline).await?;
        let mut line = row(target.name, name, 1, &a, &b);
        line.baseline_p50_us = Some(b.quantile_us(0.5));
        if name == "query-top-deny-reasons-7d" {
            line.notes = counts_note.clone();
        }
        rows.push(line);
    }
    Ok(())
}

/// Prints the plans the database chooses for the provider's four queries
/// (SQL providers; nothing for the memory provider).
async fn explain(target: &Target, ws: &WorkspaceId, request: RequestId, week: Timestamp) -> Result<(), String> {
    use governance_abstractions::RequestFilter;
    let pending = RequestFilter { statuses: vec![RequestStatus::Pending], ..RequestFilter::default() };
    let denied = HistoryFilter {
        decision: Some(Decision::Denied),
        operation: Some(OPERATIONS[1].into()),
        ..HistoryFilter::default()
    };
    let reasons = CountQuery::new(CountBy::ReasonCode, TimeRange { from: Some(week), until: None })
        .decision(Decision::Denied)
        .limit(10);
    let first = PageRequest::first(50);
    let plans = if let Some(store) = &target.postgres {
        [
            ("query-pending-first-50", store.explain_query_requests(ws, &pending, &first).await),
            ("query-request-history", store.explain_history_for_request(ws, request).await),
            ("query-denied-page-50", store.explain_query_history(ws, &denied, &first).await),
            ("query-top-deny-reasons-7d", store.explain_count_history(ws, &reasons).await),
        ]
    } else if let Some(store) = &target.seaorm {
        [
            ("query-pending-first-50", store.explain_query_requests(ws, &pending, &first).await),
            ("query-request-history", store.explain_history_for_request(ws, request).await),
            ("query-denied-page-50", store.explain_query_history(ws, &denied, &first).await),
            ("query-top-deny-reasons-7d", store.explain_count_history(ws, &reasons).await),
        ]
    } else {
        return Ok(());
    };
    for (name, plan) in plans {
        eprintln!("plan of {name} ({}):", target.name);
        for line in plan.map_err(failed)? {
            eprintln!("    {line}");
        }
    }
    Ok(())
}

/// Sizes of one run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizes {
    pub(crate) plan: Plan,
    pub(crate) query_records: u64,
    pub(crate) query_samples: usize,
    /// Records timed for the `client-cpu-per-record` row.
    pub(crate) cpu_records: u64,
    /// Creates + one transition per side that bytes per operation are
    /// measured over.
    pub(crate) footprint_ops: u64,
}

/// Which groups of workloads run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Groups {
    /// Every provider against the hand-written SQL on its own tables.
    pub(crate) sql: bool,
    /// `vs-event-sourced/…`: against the event-sourced shape.
    pub(crate) event_sourced: bool,
    /// Bytes of table and index per create + transition, both shapes.
    pub(crate) bytes: bool,
}

/// What one provider's run measured.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) rows: Vec<Row>,
    pub(crate) event_sourced: Vec<Row>,
    pub(crate) bytes: Vec<Footprint>,
}

/// Every workload of `groups` that applies to `target`.
pub(crate) async fn run(target: &Target, sizes: Sizes, groups: Groups) -> Result<Report, String> {
    let mut report = Report::default();
    if groups.bytes
        && let (Some(sizer), Some(events)) = (&target.sizer, &target.events)
    {
        // First, while the tables hold nothing else: what grows is this.
        let service = governance_abstractions::GovernanceService::new(target.store.clone());
        report.bytes = crate::footprint::measure(target.name, sizer, &service, &**events, sizes.footprint_ops).await?;
    }
    if groups.sql {
        let rows = &mut report.rows;
        // First, in a process whose heap the other workloads have not yet
        // filled (the memory store keeps everything they write): measured
        // after them, the same path took twice as long from cache misses.
        let cpu = if target.queries { None } else { Some(client_cpu(target.name, sizes.cpu_records).await?) };
        evidence_append(target, sizes.plan, rows).await?;
        create_and_transition(target, sizes.plan, rows).await?;
        hot_request(target, sizes.plan, rows).await?;
        if target.queries {
            queries(target, sizes.query_records, sizes.query_samples, rows).await?;
        } else {
            workspace_scaling(target, sizes.plan, rows).await?;
        }
        rows.extend(cpu);
    }
    if groups.event_sourced
        && let Some(events) = &target.events
    {
        report.event_sourced =
            crate::vs_event_sourced::run(target.name, &target.store, events, &target.writers, sizes.plan).await?;
    }
    Ok(report)
}

/// `client-cpu-per-record`: the client CPU of one realistic record (one
/// float in its payload) through `Recorder::record` into the memory store,
/// in µs (`p50_us` holds the mean), against the floor measured in the same
/// run (`to_vec` of the record plus its canonical SHA-256): throughputs are
/// per thread, and `ratio` is floor ÷ record, so 1.0 is the floor.
async fn client_cpu(provider: &str, records: u64) -> Result<Row, String> {
    // Its own current-thread runtime, on a thread of its own: one thread's CPU.
    let measured =
        tokio::task::spawn_blocking(move || crate::cpu::measure(records)).await.map_err(|e| e.to_string())??;
    let (us, floor) = (measured.record_us(), measured.floor_us());
    Ok(Row {
        provider: provider.to_owned(),
        workload: "client-cpu-per-record".to_owned(),
        concurrency: 1,
        ops_per_s: 1e6 / us.max(1e-9),
        p50_us: us,
        p99_us: us,
        baseline_ops_per_s: 1e6 / floor.max(1e-9),
        ratio: floor / us.max(1e-9),
        baseline_p50_us: Some(floor),
        conflicts_per_s: None,
        baseline_conflicts_per_s: None,
        notes: Some(format!(
            "{:.1}x floor ({us:.1} µs against {floor:.1} µs, {records} records)",
            us / floor.max(1e-9)
        )),
    })
}
