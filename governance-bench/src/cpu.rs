//! `--cpu-per-record N`: the client CPU of the evidence write path, per
//! record, with no database in the way.
//!
//! N realistic decision records go through [`Recorder::record`] into a
//! [`MemoryStore`], one at a time on a current-thread runtime, so the time
//! measured is CPU time of one thread (nothing waits on I/O). The same
//! records are also timed through the steps of that path alone, down to a
//! floor that any writer which hashes its rows pays:
//!
//! - `Recorder::record`: outcome, redaction, `HistoryRecord::new`, and the
//!   store's append (idempotency key, indexes, copy into the workspace);
//! - `Recorder::prepare`: the same without the store;
//! - `HistoryRecord::new`: validation and hashing, once, of evidence that is
//!   already redacted;
//! - floor: `serde_json::to_vec` of the record (what any store encodes) plus
//!   SHA-256 over the canonical JSON of what the content hash covers, and
//!   that hash alone.
//!
//! The records are built before each timed batch and dropped after it, so
//! only the call itself is timed. The phases alternate batch by batch, so
//! drift on a shared machine hits all of them alike.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_history::Recorder;
use governance_abstractions::{
    Actor, Decision, Evidence, HistoryRecord, RecordId, Timestamp, WorkspaceId, canonical_sha256,
};
use governance_memory::MemoryStore;
use serde::Serialize;
use serde_json::{Value, json};

/// Records per timed batch: long enough that reading the clock is noise,
/// short enough that the prepared inputs stay small.
const BATCH: usize = 500;

/// Bytes of the request and response payloads, serialized, before redaction.
const REQUEST_JSON_BYTES: usize = 856;
const RESPONSE_JSON_BYTES: usize = 711;

/// What the content hash of a record covers (id, time, evidence), as
/// `HistoryRecord` hashes it.
#[derive(Serialize)]
struct HashInput<'a> {
    id: RecordId,
    created_at: Timestamp,
    evidence: &'a Evidence,
}

/// Adds a `note` that makes `value` serialize to exactly `bytes` (a payload
/// already longer than that is a bug here: the sizes are what is reported).
fn padded(mut value: Value, bytes: usize) -> Value {
    let bare = serde_json::to_vec(&value).map_or(0, |v| v.len()) + r#","note":"""#.len();
    assert!(bare <= bytes, "payload of {bare} bytes before padding, more than {bytes}");
    value["note"] = Value::String("n".repeat(bytes - bare));
    value
}

/// An invoice approval as an API gateway hands it to the policy engine: a
/// token (redacted by key) and a contact's e-mail address (scrubbed from
/// the text) among ordinary fields.
fn request_json(n: u64) -> Value {
    padded(
        json!({
            "method": "POST",
            "path": format!("/v1/invoices/inv-{n:010}/approve"),
            "client": {
                "ip": "203.0.113.42",
                "user_agent": "billing-ui/4.12.0",
                "request_id": format!("req-{n:010}"),
            },
            "api_token": "tok_live_9f8e7d6c5b4a39281706f5e4d3c2b1a0",
            "invoice": {
                "id": format!("inv-{n:010}"),
                "customer": {
                    "id": "cus-4711",
                    "name": "Acme Industrial Supplies GmbH",
                    "contact": "Jane Doe <jane.doe@acme-industrial.example>",
                },
                "currency": "EUR",
                "issued_on": "2026-11-02",
                "due_on": "2026-12-02",
                "lines": [
                    {"sku": "SKU-10042", "description": "Hydraulic pump", "quantity": 2, "unit_price_cents": 184_900},
                    {"sku": "SKU-20417", "description": "Pressure hose", "quantity": 6, "unit_price_cents": 8_450},
                    {"sku": "SKU-90001", "description": "Installation", "quantity": 1, "unit_price_cents": 64_000},
                ],
                "tax_cents": 94_145,
                "total_cents": 589_645,
            },
            "approval": {
                "step": 2,
                "comment": "Within the quarterly budget.",
                "attachments": ["po-2026-1187.pdf"],
            },
        }),
        REQUEST_JSON_BYTES,
    )
}

