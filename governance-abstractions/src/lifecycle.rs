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

/// Every allowed status move, `(from, to, actions)`: the actions that may
/// make it. Anything else is an
/// [`InvalidTransition`](GovernanceError::InvalidTransition) with rule
/// [`MoveNotAllowed`](TransitionRule::MoveNotAllowed) (each action's own
/// rules, checked first, may refuse earlier with a more specific rule). Moves
/// to the same status are updates that keep the status (annotation, partial
/// approval, revalidation).
pub const MOVES: &[(RequestStatus, RequestStatus, &[ActionKind])] = &[
    (Created, Created, &[ActionKind::Annotate]),
    (Created, Pending, &[ActionKind::Submit]),
    (Created, Approved, &[ActionKind::Approve]),
    (Created, Rejected, &[ActionKind::Reject]),
    (Created, Canceled, &[ActionKind::Cancel]),
    (Created, Expired, &[ActionKind::Expire]),
    (Created, Superseded, &[ActionKind::Supersede]),
    (Pending, Pending, &[ActionKind::Submit, ActionKind::Decide, ActionKind::Annotate]),
    (Pending, Approved, &[ActionKind::Approve, ActionKind::Decide]),
    (Pending, Rejected, &[ActionKind::Reject, ActionKind::Decide]),
    (Pending, Canceled, &[ActionKind::Cancel]),
    (Pending, Expired, &[ActionKind::Expire]),
    (Pending, Superseded, &[ActionKind::Supersede]),
    (Approved, Approved, &[ActionKind::Annotate, ActionKind::Execute]),
    (Approved, Pending, &[ActionKind::Execute]),
    (Approved, Executed, &[ActionKind::Execute]),
    (Approved, Rejected, &[ActionKind::Reject, ActionKind::Execute]),
    (Approved, Canceled, &[ActionKind::Cancel]),
    (Approved, Expired, &[ActionKind::Expire]),
    (Approved, Superseded, &[ActionKind::Supersede]),
];

/// True when [`MOVES`] lists `(from, to)` for any action.
pub fn is_allowed_move(from: RequestStatus, to: RequestStatus) -> bool {
    MOVES.iter().any(|(f, t, _)| (*f, *t) == (from, to))
}

/// True when [`MOVES`] lets `action` move a request from `from` to `to`: the
/// check every change passes last.
pub fn is_allowed(from: RequestStatus, to: RequestStatus, action: ActionKind) -> bool {
    MOVES.iter().any(|(f, t, actions)| (*f, *t) == (from, to) && actions.contains(&action))
}

text_enum! {
    /// The kind of an [`Action`], for errors and records.
    #[non_exhaustive]
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
        /// [`supersede`].
        Supersede => "supersede",
        /// [`Action::Execute`].
        Execute => "execute",
        /// [`Action::Annotate`].
        Annotate => "annotate",
    }
}

text_enum! {
    /// Why the lifecycle refused an action.
    #[non_exhaustive]
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
        /// A request is superseded only by another, unfinished request for
        /// the same target in the same workspace.
        NotASuccessor => "not_a_successor",
        /// Only an approved request executes.
        NotApproved => "not_approved",
        /// The request expects a state version, so execution must name the current one.
        CurrentVersionRequired => "current_version_required",
    }
}

/// A command on a request. The acting principal is passed beside it.
///
/// Supersession involves a second request and has its own function,
/// [`supersede`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
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
            Action::Execute { .. } => ActionKind::Execute,
            Action::Annotate { .. } => ActionKind::Annotate,
        }
    }
}

/// An [`Action`] with the optional reason and metadata that say why it is
/// taken. Both go into every history record the action produces (the reason
/// where the action has none of its own, the metadata as the record's
/// `request_json`); neither changes the request.
///
/// ```
/// use governance_abstractions::{Action, Command};
/// use serde_json::json;
///
/// let command = Command::from(Action::Approve).reason("external check passed").metadata(json!({ "check": "ci-7" }));
/// assert_eq!(command.reason.as_deref(), Some("external check passed"));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Command {
    /// What to do.
    pub action: Action,
    /// Why (free text, at most [`MAX_TEXT_BYTES`](crate::limits::MAX_TEXT_BYTES)).
    pub reason: Option<String>,
    /// Free JSON recorded with the change.
    pub metadata: Option<Value>,
}

