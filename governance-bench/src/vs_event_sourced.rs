//! Each provider against the event-sourced shape of the same domain work
//! ([`crate::event_sourced`]), on the same server and pool, interleaved:
//! the rows named `vs-event-sourced/…`.
//!
//! The provider side is what an application calls: `GovernanceService`
//! (`create`, then `apply_to` on the request `create` returned: no re-read),
//! `get_request` and `history_for_request`.

use std::sync::Arc;

use governance_abstractions::{
    Action, Actor, GovernanceService, GovernanceStore, PendingReason, Principal, RequestId, RetryPolicy, WorkspaceId,
};
use serde_json::json;

use crate::baseline::Outcome;
use crate::event_sourced::{Command, EventStore, execute, replay, seed};
use crate::measure::{Done, Plan, Tally, interleaved, op};
use crate::workloads::{Row, failed, row, spec, workspace};

/// Transitions of the long request that the read workloads read.
const TRANSITIONS: u64 = 200;

fn dev() -> Principal {
    Actor::user("dev").into()
}

/// The annotation of transition `n`: the same on both sides.
fn note(n: u64) -> serde_json::Value {
    json!({ "note": "checked by the release pipeline", "run": n })
}

/// The provider's create + one transition: `create`, then `apply_to` on
/// the request `create` returned.
pub(crate) async fn library_flow(service: &GovernanceService, ws: &WorkspaceId, n: u64) -> Outcome<()> {
    let created = service.create(spec(ws, n)).await.map_err(failed)?.into_inner();
    let submit = Action::Submit { reason: PendingReason::Approval };
    service.apply_to(&created, &dev(), submit).await.map(drop).map_err(failed)
}

/// The same as two commands on a new aggregate.
pub(crate) async fn event_sourced_flow(events: &dyn EventStore, ws: &WorkspaceId, n: u64) -> Outcome<()> {
    let id = RequestId::new();
    let (aggregate, by) = (id.to_string(), dev());
    for command in
        [Command::Create { id, spec: Box::new(spec(ws, n)) }, Command::Submit { reason: PendingReason::Approval }]
    {
        if execute(events, &aggregate, &by, command).await? == Done::Conflict {
            return Err(format!("event-sourced: a fresh aggregate {aggregate} conflicted"));
        }
    }
    Ok(())
}

