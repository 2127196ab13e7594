//! Query contracts: filters, keyset pagination and analytics counts.

use uuid::Uuid;

use crate::validate;
use crate::{
    Actor, Decision, GovernanceError, GovernanceRequest, HistoryCategory, HistoryRecord, Outcome, PendingReason,
    RequestId, RequestStatus, TargetRef, Timestamp,
};

/// A half-open time window `[from, until)`; either end may be open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// Inclusive lower bound.
    pub from: Option<Timestamp>,
    /// Exclusive upper bound.
    pub until: Option<Timestamp>,
}

impl TimeRange {
    /// `[from, until)`.
    pub fn between(from: Timestamp, until: Timestamp) -> Self {
        Self { from: Some(from), until: Some(until) }
    }

    /// Checks that both ends lie in the range every backend stores
    /// ([`Timestamp::MIN_MICROS`] to [`Timestamp::MAX_MICROS`]): a bound
    /// outside it (year 10000, say) is the same validation error on every
    /// provider rather than a different answer on each.
    pub fn validate(&self, field: &str) -> Result<(), GovernanceError> {
        for (end, at) in [("from", self.from), ("until", self.until)] {
            if let Some(at) = at {
                crate::request::validate_timestamp(&format!("{field}.{end}"), at)?;
            }
        }
        Ok(())
    }

    /// True when `at` lies in the window.
    pub fn contains(&self, at: Timestamp) -> bool {
        self.from.is_none_or(|from| at >= from) && self.until.is_none_or(|until| at < until)
    }
}

/// Which way a page walks the `(created_at, id)` order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Oldest first.
    #[default]
    Forward,
    /// Newest first.
    Backward,
}

impl Direction {
    fn tag(self) -> char {
        match self {
            Direction::Forward => 'f',
            Direction::Backward => 'b',
        }
    }
}

/// Where a page starts: the `(created_at, id)` key of the last row seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The row's creation time.
    pub created_at: Timestamp,
    /// The row's id: the tie-breaker between equal timestamps.
    pub id: Uuid,
}

impl Position {
    /// The position of a request.
    pub fn of_request(request: &GovernanceRequest) -> Self {
        Self { created_at: request.created_at(), id: request.id().as_uuid() }
    }

    /// The position of a history record.
    pub fn of_record(record: &HistoryRecord) -> Self {
        Self { created_at: record.created_at(), id: record.id().as_uuid() }
    }

    /// Checks that the position's time lies in the range every backend
    /// stores, so a position past it is the same validation error everywhere.
    pub fn validate(&self) -> Result<(), GovernanceError> {
        crate::request::validate_timestamp("position.created_at", self.created_at)
    }
}

/// An opaque page cursor. Pass back what a [`Page`] returned, with the same
/// direction; anything else is refused with [`GovernanceError::InvalidCursor`]
/// by the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cursor(String);

const CURSOR_VERSION: &str = "g1";

impl Cursor {
    /// The cursor that resumes after `position` walking in `direction`.
    pub fn after(position: Position, direction: Direction) -> Self {
        let mut text = String::with_capacity(3 + 16 + 32);
        text.push_str(CURSOR_VERSION);
        text.push(direction.tag());
        text.push_str(&format!("{:016x}", position.created_at.unix_micros() as u64));
        text.push_str(&position.id.simple().to_string());
        Self(text)
    }

    /// Decodes the position this cursor resumes after, for a page walking in
    /// `direction`.
    pub fn position(&self, direction: Direction) -> Result<Position, GovernanceError> {
        let invalid = |reason| GovernanceError::InvalidCursor { reason };
        let body = self.0.strip_prefix(CURSOR_VERSION).ok_or(invalid("unknown cursor format"))?;
        let body = body.strip_prefix(direction.tag()).ok_or(invalid("made for the other direction"))?;
        if body.len() != 48 || !body.is_ascii() {
            return Err(invalid("wrong length"));
        }
        let micros = u64::from_str_radix(&body[..16], 16).map_err(|_| invalid("not hexadecimal"))? as i64;
        let created_at = Timestamp::from_unix_micros(micros)
            .filter(|t| (Timestamp::MIN_MICROS..=Timestamp::MAX_MICROS).contains(&t.unix_micros()))
            .ok_or(invalid("timestamp out of range"))?;
        let id = Uuid::try_parse(&body[16..]).map_err(|_| invalid("not an id"))?;
        Ok(Position { created_at, id })
    }

    /// The cursor as text, for handing to a client.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for Cursor {
    fn from(text: String) -> Self {
        Self(text)
    }
}

impl From<&str> for Cursor {
    fn from(text: &str) -> Self {
        Self(text.to_owned())
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which page to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// At most this many rows; `None` reads to the end.
    pub limit: Option<u32>,
    /// Resume after this cursor; `None` starts at the beginning (of the direction).
    pub cursor: Option<Cursor>,
    /// Oldest-first or newest-first.
    pub direction: Direction,
}

impl PageRequest {
    /// The first `limit` rows, oldest first.
    pub fn first(limit: u32) -> Self {
        Self { limit: Some(limit), ..Self::default() }
    }

