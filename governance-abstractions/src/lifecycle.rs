//! The request lifecycle as pure functions.
//!
//! [`create`] and [`apply`] never touch storage: they return the new request
//! state together with the history records the change produces, and a store
//! commits both atomically. [`MOVES`] is the one table of allowed status moves.

use serde_json::{Value, json};

use crate::history::{Evidence, HistoryCategory, HistoryRecord, RequestRef, codes};
use crate::{
    Decision, GovernanceError, GovernanceRequest, NewRequest, PendingReason, Principal, RequestId, RequestStatus,
    StaleStrategy, Timestamp, Verdict,
};

use RequestStatus::{Approved, Canceled, Created, Executed, Expired, Pending, Rejected, Superseded};

/// Every allowed status move, `(from, to)`. Anything else is an
/// [`InvalidTransition`](GovernanceError::InvalidTransition). Moves to the same
/// status are updates that keep the status (annotation, partial approval,
/// revalidation).
pub const MOVES: &[(RequestStatus, RequestStatus)] = &[
    (Created, Created),
    (Created, Pending),
    (Created, Approved),
    (Created, Rejected),
    (Created, Canceled),
    (Created, Expired),
    (Created, Superseded),
    (Pending, Pending),
    (Pending, Approved),
    (Pending, Rejected),
    (Pending, Canceled),
    (Pending, Expired),
    (Pending, Superseded),
    (Approved, Approved),
    (Approved, Pending),
    (Approved, Executed),
    (Approved, Rejected),
    (Approved, Canceled),
    (Approved, Expired),
    (Approved, Superseded),
];

/// True when [`MOVES`] lists `(from, to)`.
pub fn is_allowed_move(from: RequestStatus, to: RequestStatus) -> bool {
    MOVES.contains(&(from, to))
}

text_enum! {
    /// The kind of an [`Action`], for errors and records.
    pub enum ActionKind {
        /// [`Action::Submit`].
        Submit => "submit",
        /// [`Action::Approve`].
        Approve => "approve",
        /// [`Action::Decide`].
        Decide => "decide",
        /// [`Action::Reject`].
        Reject => "reject",
        /// [`Action::Cancel`].
        Cancel => "cancel",
        /// [`Action::Expire`].
        Expire => "expire",
        /// [`Action::Supersede`].
        Supersede => "supersede",
        /// [`Action::Execute`].
        Execute => "execute",
        /// [`Action::Annotate`].
        Annotate => "annotate",
    }
}

text_enum! {
    /// Why the lifecycle refused an action.
    pub enum TransitionRule {
        /// Nothing leaves a terminal status.
        Terminal => "terminal_status",
        /// The status move is not in [`MOVES`].
        MoveNotAllowed => "move_not_allowed",
        /// Approval requirements exist: approvers must decide.
        ApprovalsRequired => "approvals_required",
        /// Waiting for approval needs at least one requirement.
        NoApprovalRequirements => "no_approval_requirements",
        /// The request is not pending for approval.
        NotAwaitingApproval => "not_awaiting_approval",
        /// The actor has no requirement on this request.
        NotAnApprover => "not_an_approver",
        /// The actor already decided every requirement they hold.
        AlreadyDecided => "already_decided",
        /// An earlier step is still open.
        StepNotOpen => "step_not_open",
        /// The request's expiry has not been reached.
        NotDue => "not_due",
        /// A request cannot supersede itself.
        SelfSupersession => "self_supersession",
        /// Only an approved request executes.
        NotApproved => "not_approved",
        /// The request expects a state version, so execution must name the current one.
        CurrentVersionRequired => "current_version_required",
    }
}

