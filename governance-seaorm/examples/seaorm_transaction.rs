//! Evaluate → persist evidence → mutate only if approved, in ONE SeaORM
//! transaction.
//!
//! An application creates invoices through its own SeaORM entity,
//! `example_invoices`. Every attempt is governed: inside one
//! `DatabaseTransaction` (from `SeaOrmStore::begin`) it
//!
//! 1. records a governance request for the change (`create_request_in`),
//! 2. evaluates its policy (here a plain function: an amount limit) and
//!    appends the decision as evidence, approved or denied
//!    (`append_history_in`),
//! 3. approved: moves the request to approved, inserts the invoice and marks
//!    the request executed; denied: rejects the request and writes nothing
//!    else (`commit_transition_in`),
//! 4. commits.
//!
//! Three attempts show the three outcomes: an approved invoice (request,
//! evidence and invoice all committed), a denied one (the evidence and the
//! rejected request are kept, no invoice), and one whose insert fails because
//! its invoice number is taken (rolled back: no request, no evidence, no
//! invoice). Each `*_in` call runs in a savepoint of the caller's
//! transaction, so a refused governance write would leave it usable. The
//! example checks that each attempt ended as described and exits with an
//! error otherwise.
//!
//! By default it runs on a SQLite file in a temporary directory
//! (`SeaOrmStore::open_sqlite`, which migrates). Given a URL as its first
//! argument (`postgres://…`, `mysql://…` or `sqlite:…?mode=rwc`) it connects
//! to that existing database and migrates it (so connect as the tables'
//! owner), creates `example_invoices` if missing and works in a fresh
//! workspace, so it can run any number of times. On PostgreSQL it may
//! share the database with `governance-postgres`: both use one schema.
//!
//! ```text
//! cargo run -p governance-seaorm --example seaorm_transaction
//! cargo run -p governance-seaorm --example seaorm_transaction -- postgres://postgres@127.0.0.1:5432/seaorm_example
//! cargo run -p governance-seaorm --example seaorm_transaction -- mysql://root@127.0.0.1:3306/seaorm_example
//! ```

use std::error::Error;
use std::time::Instant;

use governance_abstractions::{
    Action, Actor, Decision, Evidence, GovernanceError, HistoryFilter, HistoryReader, HistoryRecord, NewRequest,
    Outcome, PageRequest, Principal, RecordId, RequestId, RequestReader, RequestRef, RequestStatus, TargetRef,
    Timestamp, WorkspaceId, lifecycle,
};
use governance_seaorm::SeaOrmStore;
use governance_seaorm::sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, Schema,
};
use serde_json::json;

/// The application's own table, the governed state, as a SeaORM entity.
mod invoice {
    use governance_seaorm::sea_orm::entity::prelude::*;

    /// One invoice.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "example_invoices")]
    pub(crate) struct Model {
        /// The tenant (leads the key, like the governance tables).
        #[sea_orm(primary_key, auto_increment = false)]
        pub(crate) workspace_id: String,
        /// The invoice number, unique per tenant.
        #[sea_orm(primary_key, auto_increment = false)]
        pub(crate) number: String,
        /// Who is billed.
        pub(crate) customer: String,
        /// How much.
        pub(crate) amount_cents: i64,
        /// The governance request that allowed it.
        pub(crate) request_id: Uuid,
        /// The decision evidence that allowed it.
        pub(crate) evidence_id: Uuid,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The policy's limit: larger invoices are denied.
const LIMIT_CENTS: i64 = 1_000_000;

/// What a clerk asks for.
struct Draft {
    /// The client's key for this attempt: retrying it is safe.
    key: &'static str,
    number: &'static str,
    customer: &'static str,
    amount_cents: i64,
}

/// How a governed attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// Committed: evidence, request (executed) and invoice.
    Approved,
    /// Committed: evidence and request (rejected), no invoice.
    Denied,
    /// Rolled back: nothing stored at all.
    RolledBack,
}

/// What the policy said.
struct Verdict {
    decision: Decision,
    reason: String,
    reason_codes: Vec<&'static str>,
}

/// The policy evaluation. In a real application this is a call to a policy
/// engine; what matters here is that its answer becomes evidence.
fn evaluate(draft: &Draft) -> Verdict {
    if draft.amount_cents > LIMIT_CENTS {
        Verdict {
            decision: Decision::Denied,
            reason: format!("{} cents is over the limit of {LIMIT_CENTS}", draft.amount_cents),
            reason_codes: vec!["amount.over_limit"],
        }
    } else {
        Verdict { decision: Decision::Approved, reason: "within the limit".into(), reason_codes: vec!["amount.ok"] }
    }
}

/// The ids of one attempt's request and evidence, chosen before the
/// transaction so that they can be looked up whatever happens to it.
#[derive(Clone, Copy)]
struct Ids {
    request: RequestId,
    evidence: RecordId,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // Kept alive until the end: the SQLite file lives in it.
    let dir = tempfile::tempdir()?;
    let store = match std::env::args().nth(1) {
        Some(url) => {
            let store = SeaOrmStore::connect(&url).await?;
            store.migrate().await?;
            store
        }
        None => SeaOrmStore::open_sqlite(dir.path().join("example.db")).await?,
    };
    let db = store.connection();
    let backend = db.get_database_backend();
    let mut create = Schema::new(backend).create_table_from_entity(invoice::Entity);
    db.execute(create.if_not_exists()).await?;
    let ws = WorkspaceId::new(format!("example-{}", uuid::Uuid::now_v7().simple()))?;
    println!("migrated ({backend:?}); working in workspace {ws}\n");