/// The four comparisons, for a provider with an event store on its server.
pub(crate) async fn run(
    name: &str,
    store: &Arc<dyn GovernanceStore>,
    events: &Arc<dyn EventStore>,
    writers: &[usize],
    plan: Plan,
) -> Outcome<Vec<Row>> {
    let mut rows = Vec::new();
    let service = GovernanceService::new(store.clone());
    let named = |workload: &str, concurrency, a: &Tally, b: &Tally| {
        row(name, &format!("vs-event-sourced/{workload}"), concurrency, a, b)
    };

    for &concurrency in writers {
        let (ours, theirs) = (workspace("es-flow"), workspace("es-flow-base"));
        let service = service.clone();
        let provider = op(move |n| {
            let (service, ws) = (service.clone(), ours.clone());
            async move { library_flow(&service, &ws, n).await.map(|()| Done::Ok) }
        });
        let events = Arc::clone(events);
        let baseline = op(move |n| {
            let (events, ws) = (Arc::clone(&events), theirs.clone());
            async move { event_sourced_flow(&*events, &ws, n).await.map(|()| Done::Ok) }
        });
        let (a, b) = interleaved(plan, concurrency, &provider, &baseline).await?;
        rows.push(named("create+transition", concurrency, &a, &b));
    }

    rows.push(hot_request(name, &service, events, plan).await?);

    // One request with 200 transitions on each side, then its current state
    // and its whole history, read by 1, 8 and 32 readers.
    let (ours, theirs) = (workspace("es-long"), workspace("es-long-base"));
    let mut held = service.create(spec(&ours, 0)).await.map_err(failed)?.into_inner();
    for n in 0..TRANSITIONS {
        let annotate = Action::Annotate { metadata: note(n) };
        held = service.apply_to(&held, &dev(), annotate).await.map_err(failed)?.request().clone();
    }
    let (id, base_id) = (held.id(), RequestId::new());
    let base = base_id.to_string();
    let commands = std::iter::once(Command::Create { id: base_id, spec: Box::new(spec(&theirs, 0)) })
        .chain((0..TRANSITIONS).map(|n| Command::Annotate { metadata: note(n) }));
    seed(&**events, &base, &dev(), commands).await?;
    let records = TRANSITIONS as usize + 1;

    for &concurrency in writers {
        let (store, ws) = (store.clone(), ours.clone());
        let provider = op(move |_| {
            let (store, ws) = (store.clone(), ws.clone());
            async move {
                let request = store.get_request(&ws, id).await.map_err(failed)?;
                if request.revision() == records as u64 { Ok(Done::Ok) } else { Err("current state: revision".into()) }
            }
        });
        let (events, aggregate) = (Arc::clone(events), base.clone());
        let baseline = op(move |_| {
            let (events, aggregate) = (Arc::clone(&events), aggregate.clone());
            async move {
                let state = replay(&*events, &aggregate).await?;
                if state.sequence == records as i64 { Ok(Done::Ok) } else { Err("replay: sequence".into()) }
            }
        });
        let (a, b) = interleaved(plan, concurrency, &provider, &baseline).await?;
        let mut line = named("current-state-200-transitions", concurrency, &a, &b);
        line.notes = Some(format!("get_request against a replay of {records} events"));
        rows.push(line);
    }

    for &concurrency in writers {
        let (store, ws) = (store.clone(), ours.clone());
        let provider = op(move |_| {
            let (store, ws) = (store.clone(), ws.clone());
            async move {
                let history = store.history_for_request(&ws, id).await.map_err(failed)?;
                if history.len() == records { Ok(Done::Ok) } else { Err(format!("history: {}", history.len())) }
            }
        });
        let (events, aggregate) = (Arc::clone(events), base.clone());
        let baseline = op(move |_| {
            let (events, aggregate) = (Arc::clone(&events), aggregate.clone());
            async move {
                let rows = events.load(&aggregate).await?;
                for row in &rows {
                    std::hint::black_box(row.decode()?);
                }
                if rows.len() == records { Ok(Done::Ok) } else { Err(format!("events: {}", rows.len())) }
            }
        });
        let (a, b) = interleaved(plan, concurrency, &provider, &baseline).await?;
        let mut line = named("full-history-200-transitions", concurrency, &a, &b);
        line.notes = Some(format!(
            "records/s {:.0}, event-sourced rows/s {:.0} ({records} per read)",
            a.ops_per_s() * records as f64,
            b.ops_per_s() * records as f64
        ));
        rows.push(line);
    }
    Ok(rows)
}

/// Eight writers racing transitions on one request. Each attempt reads the
/// request (the provider: through the service; the baseline: a replay of
/// every event so far) and commits one transition; a lost race counts as a
/// conflict and the worker's next attempt is the retry, at once, on both
/// sides: the service is built without retries of its own, so the two
/// retry loops are the same and the ratio is the storage's.
async fn hot_request(
    name: &str,
    service: &GovernanceService,
    events: &Arc<dyn EventStore>,
    plan: Plan,
) -> Outcome<Row> {
    const WRITERS: usize = 8;
    let (ours, theirs) = (workspace("es-hot"), workspace("es-hot-base"));
    let service = service.clone().with_retry_policy(RetryPolicy::never());
    let id = service.create(spec(&ours, 0)).await.map_err(failed)?.into_inner().id();
    let base_id = RequestId::new();
    let base = base_id.to_string();
    seed(&**events, &base, &dev(), [Command::Create { id: base_id, spec: Box::new(spec(&theirs, 0)) }]).await?;

    let provider = op(move |n| {
        let (service, ws) = (service.clone(), ours.clone());
        async move {
            match service.apply(&ws, id, &dev(), Action::Annotate { metadata: note(n) }).await {
                Ok(_) => Ok(Done::Ok),
                Err(error) if error.is_conflict() => Ok(Done::Conflict),
                Err(error) => Err(failed(error)),
            }
        }
    });
    let (events_for_op, aggregate) = (Arc::clone(events), base.clone());
    let baseline = op(move |n| {
        let (events, aggregate) = (Arc::clone(&events_for_op), aggregate.clone());
        async move { execute(&*events, &aggregate, &dev(), Command::Annotate { metadata: note(n) }).await }
    });
    let (a, b) = interleaved(plan, WRITERS, &provider, &baseline).await?;
    let grown = events.load(&base).await?.len();
    let mut line = row(name, "vs-event-sourced/hot-request", WRITERS, &a, &b);
    line.conflicts_per_s = Some(a.conflicts_per_s());
    line.baseline_conflicts_per_s = Some(b.conflicts_per_s());
    line.notes = Some(format!("the event-sourced request grew to {grown} events (replayed on every attempt)"));
    Ok(line)
}