/// A command on a request. The acting principal is passed beside it.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Created/Pending → Pending: wait for `reason`.
    Submit {
        /// What it waits for. `Approval` needs approval requirements.
        reason: PendingReason,
    },
    /// Created/Pending → Approved, for a request without approval requirements
    /// (e.g. an external check passed).
    Approve,
    /// Pending(approval): the acting principal decides their requirement at
    /// the open step. All approved → Approved; any rejected → Rejected.
    Decide {
        /// Approve or reject.
        verdict: Verdict,
        /// Why.
        comment: Option<String>,
    },
    /// Any non-terminal → Rejected.
    Reject {
        /// Why.
        reason: String,
    },
    /// Any non-terminal → Canceled.
    Cancel {
        /// Why.
        reason: String,
    },
    /// Any non-terminal whose `expires_at` ≤ now → Expired.
    Expire,
    /// Any non-terminal → Superseded by a newer request.
    Supersede {
        /// The newer request.
        by: RequestId,
    },
    /// Approved → version-aware resolution, then Executed when the version holds.
    Execute {
        /// The governed state's current version (`None` when the request
        /// expects none).
        current_version: Option<i64>,
    },
    /// Any non-terminal, status unchanged: replace the metadata.
    Annotate {
        /// The new metadata.
        metadata: Value,
    },
}

impl Action {
    /// The kind of this action.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Submit { .. } => ActionKind::Submit,
            Action::Approve => ActionKind::Approve,
            Action::Decide { .. } => ActionKind::Decide,
            Action::Reject { .. } => ActionKind::Reject,
            Action::Cancel { .. } => ActionKind::Cancel,
            Action::Expire => ActionKind::Expire,
            Action::Supersede { .. } => ActionKind::Supersede,
            Action::Execute { .. } => ActionKind::Execute,
            Action::Annotate { .. } => ActionKind::Annotate,
        }
    }
}

/// A new request at revision 1 and its `request.created` record, to be stored
/// together by [`RequestWriter::create_request`](crate::RequestWriter::create_request).
#[derive(Clone, Debug, PartialEq)]
pub struct Creation {
    request: GovernanceRequest,
    record: HistoryRecord,
}

impl Creation {
    /// The request to store.
    pub fn request(&self) -> &GovernanceRequest {
        &self.request
    }

    /// Its creation record.
    pub fn record(&self) -> &HistoryRecord {
        &self.record
    }

    /// Both, by value.
    pub fn into_parts(self) -> (GovernanceRequest, HistoryRecord) {
        (self.request, self.record)
    }
}

/// A request's next state and the history records of the change, to be
/// committed together by
/// [`RequestWriter::commit_transition`](crate::RequestWriter::commit_transition)
/// only if the stored revision is still [`expected_revision`](Self::expected_revision).
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    expected_revision: u64,
    request: GovernanceRequest,
    records: Vec<HistoryRecord>,
}

impl Transition {
    /// The revision the change was computed from.
    pub fn expected_revision(&self) -> u64 {
        self.expected_revision
    }

    /// The new request state (revision = expected + 1).
    pub fn request(&self) -> &GovernanceRequest {
        &self.request
    }

    /// The history records of this change, in order.
    pub fn records(&self) -> &[HistoryRecord] {
        &self.records
    }

    /// Both, by value.
    pub fn into_parts(self) -> (GovernanceRequest, Vec<HistoryRecord>) {
        (self.request, self.records)
    }
}

/// Builds a new request from `spec`: status Created, revision 1.
pub fn create(spec: NewRequest, id: RequestId, now: Timestamp) -> Result<Creation, GovernanceError> {
    spec.validate()?;
    if spec.approvals.iter().any(|a| a.decision.is_some()) {
        return Err(GovernanceError::validation(
            "approvals.decision",
            crate::ValidationProblem::Inconsistent("must be empty on creation"),
        ));
    }
    let creation_digest = spec.creation_digest()?;
    let request = GovernanceRequest {
        id,
        spec,
        status: Created,
        pending_reason: None,
        superseded_by: None,
        revision: 1,
        created_at: now,
        updated_at: now,
        creation_digest,
    };
    request.validate()?;
    let record = record_for(
        &request,
        &request.spec.requested_by,
        HistoryCategory::Lifecycle,
        codes::REQUEST_CREATED,
        None,
        None,
        json!({ "to": Created }),
        now,
    )?;
    Ok(Creation { request, record })
}

