//! History order and atomicity, idempotency, analytics counts, append-only.

use std::sync::Arc;

use governance_abstractions::{
    Action, Actor, Count, CountBy, CountQuery, Decision, EntityKind, GovernanceError, HistoryFilter, HistoryRecord,
    PageRequest, RecordId, RequestFilter, RequestId, RequestStatus, TimeRange, Timestamp, lifecycle,
};
use serde_json::json;
use tokio::task::JoinSet;

use crate::fixtures::*;
use crate::harness::{CaseContext, CaseFailure, CaseResult};

/// History by request comes in revision order, records of one transition in
/// the order the transition produced them.
pub async fn history_in_revision_order(ctx: CaseContext) -> CaseResult {
    let request = create(&ctx, spec(&ctx)).await?;
    let mut want = vec![(1, governance_abstractions::codes::REQUEST_CREATED.to_owned())];
    for (n, action) in
        [Action::Annotate { metadata: json!(1) }, Action::Approve, Action::Execute { current_version: None }]
            .into_iter()
            .enumerate()
    {
        let t = act(&ctx, request.id(), &requester(), action).await?;
        want.extend(t.records().iter().map(|r| (n as u64 + 2, r.evidence().code.clone())));
    }
    let history = ctx.store.history_for_request(&ctx.workspace, request.id()).await?;
    let seen: Vec<(u64, String)> =
        history.iter().map(|r| (r.evidence().request.map_or(0, |q| q.revision), r.evidence().code.clone())).collect();
    ensure_eq!(seen, want, "history in revision order");
    Ok(())
}

/// Evidence appended about a request (e.g. by a policy engine) joins its
/// history at the revision it names.
pub async fn history_evidence_joins_request(ctx: CaseContext) -> CaseResult {
    let request = create(&ctx, spec(&ctx)).await?;
    act(&ctx, request.id(), &requester(), Action::Annotate { metadata: json!(1) }).await?;
    let mut about = evidence(&ctx, Decision::Approved);
    about.request = Some(governance_abstractions::RequestRef { id: request.id(), revision: 1 });
    let evidence = append(&ctx, about).await?;
    let history = ctx.store.history_for_request(&ctx.workspace, request.id()).await?;
    let order: Vec<RecordId> = history.iter().map(|r| r.id()).collect();
    ensure_eq!(order.len(), 3, "creation, evidence, annotation");
    ensure_eq!(order[1], evidence.id(), "evidence for revision 1 sorts before revision 2");
    let filter = HistoryFilter { request_id: Some(request.id()), ..HistoryFilter::default() };
    let page = ctx.store.query_history(&ctx.workspace, &filter, &PageRequest::all()).await?;
    ensure_eq!(page.items.len(), 3, "query by request id");
    Ok(())
}

/// A refused or conflicting write leaves no history; a committed one leaves
/// exactly its records: no revision without history, no history without revision.
pub async fn history_atomic_with_state(ctx: CaseContext) -> CaseResult {
    let request = create(&ctx, spec(&ctx)).await?;
    let stale = lifecycle::apply(&request, &requester(), &Action::Approve, Timestamp::now())?;
    act(&ctx, request.id(), &requester(), Action::Cancel { reason: "x".into() }).await?;
    let _ = expect_err(ctx.store.commit_transition(&stale).await, "stale commit")?;
    let _ = expect_err(act(&ctx, request.id(), &requester(), Action::Approve).await, "approve canceled")?;
    let history = ctx.store.history_for_request(&ctx.workspace, request.id()).await?;
    let revisions: Vec<u64> = history.iter().filter_map(|r| r.evidence().request.map(|q| q.revision)).collect();
    ensure_eq!(revisions, vec![1, 2], "one record per committed revision and none for failed writes");
    ensure!(
        history.iter().all(|r| !stale.records().iter().any(|s| s.id() == r.id())),
        "no record of the stale transition was stored"
    );
    let all = ctx.store.query_history(&ctx.workspace, &HistoryFilter::default(), &PageRequest::all()).await?;
    ensure_eq!(all.items.len(), 2, "nothing else in the workspace");
    Ok(())
}

