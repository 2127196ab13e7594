//! The write statements both PostgreSQL providers send over the shared
//! schema ([`postgres_schema`](super::postgres_schema)): a creation and a
//! transition are each one statement, made atomic by data-modifying CTEs,
//! so on a pool they cost one round trip and no `BEGIN`/`COMMIT`.
//!
//! The texts are built here once so that the providers cannot drift apart
//! in what a write checks. Each binds the parameters its documentation
//! lists, in that order; the history rows come last, bound as the
//! [`HistoryRows`] form the statement was built for.
//!
//! ```
//! use governance_abstractions::provider::postgres_statements::{HistoryRows, create_request, transition};
//!
//! // A creation with its record as 26 parameters after the request's 25.
//! let create = create_request(HistoryRows::Values(1));
//! assert!(create.starts_with("WITH created AS (INSERT INTO governance_requests"));
//! assert!(create.contains("$51"));
//! // A transition whose records are bound as column arrays.
//! let move_on = transition(HistoryRows::Arrays, false);
//! assert!(move_on.contains("UNNEST($15::text[]"));
//! ```

/// The request columns, in the order of a creation's parameters `$1..$25`.
pub const REQUEST_COLUMNS: &str = "workspace_id, id, state_type, state_id, operation, actor_kind, actor_id, \
    requested_by, intent, status, pending_reason, approvals, expected_state_version, stale_strategy, expires_at, \
    superseded_by, idempotency_key, category, tags, metadata, revision, created_at, updated_at, creation_digest, \
    state_digest";

/// The history columns, in the order every statement binds a record's.
pub const HISTORY_COLUMNS: &str = "workspace_id, id, request_id, request_revision, category, code, actor_kind, \
    actor_id, actor, object_type, operation, decision, outcome, reason, reason_codes, correlation_id, trace_hash, \
    idempotency_key, policy_version, latency_us, request_json, response_json, redaction_policy, redaction_version, \
    created_at, content_hash";

/// How many history columns a record binds.
pub const HISTORY_ARITY: usize = 26;

/// Where `reason_codes` is among the [`HISTORY_COLUMNS`] (from 0).
const REASON_CODES: usize = 14;

/// How many request columns a creation binds.
pub const REQUEST_ARITY: usize = 25;

/// The written columns of a transition, in the order its statement binds
/// them from `$6` on: exactly [`TRANSITION_COLUMNS`](super::TRANSITION_COLUMNS).
pub const TRANSITION_FIRST_WRITTEN: usize = 6;

/// How a statement's history rows are bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HistoryRows {
    /// One array per column of [`HISTORY_COLUMNS`], each as long as the
    /// batch, then two more: one text for any number of records, and
    /// binary-encoded arrays the server reads cheaply. Their element types
    /// are [`HISTORY_ARRAY_TYPES`]. `reason_codes` (a `text[][]` would need
    /// every record to have as many codes) is bound as one flat `text[]` of
    /// every record's codes in order, and the two arrays after the 26 are
    /// `int4[]`: each record's first and last position in it, from 1 (the
    /// last below the first for a record without codes). The server slices
    /// each record's codes out of the flat array, which costs it far less
    /// than decoding a list per record.
    Arrays,
    /// As [`Arrays`](Self::Arrays), but 26 arrays only: `reason_codes` is
    /// a `jsonb[]` of one list per record, which the server rebuilds row by
    /// row. For engines without array slicing (CockroachDB); it costs the
    /// server more per row.
    ArraysJsonCodes,
    /// This many records of 26 parameters each, a plain `VALUES` list: for
    /// drivers that cannot bind arrays with `NULL` elements, and for a
    /// single record, which the server plans and reads for less than
    /// `UNNEST` over one-element arrays. Each parameter has its column's
    /// type (`reason_codes` a `text[]`).
    Values(usize),
}

/// The element types of the arrays of [`HistoryRows::Arrays`], by column
/// (`reason_codes`: the flat array of every record's codes).
#[rustfmt::skip]
pub const HISTORY_ARRAY_TYPES: [&str; HISTORY_ARITY] = [
    "text", "uuid", "uuid", "int8", "text", "text", "text", "text", "jsonb", "text", "text", "text", "text",
    "text", "text", "text", "text", "text", "text", "int8", "jsonb", "jsonb", "text", "text", "timestamptz",
    "text",
];

impl HistoryRows {
    /// How many parameters the rows bind.
    pub fn parameters(self) -> usize {
        match self {
            HistoryRows::Arrays => HISTORY_ARITY + 2,
            HistoryRows::ArraysJsonCodes => HISTORY_ARITY,
            HistoryRows::Values(rows) => rows * HISTORY_ARITY,
        }
    }

