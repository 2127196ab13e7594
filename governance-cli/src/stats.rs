//! `governance stats`: the analytics counts of decision evidence over a
//! window, as tables or one JSON object. The numbers are the store's own
//! `count_history`, so they are what an application gets from the library.

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, ValueEnum};
use comfy_table::{Table, presets};
use governance_abstractions::{Count, CountBy, CountQuery, Decision, TimeRange, Timestamp};
use serde_json::json;

use crate::error::CliError;
use crate::integrity::workspace;
use crate::open::{self, Mode};
use crate::{Outcome, Target};

/// `governance stats`.
#[derive(Debug, Args)]
pub(crate) struct Options {
    #[command(flatten)]
    pub(crate) target: Target,
    /// The workspace (tenant).
    #[arg(long, value_name = "ID")]
    workspace: String,
    /// Start of the window, inclusive: RFC 3339 or a UTC date (default: 7 days before --until).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<DateTime<Utc>>,
    /// End of the window, exclusive: RFC 3339 or a UTC date (default: now).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<DateTime<Utc>>,
    /// Only this decision in the per-principal and per-operation counts.
    #[arg(long, value_enum)]
    decision: Option<DecisionArg>,
    /// The largest groups shown per count.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    limit: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t = StatsFormat::Table)]
    format: StatsFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DecisionArg {
    Approved,
    Denied,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StatsFormat {
    /// Tables for people.
    Table,
    /// One JSON object.
    Json,
}

/// An RFC 3339 time, or a date meaning its midnight UTC.
fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(day) => Ok(day.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or_default()),
        Err(_) => Err(format!("{text:?} is neither an RFC 3339 time (2026-12-01T09:00:00Z) nor a date (2026-12-01)")),
    }
}

/// The four counts, in the order shown.
const SECTIONS: [(&str, &str); 4] = [
    ("deny_reasons", "top deny reasons"),
    ("principals", "per principal"),
    ("operations", "per operation"),
    ("decisions", "per decision"),
];

pub(crate) async fn run(options: Options) -> Result<Outcome, CliError> {
    let workspace = workspace(&options.workspace)?;
    let until = options.until.unwrap_or_else(Utc::now);
    let since = options.since.unwrap_or(until - chrono::Duration::days(7));
    if since >= until {
        return Err(CliError::Usage(format!("--since {since} must come before --until {until}")));
    }
    let window = TimeRange::between(Timestamp::from_datetime(since), Timestamp::from_datetime(until));
    let decision = options.decision.map(|d| match d {
        DecisionArg::Approved => Decision::Approved,
        DecisionArg::Denied => Decision::Denied,
    });
    let with_decision = |query: CountQuery| match decision {
        Some(d) => query.decision(d),
        None => query,
    };
    let queries = [
        CountQuery::new(CountBy::ReasonCode, window).decision(Decision::Denied).limit(options.limit),
        with_decision(CountQuery::new(CountBy::Principal, window).limit(options.limit)),
        with_decision(CountQuery::new(CountBy::Operation, window).limit(options.limit)),
        CountQuery::new(CountBy::Decision, window),
    ];
    let opened = open::open(&options.target, Mode::Existing).await?;
    let store = opened.store();
    let mut results: Vec<Vec<Count>> = Vec::new();
    for query in &queries {
        let counts = store
            .count_history(&workspace, query)
            .await
            .map_err(|e| opened.failed(&format!("counting the history of {workspace}"), &e))?;
        results.push(counts);
    }
    match options.format {
        StatsFormat::Json => {
            let mut doc = serde_json::Map::new();
            doc.insert("workspace".into(), json!(workspace));
            doc.insert("window".into(), json!({ "since": since.to_rfc3339(), "until": until.to_rfc3339() }));
            for ((key, _), counts) in SECTIONS.iter().zip(&results) {
                let rows: Vec<_> = counts.iter().map(|c| json!({ "key": c.key, "count": c.count })).collect();
                doc.insert((*key).into(), json!(rows));
            }
            println!("{}", serde_json::Value::Object(doc));
        }
        StatsFormat::Table => {
            println!("workspace {workspace}, decisions from {} until {}", since.to_rfc3339(), until.to_rfc3339());
            for ((_, title), counts) in SECTIONS.iter().zip(&results) {
                let mut table = Table::new();
                table.load_style(presets::ASCII_MARKDOWN).set_header(vec![title.to_string(), "count".to_owned()]);
                for count in counts {
                    table.add_row(vec![count.key.clone(), count.count.to_string()]);
                }
                if counts.is_empty() {
                    table.add_row(vec!["(none in the window)".to_owned(), "0".to_owned()]);
                }
                println!("\n{table}");
            }
        }
    }
    Ok(Outcome::Clean)
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_are_rfc_3339_or_dates_and_nothing_else() {
        assert_eq!(parse_time("2026-12-01").unwrap().to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(parse_time("2026-12-01T10:00:00+01:00").unwrap().to_rfc3339(), "2026-12-01T09:00:00+00:00");
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }
}

/// `governance roll-up`.
#[derive(Debug, Args)]
pub(crate) struct RollUpOptions {
    #[command(flatten)]
    pub(crate) target: Target,
    /// The workspace (tenant).
    #[arg(long, value_name = "ID")]
    workspace: String,
}

/// Folds the workspace's new decision records into the hourly and daily counts that
/// `stats` (and every `count_history`) reads. Counts are exact without it;
/// it keeps them fast. Only PostgreSQL keeps such counts (through either
/// provider: they are the shared schema's).
pub(crate) async fn roll_up(options: RollUpOptions) -> Result<Outcome, CliError> {
    let workspace = workspace(&options.workspace)?;
    let opened = open::open(&options.target, Mode::Existing).await?;
    let Some(rolled) = opened.roll_up_counts(&workspace).await else {
        return Err(CliError::Usage(format!(
            "{} keeps no hourly decision counts (its counts read the records): nothing to roll up; \
             only PostgreSQL keeps them",
            opened.provider()
        )));
    };
    let folded = rolled.map_err(|e| opened.failed(&format!("rolling up the counts of {workspace}"), &e))?;
    println!("rolled up {folded} decision records of {workspace} into the hourly and daily counts");
    Ok(Outcome::Clean)
}