/// A transition or creation whose record cannot be written (its id is taken)
/// writes nothing at all: the request keeps its revision.
pub async fn history_atomic_on_record_failure(ctx: CaseContext) -> CaseResult {
    let request = create(&ctx, spec(&ctx)).await?;
    let transition = lifecycle::apply(&request, &requester(), &Action::Approve, Timestamp::now())?;
    let squatter =
        HistoryRecord::with_id(transition.records()[0].id(), evidence(&ctx, Decision::Denied), Timestamp::now())?;
    ctx.store.append_history(&[squatter]).await?;
    let e = expect_err(ctx.store.commit_transition(&transition).await, "commit with a taken record id")?;
    ensure!(matches!(e, GovernanceError::AlreadyExists { .. }), "expected AlreadyExists, got {e:?}");
    let read = ctx.store.get_request(&ctx.workspace, request.id()).await?;
    ensure_eq!((read.status(), read.revision()), (RequestStatus::Created, 1), "the request did not move");
    ensure_eq!(ctx.store.history_for_request(&ctx.workspace, request.id()).await?.len(), 1, "no partial history");

    let creation = lifecycle::create(spec(&ctx), RequestId::new(), Timestamp::now())?;
    let squatter = HistoryRecord::with_id(creation.record().id(), evidence(&ctx, Decision::Denied), Timestamp::now())?;
    ctx.store.append_history(&[squatter]).await?;
    let e = expect_err(ctx.store.create_request(&creation).await, "create with a taken record id")?;
    ensure!(matches!(e, GovernanceError::AlreadyExists { .. }), "expected AlreadyExists, got {e:?}");
    let e = expect_err(ctx.store.get_request(&ctx.workspace, creation.request().id()).await, "half-created request")?;
    ensure!(e.is_not_found(), "the request was not stored without its record: {e:?}");
    Ok(())
}

/// Unknown ids: history of an unknown request is empty; an unknown record is NotFound.
pub async fn history_missing(ctx: CaseContext) -> CaseResult {
    ensure!(ctx.store.history_for_request(&ctx.workspace, RequestId::new()).await?.is_empty(), "empty history");
    let e = expect_err(ctx.store.get_history_record(&ctx.workspace, RecordId::new()).await, "unknown record")?;
    ensure!(
        matches!(e, GovernanceError::NotFound { kind: EntityKind::HistoryRecord, .. }),
        "expected NotFound, got {e:?}"
    );
    Ok(())
}