    let clerk = Principal::from(Actor::user("clerk-17"));
    // Each attempt, and how it must end: the example checks, and fails otherwise.
    let attempts = [
        ("req-001", "INV-1001", "Globex", 48_000, Ending::Approved),
        ("req-002", "INV-1002", "Initech", 2_500_000, Ending::Denied),
        // The number is taken by the first invoice: the insert fails.
        ("req-003", "INV-1001", "Umbrella", 9_900, Ending::RolledBack),
    ];
    let mut committed = Vec::new();
    for (key, number, customer, amount_cents, expect) in attempts {
        let draft = &Draft { key, number, customer, amount_cents };
        println!("{key} {number} for {customer}, {amount_cents} cents:");
        let ids = Ids { request: RequestId::new(), evidence: RecordId::new() };
        let ending = match governed_create(&store, &ws, &clerk, draft, ids).await {
            Ok(decision) => {
                println!("  committed ({decision})");
                committed.push((ids, expect));
                if decision == Decision::Approved { Ending::Approved } else { Ending::Denied }
            }
            Err(error) => {
                println!("  failed, rolled back: {}", chain(error.as_ref()));
                // Nothing of the attempt is stored: no request, no evidence.
                let request_stored = found(store.get_request(&ws, ids.request).await)?;
                let evidence_stored = found(store.get_history_record(&ws, ids.evidence).await)?;
                println!("  afterwards: request stored = {request_stored}, evidence stored = {evidence_stored}");
                if request_stored || evidence_stored {
                    return Err(format!("{key}: the rolled-back attempt left rows behind").into());
                }
                Ending::RolledBack
            }
        };
        if ending != expect {
            return Err(format!("{key}: expected {expect:?}, ended {ending:?}").into());
        }
    }