    /// The rows as a query yielding [`HISTORY_COLUMNS`], their parameters
    /// numbered from `$first`.
    pub fn select(self, first: usize) -> String {
        match self {
            HistoryRows::Arrays | HistoryRows::ArraysJsonCodes => {
                let flat = self == HistoryRows::Arrays;
                let (mut arrays, mut names, mut selected) = (Vec::new(), Vec::new(), Vec::new());
                for (i, (column, t)) in HISTORY_COLUMNS.split(", ").zip(HISTORY_ARRAY_TYPES).enumerate() {
                    let n = first + i;
                    match i {
                        // The flat list is sliced, not unnested.
                        REASON_CODES if flat => selected.push(format!("(${n}::text[])[r.codes_from:r.codes_to]")),
                        REASON_CODES => {
                            arrays.push(format!("${n}::jsonb[]"));
                            names.push(column);
                            selected.push(
                                "ARRAY(SELECT c.code FROM jsonb_array_elements_text(r.reason_codes) \
                                 WITH ORDINALITY AS c(code, n) ORDER BY c.n)"
                                    .to_owned(),
                            );
                        }
                        _ => {
                            arrays.push(format!("${n}::{t}[]"));
                            names.push(column);
                            selected.push(format!("r.{column}"));
                        }
                    }
                }
                if flat {
                    let after = first + HISTORY_ARITY;
                    arrays.extend([format!("${after}::int4[]"), format!("${}::int4[]", after + 1)]);
                    names.extend(["codes_from", "codes_to"]);
                }
                format!("SELECT {} FROM UNNEST({}) AS r({})", selected.join(", "), arrays.join(", "), names.join(", "))
            }
            HistoryRows::Values(rows) => {
                let rows: Vec<String> = (0..rows)
                    .map(|row| {
                        let from = first + row * HISTORY_ARITY;
                        let values: Vec<String> = (from..from + HISTORY_ARITY).map(|n| format!("${n}")).collect();
                        format!("({})", values.join(", "))
                    })
                    .collect();
                format!("SELECT * FROM (VALUES {}) AS r({HISTORY_COLUMNS})", rows.join(", "))
            }
        }
    }
}

/// A creation: `$1..$25` the request's [`REQUEST_COLUMNS`], then its
/// record as `rows`. The record is inserted only with the request; a
/// request that clashes with a stored one (id or idempotency key) inserts
/// nothing and yields no row, a taken record id fails with a unique
/// violation. One row (`1`) when both were inserted.
pub fn create_request(rows: HistoryRows) -> String {
    let values: Vec<String> = (1..=REQUEST_ARITY).map(|n| format!("${n}")).collect();
    format!(
        "WITH created AS (INSERT INTO governance_requests ({REQUEST_COLUMNS}) VALUES ({}) \
         ON CONFLICT DO NOTHING RETURNING 1) INSERT INTO governance_history ({HISTORY_COLUMNS}) {} \
         WHERE EXISTS (SELECT 1 FROM created) RETURNING 1",
        values.join(", "),
        rows.select(REQUEST_ARITY + 1)
    )
}

/// A transition, or with `supersede` a supersession: the conditional update
/// of the request and the insert of its records, written only if the
/// update matched. Yields one row, `moved`: 1 when it wrote, 0 when no row
/// matched (a lost race, a missing request, a moved successor, or a row
/// stored without a digest; the provider finds out which).
///
/// Parameters: `$1..$5` locate the row the transition was computed from
/// (workspace, id, revision, status, state digest); `$6..$14` are the
/// written [`TRANSITION_COLUMNS`](super::TRANSITION_COLUMNS) in their
/// order; with `supersede`, `$15..$17` are the successor's id, revision
/// and state digest; then the records as `rows`.
///
/// The digests compare with `IS NOT DISTINCT FROM`: bound to the expected
/// digest they match only a row that stores it; bound to `NULL` (a retry
/// over a row stored without a digest, after its content was checked) only
/// a row that stores none. A supersession holds the successor `FOR SHARE`
/// until commit, so it cannot move on between this check and the update.
pub fn transition(rows: HistoryRows, supersede: bool) -> String {
    let successor = TRANSITION_FIRST_WRITTEN + super::TRANSITION_COLUMNS.len();
    let (with, guard, history_from) = if supersede {
        let (id, revision, digest) = (successor, successor + 1, successor + 2);
        (
            format!(
                "guard AS (SELECT 1 FROM governance_requests WHERE workspace_id = $1 AND id = ${id} \
                 AND revision = ${revision} AND state_digest IS NOT DISTINCT FROM ${digest} FOR SHARE), "
            ),
            " AND EXISTS (SELECT 1 FROM guard)",
            successor + 3,
        )
    } else {
        (String::new(), "", successor)
    };
    let set: Vec<String> = super::TRANSITION_COLUMNS
        .iter()
        .zip(TRANSITION_FIRST_WRITTEN..)
        .map(|(column, n)| format!("{column} = ${n}"))
        .collect();
    format!(
        "WITH {with}moved AS (UPDATE governance_requests SET {} \
         WHERE workspace_id = $1 AND id = $2 AND revision = $3 AND status = $4 \
         AND state_digest IS NOT DISTINCT FROM $5{guard} RETURNING 1), \
         recorded AS (INSERT INTO governance_history ({HISTORY_COLUMNS}) {} WHERE EXISTS (SELECT 1 FROM moved) \
         RETURNING 1) SELECT (SELECT count(*) FROM moved) AS moved",
        set.join(", "),
        rows.select(history_from)
    )
}