/// History query filters: category, code, actor, object type, operation,
/// decision, outcome, correlation id, window.
pub async fn history_query_filters(ctx: CaseContext) -> CaseResult {
    let mut denied = evidence(&ctx, Decision::Denied);
    denied.actor = Actor::user("eve").into();
    denied.outcome = Some(governance_abstractions::Outcome::Denied);
    denied.correlation_id = Some("ctx-1".into());
    denied.object_type = "payment".into();
    let denied = append_at(&ctx, denied, instant(10)).await?;
    let mut errored = evidence(&ctx, Decision::Approved);
    errored.outcome = Some(governance_abstractions::Outcome::Error);
    errored.operation = "refund".into();
    let errored = append_at(&ctx, errored, instant(20)).await?;
    let request = create_at(&ctx, spec(&ctx), instant(30)).await?;
    let created = ctx.store.history_for_request(&ctx.workspace, request.id()).await?;
    let lifecycle_id = created.first().map(|r| r.id()).ok_or_else(|| CaseFailure("creation record".into()))?;

    let f = HistoryFilter::default;
    let cases: Vec<(&str, HistoryFilter, Vec<RecordId>)> = vec![
        (
            "category",
            HistoryFilter { category: Some(governance_abstractions::HistoryCategory::Lifecycle), ..f() },
            vec![lifecycle_id],
        ),
        ("code", HistoryFilter { code: Some("decision.denied".into()), ..f() }, vec![denied.id()]),
        ("actor", HistoryFilter { actor: Some(Actor::user("eve")), ..f() }, vec![denied.id()]),
        ("object type", HistoryFilter { object_type: Some("payment".into()), ..f() }, vec![denied.id()]),
        ("operation", HistoryFilter { operation: Some("refund".into()), ..f() }, vec![errored.id()]),
        ("decision", HistoryFilter { decision: Some(Decision::Approved), ..f() }, vec![errored.id()]),
        (
            "outcome",
            HistoryFilter { outcome: Some(governance_abstractions::Outcome::Error), ..f() },
            vec![errored.id()],
        ),
        ("correlation", HistoryFilter { correlation_id: Some("ctx-1".into()), ..f() }, vec![denied.id()]),
        (
            "window",
            HistoryFilter { created: TimeRange::between(instant(15), instant(31)), ..f() },
            vec![errored.id(), lifecycle_id],
        ),
        ("request", HistoryFilter { request_id: Some(request.id()), ..f() }, vec![lifecycle_id]),
        ("nothing", HistoryFilter { actor: Some(Actor::user("nobody")), ..f() }, vec![]),
    ];
    for (what, filter, want) in cases {
        let page = ctx.store.query_history(&ctx.workspace, &filter, &PageRequest::all()).await?;
        let seen: Vec<RecordId> = page.items.iter().map(|r| r.id()).collect();
        ensure_eq!(seen, want, "filter by {what}");
    }
    Ok(())
}

/// Analytics: top deny reasons, per principal, per operation, per decision,
/// over a window, with a limit; lifecycle records are not counted.
pub async fn history_counts(ctx: CaseContext) -> CaseResult {
    let rows: [(&str, &str, Decision, &[&str], i64); 8] = [
        ("eve", "create", Decision::Denied, &["limit", "currency"], 10),
        ("eve", "create", Decision::Denied, &["limit"], 20),
        ("bob", "delete", Decision::Denied, &["role"], 30),
        ("bob", "create", Decision::Approved, &[], 40),
        ("amy", "create", Decision::Approved, &[], 50),
        ("eve", "update", Decision::Denied, &["limit"], 5_000),
        // Keys are byte-exact: "Limit" is not "limit", nor is "limit ".
        ("amy", "create", Decision::Denied, &["Limit"], 60),
        ("amy", "create", Decision::Denied, &["limit "], 70),
    ];
    for (actor, operation, decision, reasons, offset) in rows {
        let mut e = evidence(&ctx, decision);
        e.actor = Actor::user(actor).into();
        e.operation = operation.into();
        e.reason_codes = reasons.iter().map(|r| r.to_string()).collect();
        append_at(&ctx, e, instant(offset)).await?;
    }
    create_at(&ctx, spec(&ctx), instant(15)).await?;
    let window = TimeRange::between(instant(0), instant(1_000));
    let count = |query: CountQuery| {
        let ctx = &ctx;
        async move { ctx.store.count_history(&ctx.workspace, &query).await }
    };
    let c = |key: &str, count: u64| Count { key: key.into(), count };

    let deny_reasons = count(CountQuery::new(CountBy::ReasonCode, window).decision(Decision::Denied)).await?;
    ensure_eq!(
        deny_reasons,
        vec![c("limit", 2), c("Limit", 1), c("currency", 1), c("limit ", 1), c("role", 1)],
        "top deny reasons"
    );
    let top_one = count(CountQuery::new(CountBy::ReasonCode, window).decision(Decision::Denied).limit(1)).await?;
    ensure_eq!(top_one, vec![c("limit", 2)], "limit 1");
    let principals = count(CountQuery::new(CountBy::Principal, window)).await?;
    ensure_eq!(principals, vec![c("user:amy", 3), c("user:bob", 2), c("user:eve", 2)], "per principal");
    let denied_principals = count(CountQuery::new(CountBy::Principal, window).decision(Decision::Denied)).await?;
    ensure_eq!(denied_principals, vec![c("user:amy", 2), c("user:eve", 2), c("user:bob", 1)], "denials per principal");
    let operations = count(CountQuery::new(CountBy::Operation, window)).await?;
    ensure_eq!(operations, vec![c("create", 6), c("delete", 1)], "per operation");
    let decisions = count(CountQuery::new(CountBy::Decision, TimeRange::default())).await?;
    ensure_eq!(decisions, vec![c("denied", 6), c("approved", 2)], "per decision, all time");
    let empty = count(CountQuery::new(CountBy::Decision, TimeRange::between(instant(-100), instant(-50)))).await?;
    ensure!(empty.is_empty(), "an empty window counts nothing: {empty:?}");
    Ok(())
}