    println!("\nwhat is stored:");
    for (ids, ending) in &committed {
        let request = store.get_request(&ws, ids.request).await?;
        let history = store.history_for_request(&ws, ids.request).await?;
        let codes: Vec<&str> = history.iter().map(|r| r.evidence().code.as_str()).collect();
        println!(
            "  request {}: {} at revision {}; history {codes:?}",
            request.target().state_id,
            request.status(),
            request.revision()
        );
        let expected = match ending {
            Ending::Approved => (RequestStatus::Executed, 3),
            _ => (RequestStatus::Rejected, 2),
        };
        if (request.status(), request.revision()) != expected {
            return Err(format!("request {}: expected {expected:?}", request.target().state_id).into());
        }
        let evidence = store.get_history_record(&ws, ids.evidence).await?;
        let decision = evidence.evidence().decision.map_or("-", Decision::as_str);
        let hash = evidence.content_hash().get(..12).unwrap_or_default();
        println!(
            "    evidence {}: {decision} {:?}, content hash {hash}…",
            evidence.id(),
            evidence.evidence().reason_codes
        );
    }
    let denied = HistoryFilter { decision: Some(Decision::Denied), ..HistoryFilter::default() };
    let denied = store.query_history(&ws, &denied, &PageRequest::all()).await?;
    println!("  denied decisions in the workspace: {}", denied.items.len());
    if denied.items.len() != 1 {
        return Err("expected exactly one denied decision".into());
    }
    let invoices = invoice::Entity::find()
        .filter(invoice::Column::WorkspaceId.eq(ws.as_str()))
        .order_by_asc(invoice::Column::Number)
        .all(db)
        .await?;
    let invoices: Vec<_> = invoices.iter().map(|i| (i.number.as_str(), i.customer.as_str(), i.amount_cents)).collect();
    println!("  example_invoices: {invoices:?}");
    if invoices != [("INV-1001", "Globex", 48_000)] {
        return Err("expected exactly the approved invoice".into());
    }
    Ok(())
}

/// One governed attempt in one transaction: committed whole, or rolled back
/// whole.
async fn governed_create(
    store: &SeaOrmStore,
    ws: &WorkspaceId,
    clerk: &Principal,
    draft: &Draft,
    ids: Ids,
) -> Result<Decision, Box<dyn Error>> {
    // BEGIN IMMEDIATE on SQLite: the transaction waits for the write lock
    // instead of failing when another writer holds it.
    let txn = store.begin().await?;
    match governed_steps(store, &txn, ws, clerk, draft, ids).await {
        Ok(decision) => {
            txn.commit().await?;
            Ok(decision)
        }
        Err(error) => {
            txn.rollback().await?;
            Err(error)
        }
    }
}

async fn governed_steps(
    store: &SeaOrmStore,
    txn: &DatabaseTransaction,
    ws: &WorkspaceId,
    clerk: &Principal,
    draft: &Draft,
    ids: Ids,
) -> Result<Decision, Box<dyn Error>> {
    // 1. The governance request for this change (revision 1).
    let spec = NewRequest::new(ws.clone(), TargetRef::new("invoice", draft.number), "create", clerk.clone())
        .intent(format!("invoice {} for {}", draft.number, draft.customer))
        .idempotency_key(draft.key)
        .category("billing");
    let creation = lifecycle::create(spec, ids.request, Timestamp::now())?;
    store.create_request_in(txn, &creation).await?;
    println!("  request created (revision 1)");

    // 2. Evaluate, and persist the decision whatever it is.
    let started = Instant::now();
    let verdict = evaluate(draft);
    let latency = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let evidence = Evidence::decision(ws.clone(), clerk.clone(), "invoice", "create", verdict.decision)
        .request(RequestRef { id: ids.request, revision: 1 })
        .outcome(match verdict.decision {
            Decision::Approved => Outcome::Approved,
            Decision::Denied => Outcome::Denied,
        })
        .reason(verdict.reason.clone())
        .reason_codes(verdict.reason_codes.iter().copied())
        .correlation_id(format!("ctx-{}", draft.key))
        .idempotency_key(format!("{}:decision", draft.key))
        .policy_version("invoice-limits/1")
        .latency_us(latency)
        .request_json(
            json!({ "number": draft.number, "customer": draft.customer, "amount_cents": draft.amount_cents }),
        );
    let record = HistoryRecord::with_id(ids.evidence, evidence, Timestamp::now())?;
    store.append_history_in(txn, std::slice::from_ref(&record)).await?;
    println!("  evidence appended: {} ({})", verdict.decision, verdict.reason);

    // 3. Mutate only if approved.
    let policy = Principal::from(Actor::service("invoice-policy"));
    if verdict.decision == Decision::Denied {
        let reject = Action::Reject { reason: verdict.reason };
        let rejected = lifecycle::apply(creation.request(), &policy, &reject, Timestamp::now())?;
        store.commit_transition_in(txn, &rejected).await?;
        println!("  request rejected; no invoice written");
        return Ok(verdict.decision);
    }
    let approved = lifecycle::apply(creation.request(), &policy, &Action::Approve, Timestamp::now())?;
    store.commit_transition_in(txn, &approved).await?;
    let row = invoice::ActiveModel {
        workspace_id: Set(ws.as_str().to_owned()),
        number: Set(draft.number.to_owned()),
        customer: Set(draft.customer.to_owned()),
        amount_cents: Set(draft.amount_cents),
        request_id: Set(ids.request.as_uuid()),
        evidence_id: Set(ids.evidence.as_uuid()),
    };
    invoice::Entity::insert(row).exec_without_returning(txn).await?;
    let execute = Action::Execute { current_version: None };
    let executed = lifecycle::apply(approved.request(), clerk, &execute, Timestamp::now())?;
    store.commit_transition_in(txn, &executed).await?;
    println!("  invoice inserted; request approved and executed");
    Ok(verdict.decision)
}

/// An error and its sources, on one line.
fn chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // Some drivers repeat their source in their own message.
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Whether a lookup found its row: `NotFound` is `false`, any other error is
/// the example's error.
fn found<T>(lookup: Result<T, GovernanceError>) -> Result<bool, GovernanceError> {
    match lookup {
        Ok(_) => Ok(true),
        Err(error) if error.is_not_found() => Ok(false),
        Err(error) => Err(error),
    }
}