impl Command {
    /// Records `reason` with the change.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Records `metadata` with the change.
    pub fn metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// The action, reason and metadata, by value.
    pub fn into_parts(mut self) -> (Action, Option<String>, Option<Value>) {
        let action = std::mem::replace(&mut self.action, Action::Approve);
        (action, self.reason.take(), self.metadata.take())
    }

    fn validate(&self) -> Result<(), GovernanceError> {
        use crate::validate;
        if let Some(metadata) = &self.metadata {
            validate::json("command.metadata", metadata)?;
        }
        if let Some(reason) = &self.reason {
            validate::text("command.reason", reason)?;
        }
        Ok(())
    }
}

impl From<Action> for Command {
    fn from(action: Action) -> Self {
        Self { action, reason: None, metadata: None }
    }
}

/// A command handed over by value (to [`GovernanceService::apply`](crate::GovernanceService::apply))
/// may carry JSON too deep to validate: it must still drop safely.
impl Drop for Command {
    fn drop(&mut self) {
        self.metadata.iter_mut().for_each(crate::validate::defuse);
        if let Action::Annotate { metadata } = &mut self.action {
            crate::validate::defuse(metadata);
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
    expected_status: RequestStatus,
    expected_digest: String,
    successor: Option<Successor>,
    request: GovernanceRequest,
    records: Vec<HistoryRecord>,
}

/// The state of the newer request a supersession was computed against: a
/// store commits the supersession only while the successor is still stored
/// at this revision with this digest, checked in the same transaction (or
/// under the same lock) as the older request's update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Successor {
    /// The newer request.
    pub id: RequestId,
    /// Its revision when the supersession was computed.
    pub revision: u64,
    /// Its state digest at that revision.
    pub state_digest: String,
}

impl Transition {
    /// The [`state_digest`](GovernanceRequest::state_digest) of the state the
    /// change was computed from: a store writes only over the stored row at
    /// [`expected_revision`](Self::expected_revision) with this digest.
    pub fn expected_digest(&self) -> &str {
        &self.expected_digest
    }

    /// For a supersession, the successor state it depends on.
    pub fn successor(&self) -> Option<&Successor> {
        self.successor.as_ref()
    }

    /// The columns this transition writes, the same on every provider.
    pub fn write(&self) -> crate::provider::TransitionWrite<'_> {
        crate::provider::TransitionWrite::of(&self.request)
    }

    /// The revision the change was computed from.
    pub fn expected_revision(&self) -> u64 {
        self.expected_revision
    }