/// An hour boundary in 2023, before which and after which the records of
/// [`history_counts_across_roll_ups`] lie.
const COUNT_BASE: i64 = 1_700_002_800_000_000;
const _: () = assert!(COUNT_BASE % (24 * HOUR) == 23 * HOUR, "count_windows assumes 23:00 UTC");
const HOUR: i64 = 3_600_000_000;
const MINUTE: i64 = 60_000_000;

/// `n` decision records over the 60 hours after [`COUNT_BASE`], with a mix
/// of decisions, operations, principals and reason codes (none, one or
/// several; some exactly on an hour boundary), the same on every run.
fn spread_records(ctx: &CaseContext, n: u64, seed: u64) -> Outcome<Vec<HistoryRecord>> {
    let mut state = seed;
    let mut next = |below: u64| {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % below
    };
    let mut records = Vec::new();
    for i in 0..n {
        let decision = if next(3) == 0 { Decision::Approved } else { Decision::Denied };
        let mut e = evidence(ctx, decision);
        e.operation = ["create", "update", "delete", "export"][next(4) as usize].into();
        e.actor = match next(5) {
            0 => Actor::service(format!("svc-{}", next(2))).into(),
            _ => Actor::user(format!("u{}", next(6))).into(),
        };
        e.reason_codes =
            ["limit", "risk", "Limit", "region"].into_iter().filter(|_| next(3) == 0).map(String::from).collect();
        let offset = if i % 7 == 0 { HOUR * next(60) as i64 } else { next(60 * HOUR as u64) as i64 };
        let at =
            Timestamp::from_unix_micros(COUNT_BASE + offset).ok_or_else(|| CaseFailure("a time in range".into()))?;
        records.push(HistoryRecord::new(e, at)?);
    }
    Ok(records)
}

/// Windows over whole hours, partial hours at either edge, inside one
/// hour, exactly one hour, and open on either side; exactly one UTC day,
/// and a day with whole and partial hours on either side (a store may
/// keep counts per day as well as per hour).
fn count_windows() -> Vec<TimeRange> {
    let at = |micros: i64| Timestamp::from_unix_micros(COUNT_BASE + micros);
    // COUNT_BASE is 23:00 UTC.
    let midnight = HOUR;
    vec![
        TimeRange { from: at(midnight), until: at(midnight + 24 * HOUR) },
        TimeRange { from: at(midnight - 2 * HOUR - 5 * MINUTE), until: at(midnight + 27 * HOUR + 1) },
        TimeRange::default(),
        TimeRange { from: at(17 * MINUTE), until: None },
        TimeRange { from: None, until: at(30 * HOUR + 5 * MINUTE) },
        TimeRange { from: at(0), until: at(24 * HOUR) },
        TimeRange { from: at(17 * MINUTE), until: at(50 * HOUR + 1) },
        TimeRange { from: at(3 * HOUR + 10 * MINUTE), until: at(3 * HOUR + 50 * MINUTE) },
        TimeRange { from: at(7 * HOUR), until: at(8 * HOUR) },
        TimeRange { from: at(7 * HOUR - 1), until: at(8 * HOUR + 1) },
    ]
}

