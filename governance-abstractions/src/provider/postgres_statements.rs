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

/// The watermark of a workspace's hourly counts (its `through_tx` as
/// text), `$1` the workspace: read in the same `REPEATABLE READ` snapshot
/// as the count that relies on it ([`COUNT_SNAPSHOT`]). No row when
/// nothing was folded in yet, or when its probe record no longer has the
/// transaction id it had when it was folded in (a logical restore stamps
/// every record anew, so counts from before it are not this database's).
pub const COUNT_MARK: &str = "SELECT r.through_tx::text FROM governance_count_rollups r \
     WHERE r.workspace_id = $1 AND EXISTS (SELECT 1 FROM governance_history h \
         WHERE h.workspace_id = r.workspace_id AND h.id = r.probe_id AND h.tx_id = r.probe_tx)";

/// The transaction a count with whole hours runs in, the watermark read
/// first: a roll-up committing between the two is seen whole or not at all.
pub const COUNT_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// One hour in microseconds: the grain of `governance_history_counts`.
const HOUR_MICROS: i64 = 3_600_000_000;

/// The whole hours of `window`, as hours since the epoch `[first, end)`
/// (`None`: unbounded on that side); `None` when it holds no whole hour,
/// and a count over it reads only records.
pub fn whole_hours(window: &crate::TimeRange) -> Option<(Option<i64>, Option<i64>)> {
    let first = window.from.map(|t| {
        let micros = t.unix_micros();
        micros.div_euclid(HOUR_MICROS) + i64::from(micros.rem_euclid(HOUR_MICROS) != 0)
    });
    let end = window.until.map(|t| t.unix_micros().div_euclid(HOUR_MICROS));
    match (first, end) {
        (Some(first), Some(end)) if first >= end => None,
        bounds => Some(bounds),
    }
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
/// (`text`) and `n` (`int8`), several per key at most (sum them, then rank
/// with [`rank_counts`](super::rank_counts)).
///
/// With no watermark (`mark`: read by [`COUNT_MARK`]; `None` when the
/// workspace was never rolled up, its counts came from before a logical
/// restore, or the schema keeps none) it counts the window's records. With
/// one, the window's whole hours are read from the hourly counts
/// (`governance_history_counts`, folded in by `governance_roll_up_counts`)
/// plus the records of those hours that no roll-up has folded in yet, found
/// through the feed index by transaction, and the partial hours at the
/// window's edges are counted from their records. Run it in the snapshot
/// the watermark was read in ([`COUNT_SNAPSHOT`]); the watermark is bound
/// as a value so the planner sees how few records follow it.
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
    sql.push("SELECT key, sum(n)::bigint AS n FROM (");
    // The whole hours folded in.
    let counted = if query.by == CountBy::Decision { "decision" } else { "key" };
    sql.push(&format!("SELECT {counted} AS key, n FROM governance_history_counts WHERE workspace_id = "));
    sql.bind(CountParam::Text(workspace.as_str().to_owned()));
    sql.push(" AND dimension = ").bind(CountParam::Text(dimension.to_owned()));
    if let Some(decision) = query.decision {
        sql.push(" AND decision = ").bind(CountParam::Text(decision.as_str().to_owned()));
    }
    if let Some(first) = first {
        sql.push(" AND hour >= ").bind(CountParam::Int(first));
    }
    if let Some(end) = end {
        sql.push(" AND hour < ").bind(CountParam::Int(end));
    }
    // The whole hours' records not folded in yet.
    sql.push(" UNION ALL ");
    records(&mut sql);
    sql.window(&whole);
    sql.push(" AND tx_id >= ").bind(CountParam::Text(mark.to_owned())).push("::text::xid8 GROUP BY 1");
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
    sql.push(") AS parts GROUP BY key");
    Ok((sql.sql, sql.params))
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
