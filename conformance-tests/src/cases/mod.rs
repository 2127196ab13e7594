//! Every case of the suite. Each is an `async fn(CaseContext) -> CaseResult`
//! that works only inside its context's workspace.

mod audit;
mod cas;
mod contract;
mod history;
mod input;
mod lifecycle;
mod query;
mod round_trip;

pub use audit::*;
pub use cas::*;
pub use contract::*;
pub use history::*;
pub use input::*;
pub use lifecycle::*;
pub use query::*;
pub use round_trip::*;

/// The one list of cases: `name: Group [required capabilities]`. It feeds both
/// the [`CASES`](crate::CASES) registry and the tests of
/// [`conformance_suite!`](crate::conformance_suite).
#[doc(hidden)]
#[macro_export]
macro_rules! __with_cases {
    ($($mode:tt)*) => {
        $crate::__expand_cases! { [$($mode)*]
            contract_forged_base_refused: Contract [],
            contract_frozen_fields_never_change: Contract [],
            contract_supersession_race_refused: Contract [],
            contract_crossed_supersessions_settle: Contract [],
            contract_hostile_nesting_refused: Contract [],
            contract_json_at_depth_limit: Contract [],
            contract_time_bounds_outside_storable_range: Contract [],
            contract_transitions_say_why: Contract [],
            contract_row_edited_behind_the_store: Contract [Tamper],
            contract_rows_without_a_digest: Contract [Tamper],
            round_trip_request_all_fields: RoundTrip [],
            round_trip_request_minimal: RoundTrip [],
            round_trip_large_floats: RoundTrip [],
            round_trip_transition_state: RoundTrip [],
            round_trip_history_all_fields: RoundTrip [],
            round_trip_history_batch: RoundTrip [],
            duplicate_request_id: Duplicates [],
            duplicate_record_id: Duplicates [],
            duplicate_record_id_in_batch: Duplicates [],
            cas_commit_increments_revision: Cas [],
            cas_stale_revision_conflicts: Cas [],
            cas_missing_request_not_found: Cas [],
            cas_service_retries_on_conflict: Cas [],
            cas_retry_revalidates: Cas [],
            cas_retry_is_bounded: Cas [],
            cas_held_state_commits_or_conflicts: Cas [],
            lifecycle_moves_from_created: Lifecycle [],
            lifecycle_moves_from_pending: Lifecycle [],
            lifecycle_moves_from_approved: Lifecycle [],
            lifecycle_moves_from_rejected: Lifecycle [],
            lifecycle_moves_from_canceled: Lifecycle [],
            lifecycle_moves_from_expired: Lifecycle [],
            lifecycle_moves_from_superseded: Lifecycle [],
            lifecycle_moves_from_executed: Lifecycle [],
            lifecycle_history_records: Lifecycle [],
            version_matching_executes: VersionResolution [],
            version_unset_executes: VersionResolution [],
            version_stale_rejects: VersionResolution [],
            version_stale_renews_approval: VersionResolution [],
            version_stale_revalidates: VersionResolution [],
            version_current_required: VersionResolution [],
            approval_steps_in_order: Approval [],
            approval_same_step_any_order: Approval [],
            approval_rejection_rejects: Approval [],
            approval_decides_once: Approval [],
            approval_one_approver_many_steps: Approval [],
            approval_preconditions: Approval [],
            approval_matches_actor_kind: Approval [],
            expiry_sweep_expires_due_only: ExpirySupersession [],
            expiry_concurrent_sweepers: ExpirySupersession [],
            expiry_not_due_refused: ExpirySupersession [],
            supersede_marks_older: ExpirySupersession [],
            supersede_preconditions: ExpirySupersession [],
            isolation_reads_scoped: TenantIsolation [],
            isolation_same_ids_independent: TenantIsolation [],
            idempotency_keys_per_workspace: TenantIsolation [],
            query_filter_status: QueryFilters [],
            query_filter_pending_reason: QueryFilters [],
            query_filter_actor_operation_category: QueryFilters [],
            query_filter_tags: QueryFilters [],
            query_filter_time_range_and_combined: QueryFilters [],
            query_by_target_and_empty: QueryFilters [],
            history_query_filters: QueryFilters [],
            history_counts: QueryFilters [],
            history_counts_across_roll_ups: QueryFilters [],
            paging_sizes_agree: Pagination [],
            paging_equal_timestamps: Pagination [],
            paging_rows_arriving: Pagination [],
            paging_resume_after_end: Pagination [],
            paging_invalid_cursor: Pagination [],
            paging_bad_requests: Pagination [],
            paging_history: Pagination [],
            paging_exact_last_page_and_text_cursors: Pagination [],
            history_in_revision_order: History [],
            history_evidence_joins_request: History [],
            history_atomic_with_state: History [],
            history_atomic_on_record_failure: History [],
            history_missing: History [],
            idempotency_request_replay: Idempotency [],
            idempotency_request_conflict: Idempotency [],
            idempotency_request_concurrent: Idempotency [],
            idempotency_history_replay: Idempotency [],
            idempotency_history_conflict: Idempotency [],
            idempotency_history_within_batch: Idempotency [],
            idempotency_history_resend: Idempotency [],
            idempotency_history_concurrent: Idempotency [],
            concurrency_cas_increments: Concurrency [],
            concurrency_many_workspaces: Concurrency [],
            bad_input_nul_rejected: BadInput [],
            bad_input_over_limits: BadInput [],
            bad_input_actions_refused_first: BadInput [],
            bad_input_empty_ids: BadInput [],
            bad_input_inconsistent: BadInput [],
            bad_input_filters_and_json: BadInput [],
            bad_input_limits_at_their_value: BadInput [],
            large_metadata: LargePayloads [],
            large_history: LargePayloads [],
            unicode_round_trip: Unicode [],
            unicode_identifiers_exact: Unicode [],
            timestamp_microseconds: Timestamps [],
            timestamp_range: Timestamps [],
            append_only_no_rewrite: AppendOnly [],
            append_only_lifecycle_records_need_a_transition: AppendOnly [],
            append_only_enforced_by_database: AppendOnly [DatabaseEnforcedAppendOnly],
            audit_approved_stores_and_mutates: Audit [],
            audit_denied_stores_and_skips: Audit [],
            audit_fail_closed_refuses_when_unreachable: Audit [],
            audit_fail_open_spools_then_relays: Audit [],
            audit_relay_killed_mid_drain: Audit [],
            audit_redaction_keeps_secrets_out: Audit [],
            integrity_seal_and_verify_clean: Integrity [],
            integrity_checkpoint_refusals: Integrity [],
            integrity_detects_altered_record: Integrity [Tamper],
            integrity_detects_rehashed_record: Integrity [Tamper],
            integrity_detects_reassigned_actor: Integrity [Tamper],
            integrity_detects_deleted_record: Integrity [Tamper],
            integrity_detects_deleted_tail: Integrity [Tamper],
            integrity_detects_altered_checkpoint: Integrity [Tamper],
            integrity_detects_copied_record: Integrity [Tamper],
            integrity_detects_altered_seal_entry: Integrity [Tamper],
            integrity_names_unreadable_record: Integrity [Tamper, CorruptRows],
            export_resumes_without_gaps: Export [],
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __expand_cases {
    ([registry] $($name:ident : $group:ident [$($cap:ident),*],)*) => {
        /// Every case of the suite, in order.
        pub static CASES: &[$crate::Case] = &[$(
            $crate::Case {
                name: stringify!($name),
                group: $crate::Group::$group,
                requires: &[$($crate::Capability::$cap),*],
                run: |ctx| ::std::boxed::Box::pin($crate::cases::$name(ctx)),
            },
        )*];
    };
    ([tests $factory:expr] $($name:ident : $group:ident [$($cap:ident),*],)*) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $crate::runner::run_named_test(::std::sync::Arc::new($factory), stringify!($name)).await;
        }
    )*};
}