    /// Every row, oldest first.
    pub fn all() -> Self {
        Self::default()
    }

    /// Resume after `cursor`.
    pub fn after(mut self, cursor: Cursor) -> Self {
        self.cursor = Some(cursor);
        self
    }

    /// Walk newest first.
    pub fn backward(mut self) -> Self {
        self.direction = Direction::Backward;
        self
    }

    /// Checks the page size (at least 1) and decodes the position to resume
    /// after. Every provider calls this before reading.
    pub fn position(&self) -> Result<Option<Position>, GovernanceError> {
        if self.limit == Some(0) {
            return Err(GovernanceError::validation("page.limit", crate::ValidationProblem::OutOfRange));
        }
        self.cursor.as_ref().map(|cursor| cursor.position(self.direction)).transpose()
    }

    /// How many rows to fetch to learn whether more exist: `limit + 1`.
    pub fn fetch_limit(&self) -> Option<u64> {
        self.limit.map(|limit| u64::from(limit) + 1)
    }
}

/// One page of rows in the requested direction.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Resumes after the last row (or where this page started, if it is
    /// empty). Rows that arrive later are found from here.
    pub next: Option<Cursor>,
    /// True when rows beyond this page existed when it was read.
    pub has_more: bool,
}

impl<T> Page<T> {
    /// Builds a page from rows fetched in page order with up to
    /// [`PageRequest::fetch_limit`] rows: trims the probe row and sets the cursor.
    pub fn from_fetched(mut rows: Vec<T>, page: &PageRequest, position: impl Fn(&T) -> Position) -> Self {
        let has_more = page.limit.is_some_and(|limit| rows.len() > limit as usize);
        if let Some(limit) = page.limit {
            rows.truncate(limit as usize);
        }
        let next = rows.last().map(|row| Cursor::after(position(row), page.direction)).or_else(|| page.cursor.clone());
        Self { items: rows, next, has_more }
    }
}

/// Filters for [`RequestReader::query_requests`](crate::RequestReader::query_requests).
/// Empty fields match everything; set fields must all match.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestFilter {
    /// Any of these statuses.
    pub statuses: Vec<RequestStatus>,
    /// This pending reason.
    pub pending_reason: Option<PendingReason>,
    /// Requested by this actor (kind and id).
    pub actor: Option<Actor>,
    /// This operation.
    pub operation: Option<String>,
    /// This category.
    pub category: Option<String>,
    /// Carrying every one of these tags.
    pub tags: Vec<String>,
    /// For this target.
    pub target: Option<TargetRef>,
    /// Created in this window.
    pub created: TimeRange,
    /// With `expires_at` at or before this instant.
    pub expires_by: Option<Timestamp>,
}

impl RequestFilter {
    /// Checks the filter's text the way writes are checked, so a filter that
    /// no stored row could match is the same validation error everywhere.
    pub fn validate(&self) -> Result<(), GovernanceError> {
        if let Some(actor) = &self.actor {
            validate::identifier("filter.actor", &actor.id)?;
        }
        validate::optional_identifier("filter.operation", self.operation.as_deref())?;
        validate::optional_identifier("filter.category", self.category.as_deref())?;
        validate::identifier_list("filter.tags", &self.tags)?;
        if let Some(target) = &self.target {
            validate::identifier("filter.target.state_type", &target.state_type)?;
            validate::identifier("filter.target.state_id", &target.state_id)?;
        }
        self.created.validate("filter.created")?;
        if let Some(by) = self.expires_by {
            crate::request::validate_timestamp("filter.expires_by", by)?;
        }
        Ok(())
    }

    /// True when `request` passes every set field.
    pub fn matches(&self, request: &GovernanceRequest) -> bool {
        let spec = request.spec();
        (self.statuses.is_empty() || self.statuses.contains(&request.status()))
            && self.pending_reason.is_none_or(|r| request.pending_reason() == Some(r))
            && self.actor.as_ref().is_none_or(|a| spec.requested_by.actor == *a)
            && self.operation.as_ref().is_none_or(|o| spec.operation == *o)
            && self.category.as_ref().is_none_or(|c| spec.category.as_ref() == Some(c))
            && self.tags.iter().all(|t| spec.tags.contains(t))
            && self.target.as_ref().is_none_or(|t| spec.target == *t)
            && self.created.contains(request.created_at())
            && self.expires_by.is_none_or(|by| spec.expires_at.is_some_and(|at| at <= by))
    }
}