    /// The status the change was computed from: a store refuses the change
    /// if the stored request at the expected revision has another status.
    pub fn expected_status(&self) -> RequestStatus {
        self.expected_status
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
pub fn create(mut spec: NewRequest, id: RequestId, now: Timestamp) -> Result<Creation, GovernanceError> {
    if let Err(error) = crate::validate::json_depth("metadata", &spec.metadata) {
        // Handed over by value: dropping it must not recurse to its depth.
        crate::validate::defuse(&mut spec.metadata);
        return Err(error);
    }
    spec.validate()?;
    if spec.approvals.iter().any(|a| a.decision.is_some()) {
        return Err(GovernanceError::validation(
            "approvals.decision",
            crate::ValidationProblem::Inconsistent("must be empty on creation"),
        ));
    }
    let creation_digest = spec.creation_digest()?;
    let request = GovernanceRequest::created(spec, id, now, creation_digest)?;
    let step = Step { detail: json!({ "to": Created }), ..Step::lifecycle(codes::REQUEST_CREATED, None) };
    let record = record_for(&request, &request.spec.requested_by, step, Note::default(), now)?;
    Ok(Creation { request, record })
}

/// Applies `action` by `by` to `request` at `now`.
///
/// Returns the next state (revision + 1) and its records, or an
/// [`InvalidTransition`](GovernanceError::InvalidTransition) naming the rule
/// that refused it. Never touches storage. `now` is raised to the request's
/// `updated_at` if it lies before it, so time never runs backwards in a
/// request's history. A `request` that does not match its own
/// [`state_digest`](GovernanceRequest::state_digest) is a validation error.
pub fn apply(
    request: &GovernanceRequest,
    by: &Principal,
    action: &Action,
    now: Timestamp,
) -> Result<Transition, GovernanceError> {
    applied(request, by, action, Note::default(), now)
}

/// [`apply`] with the reason and metadata of a [`Command`] recorded in the
/// change's history records.
pub fn apply_command(
    request: &GovernanceRequest,
    by: &Principal,
    command: &Command,
    now: Timestamp,
) -> Result<Transition, GovernanceError> {
    command.validate()?;
    applied(request, by, &command.action, Note::of(command), now)
}

fn applied(
    request: &GovernanceRequest,
    by: &Principal,
    action: &Action,
    note: Note<'_>,
    now: Timestamp,
) -> Result<Transition, GovernanceError> {
    validate_action(action)?;
    change(request, by, action.kind(), note, now, |next, steps, now| act(request, by, action, now, next, steps))
}

/// The reason and metadata a [`Command`] records with its change.
#[derive(Clone, Copy, Default)]
struct Note<'a> {
    reason: Option<&'a str>,
    metadata: Option<&'a Value>,
}

impl<'a> Note<'a> {
    fn of(command: &'a Command) -> Self {
        Self { reason: command.reason.as_deref(), metadata: command.metadata.as_ref() }
    }
}

/// Marks `older` as superseded by `newer`: a distinct, unfinished request for
/// the same target in the same workspace.
pub fn supersede(
    older: &GovernanceRequest,
    newer: &GovernanceRequest,
    by: &Principal,
    now: Timestamp,
) -> Result<Transition, GovernanceError> {
    superseded(older, newer, by, Note::default(), now)
}

/// [`supersede`] with a reason and metadata recorded in the change's history.
pub fn supersede_noted(
    older: &GovernanceRequest,
    newer: &GovernanceRequest,
    by: &Principal,
    reason: Option<&str>,
    metadata: Option<&Value>,
    now: Timestamp,
) -> Result<Transition, GovernanceError> {
    if let Some(metadata) = metadata {
        crate::validate::json("metadata", metadata)?;
    }
    if let Some(reason) = reason {
        crate::validate::text("reason", reason)?;
    }
    superseded(older, newer, by, Note { reason, metadata }, now)
}

fn superseded(
    older: &GovernanceRequest,
    newer: &GovernanceRequest,
    by: &Principal,
    note: Note<'_>,
    now: Timestamp,
) -> Result<Transition, GovernanceError> {
    newer.check()?;
    let mut transition = change(older, by, ActionKind::Supersede, note, now, |next, steps, _| {
        let successor = newer.id != older.id
            && newer.workspace_id() == older.workspace_id()
            && newer.spec.target == older.spec.target
            && !newer.status.is_terminal();
        if !successor {
            return Err(TransitionRule::NotASuccessor.into());
        }
        next.status = Superseded;
        next.superseded_by = Some(newer.id);
        steps.push(Step {
            detail: json!({ "superseded_by": newer.id }),
            ..Step::lifecycle(codes::REQUEST_SUPERSEDED, None)
        });
        Ok(())
    })?;
    transition.successor =
        Some(Successor { id: newer.id, revision: newer.revision, state_digest: newer.state_digest.clone() });
    Ok(transition)
}

/// Why one action could not apply: a lifecycle rule or bad input.
enum Refusal {
    Rule(TransitionRule),
    Input(GovernanceError),
}

impl From<TransitionRule> for Refusal {
    fn from(rule: TransitionRule) -> Self {
        Refusal::Rule(rule)
    }
}

impl From<GovernanceError> for Refusal {
    fn from(error: GovernanceError) -> Self {
        Refusal::Input(error)
    }
}

/// The frame every change shares: the base state's own check, the terminal
/// check, the action's own rules, the move table, revision and time, and
/// sealing the new state and its records.
fn change(
    request: &GovernanceRequest,
    by: &Principal,
    kind: ActionKind,
    note: Note<'_>,
    now: Timestamp,
    rules: impl FnOnce(&mut GovernanceRequest, &mut Vec<Step>, Timestamp) -> Result<(), Refusal>,
) -> Result<Transition, GovernanceError> {
    request.check()?;
    let from = request.status;
    let refuse = |rule| GovernanceError::InvalidTransition { id: request.id, from, action: kind, rule };
    if from.is_terminal() {
        return Err(refuse(TransitionRule::Terminal));
    }
    crate::request::validate_principal("actor", by)?;
    let now = now.max(request.updated_at);
    let mut next = request.clone();
    let mut steps: Vec<Step> = Vec::with_capacity(2);
    match rules(&mut next, &mut steps, now) {
        Ok(()) => {}
        Err(Refusal::Rule(rule)) => return Err(refuse(rule)),
        Err(Refusal::Input(error)) => return Err(error),
    }
    if !is_allowed(from, next.status, kind) {
        return Err(refuse(TransitionRule::MoveNotAllowed));
    }
    if next.status != Pending {
        next.pending_reason = None;
    }
    next.revision = request.revision + 1;
    next.updated_at = now;
    next.seal()?;

    let records = steps
        .into_iter()
        .map(|mut step| {
            if let Value::Object(map) = &mut step.detail {
                map.insert("from".into(), json!(from));
                map.insert("to".into(), json!(next.status));
                if let Some(reason) = next.pending_reason {
                    map.insert("pending_reason".into(), json!(reason));
                }
                if let Some(reason) = request.pending_reason {
                    map.insert("from_pending_reason".into(), json!(reason));
                }
                // The record's reason is the action's own; the command's goes beside it.
                if let (Some(_), Some(why)) = (&step.reason, note.reason) {
                    map.insert("command_reason".into(), json!(why));
                }
            }
            record_for(&next, by, step, note, now)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Transition {
        expected_revision: request.revision,
        expected_status: from,
        expected_digest: request.state_digest.clone(),
        successor: None,
        request: next,
        records,
    })
}

/// The rules of each action: edits `next` and lists the records to write.
fn act(
    request: &GovernanceRequest,
    by: &Principal,
    action: &Action,
    now: Timestamp,
    next: &mut GovernanceRequest,
    steps: &mut Vec<Step>,
) -> Result<(), Refusal> {
    let from = request.status;
    match action {
        Action::Submit { reason } => {
            if *reason == PendingReason::Approval && request.spec.approvals.is_empty() {
                return Err(Refusal::Rule(TransitionRule::NoApprovalRequirements));
            }
            // From approved, the move table refuses it: only execution goes back to pending.
            next.status = Pending;
            next.pending_reason = Some(*reason);
            steps.push(Step::lifecycle(codes::REQUEST_SUBMITTED, None));
        }
        Action::Approve => {
            // From approved, the move table refuses it.
            if !request.spec.approvals.is_empty() {
                return Err(Refusal::Rule(TransitionRule::ApprovalsRequired));
            }
            next.status = Approved;
            steps.push(Step::lifecycle(codes::REQUEST_APPROVED, None));
        }
        Action::Decide { verdict, comment } => {
            if from != Pending || request.pending_reason != Some(PendingReason::Approval) {
                return Err(Refusal::Rule(TransitionRule::NotAwaitingApproval));
            }
            let approver = &by.actor;
            let open_step = request.spec.approvals.iter().filter(|a| a.decision.is_none()).map(|a| a.step).min();
            let mine = |a: &&crate::ApprovalRequirement| a.approver == *approver;
            if !request.spec.approvals.iter().any(|a| mine(&a)) {
                return Err(Refusal::Rule(TransitionRule::NotAnApprover));
            }
            let Some(slot) = next
                .spec
                .approvals
                .iter_mut()
                .filter(|a| a.approver == *approver && a.decision.is_none())
                .min_by_key(|a| a.step)
            else {
                return Err(Refusal::Rule(TransitionRule::AlreadyDecided));
            };
            if Some(slot.step) != open_step {
                return Err(Refusal::Rule(TransitionRule::StepNotOpen));
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
                _ => return Err(Refusal::Rule(TransitionRule::NotDue)),
            }
            next.status = Expired;
            steps.push(Step::lifecycle(codes::REQUEST_EXPIRED, None));
        }
        Action::Execute { current_version } => {
            if from != Approved {
                return Err(Refusal::Rule(TransitionRule::NotApproved));
            }
            resolve_version(request, *current_version, next, steps)?;
        }
        Action::Annotate { metadata } => {
            next.spec.metadata = metadata.clone();
            steps.push(Step::lifecycle(codes::REQUEST_ANNOTATED, None));
        }
    }

    Ok(())
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

fn record_for(
    request: &GovernanceRequest,
    by: &Principal,
    step: Step,
    note: Note<'_>,
    now: Timestamp,
) -> Result<HistoryRecord, GovernanceError> {
    let spec = &request.spec;
    let mut evidence = Evidence::decision(
        spec.workspace_id.clone(),
        by.clone(),
        spec.target.state_type.clone(),
        spec.operation.clone(),
        Decision::Approved,
    )
    .request(RequestRef { id: request.id, revision: request.revision })
    .category(step.category)
    .code(step.code)
    .response_json(step.detail);
    evidence.decision = step.decision;
    evidence.reason = step.reason.or_else(|| note.reason.map(str::to_owned));
    evidence.request_json = note.metadata.cloned();
    HistoryRecord::new(evidence, now)
}