/// An append of records bound as `rows`, with no condition.
pub fn append_history(rows: HistoryRows) -> String {
    format!("INSERT INTO governance_history ({HISTORY_COLUMNS}) {}", rows.select(1))
}

/// A parameter of a [`count_history`] statement, in binding order: bind
/// `Text` as `text`, `Int` as `int8`, `Time` as `timestamptz`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CountParam {
    /// A `text` value.
    Text(String),
    /// An `int8` value.
    Int(i64),
    /// A `timestamptz` value.
    Time(crate::Timestamp),
}

/// The watermark token of a row of `governance_count_rollups r`: its
/// `through_tx` as text, followed by [`HOURS_ONLY`] unless the roll-up that
/// last moved it kept the daily counts in step (`days_through_tx`). One
/// expression, so that the token [`COUNT_MARK`] reads and the one a count
/// statement reports compare as text.
macro_rules! mark_of_row {
    () => {
        "r.through_tx::text || CASE WHEN r.days_through_tx = r.through_tx THEN '' ELSE '/hours' END"
    };
}

/// The end of a watermark token whose daily counts are not in step with
/// the hourly ones (a roll-up of an older version of the roll-up function
/// folded records into the hours only): a count built for it reads no day.
const HOURS_ONLY: &str = "/hours";

/// The watermark of a workspace's counts (its `through_tx` as text, marked
/// when the daily counts are not known to be in step with the hourly ones),
/// `$1` the workspace: what a count over whole hours is built for
/// ([`count_history`]), which reads the watermark again in its own snapshot
/// and reports it, so that [`CountAttempts`] accepts only a count whose
/// watermark held while it ran (a watermark that passed its probe check
/// stays this database's, and every roll-up that changes the counts moves
/// it). No row when
/// nothing was folded in yet, or when its probe record no longer has the
/// transaction id it had when it was folded in (a logical restore stamps
/// every record anew, so counts from before it are not this database's), or
/// when it lies past every transaction id this database has handed out (a
/// copy that kept the records' transaction ids).
pub const COUNT_MARK: &str = concat!(
    "SELECT ",
    mark_of_row!(),
    " FROM governance_count_rollups r \
     WHERE r.workspace_id = $1 AND r.through_tx <= pg_snapshot_xmax(pg_current_snapshot()) \
     AND EXISTS (SELECT 1 FROM governance_history h \
         WHERE h.workspace_id = r.workspace_id AND h.id = r.probe_id AND h.tx_id = r.probe_tx)"
);

/// A watermark token as its transaction id (text) and whether the daily
/// counts may be read with it.
fn read_mark(mark: &str) -> (&str, bool) {
    match mark.strip_suffix(HOURS_ONLY) {
        Some(tx) => (tx, false),
        None => (mark, true),
    }
}

/// One hour in microseconds: the grain of `governance_history_counts`.
const HOUR_MICROS: i64 = 3_600_000_000;

/// The whole hours of `window`, as hours since the epoch `[first, end)`
/// (`None`: unbounded on that side); `None` when it holds no whole hour,
/// and a count over it reads only records.
pub fn whole_hours(window: &crate::TimeRange) -> Option<(Option<i64>, Option<i64>)> {
    whole_units((window.from.map(|t| t.unix_micros()), window.until.map(|t| t.unix_micros())), HOUR_MICROS)
}

/// The whole units of `grain` within `[first, end)` (`None`: unbounded on
/// that side), counted from zero: `None` when they hold no whole unit.
fn whole_units((first, end): (Option<i64>, Option<i64>), grain: i64) -> Option<(Option<i64>, Option<i64>)> {
    let first = first.map(|at| at.div_euclid(grain) + i64::from(at.rem_euclid(grain) != 0));
    let end = end.map(|at| at.div_euclid(grain));
    match (first, end) {
        (Some(first), Some(end)) if first >= end => None,
        bounds => Some(bounds),
    }
}