/// Filters for [`HistoryReader::query_history`](crate::HistoryReader::query_history).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistoryFilter {
    /// About this request.
    pub request_id: Option<RequestId>,
    /// In this category.
    pub category: Option<HistoryCategory>,
    /// With this code.
    pub code: Option<String>,
    /// By this actor (kind and id).
    pub actor: Option<Actor>,
    /// On this object type.
    pub object_type: Option<String>,
    /// For this operation.
    pub operation: Option<String>,
    /// With this decision.
    pub decision: Option<Decision>,
    /// With this outcome.
    pub outcome: Option<Outcome>,
    /// With this correlation id.
    pub correlation_id: Option<String>,
    /// Recorded in this window.
    pub created: TimeRange,
}

impl HistoryFilter {
    /// Checks the filter's text the way writes are checked.
    pub fn validate(&self) -> Result<(), GovernanceError> {
        if let Some(actor) = &self.actor {
            validate::identifier("filter.actor", &actor.id)?;
        }
        validate::optional_identifier("filter.code", self.code.as_deref())?;
        validate::optional_identifier("filter.object_type", self.object_type.as_deref())?;
        validate::optional_identifier("filter.operation", self.operation.as_deref())?;
        validate::optional_identifier("filter.correlation_id", self.correlation_id.as_deref())?;
        self.created.validate("filter.created")
    }

    /// True when `record` passes every set field.
    pub fn matches(&self, record: &HistoryRecord) -> bool {
        let e = record.evidence();
        self.request_id.is_none_or(|id| e.request.is_some_and(|r| r.id == id))
            && self.category.is_none_or(|c| e.category == c)
            && self.code.as_ref().is_none_or(|c| e.code == *c)
            && self.actor.as_ref().is_none_or(|a| e.actor.actor == *a)
            && self.object_type.as_ref().is_none_or(|o| e.object_type == *o)
            && self.operation.as_ref().is_none_or(|o| e.operation == *o)
            && self.decision.is_none_or(|d| e.decision == Some(d))
            && self.outcome.is_none_or(|o| e.outcome == Some(o))
            && self.correlation_id.as_ref().is_none_or(|c| e.correlation_id.as_ref() == Some(c))
            && self.created.contains(record.created_at())
    }
}

/// What to group analytics counts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CountBy {
    /// Each reason code (a record counts once per code it carries).
    ReasonCode,
    /// The acting principal, keyed `kind:id`.
    Principal,
    /// The operation.
    Operation,
    /// The decision (`approved` / `denied`).
    Decision,
}

/// An analytics count over decision evidence (records whose decision is set).
///
/// Top deny reasons: `CountQuery::new(CountBy::ReasonCode, window).decision(Decision::Denied)`.
#[derive(Clone, Debug, PartialEq)]
pub struct CountQuery {
    /// Grouping.
    pub by: CountBy,
    /// Only records with this decision.
    pub decision: Option<Decision>,
    /// Only records in this window.
    pub window: TimeRange,
    /// At most this many groups (the largest).
    pub limit: Option<u32>,
}

impl CountQuery {
    /// Counts grouped by `by` over `window`, every decision, no limit.
    pub fn new(by: CountBy, window: TimeRange) -> Self {
        Self { by, decision: None, window, limit: None }
    }

    /// Only records with `decision`.
    pub fn decision(mut self, decision: Decision) -> Self {
        self.decision = Some(decision);
        self
    }

    /// At most `limit` groups.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Checks the window like a filter's (see [`TimeRange::validate`]).
    pub fn validate(&self) -> Result<(), GovernanceError> {
        self.window.validate("query.window")
    }

    /// True when `record` is counted.
    pub fn counts(&self, record: &HistoryRecord) -> bool {
        record.evidence().decision.is_some_and(|d| self.decision.is_none_or(|want| want == d))
            && self.window.contains(record.created_at())
    }

    /// The group keys `record` contributes to.
    pub fn keys(&self, record: &HistoryRecord) -> Vec<String> {
        let e = record.evidence();
        match self.by {
            CountBy::ReasonCode => e.reason_codes.clone(),
            CountBy::Principal => vec![e.actor.actor.key()],
            CountBy::Operation => vec![e.operation.clone()],
            CountBy::Decision => e.decision.map(|d| d.as_str().to_owned()).into_iter().collect(),
        }
    }
}

/// One group of an analytics count.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Count {
    /// The group key.
    pub key: String,
    /// How many.
    pub count: u64,
}

/// Sorts counts largest first (ties by key) and keeps the top `limit`: the
/// one order every provider returns.
pub fn rank_counts(mut counts: Vec<Count>, limit: Option<u32>) -> Vec<Count> {
    counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    if let Some(limit) = limit {
        counts.truncate(limit as usize);
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_fetches_one_row_more_than_it_shows() {
        assert_eq!(PageRequest::first(10).fetch_limit(), Some(11));
        assert_eq!(PageRequest::first(u32::MAX).fetch_limit(), Some(u64::from(u32::MAX) + 1), "no overflow");
        assert_eq!(PageRequest::all().fetch_limit(), None, "reading to the end needs no probe row");
    }
}