/// The policy engine's answer: the rules it evaluated and what it demands.
fn response_json(n: u64) -> Value {
    padded(
        json!({
            "status": 403,
            "decision": "denied",
            "invoice": {"id": format!("inv-{n:010}"), "state": "pending_approval", "version": 7},
            "policy": {
                "id": "invoice-approval",
                "version": "policy-7",
                "evaluated_rules": [
                    {"rule": "amount_limit", "effect": "deny", "matched": true},
                    {"rule": "mfa_required", "effect": "deny", "matched": true},
                    {"rule": "business_hours", "effect": "deny", "matched": true},
                    {"rule": "role_approver", "effect": "allow", "matched": false},
                ],
            },
            "obligations": [
                {"kind": "notify", "target": "finance-approvers"},
                {"kind": "step_up", "method": "webauthn"},
            ],
            "timings_us": {"parse": 41, "evaluate": 162, "total": 219},
            // One float, as risk scores are: hashing must not slow down for it.
            "risk_score": 0.8731,
        }),
        RESPONSE_JSON_BYTES,
    )
}

fn evidence(workspace: &WorkspaceId, n: u64) -> Evidence {
    Evidence::decision(workspace.clone(), Actor::user("user-17"), "invoice", "approve", Decision::Denied)
        .reason_codes(["amount_limit", "mfa_missing", "outside_hours"])
        .correlation_id(format!("ctx-{n:010}"))
        .trace_hash(format!("{:064x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15))
        .idempotency_key(format!("gateway-{n:010}"))
        .policy_version("policy-7")
        .latency_us(219)
        .request_json(request_json(n))
        .response_json(response_json(n))
}

/// Checks that the recorder scrubbed the token and the e-mail address: a
/// measurement of a path that did not redact would flatter it.
fn redacted(record: Option<&HistoryRecord>) -> Result<(), String> {
    let stored = record.map(|r| json!([r.evidence().request_json, r.evidence().response_json]).to_string());
    match stored {
        Some(text) if text.contains("tok_live") || text.contains("jane.doe@") => {
            Err(format!("the recorder stored a secret: {text}"))
        }
        _ => Ok(()),
    }
}

/// Time per record of each phase, summed over batches.
#[derive(Debug, Default)]
struct Phase {
    total: Duration,
    records: usize,
    /// The fastest batch's time per record.
    best: Option<Duration>,
}

impl Phase {
    fn add(&mut self, took: Duration, records: usize) {
        self.total += took;
        self.records += records;
        let per = took / records.max(1) as u32;
        self.best = Some(self.best.map_or(per, |best| best.min(per)));
    }

    fn mean_us(&self) -> f64 {
        self.total.as_secs_f64() * 1e6 / self.records.max(1) as f64
    }

    fn best_us(&self) -> f64 {
        self.best.unwrap_or_default().as_secs_f64() * 1e6
    }
}

/// Times `records` records through each phase and prints µs per record.
/// What one measurement found, per step.
pub(crate) struct Measured {
    record: Phase,
    prepare: Phase,
    new: Phase,
    floor: Phase,
    hash: Phase,
}

impl Measured {
    /// `Recorder::record` into the memory store, µs per record (mean).
    pub(crate) fn record_us(&self) -> f64 {
        self.record.mean_us()
    }

    /// The floor (`to_vec` of the record + canonical SHA-256), µs per record.
    pub(crate) fn floor_us(&self) -> f64 {
        self.floor.mean_us()
    }
}

/// Prints `--cpu-per-record`'s report of `records` records.
pub(crate) fn run(records: u64, json_output: bool) -> Result<(), String> {
    let Measured { record, prepare, new, floor, hash } = measure(records)?;
    let workspace = WorkspaceId::new("bench-cpu").map_err(|e| e.to_string())?;
    let sample = evidence(&workspace, 0);
    let bytes = |v: &Option<Value>| v.as_ref().map_or(0, |v| serde_json::to_vec(v).map_or(0, |b| b.len()));
    let (request_bytes, response_bytes) = (bytes(&sample.request_json), bytes(&sample.response_json));
    let phases = [
        ("Recorder::record (memory store)", "recorder_record", &record),
        ("Recorder::prepare", "recorder_prepare", &prepare),
        ("HistoryRecord::new", "history_record_new", &new),
        ("floor: to_vec + canonical SHA-256", "floor", &floor),
        ("  of which canonical SHA-256", "floor_hash", &hash),
    ];
    if json_output {
        let mut us = serde_json::Map::new();
        for (_, key, phase) in phases {
            us.insert(key.to_owned(), json!({ "mean": phase.mean_us(), "best_batch": phase.best_us() }));
        }
        let report = json!({
            "cpu_per_record": {
                "records": record.records,
                "request_json_bytes": request_bytes,
                "response_json_bytes": response_bytes,
                "reason_codes": sample.reason_codes.len(),
                "us_per_record": us,
            }
        });
        println!("{report}");
    } else {
        println!(
            "client CPU per record, {} records ({request_bytes} B request JSON, {response_bytes} B response JSON, \
             {} reason codes, one float), one thread:\n",
            record.records,
            sample.reason_codes.len()
        );
        println!("| step | µs/record (mean) | µs/record (best batch of {BATCH}) |\n| --- | ---: | ---: |");
        for (name, _, phase) in phases {
            println!("| {name} | {:.2} | {:.2} |", phase.mean_us(), phase.best_us());
        }
    }
    Ok(())
}

/// Times `records` records through each step (see the module docs), on a
/// current-thread runtime of its own: one thread's CPU.
pub(crate) fn measure(records: u64) -> Result<Measured, String> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().map_err(|e| e.to_string())?;
    let workspace = WorkspaceId::new("bench-cpu").map_err(|e| e.to_string())?;
    let recorder = Recorder::new(Arc::new(MemoryStore::new()));
    let [mut record, mut prepare, mut new, mut floor, mut hash] = std::array::from_fn(|_| Phase::default());

    // One untimed batch first (allocator, caches and the store's maps warm
    // up), then `records` timed ones. Numbers never repeat: each record has
    // its own idempotency key, so the store stores every one.
    let warm_up = records.min(BATCH as u64);
    let (mut next, mut timed_left) = (0u64, records);
    let mut first = true;
    while first || timed_left > 0 {
        let size = if first { warm_up } else { timed_left.min(BATCH as u64) };
        let numbers = next..next + size;
        next += size;
        if !first {
            timed_left -= size;
        }
        let timed = !std::mem::replace(&mut first, false);
        let count = size as usize;

        // The whole write path.
        let inputs: Vec<Evidence> = numbers.clone().map(|n| evidence(&workspace, n)).collect();
        let mut receipts = Vec::with_capacity(count);
        let began = Instant::now();
        runtime.block_on(async {
            for input in inputs {
                receipts.push(recorder.record(input).await.map_err(|e| e.to_string())?);
            }
            Ok::<_, String>(())
        })?;
        let took = began.elapsed();
        if !timed {
            redacted(receipts.first().map(|r| &r.record))?;
        }
        drop(receipts);
        if timed {
            record.add(took, count);
        }

        // The same without the store.
        let inputs: Vec<Evidence> = numbers.map(|n| evidence(&workspace, n)).collect();
        let mut prepared = Vec::with_capacity(count);
        let began = Instant::now();
        for input in inputs {
            prepared.push(recorder.prepare(input).map_err(|e| e.to_string())?);
        }
        let took = began.elapsed();
        if timed {
            prepare.add(took, count);
        }

        // Validation and one hash, of what `prepare` hands to it.
        let inputs: Vec<Evidence> = prepared.into_iter().map(HistoryRecord::into_evidence).collect();
        let mut built = Vec::with_capacity(count);
        let began = Instant::now();
        for input in inputs {
            built.push(HistoryRecord::new(input, Timestamp::now()).map_err(|e| e.to_string())?);
        }
        let took = began.elapsed();
        if timed {
            new.add(took, count);
        }

        // The floor: encode the row, hash its content once.
        let began = Instant::now();
        for r in &built {
            let row = serde_json::to_vec(r).map_err(|e| e.to_string())?;
            let input = HashInput { id: r.id(), created_at: r.created_at(), evidence: r.evidence() };
            let hash = canonical_sha256("record", &input).map_err(|e| e.to_string())?;
            black_box((row, hash));
        }
        let took = began.elapsed();
        if timed {
            floor.add(took, count);
        }

        // The floor's hash alone: what `HistoryRecord::new` adds to it is validation.
        let began = Instant::now();
        for r in &built {
            let input = HashInput { id: r.id(), created_at: r.created_at(), evidence: r.evidence() };
            black_box(canonical_sha256("record", &input).map_err(|e| e.to_string())?);
        }
        let took = began.elapsed();
        if timed {
            hash.add(took, count);
        }
    }

    Ok(Measured { record, prepare, new, floor, hash })
}