/// The grain of `governance_history_daily_counts`, in hours.
const HOURS_PER_DAY: i64 = 24;

/// The whole days (days since the epoch, UTC) of the whole hours
/// `[first, end)`, as [`whole_hours`] gives them: `None` when they hold no
/// whole day.
fn whole_days(hours: (Option<i64>, Option<i64>)) -> Option<(Option<i64>, Option<i64>)> {
    whole_units(hours, HOURS_PER_DAY)
}

/// The start of `hour` (hours since the epoch).
fn hour_start(hour: i64) -> Result<crate::Timestamp, crate::GovernanceError> {
    hour.checked_mul(HOUR_MICROS)
        .and_then(crate::Timestamp::from_unix_micros)
        .ok_or_else(|| crate::GovernanceError::validation("query.window", crate::ValidationProblem::OutOfRange))
}

/// A statement text and its parameters, numbered as they are pushed.
struct Counting {
    sql: String,
    params: Vec<CountParam>,
}

impl Counting {
    fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    fn bind(&mut self, param: CountParam) -> &mut Self {
        self.params.push(param);
        self.sql.push_str(&format!("${}", self.params.len()));
        self
    }

    fn window(&mut self, range: &crate::TimeRange) {
        if let Some(from) = range.from {
            self.push(" AND created_at >= ").bind(CountParam::Time(from));
        }
        if let Some(until) = range.until {
            self.push(" AND created_at < ").bind(CountParam::Time(until));
        }
    }
}

/// A count of decision records over the shared schema: rows of `key`
/// (`text`) and `n` (`int8`), several per key at most.
/// Run it through [`CountAttempts`], which sums and ranks them and checks
/// the watermark.
///
/// With no watermark (`mark`: read by [`COUNT_MARK`]; `None` when the
/// workspace was never rolled up, its counts came from before a logical
/// restore, or the schema keeps none) it counts the window's records. With
/// one, the window's whole days (UTC) are read from the daily counts
/// (`governance_history_daily_counts`) and its other whole hours from the
/// hourly counts (`governance_history_counts`; both folded in by
/// `governance_roll_up_counts`, in one statement) — every whole hour from
/// the hourly counts while the watermark says the days are not in step
/// with them — plus the records of
/// those hours that no roll-up has folded in yet, found
/// through the feed index by transaction, and the partial hours at the
/// window's edges are counted from their records. The watermark is bound
/// as a value, so the planner sees how few records follow it (inside the
/// statement it would be an unknown, and the planner would guess a third
/// of the workspace); one more row, its `n` `NULL`, carries in `key` the
/// watermark as the statement's own snapshot saw it. The count holds only
/// if the two agree: a roll-up that committed after the watermark was read
/// folded records the statement also counted from the tail.
pub fn count_history(
    workspace: &crate::WorkspaceId,
    query: &crate::CountQuery,
    mark: Option<&str>,
) -> Result<(String, Vec<CountParam>), crate::GovernanceError> {
    use crate::{CountBy, TimeRange};
    query.validate()?;
    let (key, dimension) = match query.by {
        CountBy::ReasonCode => ("reason.code", "reason_code"),
        CountBy::Principal => ("actor_kind || ':' || actor_id", "principal"),
        CountBy::Operation => ("operation", "operation"),
        // Every decision record has one operation: its rows, summed per
        // decision, are the counts by decision.
        CountBy::Decision => ("decision", "operation"),
    };
    let from = if query.by == CountBy::ReasonCode {
        "governance_history, unnest(reason_codes) AS reason(code)"
    } else {
        "governance_history"
    };
    let records = |sql: &mut Counting| {
        sql.push(&format!("SELECT {key} AS key, count(*) AS n FROM {from} WHERE workspace_id = "));
        sql.bind(CountParam::Text(workspace.as_str().to_owned()));
        sql.push(" AND decision IS NOT NULL");
        if query.by == CountBy::ReasonCode {
            // The library never stores a NULL code; the roll-up skips one
            // written around it, and so does this.
            sql.push(" AND reason.code IS NOT NULL");
        }
        if let Some(decision) = query.decision {
            sql.push(" AND decision = ").bind(CountParam::Text(decision.as_str().to_owned()));
        }
    };
    let mut sql = Counting { sql: String::new(), params: Vec::new() };
    let (Some(mark), Some((first, end))) = (mark, whole_hours(&query.window)) else {
        records(&mut sql);
        sql.window(&query.window);
        sql.push(" GROUP BY 1");
        return Ok((sql.sql, sql.params));
    };
    let first_at = first.map(hour_start).transpose()?;
    let end_at = end.map(hour_start).transpose()?;
    let whole = TimeRange { from: first_at, until: end_at };
    // The whole days folded in, and the whole hours around them.
    let counted = if query.by == CountBy::Decision { "decision" } else { "key" };
    let mut folded = |table: &str, column: &str, (from, until): (Option<i64>, Option<i64>)| {
        if !sql.sql.is_empty() {
            sql.push(" UNION ALL ");
        }
        sql.push(&format!("SELECT {counted} AS key, sum(n)::bigint AS n FROM {table} WHERE workspace_id = "));
        sql.bind(CountParam::Text(workspace.as_str().to_owned()));
        sql.push(" AND dimension = ").bind(CountParam::Text(dimension.to_owned()));
        if let Some(decision) = query.decision {
            sql.push(" AND decision = ").bind(CountParam::Text(decision.as_str().to_owned()));
        }
        if let Some(from) = from {
            sql.push(&format!(" AND {column} >= ")).bind(CountParam::Int(from));
        }
        if let Some(until) = until {
            sql.push(&format!(" AND {column} < ")).bind(CountParam::Int(until));
        }
        sql.push(" GROUP BY 1");
    };
    let (mark_tx, days_in_step) = read_mark(mark);
    match whole_days((first, end)).filter(|_| days_in_step) {
        None => folded("governance_history_counts", "hour", (first, end)),
        Some((first_day, end_day)) => {
            folded("governance_history_daily_counts", "day", (first_day, end_day));
            if let (Some(first), Some(first_day)) = (first, first_day)
                && first < first_day * HOURS_PER_DAY
            {
                folded("governance_history_counts", "hour", (Some(first), Some(first_day * HOURS_PER_DAY)));
            }
            if let (Some(end), Some(end_day)) = (end, end_day)
                && end_day * HOURS_PER_DAY < end
            {
                folded("governance_history_counts", "hour", (Some(end_day * HOURS_PER_DAY), Some(end)));
            }
        }
    }
    // The whole hours' records not folded in yet.
    sql.push(" UNION ALL ");
    records(&mut sql);
    sql.window(&whole);
    sql.push(" AND tx_id >= ").bind(CountParam::Text(mark_tx.to_owned())).push("::text::xid8 GROUP BY 1");
    // The partial hours at the edges.
    if let (Some(from), Some(first_at)) = (query.window.from, first_at)
        && from < first_at
    {
        sql.push(" UNION ALL ");
        records(&mut sql);
        sql.window(&TimeRange { from: Some(from), until: Some(first_at) });
        sql.push(" GROUP BY 1");
    }
    if let (Some(until), Some(end_at)) = (query.window.until, end_at)
        && end_at < until
    {
        sql.push(" UNION ALL ");
        records(&mut sql);
        sql.window(&TimeRange { from: Some(end_at), until: Some(until) });
        sql.push(" GROUP BY 1");
    }
    // The watermark as this snapshot sees it. Comparing the token alone is
    // enough: a watermark that passed its probe check stays this
    // database's, and every roll-up that changes its counts moves it.
    sql.push(concat!(
        " UNION ALL SELECT (SELECT ",
        mark_of_row!(),
        " FROM governance_count_rollups r WHERE r.workspace_id = $1), NULL"
    ));
    Ok((sql.sql, sql.params))
}