/// Applies `action` by `by` to `request` at `now`.
///
/// Returns the next state (revision + 1) and its records, or an
/// [`InvalidTransition`](GovernanceError::InvalidTransition) naming the rule
/// that refused it. Never touches storage.
pub fn apply(
    request: &GovernanceRequest,
    by: &Principal,
    action: &Action,
    now: Timestamp,
) -> Result<Transition, GovernanceError> {
    let from = request.status;
    let refuse = |rule| GovernanceError::InvalidTransition { id: request.id, from, action: action.kind(), rule };
    if from.is_terminal() {
        return Err(refuse(TransitionRule::Terminal));
    }
    crate::request::validate_principal("actor", by)?;
    validate_action(action)?;

    let mut next = request.clone();
    let mut steps: Vec<Step> = Vec::with_capacity(2);
    match action {
        Action::Submit { reason } => {
            if *reason == PendingReason::Approval && request.spec.approvals.is_empty() {
                return Err(refuse(TransitionRule::NoApprovalRequirements));
            }
            if from == Approved {
                return Err(refuse(TransitionRule::MoveNotAllowed));
            }
            next.status = Pending;
            next.pending_reason = Some(*reason);
            steps.push(Step::lifecycle(codes::REQUEST_SUBMITTED, None));
        }
        Action::Approve => {
            if from == Approved {
                return Err(refuse(TransitionRule::MoveNotAllowed));
            }
            if !request.spec.approvals.is_empty() {
                return Err(refuse(TransitionRule::ApprovalsRequired));
            }
            next.status = Approved;
            steps.push(Step::lifecycle(codes::REQUEST_APPROVED, None));
        }
        Action::Decide { verdict, comment } => {
            if from != Pending || request.pending_reason != Some(PendingReason::Approval) {
                return Err(refuse(TransitionRule::NotAwaitingApproval));
            }
            let approver = by.actor.id.as_str();
            let open_step = request.spec.approvals.iter().filter(|a| a.decision.is_none()).map(|a| a.step).min();
            let mine = |a: &&crate::ApprovalRequirement| a.approver == approver;
            if !request.spec.approvals.iter().any(|a| mine(&a)) {
                return Err(refuse(TransitionRule::NotAnApprover));
            }
            let Some(slot) = next
                .spec
                .approvals
                .iter_mut()
                .filter(|a| a.approver == approver && a.decision.is_none())
                .min_by_key(|a| a.step)
            else {
                return Err(refuse(TransitionRule::AlreadyDecided));
            };
            if Some(slot.step) != open_step {
                return Err(refuse(TransitionRule::StepNotOpen));
            }
            slot.decision = Some(crate::ApprovalDecision {
                verdict: *verdict,
                decided_by: by.clone(),
                decided_at: now,
                comment: comment.clone(),
            });
            let decision = match verdict {
                Verdict::Approved => Decision::Approved,
                Verdict::Rejected => Decision::Denied,
            };
            steps.push(Step {
                category: HistoryCategory::Approval,
                code: codes::APPROVAL_DECIDED,
                decision: Some(decision),
                reason: comment.clone(),
                detail: json!({ "step": slot.step, "verdict": verdict }),
            });
            if *verdict == Verdict::Rejected {
                next.status = Rejected;
                steps.push(Step::lifecycle(codes::REQUEST_REJECTED, comment.clone()));
            } else if next.spec.approvals.iter().all(|a| a.decision.is_some()) {
                next.status = Approved;
                steps.push(Step::lifecycle(codes::REQUEST_APPROVED, None));
            }
        }
        Action::Reject { reason } => {
            next.status = Rejected;
            steps.push(Step::lifecycle(codes::REQUEST_REJECTED, Some(reason.clone())));
        }
        Action::Cancel { reason } => {
            next.status = Canceled;
            steps.push(Step::lifecycle(codes::REQUEST_CANCELED, Some(reason.clone())));
        }
        Action::Expire => {
            match request.spec.expires_at {
                Some(at) if at <= now => {}
                _ => return Err(refuse(TransitionRule::NotDue)),
            }
            next.status = Expired;
            steps.push(Step::lifecycle(codes::REQUEST_EXPIRED, None));
        }
        Action::Supersede { by: newer } => {
            if *newer == request.id {
                return Err(refuse(TransitionRule::SelfSupersession));
            }
            next.status = Superseded;
            next.superseded_by = Some(*newer);
            steps.push(Step {
                detail: json!({ "superseded_by": newer }),
                ..Step::lifecycle(codes::REQUEST_SUPERSEDED, None)
            });
        }
        Action::Execute { current_version } => {
            if from != Approved {
                return Err(refuse(TransitionRule::NotApproved));
            }
            resolve_version(request, *current_version, &mut next, &mut steps).map_err(refuse)?;
        }
        Action::Annotate { metadata } => {
            next.spec.metadata = metadata.clone();
            steps.push(Step::lifecycle(codes::REQUEST_ANNOTATED, None));
        }
    }

    if !is_allowed_move(from, next.status) {
        return Err(refuse(TransitionRule::MoveNotAllowed));
    }
    if next.status != Pending {
        next.pending_reason = None;
    }
    next.revision = request.revision + 1;
    next.updated_at = now;

    let records = steps
        .into_iter()
        .map(|step| {
            let mut detail = step.detail;
            if let Value::Object(map) = &mut detail {
                map.insert("from".into(), json!(from));
                map.insert("to".into(), json!(next.status));
            }
            record_for(&next, by, step.category, step.code, step.decision, step.reason, detail, now)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Transition { expected_revision: request.revision, request: next, records })
}

/// Version-aware resolution of an approved request about to execute.
fn resolve_version(
    request: &GovernanceRequest,
    current: Option<i64>,
    next: &mut GovernanceRequest,
    steps: &mut Vec<Step>,
) -> Result<(), TransitionRule> {
    let expected = request.spec.expected_state_version;
    let detail = json!({ "expected_version": expected, "current_version": current });
    let stale = match (expected, current) {
        (None, _) => false,
        (Some(_), None) => return Err(TransitionRule::CurrentVersionRequired),
        (Some(expected), Some(current)) => expected != current,
    };
    let step = |code| Step {
        category: HistoryCategory::VersionResolution,
        code,
        decision: None,
        reason: None,
        detail: detail.clone(),
    };
    if !stale {
        steps.push(step(codes::VERSION_VALIDATED));
        next.status = Executed;
        steps.push(Step::lifecycle(codes::REQUEST_EXECUTED, None));
        return Ok(());
    }
    match request.spec.stale_strategy {
        StaleStrategy::RejectStale => {
            next.status = Rejected;
            steps.push(step(codes::VERSION_REJECTED_STALE));
        }
        StaleStrategy::RequireRenewedApproval => {
            next.status = Pending;
            next.pending_reason = Some(PendingReason::Approval);
            next.spec.expected_state_version = current;
            next.spec.approvals.iter_mut().for_each(|a| a.decision = None);
            steps.push(step(codes::VERSION_RENEWED_APPROVAL_REQUIRED));
        }
        StaleStrategy::RevalidateOnLatestState => {
            next.spec.expected_state_version = current;
            steps.push(step(codes::VERSION_REVALIDATION_REQUIRED));
        }
    }
    Ok(())
}

fn validate_action(action: &Action) -> Result<(), GovernanceError> {
    use crate::validate;
    match action {
        Action::Decide { comment: Some(text), .. } => validate::text("comment", text),
        Action::Reject { reason } | Action::Cancel { reason } => validate::text("reason", reason),
        Action::Execute { current_version: Some(version) } => validate::safe_integer("current_version", *version),
        Action::Annotate { metadata } => validate::json("metadata", metadata),
        _ => Ok(()),
    }
}

/// One history record a change produces, before it is sealed.
struct Step {
    category: HistoryCategory,
    code: &'static str,
    decision: Option<Decision>,
    reason: Option<String>,
    detail: Value,
}

impl Step {
    fn lifecycle(code: &'static str, reason: Option<String>) -> Self {
        Step { category: HistoryCategory::Lifecycle, code, decision: None, reason, detail: json!({}) }
    }
}

#[allow(clippy::too_many_arguments)]
fn record_for(
    request: &GovernanceRequest,
    by: &Principal,
    category: HistoryCategory,
    code: &str,
    decision: Option<Decision>,
    reason: Option<String>,
    detail: Value,
    now: Timestamp,
) -> Result<HistoryRecord, GovernanceError> {
    let mut evidence = Evidence::decision(
        request.spec.workspace_id.clone(),
        by.clone(),
        request.spec.target.state_type.clone(),
        request.spec.operation.clone(),
        Decision::Approved,
    );
    evidence.request = Some(RequestRef { id: request.id, revision: request.revision });
    evidence.category = category;
    evidence.code = code.to_owned();
    evidence.decision = decision;
    evidence.reason = reason;
    evidence.response_json = Some(detail);
    HistoryRecord::new(evidence, now)
}
