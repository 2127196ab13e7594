//! The tables as SeaORM entities. Enum columns hold the abstractions'
//! `as_str` text; JSON columns hold what has no column of its own.
//!
//! Times are UTC held as naive date-times: MySQL binds a zoned value as a
//! `TIMESTAMP` (which ends in 2038), a naive one as `DATETIME` (to 9999).

/// `governance_requests`: one row per request, its current state.
pub mod request {
    use sea_orm::entity::prelude::*;

    /// A stored request.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "governance_requests")]
    pub struct Model {
        /// Tenant; leads the primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        /// Request id (UUIDv7).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Governed state kind.
        pub state_type: String,
        /// Governed state id.
        pub state_id: String,
        /// Mutation wanted.
        pub operation: String,
        /// Requesting actor's kind (filterable).
        pub actor_kind: String,
        /// Requesting actor's id (filterable).
        pub actor_id: String,
        /// The requesting principal with its delegation chain.
        pub requested_by: Json,
        /// Why.
        pub intent: String,
        /// Lifecycle status.
        pub status: String,
        /// What a pending request waits for.
        pub pending_reason: Option<String>,
        /// Approval requirements and decisions.
        pub approvals: Json,
        /// Expected state version.
        pub expected_state_version: Option<i64>,
        /// Strategy when that version is stale.
        pub stale_strategy: String,
        /// Expiry.
        pub expires_at: Option<DateTime>,
        /// The newer request that superseded this one.
        pub superseded_by: Option<Uuid>,
        /// Unique per workspace when set.
        pub idempotency_key: Option<String>,
        /// Free category.
        pub category: Option<String>,
        /// Free tags (JSON array).
        pub tags: Json,
        /// Free JSON.
        pub metadata: Json,
        /// Optimistic-concurrency revision.
        pub revision: i64,
        /// Creation time.
        pub created_at: DateTime,
        /// Last write time.
        pub updated_at: DateTime,
        /// Digest of the creation input, for idempotent retries.
        pub creation_digest: String,
        /// Digest of the whole request at this revision; none on rows
        /// written before this column existed.
        pub state_digest: Option<String>,
    }

    /// No relations are navigated through SeaORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `governance_history`: append-only records.
pub mod history {
    use sea_orm::entity::prelude::*;

    /// A stored history record.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "governance_history")]
    pub struct Model {
        /// Tenant; leads the primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        /// Record id (UUIDv7).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The request this belongs to.
        pub request_id: Option<Uuid>,
        /// The request revision it belongs to.
        pub request_revision: Option<i64>,
        /// Where the record comes from.
        pub category: String,
        /// What happened.
        pub code: String,
        /// Acting actor's kind (filterable).
        pub actor_kind: String,
        /// Acting actor's id (filterable).
        pub actor_id: String,
        /// The acting principal with its delegation chain.
        pub actor: Json,
        /// Governed object type.
        pub object_type: String,
        /// Governed operation.
        pub operation: String,
        /// Policy decision.
        pub decision: Option<String>,
        /// Application outcome.
        pub outcome: Option<String>,
        /// Human-readable reason.
        pub reason: Option<String>,
        /// Machine-readable reasons (JSON array).
        pub reason_codes: Json,
        /// Correlation id.
        pub correlation_id: Option<String>,
        /// Trace hash.
        pub trace_hash: Option<String>,
        /// Unique per workspace when set.
        pub idempotency_key: Option<String>,
        /// Policy version.
        pub policy_version: Option<String>,
        /// Evaluation latency (µs).
        pub latency_us: Option<i64>,
        /// Redacted request payload.
        pub request_json: Option<Json>,
        /// Redacted response payload.
        pub response_json: Option<Json>,
        /// Redaction policy name.
        pub redaction_policy: Option<String>,
        /// Redaction policy version.
        pub redaction_version: Option<String>,
        /// Record time.
        pub created_at: DateTime,
        /// SHA-256 over the canonical record.
        pub content_hash: String,
    }

    /// No relations are navigated through SeaORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `governance_checkpoints`: insert-only seals over runs of a workspace's log.
pub mod checkpoint {
    use sea_orm::entity::prelude::*;

    /// A stored checkpoint.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "governance_checkpoints")]
    pub struct Model {
        /// Tenant; leads the primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        /// 1, 2, 3, … per workspace.
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i64,
        /// Leaf index of the first sealed record.
        pub first_index: i64,
        /// How many records it seals.
        pub record_count: i64,
        /// Merkle root of the sealed leaves.
        pub root: String,
        /// Digest of the checkpoint before (none for the first).
        pub previous: Option<String>,
        /// Seal time.
        pub created_at: DateTime,
        /// Digest of the checkpoint's fields.
        pub digest: String,
    }

    /// No relations are navigated through SeaORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `governance_seals`: insert-only seal entries, one per sealed record.
pub mod seal {
    use sea_orm::entity::prelude::*;

    /// A stored seal entry.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "governance_seals")]
    pub struct Model {
        /// Tenant; leads the primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        /// The record's place in the workspace's log.
        #[sea_orm(primary_key, auto_increment = false)]
        pub leaf_index: i64,
        /// The sealed record (unique per workspace).
        pub record_id: Uuid,
        /// The record's content hash when sealed.
        pub content_hash: String,
        /// The checkpoint that sealed it.
        pub checkpoint_seq: i64,
    }

    /// No relations are navigated through SeaORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