/// One row of a [`count_history`] statement, decoded by the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CountRow {
    /// A row with a count: `key` and `n`.
    Count {
        /// The counted key.
        key: String,
        /// How many records, for this part of the window.
        n: i64,
    },
    /// The row whose `n` is `NULL`: the watermark (its `key`, `NULL` for
    /// none) as the statement's snapshot saw it.
    Mark(Option<String>),
}

impl CountRow {
    /// A row from its `key` and `n` columns: the one whose `n` is `NULL`
    /// carries the watermark in `key`.
    pub fn from_columns(key: Option<String>, n: Option<i64>) -> Self {
        match (n, key) {
            (Some(n), Some(key)) => CountRow::Count { key, n },
            (_, mark) => CountRow::Mark(mark),
        }
    }
}

/// How many times a count is built anew for a watermark a roll-up moved
/// while it ran, before it counts the window's records instead.
const MARK_ATTEMPTS: usize = 3;

/// A count run to its exact result, one statement at a time: send
/// [`statement`](Self::statement), hand its rows to
/// [`finish`](Self::finish), and repeat until `finish` returns the counts.
///
/// A count over hours is accepted only if its statement saw the watermark
/// it was built for. When a roll-up moved it meanwhile the count is built
/// again for the watermark the statement saw (roll-ups are minutes apart,
/// so once is the rare case), and after three attempts over the records
/// alone, which needs no watermark. So a count costs two round trips —
/// the watermark ([`COUNT_MARK`]), then the count — and no transaction;
/// the two need not share a connection (sending both on one saves a pool
/// checkout).
///
/// ```
/// use governance_abstractions::provider::postgres_statements::{CountAttempts, CountRow};
/// use governance_abstractions::{CountBy, CountQuery, TimeRange, WorkspaceId};
///
/// let ws = WorkspaceId::new("acme").unwrap();
/// let query = CountQuery::new(CountBy::Operation, TimeRange::default());
/// let mut count = CountAttempts::new(&ws, &query, Some("7".into()));
/// let (sql, _params) = count.statement().unwrap();
/// assert!(sql.contains("governance_history_daily_counts"), "an unbounded window: every day");
/// // The statement saw the watermark it was built for: its counts stand.
/// let rows = vec![CountRow::Count { key: "export".into(), n: 3 }, CountRow::Mark(Some("7".into()))];
/// let counts = count.finish(rows).unwrap().expect("accepted");
/// assert_eq!((counts[0].key.as_str(), counts[0].count), ("export", 3));
/// ```
#[derive(Debug)]
pub struct CountAttempts<'a> {
    workspace: &'a crate::WorkspaceId,
    query: &'a crate::CountQuery,
    mark: Option<String>,
    attempts: usize,
}