/// Every count over [`count_windows`] equals the count of the records
/// read back, as the contract defines it.
async fn counts_match_records(ctx: &CaseContext, when: &str) -> CaseResult {
    let records = ctx.store.query_history(&ctx.workspace, &HistoryFilter::default(), &PageRequest::all()).await?;
    for window in count_windows() {
        for by in [CountBy::ReasonCode, CountBy::Principal, CountBy::Operation, CountBy::Decision] {
            for query in [
                CountQuery::new(by, window),
                CountQuery::new(by, window).decision(Decision::Denied).limit(2),
                CountQuery::new(by, window).decision(Decision::Approved),
            ] {
                let mut expected: std::collections::HashMap<String, u64> = Default::default();
                for record in records.items.iter().filter(|r| query.counts(r)) {
                    for key in query.keys(record) {
                        *expected.entry(key).or_default() += 1;
                    }
                }
                let expected = expected.into_iter().map(|(key, count)| Count { key, count }).collect();
                let expected = governance_abstractions::provider::rank_counts(expected, query.limit);
                let counted = ctx.store.count_history(&ctx.workspace, &query).await?;
                ensure_eq!(counted, expected, "{when}: {query:?}");
            }
        }
    }
    Ok(())
}

/// Rolls the workspace's counts up until `expected` more records are
/// folded in (a transaction open elsewhere on the server can hold a roll-up
/// back), and never more.
async fn roll_up_all(ctx: &CaseContext, expected: u64) -> CaseResult {
    let Some(roll_up) = &ctx.roll_up else { return Ok(()) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut folded = 0;
    loop {
        folded += roll_up.roll_up(&ctx.workspace).await.map_err(|e| CaseFailure(format!("roll-up: {e}")))?;
        ensure!(folded <= expected, "{folded} records folded, {expected} written");
        if folded == expected {
            return Ok(());
        }
        ensure!(std::time::Instant::now() < deadline, "only {folded} of {expected} records folded within a minute");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Counts stay exact across roll-ups of the counts a store derives (where
/// its factory offers [`CountRollUp`](crate::CountRollUp)) and across
/// writes after them: before any roll-up, after one, with records written
/// since, and after the next, every count over windows of whole and partial
/// hours equals the count of the records themselves. A store that derives
/// nothing is checked on its one path.
pub async fn history_counts_across_roll_ups(ctx: CaseContext) -> CaseResult {
    let first = spread_records(&ctx, 120, 7)?;
    ctx.store.append_history(&first).await?;
    counts_match_records(&ctx, "before any roll-up").await?;
    roll_up_all(&ctx, first.len() as u64).await?;
    counts_match_records(&ctx, "after a roll-up").await?;
    let later = spread_records(&ctx, 40, 11)?;
    ctx.store.append_history(&later).await?;
    counts_match_records(&ctx, "with records written after the roll-up").await?;
    roll_up_all(&ctx, later.len() as u64).await?;
    counts_match_records(&ctx, "after the next roll-up").await?;
    roll_up_all(&ctx, 0).await?;
    counts_match_records(&ctx, "after a roll-up with nothing new").await
}

/// Creating with a used key and the same content returns the original.
pub async fn idempotency_request_replay(ctx: CaseContext) -> CaseResult {
    let key = unique("create");
    let spec = spec(&ctx).idempotency_key(key.clone());
    let first = ctx.service.create(spec.clone()).await?;
    ensure!(!first.is_replay(), "the first create is new");
    let original = first.into_inner();
    act(&ctx, original.id(), &requester(), Action::Approve).await?;
    let again = ctx.service.create(spec).await?;
    ensure!(again.is_replay(), "the retry is a replay");
    ensure_eq!(again.value().id(), original.id(), "the replay names the original");
    ensure_eq!(again.value().status(), RequestStatus::Approved, "the replay returns the stored state");
    let all = ctx.store.query_requests(&ctx.workspace, &RequestFilter::default(), &PageRequest::all()).await?;
    ensure_eq!(all.items.len(), 1, "one request");
    ensure_eq!(revision_and_history(&ctx, original.id()).await?, (2, 2), "no second creation record");
    Ok(())
}

/// Creating with a used key and different content is IdempotencyConflict.
pub async fn idempotency_request_conflict(ctx: CaseContext) -> CaseResult {
    let key = unique("create");
    ctx.service.create(spec(&ctx).idempotency_key(key.clone())).await?;
    let e = expect_err(ctx.service.create(spec(&ctx).idempotency_key(key.clone()).intent("other")).await, "reuse")?;
    ensure!(
        matches!(&e, GovernanceError::IdempotencyConflict { kind: EntityKind::Request, key: k, .. } if *k == key),
        "expected IdempotencyConflict, got {e:?}"
    );
    let all = ctx.store.query_requests(&ctx.workspace, &RequestFilter::default(), &PageRequest::all()).await?;
    ensure_eq!(all.items.len(), 1, "still one request");
    Ok(())
}

/// 32 concurrent creates with one key make exactly one request.
pub async fn idempotency_request_concurrent(ctx: CaseContext) -> CaseResult {
    let spec = spec(&ctx).idempotency_key(unique("race"));
    let mut tasks = JoinSet::new();
    for _ in 0..32 {
        let (service, spec) = (ctx.service.clone(), spec.clone());
        tasks.spawn(async move { service.create(spec).await });
    }
    let (mut new, mut ids) = (0, Vec::new());
    while let Some(joined) = tasks.join_next().await {
        let stored = joined.map_err(|e| CaseFailure(format!("task failed: {e}")))??;
        new += usize::from(!stored.is_replay());
        ids.push(stored.into_inner().id());
    }
    ensure_eq!(new, 1, "exactly one create is new");
    ids.dedup();
    ensure_eq!(ids.len(), 1, "every caller got the same request");
    let all = ctx.store.query_requests(&ctx.workspace, &RequestFilter::default(), &PageRequest::all()).await?;
    ensure_eq!(all.items.len(), 1, "one stored request");
    let history = ctx.store.query_history(&ctx.workspace, &HistoryFilter::default(), &PageRequest::all()).await?;
    ensure_eq!(history.items.len(), 1, "one creation record");
    Ok(())
}

/// Appending with a used key and equal evidence returns the original record.
pub async fn idempotency_history_replay(ctx: CaseContext) -> CaseResult {
    let mut e = evidence(&ctx, Decision::Denied);
    e.idempotency_key = Some(unique("ev"));
    let first = append_at(&ctx, e.clone(), instant(0)).await?;
    // A retry builds a new record (new id and time) with the same evidence.
    let retry = HistoryRecord::new(e, instant(9))?;
    let stored = ctx.store.append_history(std::slice::from_ref(&retry)).await?;
    ensure!(stored.len() == 1 && stored[0].is_replay(), "the retry is a replay: {stored:?}");
    ensure_eq!(stored[0].value(), &first, "the replay returns the original");
    let e = expect_err(ctx.store.get_history_record(&ctx.workspace, retry.id()).await, "the retry's own id")?;
    ensure!(e.is_not_found(), "no second row: {e:?}");
    Ok(())
}

/// Appending with a used key and different evidence is IdempotencyConflict,
/// and nothing of that batch is written.
pub async fn idempotency_history_conflict(ctx: CaseContext) -> CaseResult {
    let key = unique("ev");
    let mut e = evidence(&ctx, Decision::Denied);
    e.idempotency_key = Some(key.clone());
    append(&ctx, e.clone()).await?;
    e.decision = Some(Decision::Approved);
    let innocent = HistoryRecord::new(evidence(&ctx, Decision::Approved), Timestamp::now())?;
    let clash = HistoryRecord::new(e, Timestamp::now())?;
    let err = expect_err(ctx.store.append_history(&[innocent.clone(), clash]).await, "conflicting batch")?;
    ensure!(
        matches!(&err, GovernanceError::IdempotencyConflict { kind: EntityKind::HistoryRecord, key: k, .. } if *k == key),
        "expected IdempotencyConflict, got {err:?}"
    );
    let e = expect_err(ctx.store.get_history_record(&ctx.workspace, innocent.id()).await, "batch sibling")?;
    ensure!(e.is_not_found(), "the batch was not partly written: {e:?}");
    Ok(())
}

/// Re-sending a stored record unchanged (same id and content, no key) is a
/// replay; the same id with other content is AlreadyExists.
pub async fn idempotency_history_resend(ctx: CaseContext) -> CaseResult {
    let first = append(&ctx, evidence(&ctx, Decision::Denied)).await?;
    let again = ctx.store.append_history(std::slice::from_ref(&first)).await?;
    ensure!(again[0].is_replay(), "an unchanged re-send is a replay: {again:?}");
    ensure_eq!(again[0].value(), &first, "the replay is the stored record");
    let all = ctx.store.query_history(&ctx.workspace, &HistoryFilter::default(), &PageRequest::all()).await?;
    ensure_eq!(all.items.len(), 1, "one row");
    Ok(())
}

/// Within one batch a repeated key is a replay of the earlier record.
pub async fn idempotency_history_within_batch(ctx: CaseContext) -> CaseResult {
    let mut e = evidence(&ctx, Decision::Denied);
    e.idempotency_key = Some(unique("ev"));
    let a = HistoryRecord::new(e.clone(), instant(0))?;
    let b = HistoryRecord::new(e, instant(1))?;
    let stored = ctx.store.append_history(&[a.clone(), b]).await?;
    ensure!(!stored[0].is_replay() && stored[1].is_replay(), "second is a replay: {stored:?}");
    ensure_eq!(stored[1].value(), &a, "the replay returns the first");
    let all = ctx.store.query_history(&ctx.workspace, &HistoryFilter::default(), &PageRequest::all()).await?;
    ensure_eq!(all.items.len(), 1, "one row");
    Ok(())
}

/// 32 concurrent appends of one key make exactly one record.
pub async fn idempotency_history_concurrent(ctx: CaseContext) -> CaseResult {
    let mut e = evidence(&ctx, Decision::Approved);
    e.idempotency_key = Some(unique("race"));
    let mut tasks = JoinSet::new();
    for _ in 0..32 {
        let (store, e) = (Arc::clone(&ctx.store), e.clone());
        tasks.spawn(async move {
            let record = HistoryRecord::new(e, Timestamp::now())?;
            store.append_history(&[record]).await
        });
    }
    let (mut new, mut ids) = (0, Vec::new());
    while let Some(joined) = tasks.join_next().await {
        let stored = joined.map_err(|e| CaseFailure(format!("task failed: {e}")))??;
        for s in stored {
            new += usize::from(!s.is_replay());
            ids.push(s.into_inner().id());
        }
    }
    ensure_eq!(new, 1, "exactly one append is new");
    ids.sort();
    ids.dedup();
    ensure_eq!(ids.len(), 1, "every caller got the same record");
    let all = ctx.store.query_history(&ctx.workspace, &HistoryFilter::default(), &PageRequest::all()).await?;
    ensure_eq!(all.items.len(), 1, "one stored row");
    Ok(())
}

/// A key may repeat across workspaces: each workspace gets its own row/request.
pub async fn idempotency_keys_per_workspace(ctx: CaseContext) -> CaseResult {
    let other = ctx.other_workspace();
    let key = unique("shared");
    let here = ctx.service.create(spec(&ctx).idempotency_key(key.clone())).await?;
    let there = ctx.service.create(spec_in(&other).idempotency_key(key.clone())).await?;
    ensure!(!here.is_replay() && !there.is_replay(), "both creates are new");
    ensure!(here.value().id() != there.value().id(), "two requests");
    let mut e = evidence(&ctx, Decision::Denied);
    e.idempotency_key = Some(key.clone());
    let mut e_other = e.clone();
    e_other.workspace_id = other.clone();
    append(&ctx, e).await?;
    let stored = ctx.store.append_history(&[HistoryRecord::new(e_other, Timestamp::now())?]).await?;
    ensure!(!stored[0].is_replay(), "the key is new in the other workspace");
    Ok(())
}

/// Re-appending a stored record id with altered content is refused and the
/// stored record stays as it was.
pub async fn append_only_no_rewrite(ctx: CaseContext) -> CaseResult {
    let original = append(&ctx, evidence(&ctx, Decision::Denied)).await?;
    let altered = untrusted(&original, true, |value| value["evidence"]["decision"] = json!("approved"))?;
    let e = expect_err(ctx.store.append_history(&[altered]).await, "rewrite by re-append")?;
    ensure!(matches!(e, GovernanceError::AlreadyExists { .. }), "expected AlreadyExists, got {e:?}");
    ensure_eq!(ctx.store.get_history_record(&ctx.workspace, original.id()).await?, original, "unchanged");
    Ok(())
}

/// Lifecycle records only come with their transition: a standalone append of
/// one is a validation error.
pub async fn append_only_lifecycle_records_need_a_transition(ctx: CaseContext) -> CaseResult {
    let request = create(&ctx, spec(&ctx)).await?;
    let mut forged = evidence(&ctx, Decision::Approved);
    forged.category = governance_abstractions::HistoryCategory::Lifecycle;
    forged.code = governance_abstractions::codes::REQUEST_EXECUTED.into();
    forged.request = Some(governance_abstractions::RequestRef { id: request.id(), revision: 7 });
    let forged = HistoryRecord::new(forged, Timestamp::now())?;
    let e = expect_err(ctx.store.append_history(&[forged]).await, "standalone lifecycle record")?;
    ensure!(matches!(e, GovernanceError::Validation { .. }), "expected a validation error, got {e:?}");
    ensure_eq!(revision_and_history(&ctx, request.id()).await?, (1, 1), "nothing added");
    Ok(())
}

/// The database itself refuses UPDATE, DELETE and TRUNCATE of history rows.
pub async fn append_only_enforced_by_database(ctx: CaseContext) -> CaseResult {
    let raw =
        ctx.raw_history.clone().ok_or_else(|| CaseFailure("the factory declared raw access but gave none".into()))?;
    let original = append(&ctx, evidence(&ctx, Decision::Denied)).await?;
    // Refused by the guard itself, not by some unrelated failure.
    let guarded = |outcome: Result<(), String>, what: &str, marks: &[&str]| match outcome {
        Ok(()) => Err(CaseFailure(format!("{what} of history was accepted"))),
        Err(message) if marks.iter().any(|m| message.to_lowercase().contains(m)) => Ok(()),
        Err(message) => Err(CaseFailure(format!("{what} failed, but not by the append-only guard: {message}"))),
    };
    guarded(raw.try_update(&ctx.workspace, original.id()).await, "UPDATE", &["append-only"])?;
    guarded(raw.try_delete(&ctx.workspace, original.id()).await, "DELETE", &["append-only"])?;
    guarded(raw.try_truncate().await, "TRUNCATE", &["append-only", "foreign key"])?;
    ensure_eq!(ctx.store.get_history_record(&ctx.workspace, original.id()).await?, original, "unchanged");
    Ok(())
}
