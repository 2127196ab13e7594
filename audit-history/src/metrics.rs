//! Metric names. Every counter carries a `recorder` label (the name given
//! to the [`Recorder`](crate::Recorder) or [`Relay`](crate::Relay), or the
//! [`SpoolOptions::name`](crate::SpoolOptions::name) of a spool), so several
//! instances in one process stay apart.
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
/// Relay drains stopped by the store: it did not answer, or it refused a
/// record that is not set aside yet (a possible poison record).
pub const RELAY_FAILURES: &str = "governance_evidence_relay_failures_total";
/// Spooled evidence the store refused for good, kept in `rejected.jsonl`:
/// refused as invalid or conflicting at once, or refused with the same
/// error on the configured number of attempts (a poison record).
pub const REJECTED: &str = "governance_evidence_rejected_total";
/// Store calls abandoned at their deadline (recorder or relay). Also
/// counted as write failures (recorder) or relay failures (relay).
pub const STORE_TIMEOUTS: &str = "governance_evidence_store_timeouts_total";
/// Writes not sent to the store because the breaker was open; each is also
/// counted as spooled (fail-open) or refused (fail-closed).
pub const SHORT_CIRCUITED: &str = "governance_evidence_short_circuited_total";
/// Times the recorder's breaker opened.
pub const BREAKER_OPENED: &str = "governance_evidence_breaker_opened_total";
/// Gauge: 1 while the recorder's breaker is open, 0 once the store answers.
pub const BREAKER_OPEN: &str = "governance_evidence_breaker_open";
/// Acknowledged spool records found missing (a gap in the sequence
/// numbers): evidence lost to a disk or copy fault. Alert on any.
pub const SPOOL_LOST: &str = "governance_evidence_spool_lost_total";
/// Spool lines that failed their checksum (or no longer parse), moved to
/// `quarantine.jsonl`. Alert on any.
pub const SPOOL_QUARANTINED: &str = "governance_evidence_spool_quarantined_total";
/// Torn last lines dropped on open: appends a crash cut short, never
/// acknowledged.
pub const SPOOL_TORN: &str = "governance_evidence_spool_torn_total";

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
        (RELAY_FAILURES, "Relay drains stopped by the store (no answer, or a record not yet set aside)."),
        (REJECTED, "Spooled evidence records the store refused for good."),
        (STORE_TIMEOUTS, "Evidence store calls abandoned at their deadline."),
        (SHORT_CIRCUITED, "Evidence writes not sent to the store because its breaker was open."),
        (BREAKER_OPENED, "Times the evidence store breaker opened."),
        (SPOOL_LOST, "Acknowledged spool records found missing."),
        (SPOOL_QUARANTINED, "Spool lines that failed their checksum, moved to quarantine."),
        (SPOOL_TORN, "Torn, never acknowledged last spool lines dropped on open."),
        (UNSEALABLE, "Unsealed records found altered and left unsealed."),
    ];
    for (name, help) in all {
        metrics::describe_counter!(name, help);
    }
    metrics::describe_gauge!(BREAKER_OPEN, "1 while the evidence store breaker is open.");
}
