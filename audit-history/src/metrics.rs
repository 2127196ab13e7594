//! Metric names. Every counter carries a `recorder` label (the name given
//! to the [`Recorder`](crate::Recorder) or [`Relay`](crate::Relay)), so
//! several instances in one process stay apart.
//!
//! Each evidence write ends in exactly one of: stored, spooled, refused
//! (the mutation did not run) or rejected (kept in the spool's
//! `rejected.jsonl`). Nothing is dropped.

/// Evidence the store took (new or idempotent replay) on the write path.
pub const STORED: &str = "governance_evidence_stored_total";
/// Failed evidence writes to the store, whatever happened next.
pub const WRITE_FAILURES: &str = "governance_evidence_write_failures_total";
/// Evidence written to the fail-open spool instead of the store.
pub const SPOOLED: &str = "governance_evidence_spooled_total";
/// Mutations refused because no durable evidence could be written
/// (fail-closed store failure, full or failing spool, refused input).
pub const REFUSED: &str = "governance_evidence_refused_total";
/// Spooled evidence the relay stored (new or already present).
pub const REPLAYED: &str = "governance_evidence_replayed_total";
/// Relay attempts that failed because the store did not answer.
pub const RELAY_FAILURES: &str = "governance_evidence_relay_failures_total";
/// Spooled evidence the store refused for good, kept in `rejected.jsonl`.
pub const REJECTED: &str = "governance_evidence_rejected_total";

/// Unsealed records the sealer found altered and left unsealed (label
/// `recorder` = `sealer`).
pub const UNSEALABLE: &str = "governance_integrity_unsealable_total";

pub(crate) fn count(name: &'static str, recorder: &str, n: u64) {
    if n > 0 {
        metrics::counter!(name, "recorder" => recorder.to_owned()).increment(n);
    }
}

/// Registers descriptions for every counter with the installed recorder.
pub fn describe() {
    let all = [
        (STORED, "Evidence records the store took on the write path."),
        (WRITE_FAILURES, "Evidence writes to the store that failed."),
        (SPOOLED, "Evidence records written to the fail-open spool."),
        (REFUSED, "Mutations refused for lack of durable evidence."),
        (REPLAYED, "Spooled evidence records the relay stored."),
        (RELAY_FAILURES, "Relay drains stopped by an unavailable store."),
        (REJECTED, "Spooled evidence records the store refused for good."),
        (UNSEALABLE, "Unsealed records found altered and left unsealed."),
    ];
    for (name, help) in all {
        metrics::describe_counter!(name, help);
    }
}