impl<'a> CountAttempts<'a> {
    /// A count of `query` over `workspace`, built for `mark` (read by
    /// [`COUNT_MARK`]; `None` counts the records).
    pub fn new(workspace: &'a crate::WorkspaceId, query: &'a crate::CountQuery, mark: Option<String>) -> Self {
        // A window without a whole hour is counted from its records, with
        // no watermark row to check.
        let mark = mark.filter(|_| whole_hours(&query.window).is_some());
        Self { workspace, query, mark, attempts: 1 }
    }

    /// The statement to send now ([`count_history`]).
    ///
    /// # Errors
    ///
    /// A validation error for a query [`CountQuery::validate`](crate::CountQuery::validate) refuses.
    pub fn statement(&self) -> Result<(String, Vec<CountParam>), crate::GovernanceError> {
        count_history(self.workspace, self.query, self.mark.as_deref())
    }

    /// The counts, summed and ranked, if the rows of [`statement`](Self::statement)
    /// stand; `None` when a roll-up moved the watermark under it, and the
    /// next statement is to be sent.
    ///
    /// # Errors
    ///
    /// A backend error if a count over whole hours came back without its
    /// watermark row.
    pub fn finish(&mut self, rows: Vec<CountRow>) -> Result<Option<Vec<crate::Count>>, crate::GovernanceError> {
        let mut counts: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        let mut seen = None;
        for row in rows {
            match row {
                CountRow::Count { key, n } => *counts.entry(key).or_default() += u64::try_from(n).unwrap_or(0),
                CountRow::Mark(at) => seen = Some(at),
            }
        }
        match (self.mark.take(), seen) {
            (None, _) => {}
            (Some(used), Some(seen)) if seen.as_deref() == Some(used.as_str()) => {}
            (Some(_), Some(seen)) => {
                self.attempts += 1;
                self.mark = seen.filter(|_| self.attempts <= MARK_ATTEMPTS);
                return Ok(None);
            }
            (Some(_), None) => {
                return Err(crate::GovernanceError::backend(false, "a count over hourly counts returned no watermark"));
            }
        }
        let counts = counts.into_iter().map(|(key, count)| crate::Count { key, count }).collect();
        Ok(Some(super::rank_counts(counts, self.query.limit)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(list: &str) -> Vec<&str> {
        list.split(", ").collect()
    }

    #[test]
    fn the_column_lists_have_their_arity() {
        assert_eq!(columns(REQUEST_COLUMNS).len(), REQUEST_ARITY);
        assert_eq!(columns(HISTORY_COLUMNS).len(), HISTORY_ARITY);
    }

    /// Every statement numbers its parameters `$1..$n` with no gap, so a
    /// provider binding `n` values in the documented order fills each once.
    #[test]
    fn parameters_are_numbered_without_gaps() {
        let highest = |sql: &str| {
            let mut seen = std::collections::BTreeSet::new();
            for part in sql.split('$').skip(1) {
                let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
                seen.insert(digits.parse::<usize>().expect("a parameter number"));
            }
            let n = seen.len();
            assert_eq!(seen.into_iter().collect::<Vec<_>>(), (1..=n).collect::<Vec<_>>(), "{sql}");
            n
        };
        let written = TRANSITION_FIRST_WRITTEN - 1 + super::super::TRANSITION_COLUMNS.len();
        for rows in [HistoryRows::Arrays, HistoryRows::ArraysJsonCodes, HistoryRows::Values(1), HistoryRows::Values(3)]
        {
            assert_eq!(highest(&create_request(rows)), REQUEST_ARITY + rows.parameters());
            assert_eq!(highest(&transition(rows, false)), written + rows.parameters());
            assert_eq!(highest(&transition(rows, true)), written + 3 + rows.parameters());
            assert_eq!(highest(&append_history(rows)), rows.parameters());
        }
    }

    /// A watermark that moves under every attempt ends in a count of the
    /// records, which needs none; a count over hours without its watermark
    /// row is an error, never a silent answer.
    #[test]
    fn a_count_whose_watermark_keeps_moving_counts_the_records() {
        use crate::{CountBy, CountQuery, TimeRange, Timestamp, WorkspaceId};
        let ws = WorkspaceId::new("ws").expect("valid");
        let from = Timestamp::from_unix_micros(HOUR_MICROS * 10 + 1).expect("in range");
        let week = TimeRange { from: Some(from), until: None };
        let query = CountQuery::new(CountBy::Operation, week);
        let mut count = CountAttempts::new(&ws, &query, Some("7".into()));
        let mut built = Vec::new();
        let counts = loop {
            let (sql, _) = count.statement().expect("build");
            let hourly = sql.contains("governance_history_counts");
            built.push(hourly);
            let mut rows = vec![CountRow::Count { key: "create".into(), n: 2 }];
            if hourly {
                rows.push(CountRow::Mark(Some(format!("{}", 7 + built.len()))));
            }
            if let Some(counts) = count.finish(rows).expect("rows") {
                break counts;
            }
        };
        assert_eq!(built, [true, true, true, false]);
        assert_eq!(counts, [crate::Count { key: "create".into(), count: 2 }]);

        let mut count = CountAttempts::new(&ws, &query, Some("7".into()));
        let missing = count.finish(vec![CountRow::Count { key: "create".into(), n: 2 }]);
        assert!(matches!(missing, Err(crate::GovernanceError::Backend { .. })), "{missing:?}");

        // Within one hour there is nothing to read from the hourly counts.
        let until = Timestamp::from_unix_micros(HOUR_MICROS * 10 + 9).expect("in range");
        let inside = CountQuery::new(CountBy::Operation, TimeRange { until: Some(until), ..week });
        let mut count = CountAttempts::new(&ws, &inside, Some("7".into()));
        let (sql, _) = count.statement().expect("build");
        assert!(!sql.contains("governance_history_counts"), "{sql}");
        assert_eq!(count.finish(Vec::new()).expect("rows"), Some(Vec::new()));
    }

    /// Whole days are read from the daily counts, the whole hours around
    /// them from the hourly ones, and nothing twice.
    #[test]
    fn whole_days_come_from_the_daily_counts_and_the_hours_around_them_from_the_hourly() {
        use crate::{CountBy, CountQuery, TimeRange, Timestamp, WorkspaceId};
        let ws = WorkspaceId::new("ws").expect("valid");
        let at = |hour: i64, micros: i64| Timestamp::from_unix_micros(HOUR_MICROS * hour + micros).expect("in range");
        // (window, daily ranges, hourly ranges) in days and hours since the epoch.
        type Ranges = Vec<(Option<i64>, Option<i64>)>;
        let cases: Vec<(TimeRange, Ranges, Ranges)> = vec![
            // Partial hours at both edges, hours 11..77: days 1..3, hours 11..24 and 72..77.
            (
                TimeRange { from: Some(at(10, 1)), until: Some(at(77, 5)) },
                vec![(Some(1), Some(3))],
                vec![(Some(11), Some(24)), (Some(72), Some(77))],
            ),
            // Exactly one day.
            (TimeRange { from: Some(at(24, 0)), until: Some(at(48, 0)) }, vec![(Some(1), Some(2))], vec![]),
            // Whole hours of one day only.
            (TimeRange { from: Some(at(25, 0)), until: Some(at(47, 0)) }, vec![], vec![(Some(25), Some(47))]),
            // Open at the end: every day from the first whole one.
            (TimeRange { from: Some(at(30, 7)), until: None }, vec![(Some(2), None)], vec![(Some(31), Some(48))]),
            // Open at the start, and unbounded.
            (TimeRange { from: None, until: Some(at(50, 0)) }, vec![(None, Some(2))], vec![(Some(48), Some(50))]),
            (TimeRange::default(), vec![(None, None)], vec![]),
        ];
        for (window, daily, hourly) in cases {
            let query = CountQuery::new(CountBy::ReasonCode, window);
            let (sql, params) = count_history(&ws, &query, Some("9")).expect("build");
            let ranges = |table: &str, column: &str| -> Ranges {
                sql.split(" UNION ALL ")
                    .filter(|part| part.contains(&format!("FROM {table} ")))
                    .map(|part| {
                        let bound = |op: &str| {
                            let marker = format!("{column} {op} $");
                            part.find(&marker).map(|at| {
                                let digits: String =
                                    part[at + marker.len()..].chars().take_while(char::is_ascii_digit).collect();
                                match &params[digits.parse::<usize>().expect("numbered") - 1] {
                                    CountParam::Int(n) => *n,
                                    other => panic!("{other:?}"),
                                }
                            })
                        };
                        (bound(">="), bound("<"))
                    })
                    .collect()
            };
            assert_eq!(ranges("governance_history_daily_counts", "day"), daily, "{window:?}: {sql}");
            assert_eq!(ranges("governance_history_counts", "hour"), hourly, "{window:?}: {sql}");
        }
    }

    /// A watermark whose days are not in step reads every whole hour from
    /// the hourly counts, and binds the transaction id without the marker;
    /// the statement reports the token as `COUNT_MARK` reads it.
    #[test]
    fn a_watermark_out_of_step_with_the_days_reads_only_hours() {
        use crate::{CountBy, CountQuery, TimeRange, Timestamp, WorkspaceId};
        let ws = WorkspaceId::new("ws").expect("valid");
        let at = |hour: i64| Timestamp::from_unix_micros(HOUR_MICROS * hour).expect("in range");
        let query = CountQuery::new(CountBy::Operation, TimeRange { from: Some(at(10)), until: Some(at(77)) });
        let token = format!("9{HOURS_ONLY}");
        let (sql, params) = count_history(&ws, &query, Some(&token)).expect("build");
        assert!(!sql.contains("governance_history_daily_counts"), "{sql}");
        assert_eq!(sql.matches("FROM governance_history_counts ").count(), 1, "one range of hours: {sql}");
        assert!(params.contains(&CountParam::Int(10)) && params.contains(&CountParam::Int(77)), "{params:?}");
        assert!(params.contains(&CountParam::Text("9".into())), "the tail from transaction 9: {params:?}");
        assert!(!params.iter().any(|p| matches!(p, CountParam::Text(t) if t.contains(HOURS_ONLY))), "{params:?}");
        // The same token, in step: the days are read.
        let (sql, _) = count_history(&ws, &query, Some("9")).expect("build");
        assert!(sql.contains("governance_history_daily_counts"), "{sql}");
        // Both reads of the watermark produce the marker the parser strips.
        for read in [COUNT_MARK, sql.as_str()] {
            assert!(read.contains(&format!("ELSE '{HOURS_ONLY}' END")), "{read}");
        }
    }

    #[test]
    fn the_array_form_slices_reason_codes_from_the_flat_list() {
        assert_eq!(HISTORY_COLUMNS.split(", ").nth(REASON_CODES), Some("reason_codes"));
        let sql = HistoryRows::Arrays.select(1);
        assert!(sql.contains("($15::text[])[r.codes_from:r.codes_to]"), "{sql}");
        assert!(sql.contains("$27::int4[], $28::int4[]) AS r("), "{sql}");
        assert!(!sql.contains("$15::text[]["), "the flat list is not unnested: {sql}");
        assert_eq!(sql.matches("r.").count() - 2, HISTORY_ARITY - 1, "{sql}");
        // Without slicing, for engines that lack it.
        let sql = HistoryRows::ArraysJsonCodes.select(1);
        assert!(!sql.contains(":r.") && !sql.contains("int4[]"), "{sql}");
        assert!(sql.contains("$15::jsonb[]") && sql.contains("jsonb_array_elements_text(r.reason_codes)"), "{sql}");
    }

    #[test]
    fn transitions_set_only_the_transition_columns() {
        for rows in [HistoryRows::Arrays, HistoryRows::ArraysJsonCodes, HistoryRows::Values(2)] {
            for supersede in [false, true] {
                let sql = transition(rows, supersede);
                let set =
                    sql.split(" SET ").nth(1).and_then(|rest| rest.split(" WHERE ").next()).expect("a SET clause");
                let set: Vec<&str> = set.split(", ").map(|a| a.split(" = ").next().expect("an assignment")).collect();
                assert_eq!(set, super::super::TRANSITION_COLUMNS, "{sql}");
                assert_eq!(sql.contains("FOR SHARE"), supersede);
                assert_eq!(sql.contains("EXISTS (SELECT 1 FROM guard)"), supersede);
                // No row matches without its digest: a row stored without
                // one is matched only by the retry that checked its content
                // and binds NULL.
                assert!(!sql.contains("IS NULL") && !sql.contains(" OR "), "{sql}");
                let digests = sql.matches("state_digest IS NOT DISTINCT FROM $").count();
                assert_eq!(digests, if supersede { 2 } else { 1 });
            }
        }
    }
}
